"""Chunked analysis: documents too long for the context, answered from their summaries.

The reference approach, never a silent truncation: split each document's pages into chunks
that fit one request, summarise every chunk with the question in mind (the map step), merge
the summaries again if they still do not fit together, then answer the question over them
(the reduce step). Every request goes through our own /v1 with the person's key (the
`openai.AsyncOpenAI` client handed in), so limits, usage and errors are theirs as usual.

`ChunkedAnalysis.run()` yields a `Step` before each request, for visible progress
("chunk 2 of 5"); when it ends, `messages` is the final request, which the caller streams
like any other answer (so Stop, stats and storage work the same). The final request carries
the conversation's earlier turns too (as many of the latest as fit beside the summaries), so a
follow-up question is answered in its context.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import openai

from server.counter import Counter
from server.documents.prompt import (
    Chunk,
    chunk_messages,
    pages_label,
    plan_chunks,
    summaries_context,
)

__all__ = ["AnalysisError", "ChunkedAnalysis", "Step", "Summary", "summary_tokens_for"]

ANSWER_INSTRUCTION = (
    "The person's documents were too long to read at once, so each part was summarised with "
    "their question in mind. The summaries are below, each with its file and pages. Answer "
    "the question from them, citing pages like [page 12]; if they do not hold the answer, "
    "say so."
)
COMBINE_INSTRUCTION = (
    "Below are summaries of consecutive parts of the person's documents. Merge them into one "
    "shorter summary that keeps everything that helps answer the question, with its page "
    "citations like [page 12]."
)
# Tokens kept free in every request for what exact planning cannot see (page-range digits,
# estimates for split pages).
MARGIN = 32
# A summary never asks for more than this, whatever max_tokens says.
MAX_SUMMARY_TOKENS = 1024
MAX_COMBINE_ROUNDS = 4
RATE_LIMIT_RETRIES = 3
# Waits longer than this are the person's to decide on: the 429 is shown instead.
MAX_RATE_LIMIT_WAIT = 60.0


class AnalysisError(Exception):
    "The documents could not be analysed in chunks."


def summary_tokens_for(max_tokens: int, max_context: int) -> int:
    """The length of each chunk's summary: the answer budget, within a share of the context."""
    return max(16, min(int(max_tokens), MAX_SUMMARY_TOKENS, max_context // 8))


@dataclass(frozen=True)
class Step:
    """One request of the analysis, announced before it is sent."""

    phase: str  # "summarise" (a chunk of pages) or "combine" (summaries merged)
    index: int  # from 1
    total: int
    filename: str
    first: int
    last: int

    def describe(self) -> str:
        pages = pages_label(self.first, self.last, dash="–")
        if self.phase == "combine":
            return f"Merging summaries {self.index} of {self.total} ({self.filename}, {pages})"
        return f"Summarising chunk {self.index} of {self.total} ({self.filename}, {pages})"


@dataclass(frozen=True)
class Summary:
    """What one chunk (or a merged run of chunks) says about the question."""

    filename: str
    first: int
    last: int
    text: str

    def as_chunk(self) -> Chunk:
        return Chunk(pages=[{"number": self.first}, {"number": self.last}])


class ChunkedAnalysis:
    """One chunked analysis of `documents` ((filename, pages) pairs) for `question`.

    `pages` are storage dicts {number, text, tokens}. `counter` is the served model's token
    counter (its blocking methods run in worker threads). Summaries are `summary_tokens`
    long at most; the final answer is given `answer_tokens` of room. `history` is the
    conversation before the question, as chat messages.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        counter: Counter,
        max_context: int,
        question: str,
        documents: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
        system_prompt: str = "",
        summary_tokens: int = 512,
        answer_tokens: int = 1024,
        sampling: Mapping[str, Any] | None = None,
        history: Sequence[Mapping[str, str]] = (),
    ):
        self.client, self.model, self.counter = client, model, counter
        self.max_context, self.question = max_context, question.strip()
        self.documents, self.system_prompt = documents, system_prompt
        self.summary_tokens, self.answer_tokens = summary_tokens, answer_tokens
        self.sampling = {k: v for k, v in (sampling or {}).items() if k in ("temperature", "top_p")}
        self.history = [{"role": m["role"], "content": m["content"]} for m in history]
        self.history_left_out = 0  # earlier messages that did not fit the final request
        self.summaries: list[Summary] = []
        self.messages: list[dict] | None = None  # the final request, once run() has ended
        self.requests = 0
        self.seconds = 0.0
        if not self.question:
            raise AnalysisError("Ask a question first: the chunks are summarised for it.")

    # Planning ------------------------------------------------------------------------------

    def _count(self, messages: list[dict]) -> int:
        return self.counter.count_messages(messages)

    def plan(self) -> list[tuple[str, Chunk]]:
        """Chunks of every document in order, each checked to fit with its summary."""
        planned = []
        for filename, pages in self.documents:
            if not pages:
                continue
            probe = Chunk(pages=[{"number": pages[-1]["number"], "text": "x", "tokens": 1}])
            overhead = self._count(chunk_messages(filename, probe, self.question))
            budget = self.max_context - self.summary_tokens - overhead - MARGIN
            planned += [(filename, c) for c in self._fitting(filename, list(pages), budget)]
        if not planned:
            raise AnalysisError("The attached documents have no pages to analyse.")
        return planned

    def _fitting(self, filename: str, pages: list, budget: int, depth: int = 0) -> list[Chunk]:
        if budget < 64:
            raise AnalysisError(
                f"The context ({self.max_context:,} tokens) leaves no room to summarise even "
                "one page with this question: shorten the question or lower max tokens."
            )
        try:
            chunks = plan_chunks(pages, budget, counter=self.counter)
        except ValueError as exc:
            raise AnalysisError(f"The pages cannot be split to fit the context: {exc}.") from None
        out = []
        for chunk in chunks:
            excess = (
                self._count(chunk_messages(filename, chunk, self.question))
                + self.summary_tokens
                - self.max_context
            )
            if excess <= 0 or depth >= 3:
                out.append(chunk)  # (a last overflow is the gateway's readable 400)
            else:  # estimates for split pages were low: plan this chunk again, tighter
                out += self._fitting(filename, chunk.pages, budget - excess - MARGIN, depth + 1)
        return out

    def _final_messages(self, summaries: list[Summary], history: Sequence[dict] = ()) -> list[dict]:
        context = summaries_context([(s.filename, s.as_chunk(), s.text) for s in summaries])
        parts = [ANSWER_INSTRUCTION, context]
        if self.system_prompt.strip():
            parts.append(self.system_prompt)
        return [
            {"role": "system", "content": "\n\n".join(parts)},
            *history,
            {"role": "user", "content": self.question},
        ]

    def _with_history(self, summaries: list[Summary], budget: int) -> list[dict] | None:
        """The final request with the most recent earlier turns that fit `budget`, or None
        when the summaries alone do not fit. Turns are dropped from the oldest, a user message
        together with the answers after it, so the model never sees an answer without its
        question."""
        starts = sorted(
            {0, len(self.history)} | {i for i, m in enumerate(self.history) if m["role"] == "user"}
        )
        fits = [None] * len(starts)  # final messages where known to fit, by candidate

        def fit(k: int) -> bool:
            final = self._final_messages(summaries, self.history[starts[k] :])
            if self._count(final) <= budget:
                fits[k] = final
            return fits[k] is not None

        # Fewer turns never count more tokens: bisect for the first start that fits.
        low, high = 0, len(starts) - 1
        if not fit(high):
            return None
        while low < high:
            mid = (low + high) // 2
            if fit(mid):
                high = mid
            else:
                low = mid + 1
        self.history_left_out = starts[low]
        return fits[low]

    def _combine_messages(self, group: list[Summary]) -> list[dict]:
        context = summaries_context([(s.filename, s.as_chunk(), s.text) for s in group])
        return [
            {"role": "system", "content": f"{COMBINE_INSTRUCTION}\n\n{context}"},
            {"role": "user", "content": f"Question: {self.question}"},
        ]

    def groups(self, summaries: list[Summary]) -> list[list[Summary]]:
        """Consecutive summaries in groups whose merge request fits the context."""
        budget = self.max_context - self.summary_tokens - MARGIN
        groups: list[list[Summary]] = [[]]
        for summary in summaries:
            trial = groups[-1] + [summary]
            if groups[-1] and self._count(self._combine_messages(trial)) > budget:
                groups.append([summary])
            else:
                groups[-1] = trial
        return groups

    # Running -------------------------------------------------------------------------------

    async def _ask(self, messages: list[dict], max_tokens: int) -> str:
        for attempt in range(RATE_LIMIT_RETRIES):
            try:
                response = await self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    max_tokens=max_tokens,
                    **self.sampling,
                )
            except openai.RateLimitError as exc:
                # Long documents make many requests: a short wait beats failing half-way.
                wait = float(exc.response.headers.get("retry-after") or "inf")
                if attempt == RATE_LIMIT_RETRIES - 1 or wait > MAX_RATE_LIMIT_WAIT:
                    raise
                await asyncio.sleep(wait)
                continue
            self.requests += 1
            return (response.choices[0].message.content or "").strip()
        raise AssertionError("unreachable")

    async def run(self) -> AsyncIterator[Step]:
        """Summarise every chunk (and merge summaries while needed), announcing each request.

        Raises AnalysisError (with a message for the person) or the openai error of a failed
        request. Afterwards `messages` holds the final request.
        """
        started = time.monotonic()
        planned = await anyio.to_thread.run_sync(self.plan)
        summaries = []
        for index, (filename, chunk) in enumerate(planned, 1):
            yield Step("summarise", index, len(planned), filename, chunk.first, chunk.last)
            text = await self._ask(
                chunk_messages(filename, chunk, self.question), self.summary_tokens
            )
            summaries.append(
                Summary(
                    filename, chunk.first, chunk.last, text or "(nothing relevant in these pages)"
                )
            )
        self.summaries = list(summaries)
        async for step in self.reduce(summaries):
            yield step
        self.seconds = time.monotonic() - started

    async def reduce(self, summaries: list[Summary]) -> AsyncIterator[Step]:
        """Merge summaries in groups until they fit the final request; set `messages`."""
        reserve = min(self.answer_tokens, self.max_context // 4)
        for _ in range(MAX_COMBINE_ROUNDS):
            final = await anyio.to_thread.run_sync(
                self._with_history, summaries, self.max_context - reserve
            )
            if final is not None:
                self.messages = final
                return
            groups = await anyio.to_thread.run_sync(self.groups, summaries)
            if len(groups) >= len(summaries):
                raise AnalysisError(
                    "The summaries do not fit the context together and cannot be merged: "
                    "choose fewer pages, or lower max tokens."
                )
            merged = []
            for index, group in enumerate(groups, 1):
                names = list(dict.fromkeys(s.filename for s in group))
                filename = names[0] if len(names) == 1 else " + ".join(names)
                step = Step("combine", index, len(groups), filename, group[0].first, group[-1].last)
                if len(group) == 1:  # nothing to merge it with: kept as it is
                    merged.append(group[0])
                    continue
                yield step
                text = await self._ask(self._combine_messages(group), self.summary_tokens)
                merged.append(Summary(filename, step.first, step.last, text))
            summaries = merged
        raise AnalysisError("The summaries still do not fit the context after merging them.")

    def note(self) -> str:
        """A line for the answer saying how it was made (the chunks and their pages)."""
        pages: dict[str, list[str]] = {}
        for s in self.summaries:
            pages.setdefault(s.filename, []).append(
                f"{s.first}–{s.last}" if s.first != s.last else str(s.first)
            )
        where = "; ".join(f"{name} pages {', '.join(runs)}" for name, runs in pages.items())
        note = (
            f"Answered from summaries of {len(self.summaries)} chunks ({where}), "
            f"made in {self.seconds:,.0f} s."
        )
        if self.history_left_out:
            note += (
                f" The {self.history_left_out} oldest messages of this conversation did not "
                "fit beside the summaries and were left out of this answer."
            )
        return note
