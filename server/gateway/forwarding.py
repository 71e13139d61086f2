"""The one path every generating request takes once it is planned, whatever its protocol.

admit under the key's limits (reserve prompt + max tokens) → forward to vLLM (complete or
streamed) → settle the limits with the usage the answer reports → record one usage row. A
client that leaves aborts the engine's request; every refusal is recorded too. The services
(`completions`, `responses`, `messages`) only validate and plan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from pydantic import BaseModel, ValidationError

from server.gateway import errors
from server.gateway.accounting import UsageRecorder, UsageRow
from server.gateway.affinity import affinity_key
from server.gateway.errors import ApiError
from server.gateway.limits import KeyLimiter, Lease, LimitsUnavailable, RateLimitExceeded, limit_id
from server.gateway.metrics import GatewayMetrics
from server.gateway.sizing import PromptCounter
from server.gateway.streaming import ChatStream, StreamOutcome, StreamRelay, TypedStream
from server.gateway.upstream import Engine
from server.settings import SERVED_MODEL_NAME
from storage.keys import Key

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Which replica answered (behind vllm-router only): the UI shows it in the stats line.
REPLICA_RESPONSE_HEADER = "X-Workbench-Replica"


def _with_replica(headers: dict[str, str], replica: str | None) -> dict[str, str]:
    return {**headers, REPLICA_RESPONSE_HEADER: replica} if replica else headers


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
class Plan:
    """A validated request, sized and ready to forward."""

    endpoint: str  # the /v1 path: usage rows, metrics, and the engine's own path
    param: str  # where the prompt lives: "messages", "prompt" or "input"
    body: dict[str, Any]
    stream: ChatStream | TypedStream | None  # how the stream looks; None: a complete answer
    prompt_tokens: int
    reserved: int
    user: str | None
    # Called with the finished answer (the JSON body, or a stream's final object) if it ended
    # without an error: the Responses API keeps it there.
    after: Callable[[dict], Awaitable[None]] | None = None


def validate(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """The body as `model`, or a 400 naming the first bad parameter."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise errors.from_validation_errors(exc.errors()) from None


class Forwarder:
    """Admits, forwards, settles and records planned requests for an authenticated key."""

    def __init__(
        self,
        engine: Engine,
        counter: PromptCounter,
        limiter: KeyLimiter,
        recorder: UsageRecorder,
        metrics: GatewayMetrics,
    ):
        self.engine = engine
        self.counter = counter
        self.limiter = limiter
        self.recorder = recorder
        self.metrics = metrics

    async def check_model(self, model: str) -> None:
        if model != SERVED_MODEL_NAME:
            raise errors.model_not_found(model, SERVED_MODEL_NAME)
        await self.engine.ensure_ready()

    def record_refusal(
        self, key: Key, endpoint: str, body: dict[str, Any] | None, error: ApiError, started: float
    ) -> None:
        """The usage row of a request answered with an error (before or by the engine)."""
        body = body or {}
        model = body.get("model") if isinstance(body.get("model"), str) else None
        user = body.get("user") if isinstance(body.get("user"), str) else None
        self.recorder.record(
            UsageRow(
                key.name,
                endpoint,
                model,
                error.status,
                latency_ms=_ms_since(started),
                user=user,
                error_code=error.code,
            )
        )

    async def _admit(self, key: Key, plan: Plan) -> tuple[Lease, dict[str, str]]:
        anthropic = errors.dialect_of(plan.endpoint) == "anthropic"
        try:
            lease, state = await self.limiter.admit(limit_id(key), plan.reserved)
        except RateLimitExceeded as exc:
            self.metrics.rejections.labels(exc.limit).inc()
            raise errors.rate_limited(exc.message, exc.headers(anthropic)) from None
        except LimitsUnavailable as exc:
            log.warning("limits store unreachable, request refused: %s", exc)
            self.metrics.limits_store_up.set(0)
            raise errors.limits_unavailable() from None
        self.metrics.limits_store_up.set(1)
        return lease, state.headers(anthropic=anthropic)

    async def forward(self, key: Key, plan: Plan, started: float) -> JsonResult | StreamResult:
        lease, headers = await self._admit(key, plan)
        payload = orjson.dumps(plan.body)
        # Only vllm-router reads the key: with one engine, hashing the prompt's head is waste.
        affinity = affinity_key(plan.body) if self.engine.replicas else None
        if plan.stream is not None:
            return await self._stream(key, plan, lease, headers, payload, started, affinity)
        try:
            content, replica = await self.engine.post_answer(
                plan.endpoint, payload, affinity=affinity
            )
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
        answer = _json_object(content)
        prompt, completion = tokens_of(answer.get("usage"), plan.prompt_tokens)
        await lease.settle(prompt + completion)
        self._record(key, plan, 200, started, prompt, completion)
        await _after(plan, answer)
        return JsonResult(content, _with_replica(headers, replica))

    async def _stream(
        self,
        key: Key,
        plan: Plan,
        lease: Lease,
        headers: dict[str, str],
        payload: bytes,
        started: float,
        affinity: str | None,
    ) -> StreamResult:
        try:
            upstream = await self.engine.open_stream(plan.endpoint, payload, affinity=affinity)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await lease.settle(0)
            if isinstance(exc, ApiError):
                exc.headers.update(headers)
            raise

        async def on_end(outcome: StreamOutcome) -> None:
            prompt, completion = tokens_of(
                outcome.usage, plan.prompt_tokens, estimate=outcome.events
            )
            await lease.settle(prompt + completion)
            if outcome.ttft_ms is not None:
                self.metrics.ttft.labels(plan.endpoint).observe(outcome.ttft_ms / 1000)
            status, code = 200, outcome.error_code
            if outcome.disconnected:
                status, code = 499, "client_disconnected"
            self._record(
                key,
                plan,
                status,
                started,
                prompt,
                completion,
                ttft_ms=outcome.ttft_ms,
                error_code=code,
            )
            if code is None and outcome.final is not None:
                await _after(plan, outcome.final)

        relay = StreamRelay(
            upstream,
            StreamOutcome(started=started),
            plan.stream,
            max_context=self.engine.max_context,
            prompt_param=plan.param,
            on_end=on_end,
        )
        return StreamResult(relay, _with_replica({**headers, **SSE_HEADERS}, upstream.replica))

    def _record(
        self,
        key: Key,
        plan: Plan,
        status: int,
        started: float,
        prompt: int = 0,
        completion: int = 0,
        ttft_ms: float | None = None,
        error_code: str | None = None,
    ) -> None:
        self.recorder.record(
            UsageRow(
                key.name,
                plan.endpoint,
                SERVED_MODEL_NAME,
                status,
                prompt,
                completion,
                latency_ms=_ms_since(started),
                ttft_ms=ttft_ms,
                user=plan.user,
                error_code=error_code,
            )
        )


def _json_object(content: bytes) -> dict:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


async def _after(plan: Plan, answer: dict) -> None:
    if plan.after is None or not answer:
        return
    try:
        await plan.after(answer)
    except Exception:
        # Keeping the answer is a convenience; losing it must not fail the request.
        log.exception("could not keep the answer of %s", plan.endpoint)


def tokens_of(usage: dict | None, prompt_tokens: int, estimate: int = 0) -> tuple[int, int]:
    """(prompt, completion) from the usage an answer reports, in any protocol's names
    (OpenAI's `prompt_tokens`, the Responses API's and Anthropic's `input_tokens`, the latter
    without its cached part); without it (a broken stream), our own prompt count and one token
    per streamed event."""
    if not usage:
        return prompt_tokens, estimate
    if "prompt_tokens" in usage:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    prompt = sum(
        int(usage.get(name) or 0)
        for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
    return prompt, int(usage.get("output_tokens") or 0)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
