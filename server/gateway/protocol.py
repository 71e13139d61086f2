"""Wire models of the /v1 API: what a request may contain, and the defaults the reference sets.

Requests are validated strictly (no string-to-number coercion, like OpenAI) but keep unknown
fields, which are forwarded to vLLM untouched (`top_k`, `seed`, `response_format`, ...). Fields
follow OpenAI's documented order; our own additions sit in a marked block.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from server.sampling import DEFAULT_PARAMS, MAX_STOP_SEQUENCES
from server.settings import SERVED_MODEL_NAME

# Defaults of the reference's parameter table, filled in when a request leaves them out (or
# sends null); the sampling ones are server.sampling's. `max_tokens` is further capped by what
# the context leaves after the prompt.
DEFAULTS: dict[str, Any] = {
    "max_tokens": DEFAULT_PARAMS["max_tokens"],
    "temperature": DEFAULT_PARAMS["temperature"],
    "top_p": DEFAULT_PARAMS["top_p"],
    "n": 1,
    "stream": False,
    "stop": None,  # on the wire: no stop sequences
    "presence_penalty": DEFAULT_PARAMS["presence_penalty"],
    "frequency_penalty": DEFAULT_PARAMS["frequency_penalty"],
    "user": None,
}
MAX_N = 128


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class StreamOptions(_Wire):
    include_usage: bool | None = None


class FunctionCall(_Wire):
    name: str
    # OpenAI documents a JSON string; a mapping is accepted too, and forwarded as its JSON
    # text (vLLM accepts only the string; see server.gateway.tool_calls).
    arguments: str | dict[str, Any]


class ToolCall(_Wire):
    """A tool call of an earlier assistant turn, replayed as history (a function call, or a
    custom tool's `{"name", "input"}`)."""

    id: str
    type: Literal["function", "custom"] = "function"
    function: FunctionCall | None = None
    custom: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _has_its_call(self) -> ToolCall:
        if getattr(self, self.type) is None:
            raise PydanticCustomError("missing", "Field required", {"field": self.type})
        return self


# OpenAI's chat content parts (`file`: a PDF, read here). vLLM takes more, for multimodal
# models only; its refusal of an unknown part lists eight pydantic errors, so this one is ours.
CONTENT_PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")


class ChatMessage(_Wire):
    """One message; content is text or a list of content parts (text, image_url, file)."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _known_parts(cls, content: Any) -> Any:
        for index, part in enumerate(content if isinstance(content, list) else ()):
            kind = part.get("type")
            if kind not in CONTENT_PART_TYPES:
                raise PydanticCustomError(
                    "content_part",
                    "part {index} has type {kind}; the types are {types}",
                    {"index": index, "kind": repr(kind), "types": ", ".join(CONTENT_PART_TYPES)},
                )
            if kind == "text" and not isinstance(part.get("text"), str):
                raise PydanticCustomError(
                    "content_part", "text part {index} has no string 'text'", {"index": index}
                )
        return content

    @model_validator(mode="after")
    def _required_fields(self) -> ChatMessage:
        # Only an assistant message may leave content out (it carries tool_calls instead).
        if self.content is None and self.role != "assistant":
            raise PydanticCustomError("missing", "Field required", {"field": "content"})
        if self.role == "tool" and self.tool_call_id is None:
            raise PydanticCustomError("missing", "Field required", {"field": "tool_call_id"})
        return self


class FunctionDefinition(_Wire):
    # OpenAI's rule for function names; it also keeps them parseable in tool-call markup.
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]+$", min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema object
    strict: bool | None = None


class Tool(_Wire):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: NamedFunction


class _Sampling(_Wire):
    """Parameters shared by chat and legacy completions (the reference's table)."""

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    user: str | None = None


class ChatCompletionRequest(_Sampling):
    """`POST /v1/chat/completions`."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Tool] | None = Field(default=None, min_length=1)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_names_a_tool(cls, choice: Any, info: ValidationInfo) -> Any:
        if choice is None or choice == "none":
            return choice
        tools = info.data.get("tools")
        if not tools:
            raise PydanticCustomError(
                "tool_choice_without_tools", "only allowed when 'tools' are specified"
            )
        if isinstance(choice, NamedToolChoice) and choice.function.name not in {
            t.function.name for t in tools
        }:
            raise PydanticCustomError(
                "unknown_tool",
                "no function named '{name}' in 'tools'",
                {"name": choice.function.name},
            )
        return choice


class CompletionRequest(_Sampling):
    """`POST /v1/completions` (legacy): a prompt as text, texts, token ids or lists of them."""

    prompt: str | list[str] | list[int] | list[list[int]]


def model_card(created: int | None = None, max_context: int | None = None) -> dict[str, Any]:
    """The one model this host serves, in the reference's `/v1/models` shape."""
    return {
        "id": SERVED_MODEL_NAME,
        "object": "model",
        "created": created if created is not None else int(time.time()),
        "owned_by": "vllm",
        "permission": [],
        "root": SERVED_MODEL_NAME,
        "parent": None,
        # --- extension (as vLLM): the context length this gateway enforces ---
        "max_model_len": max_context,
    }


def model_list(created: int | None = None, max_context: int | None = None) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(created, max_context)]}
