"""The generating endpoints' ASGI front: `POST` to the paths in GENERATING, served before
FastAPI's own stack (its routing, dependency, exception and middleware layers).

Those layers cost about a third of the gateway's CPU per request (py-spy, issue 12) and give
these routes nothing: the body is read and checked by `body.read_json_object`, the key by
`auth.require_key`, errors are turned into the API's shape by `handlers.handle_api_error` (and
an unexpected one by `handlers.handle_unexpected`), the same calls the FastAPI routes make.
`server.app.WorkbenchApp` sends these requests here, through the metrics middleware only;
every other request (other methods and paths, the UI) goes through FastAPI, so a GET on these
paths is still its 405. The operations are described in `/v1/openapi.json` by
`routes.GENERATING`.
"""

from __future__ import annotations

import asyncio
import time

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.gateway import errors
from server.gateway.auth import require_key
from server.gateway.body import read_json_object
from server.gateway.completions import JsonResult, StreamResult
from server.gateway.handlers import handle_api_error, handle_unexpected
from server.gateway.streaming import RelayResponse
from storage.keys import Key

# The generating endpoints, all served by CompletionService.serve.
GENERATING = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
    }
)


def handles(scope: Scope) -> bool:
    """Whether this request is one GenerationFront serves."""
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in GENERATING


class GenerationFront:
    """ASGI app for the requests `handles` accepts."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            key = await require_key(request)
            response = await serve(request, key, scope["path"])
        except errors.ApiError as exc:
            response = await handle_api_error(request, exc)
        except Exception as exc:  # as FastAPI's ServerErrorMiddleware would for its routes
            response = await handle_unexpected(request, exc)
        await response(scope, receive, send)


def _started(request: Request) -> float:
    # Set by MetricsMiddleware when the request arrived, so auth time counts as latency.
    return request.scope.get("state", {}).get("started") or time.perf_counter()


async def serve(request: Request, key: Key, endpoint: str) -> Response:
    """Read the body, let the completion service answer it, and shape its result."""
    gateway = request.app.state.gateway
    started = _started(request)
    try:
        body = await read_json_object(request, gateway.settings.max_body_bytes)
    except errors.ApiError as exc:
        gateway.completions.record_refusal(key, endpoint, None, exc, started)
        raise
    call = gateway.completions.serve(key, endpoint, body, started)
    result = await _until_disconnected(request, call)
    if result is None:  # the client is gone; nobody reads this
        return Response(status_code=499)
    if isinstance(result, StreamResult):
        return RelayResponse(result.relay, result.headers)
    return _JsonAnswer(result)


class _JsonAnswer(Response):
    """vLLM's JSON body as it came, with our headers (no re-encoding)."""

    media_type = "application/json"

    def __init__(self, result: JsonResult):
        super().__init__(result.body, headers=result.headers)


async def _until_disconnected(request: Request, call):
    """Await `call`, cancelling it if the client disconnects first (which aborts the engine's
    request too: cancelling closes its connection). Returns None if the client left."""
    with anyio.CancelScope() as scope:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            scope.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            return await call
        finally:
            watcher.cancel()
    return None
