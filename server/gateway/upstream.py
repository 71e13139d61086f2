"""The vLLM engine behind the gateway: one connection pool, its context length, its health.

`Engine` is created without I/O (so the UI can hold it from the start); `open()` and
`aclose()` are called by the app's lifespan. Transport failures become 503
`service_unavailable`; vLLM's own error answers are mapped onto the API's error shape.

The hot path talks HTTP/1.1 through httpcore (the engine of httpx, without httpx's client
layers): on a request the gateway barely touches, those layers were its largest cost.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpcore
import orjson

from server.engine.profiles import EMBEDDED_CONTEXT, PRODUCTION_CONTEXT
from server.gateway import errors
from server.gateway.errors import ApiError
from server.settings import Settings

log = logging.getLogger(__name__)

# Generation can legitimately be silent for minutes: a 700k-token prefill happens before the
# first byte. Connecting, though, must be quick: a dead engine is a 503 right away.
TIMEOUT = {"connect": 5.0, "read": 900.0, "write": 120.0, "pool": 30.0}
HEALTH_TIMEOUT = {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}
# Everything httpcore raises when the engine is unreachable or breaks a connection.
UPSTREAM_ERRORS = (
    httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
    httpcore.UnsupportedProtocol, httpcore.ConnectionNotAvailable,
)
# vLLM's wording whenever a prompt (or prompt + max_tokens) is over the model's length.
CONTEXT_MARKERS = ("maximum context length", "max_model_len", "context length")


class UpstreamStream:
    """An open streamed response from the engine; `aclose()` before it ends aborts it."""

    def __init__(self, response: httpcore.Response):
        self._response = response

    def aiter_raw(self) -> AsyncIterator[bytes]:
        return self._response.aiter_stream()

    async def aclose(self) -> None:
        await self._response.aclose()


class Engine:
    """The upstream vLLM server: `max_context` is what the gateway enforces and reports."""

    def __init__(self, settings: Settings):
        self.base_url = settings.upstream
        self._cap = settings.max_context
        self._fallback = settings.max_context or (
            EMBEDDED_CONTEXT if settings.profile == "cpu" else PRODUCTION_CONTEXT
        )
        self._discovered: int | None = None
        self.created: int | None = None
        self.healthy = False
        self._pool: httpcore.AsyncConnectionPool | None = None
        self._host = urlsplit(self.base_url).netloc.encode("ascii")

    @property
    def max_context(self) -> int:
        """Enforced context: the engine's max_model_len, capped by WORKBENCH_MAX_CONTEXT."""
        if self._discovered is None:
            return self._fallback
        return min(self._discovered, self._cap) if self._cap else self._discovered

    @property
    def discovered(self) -> bool:
        return self._discovered is not None

    async def open(self) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=1000, max_keepalive_connections=100, keepalive_expiry=30.0
        )

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def _get(self, path: str) -> httpcore.Response:
        return await self._pool.request(
            "GET", self.base_url + path, extensions={"timeout": HEALTH_TIMEOUT})

    async def check_health(self) -> bool:
        """Ask the engine's /health; learn its context length the first time it answers."""
        try:
            self.healthy = (await self._get("/health")).status == 200
        except UPSTREAM_ERRORS:
            self.healthy = False
        if self.healthy and not self.discovered:
            await self.discover()
        return self.healthy

    async def discover(self) -> bool:
        """Read max_model_len from the engine's /v1/models; False if it does not answer."""
        try:
            response = await self._get("/v1/models")
            if response.status != 200:
                raise ValueError(f"status {response.status}")
            card = orjson.loads(response.content)["data"][0]
        except (*UPSTREAM_ERRORS, ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("engine at %s did not describe its model: %r", self.base_url, exc)
            return False
        self.created = card.get("created")
        if card.get("max_model_len"):
            self._discovered = int(card["max_model_len"])
        self.healthy = True
        return True

    async def ensure_ready(self) -> None:
        """Before forwarding: the context length must be known, else the engine is down."""
        if not self.discovered and not await self.discover():
            self.healthy = False
            raise errors.service_unavailable()

    async def post(self, path: str, body: bytes) -> bytes:
        """A complete (non-streamed) call: the body of vLLM's answer, or an ApiError."""
        try:
            response = await self._pool.request(
                "POST", self.base_url + path, headers=_JSON, content=body,
                extensions={"timeout": TIMEOUT})
        except UPSTREAM_ERRORS as exc:
            raise self._down(exc) from exc
        if response.status >= 400:
            raise map_upstream_error(response.status, response.content, self.max_context,
                                     _prompt_param(path))
        return response.content

    async def open_stream(self, path: str, body: bytes) -> UpstreamStream:
        """Start a streamed call; the caller must `aclose()` what it gets."""
        # Unlike pool.request(), a bare Request gets no Host or Content-Length by itself.
        headers = [(b"host", self._host), (b"content-length", str(len(body)).encode()), *_JSON]
        request = httpcore.Request("POST", self.base_url + path, headers=headers, content=body,
                                   extensions={"timeout": TIMEOUT})
        try:
            response = await self._pool.handle_async_request(request)
        except UPSTREAM_ERRORS as exc:
            raise self._down(exc) from exc
        if response.status >= 400:
            try:
                content = await response.aread()
            except UPSTREAM_ERRORS:
                content = b""
            finally:
                await response.aclose()
            raise map_upstream_error(response.status, content, self.max_context,
                                     _prompt_param(path))
        return UpstreamStream(response)

    def _down(self, exc: Exception) -> ApiError:
        log.warning("engine call failed: %r", exc)
        if isinstance(exc, httpcore.TimeoutException) and not isinstance(
                exc, httpcore.ConnectTimeout):
            return errors.service_unavailable("The engine did not answer in time; retry later.")
        self.healthy = False
        return errors.service_unavailable()


_JSON = [(b"content-type", b"application/json")]


def _prompt_param(path: str) -> str:
    return "messages" if path.endswith("chat/completions") else "prompt"


def upstream_message(content: bytes) -> tuple[str, str | None]:
    """The message and param of a vLLM error body (current or older shapes)."""
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", "replace")[:500] or "engine error", None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data = data["error"]
    if isinstance(data, dict):
        return str(data.get("message") or "engine error"), data.get("param")
    return "engine error", None


def map_upstream_error(status: int, content: bytes, max_context: int,
                       prompt_param: str = "messages") -> ApiError:
    """vLLM's error answer → our shape (a context overflow is always context_length_exceeded)."""
    message, param = upstream_message(content)
    if status in (400, 413, 422):
        if any(marker in message.lower() for marker in CONTEXT_MARKERS):
            return errors.context_length_exceeded(max_context, prompt_param)
        return errors.invalid_request(message, param if isinstance(param, str) else None)
    if status == 404:
        return errors.ApiError(404, message, "not_found_error", "model_not_found", "model")
    if status == 503:
        return errors.service_unavailable(message)
    if status == 429:
        return errors.service_unavailable("The engine is overloaded; retry later.")
    return errors.internal_error(f"The engine failed: {message}", code="engine_error")
