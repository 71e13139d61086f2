"""`POST /v1/responses` (OpenAI's Responses API, Codex's only protocol): validate and plan.

Decisions (README, "The API, beyond the reference"):
- `developer` messages, and `system` messages anywhere in `input`, are what Qwen's chat templates
  refuse or drop: the ones before the conversation starts are folded into `instructions` (the
  one system message, first, as every template wants it); later ones become `user` messages.
- `max_output_tokens` defaults to the reference's 2,048 (Codex sets none) and is lowered to
  what the context leaves after the prompt, as `max_tokens` on chat completions.
- Responses are stored for their key (SQLite) unless the request says `store: false` (Codex
  does; it sends the whole conversation each time): the input items and the output. A request
  with `previous_response_id` continues from one: its input goes after the stored input and
  output (instructions are not carried over, as in OpenAI's API). Another key's id, or an id
  never stored, is a 400 `invalid_value` naming `previous_response_id`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
import orjson
from pydantic import Field

from server.gateway import errors
from server.gateway.forwarding import Plan, validate
from server.gateway.protocol import DEFAULTS, _Wire
from server.gateway.streaming import responses_stream
from storage.keys import Key
from storage.responses import load_response, save_response

if TYPE_CHECKING:
    from server.gateway.completions import CompletionService

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


async def plan(service: CompletionService, key: Key, body: dict[str, Any]) -> Plan:
    request = validate(ResponsesRequest, body)
    await service.check_model(request.model)
    out = dict(body)
    if request.previous_response_id is not None:
        previous = await anyio.to_thread.run_sync(
            load_response, service.store.db, key.name, request.previous_response_id
        )
        if previous is None:
            raise errors.invalid_value(
                f"Previous response with id '{request.previous_response_id}' not found.",
                "previous_response_id",
            )
        # The engine keeps nothing: it gets the whole conversation.
        del out["previous_response_id"]
        out["input"] = [*previous["input"], *previous["output"], *_items(request.input)]
    if isinstance(out["input"], list):  # PDFs become their text, kept so for what follows
        out["input"] = await service.documents.expand(out["input"], "input_text", "input")
    conversation = _items(out["input"])  # kept as sent: normalising is for the engine only
    out = normalise(out)
    messages = chat_messages(out)
    prompt_tokens, max_tokens = await service.counter.fit(
        messages,
        chat_tools(request.tools),
        request.max_output_tokens,
        DEFAULTS["max_tokens"],
        service.engine.max_context,
        "input",
    )
    out["max_output_tokens"] = max_tokens
    stream = responses_stream() if request.stream else None
    after = None
    if request.store is not False:  # OpenAI's default is to store

        async def after(response: dict[str, Any]) -> None:
            if isinstance(response.get("id"), str) and isinstance(response.get("output"), list):
                await anyio.to_thread.run_sync(
                    lambda: save_response(
                        service.store.db,
                        key_name=key.name,
                        response_id=response["id"],
                        input=conversation,
                        output=response["output"],
                    )
                )

    return Plan(
        ENDPOINT,
        "input",
        out,
        stream,
        prompt_tokens,
        prompt_tokens + max_tokens,
        request.user,
        after,
    )


def _items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`input` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


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
    messages = (
        [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
    )
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
    return [
        {"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}}
        for tool in tools
        if tool.get("type") == "function"
    ] or None
