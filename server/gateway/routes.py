"""HTTP routes: `/v1/*` (key required), `/health` (open) and `/metrics` (admin key).

Routes only translate: read the request, call one service, turn its result into a response.
"""

from __future__ import annotations

import asyncio
import time

import anyio
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from server.gateway import errors
from server.gateway.auth import AdminKey, ApiKey
from server.gateway.body import read_json_object
from server.gateway.completions import JsonResult, StreamResult
from server.gateway.limits import limit_id
from server.gateway.messages import CountTokensRequest, MessagesRequest
from server.gateway.openapi import (
    AnthropicMessageResponse,
    ChatCompletion,
    Completion,
    CountTokensResponse,
    ModelCard,
    ModelList,
    ResponseObject,
    documented,
    openapi_document,
)
from server.gateway.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    model_card,
    model_list,
)
from server.gateway.responses import ResponsesRequest
from server.gateway.streaming import RelayResponse
from server.settings import SERVED_MODEL_NAME
from storage.keys import Key

v1 = APIRouter(prefix="/v1")
ops = APIRouter()

# The generating endpoints, all served by CompletionService.serve.
GENERATING = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages",
              "/v1/messages/count_tokens")
KNOWN_V1_PATHS = frozenset({*GENERATING, "/v1/models", "/v1/openapi.json"})


def _started(request: Request) -> float:
    # Set by MetricsMiddleware when the request arrived, so auth time counts as latency.
    return getattr(request.state, "started", None) or time.perf_counter()


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


def _respond(result: JsonResult | StreamResult | None) -> Response:
    if result is None:  # the client is gone; nobody reads this
        return Response(status_code=499)
    if isinstance(result, StreamResult):
        return RelayResponse(result.relay, result.headers)
    return Response(result.body, media_type="application/json", headers=result.headers)


async def _serve(request: Request, key: Key, endpoint: str) -> Response:
    gateway = request.app.state.gateway
    started = _started(request)
    try:
        body = await read_json_object(request, gateway.settings.max_body_bytes)
    except errors.ApiError as exc:
        gateway.completions.record_refusal(key, endpoint, None, exc, started)
        raise
    call = gateway.completions.serve(key, endpoint, body, started)
    return _respond(await _until_disconnected(request, call))


@v1.post("/chat/completions", **documented(ChatCompletion, ChatCompletionRequest, stream=True))
async def chat_completions(request: Request, key: ApiKey) -> Response:
    return await _serve(request, key, "/v1/chat/completions")


@v1.post("/completions", **documented(Completion, CompletionRequest, stream=True))
async def completions(request: Request, key: ApiKey) -> Response:
    return await _serve(request, key, "/v1/completions")


@v1.post("/responses", **documented(ResponseObject, ResponsesRequest, stream=True))
async def responses(request: Request, key: ApiKey) -> Response:
    """OpenAI's Responses API (Codex)."""
    return await _serve(request, key, "/v1/responses")


@v1.post("/messages", **documented(AnthropicMessageResponse, MessagesRequest, stream=True,
                                   dialect="anthropic"))
async def messages(request: Request, key: ApiKey) -> Response:
    """Anthropic's Messages API (Claude Code); `?beta=true` and `anthropic-*` headers are
    accepted; errors answer in Anthropic's shape."""
    return await _serve(request, key, "/v1/messages")


@v1.post("/messages/count_tokens",
         **documented(CountTokensResponse, CountTokensRequest, dialect="anthropic"))
async def count_tokens(request: Request, key: ApiKey) -> Response:
    """Anthropic's token counting, by the engine's own template and tokenizer."""
    return await _serve(request, key, "/v1/messages/count_tokens")


@v1.get("/models", **documented(ModelList))
async def list_models(request: Request, key: ApiKey) -> Response:
    gateway = request.app.state.gateway
    await gateway.engine.ensure_ready()
    state = await gateway.limiter.snapshot(limit_id(key))
    body = model_list(gateway.engine.created, gateway.engine.max_context)
    return JSONResponse(body, headers=state.headers())


@v1.get("/models/{model_id:path}", **documented(ModelCard))
async def retrieve_model(request: Request, model_id: str, key: ApiKey) -> Response:
    """OpenAI's `models.retrieve`: the one model by its name, else 404 `model_not_found`."""
    if model_id != SERVED_MODEL_NAME:
        raise errors.model_not_found(model_id, SERVED_MODEL_NAME)
    gateway = request.app.state.gateway
    await gateway.engine.ensure_ready()
    state = await gateway.limiter.snapshot(limit_id(key))
    body = model_card(gateway.engine.created, gateway.engine.max_context)
    return JSONResponse(body, headers=state.headers())


@v1.get("/openapi.json", openapi_extra={"security": []})
async def openapi(request: Request) -> Response:
    """This description of `/v1` (OpenAPI 3.1); needs no key."""
    document = getattr(request.app.state, "v1_openapi", None)
    if document is None:
        document = request.app.state.v1_openapi = openapi_document(v1.routes)
    return JSONResponse(document)


@v1.api_route("", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
              include_in_schema=False)
@v1.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
              include_in_schema=False)
async def unknown_v1(request: Request, key: ApiKey) -> Response:
    """Everything else under /v1 (so the UI mounted at / never answers for it)."""
    if request.url.path in KNOWN_V1_PATHS:
        raise errors.method_not_allowed(request.method, request.url.path)
    raise errors.unknown_url(request.method, request.url.path)


async def missing_v1(request: Request) -> Response:
    """OpenAI paths without /v1: a base_url missing its /v1 is the commonest client mistake."""
    raise errors.unknown_url(request.method, request.url.path,
                             f". The API is under /v1: use base_url {request.base_url}v1")


for _path in ("/chat/completions", "/completions", "/models", "/models/{model_id:path}"):
    ops.add_api_route(_path, missing_v1, include_in_schema=False,
                      methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])


@ops.api_route("/health", methods=["GET", "HEAD"])  # monitors often probe with HEAD
async def health(request: Request) -> Response:
    """`{"status": "ok"}` while the engine answers its own /health, else 503. Behind
    vllm-router: each replica's state too, and `degraded` while some are down but one answers."""
    gateway = request.app.state.gateway
    healthy = await _check_engine(gateway)
    if not healthy:
        raise errors.service_unavailable("The engine is not available.")
    replicas = gateway.engine.replicas
    if replicas is None:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": replicas.status,
                         "replicas": [r.describe() for r in replicas.replicas]})


async def _check_engine(gateway) -> bool:
    healthy = await gateway.engine.check_health()
    gateway.metrics.engine_up.set(1 if healthy else 0)
    if gateway.engine.replicas is not None:
        gateway.metrics.observe_replicas(gateway.engine.replicas)
    return healthy


@ops.get("/metrics")
async def metrics(request: Request, key: AdminKey) -> Response:
    """The gateway's metrics; behind vllm-router, each replica's state and the router's own."""
    gateway = request.app.state.gateway
    router = b""
    if gateway.engine.replicas is not None:
        await _check_engine(gateway)
        router = await gateway.engine.router_metrics()
    return Response(gateway.metrics.render() + router, media_type=gateway.metrics.content_type)
