"""The streaming proxy: vLLM's server-sent events relayed to the client as they arrive.

Events are forwarded without re-encoding; only the few events that carry usage or an error are
parsed. Each protocol's stream has its own shape, described by a dialect:

- OpenAI chat and legacy completions (`ChatStream`): one `data: {json}` per event, errors as a
  data event in the API's error shape, always ended by `data: [DONE]`;
- the Responses API and Anthropic's Messages API (`TypedStream`): `event: TYPE` + `data: {json}`
  events, ended by a terminal event (`response.completed` ..., `message_stop`), errors as that
  protocol's own `error` event.

Closing the relay — normally, on an upstream failure, or because the client went away — closes
the upstream response, which makes vLLM abort the request.
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
    final: dict | None = None  # a typed stream's terminal object (the finished response)


class ChatStream:
    """OpenAI's chat and legacy completion streams: `data:` events up to `data: [DONE]`."""

    dialect: errors.Dialect = "openai"

    def __init__(self, strip_usage: bool):
        self.strip_usage = strip_usage  # vLLM is always asked for usage; the client may not want it

    def is_first_output(self, event: bytes) -> bool:
        return event.startswith(b"data: {")

    def is_end(self, event: bytes) -> bool:
        return event.startswith(DONE)

    def process(self, event: bytes, relay: StreamRelay) -> bytes | None:
        if event.startswith(_ERROR):
            return relay.engine_error(orjson.loads(event[6:])).sse_event()
        if _USAGE in event:
            return self._usage(event, relay.outcome)
        if event.startswith(b"data: {"):
            relay.outcome.events += 1
        return event

    def _usage(self, event: bytes, outcome: StreamOutcome) -> bytes | None:
        data = orjson.loads(event[6:])
        if data.get("usage"):
            outcome.usage = data["usage"]
        if not self.strip_usage:
            return event
        if not data.get("choices"):
            return None  # the usage-only chunk the client did not ask for
        data.pop("usage", None)
        outcome.events += 1
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def failure(self, error: errors.ApiError, relay: StreamRelay) -> bytes:
        return error.sse_event() + DONE


class TypedStream:
    """A stream of `event: TYPE` events (Responses API, Anthropic Messages API): it ends with one
    of `ends`; each event type in `usage_events` carries `usage` in the object at its path of
    keys; a failure ends it with the protocol's own error event."""

    def __init__(
        self,
        dialect: errors.Dialect,
        ends: tuple[bytes, ...],
        first_output: bytes,
        usage_events: dict[bytes, tuple[str, ...]],
    ):
        self.dialect = dialect
        self._ends = ends
        self._first_output = first_output
        self._usage_events = usage_events
        self.sent = 0  # events relayed: the next Responses sequence number

    @staticmethod
    def event_type(event: bytes) -> bytes:
        if not event.startswith(b"event: "):
            return b""
        return event[7 : event.find(b"\n")].strip()

    def is_first_output(self, event: bytes) -> bool:
        return self.event_type(event) == self._first_output

    def is_end(self, event: bytes) -> bool:
        return self.event_type(event) in self._ends

    def process(self, event: bytes, relay: StreamRelay) -> bytes | None:
        kind = self.event_type(event)
        data_at = event.find(b"data: ")
        if kind == b"error" or event.startswith(_ERROR):
            data = orjson.loads(event[data_at + 6 :])
            return relay.engine_error(data).sse_event(self.dialect, self.sent)
        if kind in self._usage_events:
            data = orjson.loads(event[data_at + 6 :])
            for name in self._usage_events[kind]:
                data = data.get(name) if isinstance(data, dict) else None
            if isinstance(data, dict) and data.get("usage"):
                relay.outcome.usage = data["usage"]
            if kind in self._ends and isinstance(data, dict):
                relay.outcome.final = data
        if kind.endswith(b"delta"):
            relay.outcome.events += 1
        self.sent += 1
        return event

    def failure(self, error: errors.ApiError, relay: StreamRelay) -> bytes:
        return error.sse_event(self.dialect, self.sent)


def responses_stream() -> TypedStream:
    """The Responses API: usage in the terminal event's `response`."""
    ends = (b"response.completed", b"response.incomplete", b"response.failed")
    return TypedStream(
        "responses", ends, b"response.output_item.added", {end: ("response",) for end in ends}
    )


def messages_stream() -> TypedStream:
    """Anthropic's Messages API: input usage in `message_start`, the total in `message_delta`."""
    return TypedStream(
        "anthropic",
        (b"message_stop",),
        b"content_block_start",
        {b"message_start": ("message",), b"message_delta": ()},
    )


class StreamRelay:
    """Iterates one upstream SSE response as client-ready bytes; `aclose()` is idempotent."""

    def __init__(
        self,
        upstream: UpstreamStream,
        outcome: StreamOutcome,
        dialect: ChatStream | TypedStream,
        *,
        max_context: int,
        prompt_param: str,
        on_end: Callable[[StreamOutcome], Awaitable[None]],
    ):
        self.upstream = upstream
        self.outcome = outcome
        self.dialect = dialect
        self.max_context = max_context
        self.prompt_param = prompt_param
        self._on_end = on_end
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer = b""
        done = False
        dialect = self.dialect
        try:
            async for chunk in self.upstream.aiter_raw():
                buffer += chunk
                out: list[bytes] = []
                while (end := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[: end + 2], buffer[end + 2 :]
                    if dialect.is_end(event):
                        done = True
                    if self.outcome.ttft_ms is None and dialect.is_first_output(event):
                        self.outcome.ttft_ms = (time.perf_counter() - self.outcome.started) * 1000
                    event = dialect.process(event, self)
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
            yield dialect.failure(failure, self)
        except BaseException:
            # A client that leaves after the terminal event (Codex closes the connection on
            # `response.completed`) has had the whole answer: not a disconnect.
            self.outcome.disconnected = not done
            raise
        finally:
            await self.aclose()

    def engine_error(self, data: dict) -> errors.ApiError:
        """An error event of the engine, re-shaped like every other error (vLLM's carry a
        numeric code; its Anthropic ones a type of its own)."""
        info = data.get("error") if isinstance(data.get("error"), dict) else data
        status = info.get("code") if isinstance(info.get("code"), int) else 500
        error = map_upstream_error(
            status, orjson.dumps({"error": info}), self.max_context, self.prompt_param
        )
        self.outcome.error_code = error.code
        return error

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
