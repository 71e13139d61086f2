"""Pure formatting for documents: upload progress, totals, pages without text, fit, offers.

No I/O here: every sentence about documents can be checked without a browser.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from server.documents.prompt import format_ranges
from server.workbench.fit import Fit


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


def progress_html(done: int | None, total: int | None, filename: str, *,
                  finished: bool = False) -> str:
    """The upload's progress bar: pages read and stored of the document's total."""
    name = html.escape(filename)
    if not total:
        return (f'<div class="wb-progress" data-done="0" data-total="0">'
                f'<div class="wb-progress-label">Opening {name}…</div></div>')
    done = done or 0
    width = 100.0 * done / total
    return (
        f'<div class="wb-progress" data-done="{done}" data-total="{total}">'
        f'<div class="wb-gauge-bar"><div class="wb-gauge-fill" style="width:{width:.1f}%"></div></div>'
        f'<div class="wb-progress-label">{"Read" if finished else "Reading"} {name}: '
        f"{done:,} / {total:,} pages</div></div>"
    )


def document_html(document: Mapping, max_context: int) -> str:
    """The result of an upload: name, pages, tokens, share of the context, pages without text."""
    tokens = document.get("total_tokens") or 0
    share = tokens / max_context if max_context else 0.0
    # Past twice the context a percentage is hard to read: say how many contexts it takes.
    part = f"{share:,.1f}× the" if share >= 2 else f"{share:.1%} of the"
    facts = [_pages(document["page_count"]), f"{tokens:,} tokens",
             f"{part} {max_context:,}-token context"]
    lines = [f'<div class="wb-doc-name">{html.escape(document["filename"])}</div>',
             f'<div class="wb-doc-facts">{" · ".join(facts)}</div>']
    if document.get("reused"):
        lines.append('<div class="wb-doc-note">Already in your documents (same file): '
                     "opened without reading it again.</div>")
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
        (f"{d['filename']} — {_pages(d['page_count'])}, {(d['total_tokens'] or 0):,} tokens",
         d["id"])
        for d in documents
    ]


def fit_html(fit: Fit | None, attached: Sequence) -> str:
    """The attached documents with their chosen pages, and whether everything fits."""
    if not attached:
        return ('<div class="wb-fit">No document attached to this conversation: upload one, or '
                "tick it in the list.</div>")
    rows = []
    for a in attached:
        chosen = f"pages {a.spec} of {a.page_count:,}" if a.spec else f"all {_pages(a.page_count)}"
        rows.append(f"<li><b>{html.escape(a.filename)}</b>: {chosen}, {a.tokens:,} tokens</li>")
    verdict = ""
    if fit is not None:
        need = fit.used + fit.reserve
        if fit.fits:
            verdict = (f'<div class="wb-fit-ok">Fits: {fit.used:,} prompt tokens + max tokens '
                       f"{fit.reserve:,} = {need:,} of {fit.max_context:,}.</div>")
        else:
            verdict = (
                f'<div class="wb-fit-over">Does not fit: {fit.used:,} prompt tokens + max tokens '
                f"{fit.reserve:,} = {need:,} of {fit.max_context:,}. Choose page ranges below, "
                "or analyse in chunks.</div>")
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
