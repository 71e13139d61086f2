"""The completion service: decides what happens to a chat or legacy completion request.

validate → check the model → turn PDF parts into text → count the prompt → fit max_tokens
into the context → admit under the key's limits → forward to vLLM (complete or streamed) →
settle the limits and record usage. Routes only translate HTTP to these calls and back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from pydantic import BaseModel, ValidationError

from server.gateway import errors
from server.gateway.documents import DocumentExpander
from server.gateway.errors import ApiError
from server.gateway.limits import (
    KeyLimiter, Lease, LimitsUnavailable, RateLimitExceeded, limit_id)
from server.gateway.metrics import GatewayMetrics
from server.gateway.prompts import PromptCounter, completion_prompts, max_tokens_for
from server.gateway.protocol import DEFAULTS, ChatCompletionRequest, CompletionRequest
from server.gateway.streaming import StreamOutcome, StreamRelay
from server.gateway.upstream import Engine
from server.gateway.usage import UsageRecorder, UsageRow
from server.settings import SERVED_MODEL_NAME
from storage.keys import Key

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class JsonResult:
    """A complete answer: vLLM's JSON body, passed through, and the headers to add."""

    body: bytes
    headers: dict[str, str]


@dataclass
class StreamResult:
    """A streamed answer: the relay to iterate and the headers to send before it."""

    relay: StreamRelay
    headers: dict[str, str]


@dataclass
class _Plan:
    """A validated request, sized and ready to forward."""

    endpoint: str  # also the engine's path
    param: str  # where the prompt lives: "messages" or "prompt"
    body: dict[str, Any]
    stream: bool
    client_wants_usage: bool
    prompt_tokens: int
    reserved: int
    user: str | None


class CompletionService:
    """Serves /v1/chat/completions and /v1/completions for an authenticated key."""

    def __init__(self, engine: Engine, counter: PromptCounter, limiter: KeyLimiter,
                 recorder: UsageRecorder, metrics: GatewayMetrics, documents: DocumentExpander):
        self.engine = engine
        self.counter = counter
        self.limiter = limiter
        self.recorder = recorder
        self.metrics = metrics
        self.documents = documents

    async def chat(self, key: Key, body: dict[str, Any], started: float
                   ) -> JsonResult | StreamResult:
        return await self._serve(key, body, started, chat=True)

    async def complete(self, key: Key, body: dict[str, Any], started: float
                       ) -> JsonResult | StreamResult:
        return await self._serve(key, body, started, chat=False)

    async def _serve(self, key: Key, body: dict[str, Any], started: float, *, chat: bool):
        endpoint = "/v1/chat/completions" if chat else "/v1/completions"
        try:
            plan = await (self._plan_chat(body) if chat else self._plan_completion(body))
            return await self._forward(key, plan, started)
        except ApiError as exc:
            self.record_refusal(key, endpoint, body, exc, started)
            raise

    def record_refusal(self, key: Key, endpoint: str, body: dict[str, Any] | None,
                       error: ApiError, started: float) -> None:
        """The usage row of a request answered with an error (before or by the engine)."""
        body = body or {}
        model = body.get("model") if isinstance(body.get("model"), str) else None
        user = body.get("user") if isinstance(body.get("user"), str) else None
        self.recorder.record(UsageRow(
            key.name, endpoint, model, error.status, latency_ms=_ms_since(started),
            user=user, error_code=error.code))

    # --- planning: validation, model, prompt size, defaults -------------------------------

    async def _plan_chat(self, body: dict[str, Any]) -> _Plan:
        request = _validate(ChatCompletionRequest, body)
        await self._check_model(request.model)
        messages = await self.documents.expand(body["messages"])
        prompt_tokens = await self.counter.messages(messages, request.tools)
        requested = request.max_completion_tokens or request.max_tokens
        max_tokens = max_tokens_for(requested, DEFAULTS["max_tokens"], prompt_tokens,
                                    self.engine.max_context, "messages")
        out = _with_defaults(body, max_tokens)
        out["messages"] = messages
        if request.max_completion_tokens is not None:
            out["max_completion_tokens"] = max_tokens
        return self._plan(out, request, "/v1/chat/completions", "messages",
                          prompt_tokens, prompt_tokens + out["n"] * max_tokens)

    async def _plan_completion(self, body: dict[str, Any]) -> _Plan:
        request = _validate(CompletionRequest, body)
        await self._check_model(request.model)
        texts, known = completion_prompts(request.prompt)
        counts = await self.counter.texts(texts) + known
        if not counts:
            raise errors.invalid_request("The prompt must not be empty.", "prompt",
                                         "invalid_value")
        max_tokens = max_tokens_for(request.max_tokens, DEFAULTS["max_tokens"], max(counts),
                                    self.engine.max_context, "prompt")
        out = _with_defaults(body, max_tokens)
        prompt_tokens = sum(counts)
        reserved = prompt_tokens + len(counts) * out["n"] * max_tokens
        return self._plan(out, request, "/v1/completions", "prompt", prompt_tokens, reserved)

    async def _check_model(self, model: str) -> None:
        if model != SERVED_MODEL_NAME:
            raise errors.model_not_found(model, SERVED_MODEL_NAME)
        await self.engine.ensure_ready()

    def _plan(self, out: dict[str, Any], request: BaseModel, endpoint: str, param: str,
              prompt_tokens: int, reserved: int) -> _Plan:
        client_wants_usage = False
        if out["stream"]:
            options = dict(out.get("stream_options") or {})
            client_wants_usage = bool(options.get("include_usage"))
            # Always ask vLLM for the final usage chunk: accounting needs it.
            options["include_usage"] = True
            out["stream_options"] = options
        return _Plan(endpoint, param, out, out["stream"], client_wants_usage,
                     prompt_tokens, reserved, getattr(request, "user", None))

    # --- forwarding ----------------------------------------------------------------------

    async def _admit(self, key: Key, plan: _Plan) -> tuple[Lease, dict[str, str]]:
        try:
            lease, state = await self.limiter.admit(limit_id(key), plan.reserved)
        except RateLimitExceeded as exc:
            self.metrics.rejections.labels(exc.limit).inc()
            raise errors.rate_limited(exc.message, exc.headers()) from None
        except LimitsUnavailable as exc:
            log.warning("limits store unreachable, request refused: %s", exc)
            self.metrics.limits_store_up.set(0)
            raise errors.limits_unavailable() from None
        self.metrics.limits_store_up.set(1)
        return lease, state.headers()

    async def _forward(self, key: Key, plan: _Plan, started: float):
        lease, headers = await self._admit(key, plan)
        payload = orjson.dumps(plan.body)
        if plan.stream:
            return await self._stream(key, plan, lease, headers, payload, started)
        try:
            content = await self.engine.post(plan.endpoint, payload)
        except ApiError as exc:
            await lease.settle(0)
            exc.headers.update(headers)
            raise
        except anyio.get_cancelled_exc_class():
            # The client went away: vLLM's request was aborted with the connection.
            with anyio.CancelScope(shield=True):
                await lease.settle(plan.prompt_tokens)
            self._record(key, plan, 499, started, error_code="client_disconnected")
            raise
        except Exception:
            await lease.settle(0)
            self._record(key, plan, 500, started, error_code="internal_error")
            raise
        prompt, completion = _tokens(_usage_of(content), plan.prompt_tokens)
        await lease.settle(prompt + completion)
        self._record(key, plan, 200, started, prompt, completion)
        return JsonResult(content, headers)

    async def _stream(self, key: Key, plan: _Plan, lease: Lease, headers: dict[str, str],
                      payload: bytes, started: float) -> StreamResult:
        try:
            upstream = await self.engine.open_stream(plan.endpoint, payload)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await lease.settle(0)
            if isinstance(exc, ApiError):
                exc.headers.update(headers)
            raise

        async def on_end(outcome: StreamOutcome) -> None:
            prompt, completion = _tokens(outcome.usage, plan.prompt_tokens,
                                         estimate=outcome.events)
            await lease.settle(prompt + completion)
            if outcome.ttft_ms is not None:
                self.metrics.ttft.labels(plan.endpoint).observe(outcome.ttft_ms / 1000)
            status, code = 200, outcome.error_code
            if outcome.disconnected:
                status, code = 499, "client_disconnected"
            self._record(key, plan, status, started, prompt, completion,
                         ttft_ms=outcome.ttft_ms, error_code=code)

        relay = StreamRelay(
            upstream, StreamOutcome(started=started), strip_usage=not plan.client_wants_usage,
            max_context=self.engine.max_context, prompt_param=plan.param, on_end=on_end)
        return StreamResult(relay, {**headers, **SSE_HEADERS})

    def _record(self, key: Key, plan: _Plan, status: int, started: float, prompt: int = 0,
                completion: int = 0, ttft_ms: float | None = None,
                error_code: str | None = None) -> None:
        self.recorder.record(UsageRow(
            key.name, plan.endpoint, SERVED_MODEL_NAME, status, prompt, completion,
            latency_ms=_ms_since(started), ttft_ms=ttft_ms, user=plan.user,
            error_code=error_code))


def _validate(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise errors.from_validation_errors(exc.errors()) from None


def _with_defaults(body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The body to forward: the client's fields (unknown ones too) plus the reference's
    defaults for what it left out, and the fitted max_tokens."""
    out = dict(body)
    for name, default in DEFAULTS.items():
        if out.get(name) is None and default is not None:
            out[name] = default
    out["max_tokens"] = max_tokens
    return out


def _usage_of(content: bytes) -> dict | None:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return data.get("usage") if isinstance(data, dict) else None


def _tokens(usage: dict | None, prompt_tokens: int, estimate: int = 0) -> tuple[int, int]:
    """(prompt, completion) from vLLM's usage; without it (a broken stream), our own prompt
    count and one token per streamed event."""
    if usage:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return prompt_tokens, estimate


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
