"""The streaming proxy: vLLM's server-sent events relayed to the client as they arrive.

Contract (as vLLM's own server): one `data: {json}\\n\\n` per event, an error inside a stream is
a data event in the API's error shape, and the stream always ends with `data: [DONE]\\n\\n`.
Events are forwarded without re-encoding; only an event carrying `"usage":` is parsed (to
account for it, and to drop it when the client did not ask for usage). Closing the relay —
normally, on an upstream failure, or because the client went away — closes the upstream
response, which makes vLLM abort the request.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from server.gateway import errors
from server.gateway.upstream import (
    UPSTREAM_ERRORS,
    StreamCut,
    UpstreamStream,
    map_upstream_error,
)

DONE = b"data: [DONE]\n\n"
_USAGE = b'"usage":'
_ERROR = b'data: {"error"'


@dataclass
class StreamOutcome:
    """What happened in one stream, for accounting once it ends."""

    started: float  # perf_counter at request arrival
    usage: dict | None = None
    events: int = 0
    ttft_ms: float | None = None
    error_code: str | None = None
    disconnected: bool = False


class StreamRelay:
    """Iterates one upstream SSE response as client-ready bytes; `aclose()` is idempotent."""

    def __init__(self, upstream: UpstreamStream, outcome: StreamOutcome, *, strip_usage: bool,
                 max_context: int, prompt_param: str,
                 on_end: Callable[[StreamOutcome], Awaitable[None]]):
        self.upstream = upstream
        self.outcome = outcome
        self.strip_usage = strip_usage
        self.max_context = max_context
        self.prompt_param = prompt_param
        self._on_end = on_end
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer = b""
        done = False
        try:
            async for chunk in self.upstream.aiter_raw():
                buffer += chunk
                out: list[bytes] = []
                while (end := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[: end + 2], buffer[end + 2 :]
                    if event.startswith(DONE):
                        done = True
                    event = self._process(event)
                    if event:
                        out.append(event)
                if out:
                    yield b"".join(out)
            if not done:
                raise StreamCut()
        except UPSTREAM_ERRORS:
            # The engine died or cut the stream: tell the client inside the stream, then end it.
            self.outcome.error_code = "engine_error"
            failure = errors.engine_error("The engine stopped in the middle of the response.")
            yield failure.sse_event() + DONE
        except BaseException:
            self.outcome.disconnected = True
            raise
        finally:
            await self.aclose()

    def _process(self, event: bytes) -> bytes | None:
        outcome = self.outcome
        if outcome.ttft_ms is None and event.startswith(b"data: {"):
            outcome.ttft_ms = (time.perf_counter() - outcome.started) * 1000
        if event.startswith(_ERROR):
            return self._engine_error(event)
        if _USAGE in event:
            return self._usage(event)
        if event.startswith(b"data: {"):
            outcome.events += 1
        return event

    def _usage(self, event: bytes) -> bytes | None:
        data = orjson.loads(event[6:])
        if data.get("usage"):
            self.outcome.usage = data["usage"]
        if not self.strip_usage:
            return event
        if not data.get("choices"):
            return None  # the usage-only chunk the client did not ask for
        data.pop("usage", None)
        self.outcome.events += 1
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def _engine_error(self, event: bytes) -> bytes:
        # vLLM's in-stream errors carry a numeric code; re-shape them like every other error.
        data = orjson.loads(event[6:])
        info = data.get("error") if isinstance(data.get("error"), dict) else {}
        status = info.get("code") if isinstance(info.get("code"), int) else 500
        error = map_upstream_error(status, orjson.dumps(data), self.max_context,
                                   self.prompt_param)
        self.outcome.error_code = error.code
        return error.sse_event()

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close the upstream response (aborting it if unfinished) and account, once."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            try:
                await self.upstream.aclose()
            finally:
                await self._on_end(self.outcome)


class RelayResponse(StreamingResponse):
    """A StreamingResponse that closes its relay even if the body never started."""

    def __init__(self, relay: StreamRelay, headers: dict[str, str]):
        super().__init__(relay.__aiter__(), headers=headers, media_type="text/event-stream")
        self.relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.relay.closed:  # the body never started: the client went away first
                self.relay.outcome.disconnected = True
            await self.relay.aclose()
