"""The vLLM engine behind the gateway: one HTTP client, its context length, its health.

`Engine` is created without I/O (so the UI can hold it from the start); `open()` and
`aclose()` are called by the app's lifespan. Transport failures become 503
`service_unavailable`; vLLM's own error answers are mapped onto the API's error shape.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson

from server.engine.profiles import EMBEDDED_CONTEXT, PRODUCTION_CONTEXT
from server.gateway import errors
from server.gateway.errors import ApiError
from server.settings import Settings

log = logging.getLogger(__name__)

# Generation can legitimately be silent for minutes: a 700k-token prefill happens before the
# first byte. Connecting, though, must be quick: a dead engine is a 503 right away.
TIMEOUT = httpx.Timeout(connect=5.0, read=900.0, write=120.0, pool=30.0)
HEALTH_TIMEOUT = httpx.Timeout(3.0)
CONNECTION_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
# vLLM's wording whenever a prompt (or prompt + max_tokens) is over the model's length.
CONTEXT_MARKERS = ("maximum context length", "max_model_len", "context length")


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
        self.client: httpx.AsyncClient | None = None

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
        self.client = httpx.AsyncClient(
            base_url=self.base_url, timeout=TIMEOUT, limits=CONNECTION_LIMITS
        )

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def check_health(self) -> bool:
        """Ask the engine's /health; learn its context length the first time it answers."""
        try:
            response = await self.client.get("/health", timeout=HEALTH_TIMEOUT)
            self.healthy = response.status_code == 200
        except httpx.HTTPError:
            self.healthy = False
        if self.healthy and not self.discovered:
            await self.discover()
        return self.healthy

    async def discover(self) -> bool:
        """Read max_model_len from the engine's /v1/models; False if it does not answer."""
        try:
            response = await self.client.get("/v1/models", timeout=HEALTH_TIMEOUT)
            response.raise_for_status()
            card = response.json()["data"][0]
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
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

    async def post(self, path: str, body: bytes) -> httpx.Response:
        """A complete (non-streamed) call; vLLM's errors come back as ApiError."""
        try:
            response = await self.client.post(path, content=body, headers=_JSON)
        except httpx.HTTPError as exc:
            raise self._down(exc) from exc
        if response.status_code >= 400:
            raise map_upstream_error(response.status_code, response.content, self.max_context,
                                     _prompt_param(path))
        return response

    async def open_stream(self, path: str, body: bytes) -> httpx.Response:
        """Start a streamed call; the caller must `aclose()` the response it gets."""
        request = self.client.build_request("POST", path, content=body, headers=_JSON)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._down(exc) from exc
        if response.status_code >= 400:
            try:
                content = await response.aread()
            except httpx.HTTPError:
                content = b""
            finally:
                await response.aclose()
            raise map_upstream_error(response.status_code, content, self.max_context,
                                     _prompt_param(path))
        return response

    def _down(self, exc: httpx.HTTPError) -> ApiError:
        log.warning("engine call failed: %r", exc)
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return errors.service_unavailable("The engine did not answer in time; retry later.")
        self.healthy = False
        return errors.service_unavailable()


_JSON = {"content-type": "application/json"}


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
