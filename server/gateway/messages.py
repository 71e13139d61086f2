"""`POST /v1/messages` and `/v1/messages/count_tokens` (Anthropic's Messages API, Claude
Code's only protocol): validate and plan; errors answer in Anthropic's shape (`errors`).

Decisions (README, "The API, beyond the reference"):
- The model is `qwen3`, as everywhere: a `claude-...` name is a 404 `not_found_error` that names
  `qwen3` (agents are pointed at it with their model settings, see the README).
- `max_tokens` is required (as Anthropic's API has it) and lowered to what the context leaves
  after the prompt; `system` takes text blocks only, as there.
- `document` blocks (PDFs, plain text), which vLLM refuses, become text blocks (`documents`).
- `count_tokens` is answered by the engine (its chat template and tokenizer): it counts as a
  request in the key's limits and usage, with no tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from server.gateway.forwarding import Plan, validate
from server.gateway.protocol import _Wire
from server.gateway.streaming import messages_stream

if TYPE_CHECKING:
    from server.gateway.completions import CompletionService

ENDPOINT = "/v1/messages"
COUNT_ENDPOINT = "/v1/messages/count_tokens"


class AnthropicMessage(_Wire):
    """One turn: text, or content blocks (`text`, `image`, `tool_use`, `tool_result`, ...).

    `system` turns inside `messages` are Claude Code's per-turn reminders (2.1.x sends them);
    vLLM takes them, merging them into the leading system prompt where a template needs it."""

    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


class CountTokensRequest(_Wire):
    """`POST /v1/messages/count_tokens`."""

    model: str
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None

    @field_validator("system")
    @classmethod
    def _text_blocks(cls, system: Any) -> Any:
        # Anthropic's API takes text blocks only here; vLLM would drop any other silently.
        for index, block in enumerate(system if isinstance(system, list) else ()):
            if block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise PydanticCustomError(
                    "system_block", "block {index} is not a text block", {"index": index}
                )
        return system


class MessagesRequest(CountTokensRequest):
    """`POST /v1/messages`: the fields the gateway reads; the others go to vLLM as sent."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None


async def _with_documents(
    service: CompletionService, body: dict[str, Any], model: type[CountTokensRequest]
) -> tuple[dict[str, Any], Any]:
    """The body with its `document` blocks (PDFs, plain text) turned into text blocks, which
    vLLM takes, and the request validated."""
    request = validate(model, body)
    await service.check_model(request.model)
    messages = await service.documents.expand(body["messages"])
    if messages is not body["messages"]:
        body = {**body, "messages": messages}
        request = validate(model, body)
    return body, request


async def plan(service: CompletionService, body: dict[str, Any]) -> Plan:
    body, request = await _with_documents(service, body, MessagesRequest)
    prompt_tokens, max_tokens = await service.counter.fit(
        chat_messages(request),
        chat_tools(request),
        request.max_tokens,
        request.max_tokens,
        service.engine.max_context,
        "messages",
    )
    out = {**body, "max_tokens": max_tokens}
    stream = messages_stream() if request.stream else None
    user = (request.metadata or {}).get("user_id")
    return Plan(
        ENDPOINT,
        "messages",
        out,
        stream,
        prompt_tokens,
        prompt_tokens + max_tokens,
        user if isinstance(user, str) else None,
    )


async def plan_count(service: CompletionService, body: dict[str, Any]) -> Plan:
    body, _ = await _with_documents(service, body, CountTokensRequest)
    return Plan(COUNT_ENDPOINT, "messages", body, None, 0, 0, None)


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text") or "")
    if kind == "tool_use":
        return orjson.dumps({"name": block.get("name"), "arguments": block.get("input")}).decode()
    if kind == "tool_result":
        return _text(block.get("content"))
    if kind == "thinking":
        return str(block.get("thinking") or "")
    return ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_block_text(b) for b in content if isinstance(b, dict))
    return ""


def chat_messages(request: CountTokensRequest) -> list[dict[str, str]]:
    """The request as chat messages, for counting its prompt with the chat template (vLLM
    renders the same texts; tool calls and results are counted as their JSON and text; inline
    system turns with the leading system prompt, as vLLM merges them for system-first
    templates such as Qwen3's)."""
    systems = [_text(request.system)] + [
        _text(m.content) for m in request.messages if m.role == "system"
    ]
    system = "\n\n".join(text for text in systems if text)
    messages = [{"role": "system", "content": system}] if system else []
    messages += [
        {"role": m.role, "content": _text(m.content)}
        for m in request.messages
        if m.role != "system"
    ]
    return messages


def chat_tools(request: CountTokensRequest) -> list[dict[str, Any]] | None:
    """Anthropic tools in the chat shape the template renders."""
    if not request.tools:
        return None
    return [
        {
            "type": "function",
            "function": {
                "name": tool.get("name"),
                "description": tool.get("description"),
                "parameters": tool.get("input_schema"),
            },
        }
        for tool in request.tools
    ]
