"""The completion service: decides what happens to a chat or legacy completion request.

validate → check the model → turn PDF parts into text → count the prompt → fit max_tokens
into the context; then `forwarding.Forwarder` admits, forwards, settles and records it. The
Responses API (`responses`) and Anthropic's Messages API (`messages`) are planned beside them
and take the same path. Routes only translate HTTP to these calls and back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from server.gateway import errors, messages, responses
from server.gateway.accounting import UsageRecorder
from server.gateway.documents import DocumentExpander
from server.gateway.errors import ApiError
from server.gateway.forwarding import (
    Forwarder,
    JsonResult,
    Plan,
    StreamResult,
    validate,
)
from server.gateway.limits import KeyLimiter
from server.gateway.metrics import GatewayMetrics
from server.gateway.protocol import DEFAULTS, ChatCompletionRequest, CompletionRequest
from server.gateway.sizing import PromptCounter, completion_prompts, max_tokens_for
from server.gateway.streaming import ChatStream
from server.gateway.tool_calls import string_arguments
from server.gateway.upstream import Engine
from storage import Store
from storage.keys import Key

__all__ = ["CompletionService", "JsonResult", "StreamResult"]


class CompletionService(Forwarder):
    """Serves every generating /v1 endpoint for an authenticated key."""

    def __init__(
        self,
        engine: Engine,
        counter: PromptCounter,
        limiter: KeyLimiter,
        recorder: UsageRecorder,
        metrics: GatewayMetrics,
        documents: DocumentExpander,
        store: Store,
    ):
        super().__init__(engine, counter, limiter, recorder, metrics)
        self.documents = documents
        self.store = store  # where the Responses API keeps responses
        self._planners: dict[str, Callable[[Key, dict[str, Any]], Awaitable[Plan]]] = {
            "/v1/chat/completions": lambda key, body: self._plan_chat(body),
            "/v1/completions": lambda key, body: self._plan_completion(body),
            "/v1/responses": lambda key, body: responses.plan(self, key, body),
            "/v1/messages": lambda key, body: messages.plan(self, body),
            "/v1/messages/count_tokens": lambda key, body: messages.plan_count(self, body),
        }

    async def serve(
        self, key: Key, endpoint: str, body: dict[str, Any], started: float
    ) -> JsonResult | StreamResult:
        """Plan the request of `endpoint` (one of the paths above) and forward it."""
        try:
            plan = await self._planners[endpoint](key, body)
            return await self.forward(key, plan, started)
        except ApiError as exc:
            self.record_refusal(key, endpoint, body, exc, started)
            raise

    # --- planning: validation, model, prompt size, defaults -------------------------------

    async def _plan_chat(self, body: dict[str, Any]) -> Plan:
        request = validate(ChatCompletionRequest, body)
        await self.check_model(request.model)
        messages_ = string_arguments(await self.documents.expand(body["messages"]))
        prompt_tokens, max_tokens = await self.counter.fit(
            messages_,
            body.get("tools"),
            request.max_completion_tokens or request.max_tokens,
            DEFAULTS["max_tokens"],
            self.engine.max_context,
            "messages",
        )
        out = _with_defaults(body, max_tokens)
        out["messages"] = messages_
        if request.max_completion_tokens is not None:
            out["max_completion_tokens"] = max_tokens
        return _plan(
            out,
            request.user,
            "/v1/chat/completions",
            "messages",
            prompt_tokens,
            prompt_tokens + out["n"] * max_tokens,
        )

    async def _plan_completion(self, body: dict[str, Any]) -> Plan:
        request = validate(CompletionRequest, body)
        await self.check_model(request.model)
        texts, known = completion_prompts(request.prompt)
        wanted = request.max_tokens or DEFAULTS["max_tokens"]
        counts = await self.counter.texts(texts, wanted, self.engine.max_context) + known
        if not counts:
            raise errors.invalid_value("The prompt must not be empty.", "prompt")
        max_tokens = max_tokens_for(
            request.max_tokens,
            DEFAULTS["max_tokens"],
            max(counts),
            self.engine.max_context,
            "prompt",
        )
        out = _with_defaults(body, max_tokens)
        prompt_tokens = sum(counts)
        reserved = prompt_tokens + len(counts) * out["n"] * max_tokens
        return _plan(out, request.user, "/v1/completions", "prompt", prompt_tokens, reserved)


def _plan(
    out: dict[str, Any],
    user: str | None,
    endpoint: str,
    param: str,
    prompt_tokens: int,
    reserved: int,
) -> Plan:
    stream = None
    if out["stream"]:
        options = dict(out.get("stream_options") or {})
        stream = ChatStream(strip_usage=not options.get("include_usage"))
        # Always ask vLLM for the final usage chunk: accounting needs it.
        options["include_usage"] = True
        out["stream_options"] = options
    return Plan(endpoint, param, out, stream, prompt_tokens, reserved, user)


def _with_defaults(body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The body to forward: the client's fields (unknown ones too) plus the reference's
    defaults for what it left out, and the fitted max_tokens."""
    out = dict(body)
    for name, default in DEFAULTS.items():
        if out.get(name) is None and default is not None:
            out[name] = default
    out["max_tokens"] = max_tokens
    return out
