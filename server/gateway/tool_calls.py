"""Replayed tool calls, made acceptable to the engine.

OpenAI documents a tool call's `arguments` as a JSON string and vLLM accepts only that; some
clients replay them as a JSON object (the shape chat templates iterate). Such a mapping is sent
on as its JSON text, so the history renders the same either way. Everything else passes through
as the client sent it (vLLM 0.32 itself turns a string into the mapping Qwen's templates need,
and an unparseable one into `{}`).
"""

from __future__ import annotations

from typing import Any

import orjson


def _with_string_arguments(call: Any) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), dict):
        return call
    arguments = orjson.dumps(function["arguments"]).decode()
    return {**call, "function": {**function, "arguments": arguments}}


def string_arguments(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with every assistant tool call's `arguments` as a JSON string."""
    return [
        {**m, "tool_calls": [_with_string_arguments(c) for c in m["tool_calls"]]}
        if isinstance(m.get("tool_calls"), list)
        else m
        for m in messages
    ]
