"""Document affinity: the session key (`x-session-id`) vllm-router keeps on one replica.

The router's `sticky_least_loaded` policy (server/engine/router.py) sends a key it has not
seen to the replica with the fewest keys, and every later request with it to the same one.

A prompt's cacheable head is what it starts with: the documents (page-marked, in the system
message, identical bytes for every question on them — see `server.documents.prompt`), else
the conversation's opening. The key hashes the messages up to the first user message, cut at
PREFIX_CHARS: a document longer than that keys on the document alone (every user's questions
on it meet on one replica); a short system prompt keys together with the conversation's first
question (each conversation stays on its replica, and conversations still spread).
"""

from __future__ import annotations

import hashlib
from typing import Any

# ≈4k tokens: below that a miss costs under a second of prefill on the 480B model, so it is
# not worth concentrating every conversation that shares a system prompt on one replica.
PREFIX_CHARS = 16_384


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def affinity_key(body: dict[str, Any]) -> str | None:
    """The routing key of a chat or Messages (`messages`), Responses (`input`) or legacy
    (`prompt`) body; None if empty."""
    system = body.get("system") or body.get("instructions")  # Messages, Responses
    # Each piece is cut before it is joined: a 700k-token document is ≈3 MB of text.
    head = f"system\x00{_text(system)[:PREFIX_CHARS]}\x00" if system else ""
    messages = body.get("messages")
    if messages is None and isinstance(body.get("input"), list):
        messages = body["input"]
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = _text(message.get("content"))[:PREFIX_CHARS]
            head += f"{message.get('role')}\x00{content}\x00"
            if message.get("role") == "user" or len(head) >= PREFIX_CHARS:
                break
    else:
        prompt = body.get("prompt", body.get("input"))
        if isinstance(prompt, list) and prompt:
            prompt = prompt[0]
        head += (prompt if isinstance(prompt, str) else str(prompt or ""))[:PREFIX_CHARS]
    if not head:
        return None
    return hashlib.sha256(head[:PREFIX_CHARS].encode("utf-8", "replace")).hexdigest()[:32]
