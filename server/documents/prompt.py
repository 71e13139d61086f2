"""Prompt assembly for whole-document analysis.

Documents go first, each page marked `[page N]` under its file's header, then the
conversation. The documents block depends only on the documents (no dates, no ids, fixed
order), so asking a second question about the same documents sends the same bytes first
and vLLM's prefix cache serves them. When documents and conversation do not fit the context,
`plan_chunks` splits pages into chunks within a token budget for the reference approach:
summarise each chunk, then answer over the summaries; never truncate silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.documents.file_part import file_part_to_text
from server.documents.render import EMPTY_PAGE_NOTE, document_text, safe_filename

if TYPE_CHECKING:
    from server.counter import Counter

__all__ = [
    "DOCUMENTS_INSTRUCTION",
    "Chunk",
    "chunk_messages",
    "document_context",
    "document_text",
    "documents_first",
    "file_part_to_text",
    "format_ranges",
    "marker_tokens",
    "pages_label",
    "parse_page_ranges",
    "plan_chunks",
    "summaries_context",
]

DOCUMENTS_INSTRUCTION = (
    "The documents below are the person's files, as extracted text. Each page starts with a "
    "[page N] marker. Answer from these documents and cite the pages you use, like [page 12]."
)


@dataclass
class Chunk:
    """Consecutive pages of one document that fit one request."""

    pages: list[Mapping[str, Any]] = field(default_factory=list)
    tokens: int = 0

    @property
    def first(self) -> int:
        return self.pages[0]["number"]

    @property
    def last(self) -> int:
        return self.pages[-1]["number"]


def document_context(pages_by_doc: Sequence[tuple[str, Iterable[Any]]]) -> str:
    """The documents block: for each (filename, pages) in the given order, its text.

    Pages are storage dicts ({number, text, ...}) or PageText. Identical input gives identical
    bytes, which is what makes the engine's prefix cache hit on the next question.
    """
    return "\n\n".join(document_text(name, pages) for name, pages in pages_by_doc)


def documents_first(context: str, system_prompt: str, conversation: list[dict]) -> list[dict]:
    """The chat messages with the documents first, then the system prompt, then the turns.

    Documents lead because they are the largest and most stable part: asking again about
    them, or changing the system prompt, keeps the engine's cached prefix.
    """
    if not context:
        head = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
        return head + conversation
    parts = [DOCUMENTS_INSTRUCTION, context] + ([system_prompt] if system_prompt.strip() else [])
    return [{"role": "system", "content": "\n\n".join(parts)}, *conversation]


def marker_tokens(page: Mapping[str, Any], counter: Counter | None = None) -> int:
    """An upper bound of what a page adds to its text's tokens: marker, blank line, and the
    note that stands in for an empty page.

    Exact for the marker with a counter (plus 2 for the blank line and for BPE joining
    across the boundary); without one, every digit counted as a token, as Qwen3 splits them.
    """
    number, empty = page["number"], not page["text"].strip()
    if counter is not None:
        note = counter.count_text(EMPTY_PAGE_NOTE) if empty else 0
        return counter.count_text(f"[page {number}]\n") + 2 + note
    return len(str(number)) + 6 + (len(EMPTY_PAGE_NOTE) // 2 if empty else 0)


def plan_chunks(
    pages: Sequence[Mapping[str, Any]], budget: int, *, counter: Counter | None = None
) -> list[Chunk]:
    """Split pages ({number, text, tokens}) in order into chunks of at most `budget` tokens.

    A chunk's `tokens` bounds its pages as `document_text` lays them out, markers included;
    `budget` is for pages only (leave room for the header, instructions and the answer). A
    page larger than the whole budget is split at line breaks into parts that keep its number
    (nothing is dropped); its parts' token counts are estimated from their share of the
    page's characters.
    """
    chunks: list[Chunk] = []
    current = Chunk()
    for page in pages:
        overhead = marker_tokens(page, counter)
        if budget <= overhead:
            raise ValueError(f"a chunk budget of {budget} tokens cannot hold a single page")
        for part in _fit_page(page, budget - overhead):
            cost = part["tokens"] + overhead
            if current.pages and current.tokens + cost > budget:
                chunks.append(current)
                current = Chunk()
            current.pages.append(part)
            current.tokens += cost
    if current.pages:
        chunks.append(current)
    return chunks


def _fit_page(page: Mapping[str, Any], limit: int) -> list[Mapping[str, Any]]:
    """The page itself, or its line-split parts when it alone exceeds `limit` tokens."""
    tokens, text = page["tokens"], page["text"]
    if tokens <= limit or not text:
        return [page]
    # Aim under the limit, since the estimate is proportional and tokens are not.
    parts, current = [], []
    per_char = tokens / len(text)
    target = max(1, int(0.9 * limit / per_char))
    size = 0
    for line in text.splitlines(keepends=True):
        while len(line) > target:  # a single huge line: cut it
            if current:
                parts.append("".join(current))
                current, size = [], 0
            parts.append(line[:target])
            line = line[target:]
        if size + len(line) > target and current:
            parts.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        parts.append("".join(current))
    return [{**page, "text": part, "tokens": max(1, round(len(part) * per_char))} for part in parts]


def chunk_messages(filename: str, chunk: Chunk, question: str) -> list[dict]:
    """A request that summarises one chunk with the question in mind (the map step)."""
    instruction = (
        f"Below are {pages_label(chunk.first, chunk.last)} of {safe_filename(filename)}. "
        "Summarise what they say that helps "
        "answer the question, keeping facts, names, numbers and code exact, and cite each "
        "point's page like [page 12]. If nothing is relevant, say so in one line."
    )
    return [
        {"role": "system", "content": f"{instruction}\n\n{document_text(filename, chunk.pages)}"},
        {"role": "user", "content": f"Question: {question}"},
    ]


def summaries_context(summaries: Sequence[tuple[str, Chunk, str]]) -> str:
    """The documents block for the final answer (the reduce step): one summary per chunk."""
    blocks = []
    for filename, chunk, summary in summaries:
        blocks.append(
            f'<summary filename="{safe_filename(filename)}" pages="{chunk.first}-{chunk.last}">\n'
            f"{summary.strip()}\n</summary>"
        )
    return "\n\n".join(blocks)


def format_ranges(ranges: Iterable[tuple[int, int]], dash: str = "-") -> str:
    """[(7, 7), (1, 3), (2, 4)] → "1-4, 7": sorted, overlaps and neighbours merged.

    The one page-range formatter (the inverse of `parse_page_ranges`); `dash="–"` for text
    a person reads.
    """
    merged: list[list[int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return ", ".join(f"{a}{dash}{b}" if a != b else str(a) for a, b in merged)


def pages_label(first: int, last: int, dash: str = "-") -> str:
    """ "page 3" or "pages 3-5"."""
    return f"page {first}" if first == last else f"pages {format_ranges([(first, last)], dash)}"


def parse_page_ranges(spec: str, page_count: int) -> list[tuple[int, int]]:
    """ "1-5, 8, 10-12" → [(1, 5), (8, 8), (10, 12)]; ValueError with a clear message."""
    ranges = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        match = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", item)
        if not match:
            raise ValueError(f"'{item}' is not a page or a range like 3-7")
        first = int(match[1])
        last = int(match[2]) if match[2] else first
        if not 1 <= first <= last <= page_count:
            raise ValueError(f"pages {item} are outside 1-{page_count}")
        ranges.append((first, last))
    if not ranges:
        raise ValueError("no pages given")
    return ranges
