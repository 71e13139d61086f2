"""Pure formatting: stored messages → Chatbot messages, stats lines, gauges, headroom.

No I/O here, so every piece of text the person sees can be checked without a browser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

from server.workbench import STREAMING
from server.workbench.markdown import stats_items

# The HTML blocks shown after an answer's text: not part of the answer when it is copied.
NOTE_CLASSES = ("wb-stats", "wb-error")
# Shown after the growing answer while it streams.
CURSOR = " ▍"
_FENCE = re.compile(r"^\s{0,3}(```|~~~)", re.MULTILINE)


def _text(value: str) -> dict:
    # Chatbot runs plain strings through inspect.cleandoc (drops indentation, expands tabs):
    # a text part is shown as is, which code answers need.
    return {"type": "text", "text": value}


def close_fences(text: str) -> str:
    """Close a code block left open (a stopped answer), so what follows is not code."""
    fences = _FENCE.findall(text)
    if len(fences) % 2:
        return text.rstrip("\n") + "\n" + fences[-1] + "\n"
    return text


def stats_footer(message: Mapping) -> str:
    """The stats line under an answer (HTML the Chatbot's Markdown renderer keeps)."""
    items = stats_items(message)
    if not items:
        return ""
    spans = "".join(f'<span class="wb-stat">{html.escape(i)}</span>' for i in items)
    return f'\n\n<div class="wb-stats">{spans}</div>'


def error_block(error: str) -> str:
    """A readable error inside the chat (never a traceback)."""
    return f'\n\n<div class="wb-error">⚠ {html.escape(error)}</div>'


def answer_markdown(message: Mapping) -> str:
    """A stored answer as shown: its text, why it ended early if it did, its stats."""
    text = close_fences(message.get("content") or "")
    if message.get("status") == "stopped" and not text:
        text = "*(stopped before the first token)*"
    if message.get("error"):
        text += error_block(message["error"])
    return text + stats_footer(message)


def chat_messages(stored: list[dict]) -> list[dict]:
    """Stored messages as Chatbot messages (role/content dicts), one per stored message."""
    out = []
    for m in stored:
        if m["role"] == "assistant" and m.get("status") == STREAMING:  # seen from another page
            out.append(streaming_message(m["content"]))
        elif m["role"] == "assistant":
            out.append({"role": "assistant", "content": _text(answer_markdown(m))})
        elif m["role"] == "user":
            out.append({"role": "user", "content": _text(m["content"])})
    return out


def shown_message_ids(stored: list[dict]) -> list[int]:
    """Message ids in the order chat_messages shows them (to map a Chatbot index back)."""
    return [m["id"] for m in stored if m["role"] in ("user", "assistant")]


def streaming_message(text: str) -> dict:
    """The answer while it grows (with a cursor), or a waiting note before the first token."""
    if not text:
        return {"role": "assistant", "content": _text("*Waiting for the first token…*")}
    return {"role": "assistant", "content": _text(text + CURSOR)}


def queued_message(waiting: int) -> dict:
    """Before the first token, while the engine holds requests in its queue."""
    return {"role": "assistant", "content": _text(
        f"*Queued: the engine is busy with a long request ({waiting} waiting for room). "
        "The answer starts when it finishes…*")}


def gauge_html(used: int | None, max_context: int, reserve: int = 0, note: str = "") -> str:
    """The context gauge: prompt tokens (system + history + documents + draft) of the maximum.

    `reserve` is max_tokens: the answer needs room too, so the bar warns when both don't fit.
    """
    if used is None:
        return '<div class="wb-gauge"><div class="wb-gauge-label">Context: counting…</div></div>'
    share = used / max_context if max_context else 0.0
    level = "over" if used + reserve > max_context else "high" if share > 0.8 else "ok"
    width = min(100.0, share * 100)
    label = f"Context {used:,} / {max_context:,} tokens ({share:.1%})"
    if level == "over":
        label += f" — with max tokens {reserve:,} the answer does not fit"
    if note:
        label += f" · {note}"
    return (
        f'<div class="wb-gauge wb-gauge-{level}" data-used="{used}" data-max="{max_context}">'
        f'<div class="wb-gauge-bar"><div class="wb-gauge-fill" style="width:{width:.1f}%"></div></div>'
        f'<div class="wb-gauge-label">{html.escape(label)}</div></div>'
    )


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if name in headers:
            return headers[name]
    return None


def _count(value: str | None) -> str:
    if value is None:
        return "?"
    return f"{int(value):,}" if value.isdigit() else value


def headroom_html(headers: Mapping[str, str] | None) -> str:
    """Rate-limit headroom of the signed-in key, from the headers of its last /v1 response."""
    if not headers:
        return '<div class="wb-headroom">No request in this session yet: send a message to see the limits.</div>'
    h = {k.lower(): v for k, v in headers.items()}
    rows = []
    for what, suffix in (("Requests", "requests"), ("Tokens", "tokens")):
        remaining = _header(h, f"x-ratelimit-remaining-{suffix}")
        limit = _header(h, f"x-ratelimit-limit-{suffix}")
        reset = _header(h, f"x-ratelimit-reset-{suffix}")
        if what == "Requests":
            remaining = remaining or _header(h, "x-ratelimit-remaining")
            limit = limit or _header(h, "x-ratelimit-limit")
        if remaining is None and limit is None:
            continue
        row = f"{what}: {_count(remaining)} of {_count(limit)} left"
        if reset:
            row += f", resets in {reset}"
        rows.append(row)
    if "retry-after" in h:
        rows.append(f"Rate limited: retry after {h['retry-after']} s")
    if not rows:
        rows.append("The last response carried no rate-limit headers.")
    items = "".join(f"<li>{html.escape(r)}</li>" for r in rows)
    return f'<div class="wb-headroom"><b>Rate-limit headroom after your last request</b><ul>{items}</ul></div>'


def plain_snippet(snippet: str) -> str:
    """A search snippet without its Markdown bold marks, on one line."""
    return " ".join(snippet.replace("**", "").split())


def conversation_choices(conversations: list[dict]) -> list[tuple[str, int]]:
    """(label, id) pairs for the sidebar list."""
    return [(c["title"] or "Untitled conversation", c["id"]) for c in conversations]


def search_choices(hits: list[dict]) -> list[tuple[str, int]]:
    """(label, id) pairs for search results: the title and where the words were found."""
    out = []
    for hit in hits:
        title = hit["title"] or "Untitled conversation"
        snippet = plain_snippet(hit.get("snippet") or "")
        out.append((f"{title} — {snippet}" if snippet and snippet != title else title, hit["conversation_id"]))
    return out
