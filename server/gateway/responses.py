"""`POST /v1/responses` (OpenAI's Responses API, Codex's only protocol): validate and plan.

Decisions (README, "The API, beyond the reference"):
- `developer` messages, and `system` messages anywhere in `input`, are what Qwen's chat templates
  refuse or drop: the ones before the conversation starts are folded into `instructions` (the
  one system message, first, as every template wants it); later ones become `user` messages.
- `max_output_tokens` defaults to the reference's 2,048 (Codex sets none) and is lowered to
  what the context leaves after the prompt, as `max_tokens` on chat completions.
- Responses are not stored: `store` is accepted and has no effect, `previous_response_id` is
  a 400 `unsupported_parameter`; a client sends the whole conversation in `input` (Codex does,
  with `store: false`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field

from server.gateway import errors
from server.gateway.forwarding import Plan, validate
from server.gateway.protocol import DEFAULTS, _Wire
from server.gateway.sizing import max_tokens_for
from server.gateway.streaming import responses_stream

if TYPE_CHECKING:
    from server.gateway.forwarding import Forwarder

ENDPOINT = "/v1/responses"
_SYSTEM_ROLES = frozenset({"system", "developer"})


class ResponsesRequest(_Wire):
    """`POST /v1/responses`: the fields the gateway reads; the others go to vLLM as sent."""

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    tools: list[dict[str, Any]] | None = None
    user: str | None = None


async def plan(service: Forwarder, body: dict[str, Any]) -> Plan:
    request = validate(ResponsesRequest, body)
    if request.previous_response_id is not None:
        raise errors.unsupported_parameter(
            "previous_response_id", "This server does not store responses, so "
            "'previous_response_id' cannot be used: send the whole conversation in 'input'.")
    await service.check_model(request.model)
    out = normalise(body)
    messages = chat_messages(out)
    prompt_tokens = await service.counter.messages(messages, chat_tools(request.tools))
    max_tokens = max_tokens_for(request.max_output_tokens, DEFAULTS["max_tokens"],
                                prompt_tokens, service.engine.max_context, "input")
    out["max_output_tokens"] = max_tokens
    stream = responses_stream() if request.stream else None
    return Plan(ENDPOINT, "input", out, stream, prompt_tokens, prompt_tokens + max_tokens,
                request.user)


def _is_message(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type", "message") == "message" and "role" in item


def normalise(body: dict[str, Any]) -> dict[str, Any]:
    """The body with `developer` and `system` input messages made acceptable to Qwen's
    templates (see the module's decisions); other fields untouched."""
    out = dict(body)
    items = out.get("input")
    if not isinstance(items, list):
        return out
    leading: list[str] = [out["instructions"]] if out.get("instructions") else []
    kept: list[Any] = []
    for item in items:
        if _is_message(item) and item["role"] in _SYSTEM_ROLES:
            if not kept:
                leading.append(content_text(item.get("content")))
                continue
            item = {**item, "role": "user"}
        kept.append(item)
    if leading:
        out["instructions"] = "\n\n".join(text for text in leading if text)
    out["input"] = kept
    return out


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def chat_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """The request as chat messages, for counting its prompt with the chat template (vLLM
    renders the same texts; tool calls and their outputs are counted as their JSON)."""
    messages = [{"role": "system", "content": body["instructions"]}] \
        if body.get("instructions") else []
    items = body["input"]
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    for item in items:
        if _is_message(item):
            role = "assistant" if item["role"] == "assistant" else "user"
            messages.append({"role": role, "content": content_text(item.get("content"))})
        elif isinstance(item, dict):
            role = "user" if item.get("type", "").endswith("_output") else "assistant"
            text = {k: v for k, v in item.items() if k not in ("id", "status", "type")}
            messages.append({"role": role, "content": orjson.dumps(text).decode()})
    return messages


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Responses function tools (flat) in the chat shape the template renders."""
    if not tools:
        return None
    return [{"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}}
            for tool in tools if tool.get("type") == "function"] or None
