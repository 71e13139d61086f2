"""Pure formatting: stored messages → Chatbot messages, stats lines, gauges, headroom, and for
documents: upload progress, totals, pages without text, whether they fit, the offer.

No I/O here, so every piece of text the person sees can be checked without a browser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence

from server.documents.prompt import format_ranges
from server.workbench import STREAMING
from server.workbench.fit import Fit
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
    return {
        "role": "assistant",
        "content": _text(
            f"*Queued: the engine is busy with a long request ({waiting} waiting for room). "
            "The answer starts when it finishes…*"
        ),
    }


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
        f'<div class="wb-gauge-bar">'
        f'<div class="wb-gauge-fill" style="width:{width:.1f}%"></div></div>'
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
        return (
            '<div class="wb-headroom">'
            "No request in this session yet: send a message to see the limits.</div>"
        )
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
    return (
        '<div class="wb-headroom"><b>Rate-limit headroom after your last request</b>'
        f"<ul>{items}</ul></div>"
    )


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
        out.append(
            (
                f"{title} — {snippet}" if snippet and snippet != title else title,
                hit["conversation_id"],
            )
        )
    return out


# Documents ------------------------------------------------------------------------------


def page_list(numbers: Sequence[int]) -> str:
    """[3, 4, 5, 8] → "3–5, 8" (runs of consecutive pages joined)."""
    return format_ranges([(n, n) for n in numbers], dash="–")


def no_text_note(empty_pages: Sequence[int], page_count: int) -> str:
    """Which pages have no text layer, so the person knows OCR is needed ("" if none)."""
    if not empty_pages:
        return ""
    if len(empty_pages) == page_count:
        return f"No page has text (all {page_count:,} are images or scans): OCR needed."
    if len(empty_pages) == 1:
        return f"Page {empty_pages[0]} has no text: OCR needed."
    return f"Pages {page_list(empty_pages)} have no text: OCR needed."


def _pages(n: int) -> str:
    return f"{n:,} page" + ("" if n == 1 else "s")


def progress_html(
    done: int | None, total: int | None, filename: str, *, finished: bool = False
) -> str:
    """The upload's progress bar: pages read and stored of the document's total."""
    name = html.escape(filename)
    if not total:
        return (
            f'<div class="wb-progress" data-done="0" data-total="0">'
            f'<div class="wb-progress-label">Opening {name}…</div></div>'
        )
    done = done or 0
    width = 100.0 * done / total
    return (
        f'<div class="wb-progress" data-done="{done}" data-total="{total}">'
        f'<div class="wb-gauge-bar">'
        f'<div class="wb-gauge-fill" style="width:{width:.1f}%"></div></div>'
        f'<div class="wb-progress-label">{"Read" if finished else "Reading"} {name}: '
        f"{done:,} / {total:,} pages</div></div>"
    )


def document_html(document: Mapping, max_context: int) -> str:
    """The result of an upload: name, pages, tokens, share of the context, pages without text."""
    tokens = document.get("total_tokens") or 0
    share = tokens / max_context if max_context else 0.0
    # Past twice the context a percentage is hard to read: say how many contexts it takes.
    part = f"{share:,.1f}× the" if share >= 2 else f"{share:.1%} of the"
    facts = [
        _pages(document["page_count"]),
        f"{tokens:,} tokens",
        f"{part} {max_context:,}-token context",
    ]
    lines = [
        f'<div class="wb-doc-name">{html.escape(document["filename"])}</div>',
        f'<div class="wb-doc-facts">{" · ".join(facts)}</div>',
    ]
    if document.get("reused"):
        lines.append(
            '<div class="wb-doc-note">Already in your documents (same file): '
            "opened without reading it again.</div>"
        )
    note = no_text_note(document.get("empty_pages") or [], document["page_count"])
    if note:
        lines.append(f'<div class="wb-doc-warning">{html.escape(note)}</div>')
    return f'<div class="wb-doc" data-document-id="{document["id"]}">{"".join(lines)}</div>'


def error_html(message: str) -> str:
    """A document that could not be read: its own clear message."""
    return f'<div class="wb-doc-error">⚠ {html.escape(message)}</div>'


def document_choices(documents: Sequence[Mapping]) -> list[tuple[str, int]]:
    """(label, id) pairs for the documents list."""
    return [
        (
            f"{d['filename']} — {_pages(d['page_count'])}, {(d['total_tokens'] or 0):,} tokens",
            d["id"],
        )
        for d in documents
    ]


def fit_html(fit: Fit | None, attached: Sequence) -> str:
    """The attached documents with their chosen pages, and whether everything fits."""
    if not attached:
        return (
            '<div class="wb-fit">No document attached to this conversation: upload one, or '
            "tick it in the list.</div>"
        )
    rows = []
    for a in attached:
        chosen = f"pages {a.spec} of {a.page_count:,}" if a.spec else f"all {_pages(a.page_count)}"
        rows.append(f"<li><b>{html.escape(a.filename)}</b>: {chosen}, {a.tokens:,} tokens</li>")
    verdict = ""
    if fit is not None:
        need = fit.used + fit.reserve
        if fit.fits:
            verdict = (
                f'<div class="wb-fit-ok">Fits: {fit.used:,} prompt tokens + max tokens '
                f"{fit.reserve:,} = {need:,} of {fit.max_context:,}.</div>"
            )
        else:
            verdict = (
                f'<div class="wb-fit-over">Does not fit: {fit.used:,} prompt tokens + max tokens '
                f"{fit.reserve:,} = {need:,} of {fit.max_context:,}. Choose page ranges below, "
                "or analyse in chunks.</div>"
            )
    return f'<div class="wb-fit"><ul>{"".join(rows)}</ul>{verdict}</div>'


def offer_markdown(fit: Fit) -> str:
    """Why the question was not sent, and what the person can do instead."""
    return (
        f"**The documents and the conversation do not fit the context.** They take "
        f"{fit.used:,} of {fit.max_context:,} tokens, and max tokens asks for {fit.reserve:,} "
        "more for the answer. Choose page ranges (the gauge follows), analyse the documents in "
        "chunks (each chunk summarised, then the question answered over the summaries), or "
        "answer in the room that is left."
    )


def chunk_progress_message(description: str, index: int = 0, total: int = 0) -> dict:
    """The chat's placeholder answer while chunks are summarised ("chunk 2 of 5")."""
    bar = f'<progress value="{index - 1}" max="{total}"></progress> ' if total else ""
    text = f'<div class="wb-chunks">{bar}<span>{html.escape(description)}…</span></div>'
    return {"role": "assistant", "content": {"type": "text", "text": text}}
