"""The vLLM engine behind the gateway: one connection pool, its context length, its health.

With several engines (WORKBENCH_UPSTREAM_URLS) the upstream is vllm-router in front of them:
requests carry an affinity key (`x-session-id`, see `affinity.py`) the router hashes, answers
name the replica that gave them, and health and context come from each replica
(`replicas.py`). With an engine secret (WORKBENCH_ENGINE_KEY) every call carries it.

`Engine` is created without I/O (so the UI can hold it from the start); `open()` and
`aclose()` are called by the app's lifespan. Transport failures become 503
`service_unavailable`; vLLM's own error answers are mapped onto the API's error shape.

The engine is called with aiohttp: its C HTTP parser costs about a quarter of the CPU of
httpx/httpcore per call, and that call was the gateway's largest cost per request. Its
connections are kept alive as `server/engine_http.py` says.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from yarl import URL

from server import engine_http
from server.engine.profiles import EMBEDDED_CONTEXT, PRODUCTION_CONTEXT
from server.engine.router import metrics_port
from server.gateway import errors
from server.gateway.errors import ApiError
from server.gateway.replicas import REPLICA_HEADER, Replicas
from server.settings import Settings

log = logging.getLogger(__name__)

# Generation can legitimately be silent for minutes: a 700k-token prefill happens before the
# first byte. Connecting, though, must be quick: a dead engine is a 503 right away.
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=900.0)
HEALTH_TIMEOUT = aiohttp.ClientTimeout(total=3.0)
_JSON = {"Content-Type": "application/json"}
# vllm-router's answer when no replica took the connection ("Request failed: error sending
# request for url (http://replica/...)").
_ROUTER_SEND_FAILURE = b"error sending request"
AFFINITY_HEADER = "x-session-id"  # the first session header vllm-router's policies read
# vLLM's wording whenever a prompt (or prompt + max_tokens) is over the model's length.
CONTEXT_MARKERS = ("maximum context length", "max_model_len", "context length")
# vLLM's gauge of requests queued inside the engine (no KV room or no sequence slot yet), one
# sample per engine core in its Prometheus /metrics.
_WAITING = re.compile(r"^vllm:num_requests_waiting(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


class StreamCut(Exception):
    "The engine's stream ended without its closing [DONE] event"


# Everything raised when the engine is unreachable, too slow, or breaks a connection.
UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, StreamCut)


class UpstreamStream:
    """An open streamed response from the engine; `aclose()` before it ends aborts it."""

    def __init__(self, response: aiohttp.ClientResponse, replica: str | None = None):
        self._response = response
        self.replica = replica  # which replica answers (behind the router), else None

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """Bytes as they arrive (not split into lines or events)."""
        return self._response.content.iter_any()

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # complete: the connection goes back to the pool
        else:
            self._response.close()  # unfinished: dropping the connection aborts vLLM's request


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
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._auth = (
            {"Authorization": f"Bearer {settings.engine_key}"} if settings.engine_key else {}
        )
        self._headers = {**_JSON, **self._auth}
        self.replicas = (
            Replicas(
                settings.replica_urls,
                self.base_url,
                f"http://127.0.0.1:{metrics_port(settings)}",
                self._auth,
            )
            if settings.replica_urls
            else None
        )

    @property
    def max_context(self) -> int:
        """Enforced context: the engine's max_model_len, capped by WORKBENCH_MAX_CONTEXT."""
        discovered = self._context()
        if discovered is None:
            return self._fallback
        return min(discovered, self._cap) if self._cap else discovered

    def _context(self) -> int | None:
        return self.replicas.max_model_len if self.replicas else self._discovered

    @property
    def discovered(self) -> bool:
        return self._context() is not None

    async def open(self) -> None:
        self._session = engine_http.session(TIMEOUT, auto_decompress=False)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.base_url + path)
        return url

    async def _get(self, path: str) -> tuple[int, bytes]:
        async with self._session.get(
            self._url(path), headers=self._auth, timeout=HEALTH_TIMEOUT
        ) as response:
            return response.status, await response.read()

    async def check_health(self) -> bool:
        """Ask the engine's /health; learn its context length the first time it answers.
        Behind the router: healthy while the router and at least one replica answer."""
        if self.replicas:
            await self.replicas.check(self._session)
            self.healthy = self.replicas.any_up
            if self.healthy and self.created is None:
                await self.discover()
            return self.healthy
        try:
            status, _ = await self._get("/health")
            self.healthy = status == 200
        except UPSTREAM_ERRORS:
            self.healthy = False
        if self.healthy and not self.discovered:
            await self.discover()
        return self.healthy

    async def discover(self) -> bool:
        """Read max_model_len from the engine's /v1/models; False if it does not answer."""
        if self.replicas and self.replicas.max_model_len is None:
            await self.replicas.check(self._session)
            if self.replicas.max_model_len is None:
                return False
        try:
            status, content = await self._get("/v1/models")
            if status != 200:
                raise ValueError(f"status {status}")
            card = orjson.loads(content)["data"][0]
        except (*UPSTREAM_ERRORS, ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("engine at %s did not describe its model: %r", self.base_url, exc)
            return False
        self.created = card.get("created")
        if card.get("max_model_len"):
            self._discovered = int(card["max_model_len"])
        self.healthy = True
        return True

    async def requests_waiting(self) -> int | None:
        """How many requests wait inside vLLM for room to start (`vllm:num_requests_waiting`),
        or None when the engine does not say."""
        try:
            status, content = await self._get("/metrics")
        except UPSTREAM_ERRORS:
            return None
        values = _WAITING.findall(content.decode(errors="replace")) if status == 200 else []
        return int(sum(float(v) for v in values)) if values else None

    async def router_metrics(self) -> bytes:
        """vllm-router's own Prometheus text (empty without replicas or when it is down)."""
        return await self.replicas.router_metrics(self._session) if self.replicas else b""

    async def ensure_ready(self) -> None:
        """Before forwarding: the context length must be known, else the engine is down."""
        if not self.discovered and not await self.discover():
            self.healthy = False
            raise errors.service_unavailable()

    def _call_headers(self, affinity: str | None) -> dict[str, str]:
        return {**self._headers, AFFINITY_HEADER: affinity} if affinity else self._headers

    def _replica(self, response: aiohttp.ClientResponse) -> str | None:
        if self.replicas is None:
            return None
        return self.replicas.label(response.headers.get(REPLICA_HEADER))

    async def post(self, path: str, body: bytes, *, affinity: str | None = None) -> bytes:
        """A complete (non-streamed) call: the body of vLLM's answer, or an ApiError.
        Cancelling it (the client left) drops the connection, which aborts vLLM's request."""
        return (await self.post_answer(path, body, affinity=affinity))[0]

    async def post_answer(
        self, path: str, body: bytes, *, affinity: str | None = None
    ) -> tuple[bytes, str | None]:
        """`post`, and which replica answered (None without replicas)."""
        try:
            response = await engine_http.post(
                self._session, self._url(path), body, self._call_headers(affinity)
            )
            async with response:
                content = await response.read()
        except UPSTREAM_ERRORS as exc:
            raise self._down(exc) from exc
        if response.status >= 400:
            raise self._refusal(response.status, content, path)
        return content, self._replica(response)

    async def open_stream(
        self, path: str, body: bytes, *, affinity: str | None = None
    ) -> UpstreamStream:
        """Start a streamed call; the caller must `aclose()` what it gets."""
        try:
            response = await engine_http.post(
                self._session, self._url(path), body, self._call_headers(affinity)
            )
        except UPSTREAM_ERRORS as exc:
            raise self._down(exc) from exc
        if response.status >= 400:
            try:
                content = await response.read()
            except UPSTREAM_ERRORS:
                content = b""
            finally:
                response.close()
            raise self._refusal(response.status, content, path)
        return UpstreamStream(response, self._replica(response))

    def _refusal(self, status: int, content: bytes, path: str) -> ApiError:
        if self.replicas and status >= 500 and _ROUTER_SEND_FAILURE in content:
            # vllm-router tried every retry and reached no replica; its message names them.
            log.warning("vllm-router reached no replica: %s", content[:300])
            return errors.service_unavailable()
        return map_upstream_error(status, content, self.max_context, _prompt_param(path))

    def _down(self, exc: BaseException) -> ApiError:
        log.warning("engine call failed: %r", exc)
        if isinstance(exc, asyncio.TimeoutError) and not isinstance(
            exc, aiohttp.ConnectionTimeoutError
        ):
            return errors.service_unavailable("The engine did not answer in time; retry later.")
        self.healthy = False
        return errors.service_unavailable()


def _prompt_param(path: str) -> str:
    """Where each endpoint's prompt lives, for naming it in a context error."""
    if path.endswith("/completions") and not path.endswith("chat/completions"):
        return "prompt"
    return "input" if path.endswith("/responses") else "messages"


_VALIDATION_DUMP = re.compile(r"^\d+ validation errors?:")


def _readable_validation_dump(message: str) -> tuple[str, str | None] | None:
    """vLLM passes pydantic's error list through as text ("2 validation errors:\n  {'type':
    ..., 'loc': 'body.stop', 'msg': ...}"): read back, it says what ours would say."""
    if not _VALIDATION_DUMP.match(message):
        return None
    entries = []
    for line in message.splitlines()[1:]:
        try:
            entry = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError):
            continue
        if isinstance(entry, dict) and "msg" in entry:
            loc = str(entry.get("loc", "")).split(".")
            entry["loc"] = tuple(int(part) if part.isdigit() else part for part in loc if part)
            entries.append(entry)
    if not entries:
        return None
    error = errors.from_validation_errors(entries)
    return error.message, error.param


def upstream_message(content: bytes) -> tuple[str, str | None]:
    """The message and param of a vLLM error body (current or older shapes)."""
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", "replace")[:500] or "engine error", None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data = data["error"]
    if isinstance(data, dict):
        message = str(data.get("message") or "engine error")
        return _readable_validation_dump(message) or (message, data.get("param"))
    return "engine error", None


def map_upstream_error(
    status: int, content: bytes, max_context: int, prompt_param: str = "messages"
) -> ApiError:
    """vLLM's error answer → our shape (a context overflow is always context_length_exceeded)."""
    message, param = upstream_message(content)
    if status in (400, 413, 422):
        if any(marker in message.lower() for marker in CONTEXT_MARKERS):
            return errors.context_length_exceeded(max_context, prompt_param)
        return errors.invalid_request(message, param if isinstance(param, str) else None)
    if status == 404:
        return errors.upstream_not_found(message)
    if status == 401:
        # The engine wants a secret this gateway does not have (WORKBENCH_ENGINE_KEY differs).
        log.error("the engine refused the gateway's engine secret: check WORKBENCH_ENGINE_KEY")
        return errors.service_unavailable("The engine refused this gateway's credentials.")
    if status == 503:
        return errors.service_unavailable(message)
    if status == 429:
        return errors.service_unavailable("The engine is overloaded; retry later.")
    return errors.engine_error(f"The engine failed: {message}")
