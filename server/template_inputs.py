"""Messages and tools in the shapes vLLM hands a chat template, so a local count of a
tool-laden prompt is the prompt vLLM builds (the `--tool-call-parser` profiles, vLLM 0.32).

Clients send a replayed tool call's `arguments` as a JSON string (OpenAI's shape) while Qwen's
templates iterate them as a mapping (`arguments|items`: "Can only get item pairs from a
mapping"). vLLM parses them before rendering; so does this, with vLLM's rules: a string that is
not a JSON object, or an empty one, becomes `{}` (a malformed call in the history must not make
every later turn fail). Tools are rendered as vLLM dumps its tool model: `type` and `function`
(`name`, `description`, `parameters`, and `strict` only when set), nothing else.
"""

from __future__ import annotations

import json
from typing import Any


def template_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The tools as vLLM's chat-completions renderer gives them to the template."""
    if not tools:
        return None
    shaped = []
    for tool in tools:
        function = tool.get("function") or {}
        out = {key: function.get(key) for key in ("name", "description", "parameters")}
        for optional in ("strict", "defer_loading"):
            if function.get(optional) is not None:
                out[optional] = function[optional]
        shaped.append({"type": tool.get("type", "function"), "function": out})
    return shaped


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _with_mapping(call: Any) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return call
    return {**call, "function": {**function, "arguments": _arguments(function.get("arguments"))}}


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with assistant tool calls' arguments as mappings (copies; the request
    forwarded to the engine keeps the client's own shapes)."""
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and isinstance(calls, list):
            message = dict(message)
            if not calls:  # vLLM drops an empty list, keeping the plain assistant path
                del message["tool_calls"]
            else:
                message["tool_calls"] = [_with_mapping(call) for call in calls]
        out.append(message)
    return out
