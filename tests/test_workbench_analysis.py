"""Chunked analysis as a service, without a browser: real tokenizer, real /v1, real engine.

The requests go through the session's app with its key, as the workbench sends them; the
context given to the analysis is small (1,024 tokens) so a 4-page PDF needs several chunks.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import openai
import pytest

from server.documents.extract import extract_pages
from server.documents.prompt import chunk_messages
from server.tokens import TokenCounter
from server.workbench.analysis import AnalysisError, ChunkedAnalysis, Summary
from storage import Store
from storage.keys import create_key
from tests.helpers import wait_until

PDFS = Path(__file__).parent / "pdfs"
CONTEXT = 1024
SHORT = 16


@pytest.fixture(scope="module")
def counter(model_dir) -> TokenCounter:
    return TokenCounter.from_dir(model_dir)


def pages_of(name: str, counter: TokenCounter) -> list[dict]:
    """A PDF's pages as storage holds them: {number, text, tokens}."""
    pages = extract_pages((PDFS / name).read_bytes(), workers=1)
    return [
        {"number": p.number, "text": p.text, "tokens": counter.count_text(p.text)} for p in pages
    ]


def analysis(counter, client=None, **overrides) -> ChunkedAnalysis:
    args = dict(
        model="qwen3",
        counter=counter,
        max_context=CONTEXT,
        question="What are the section titles?",
        documents=[("pdflatex-outline.pdf", pages_of("pdflatex-outline.pdf", counter))],
        summary_tokens=SHORT,
        answer_tokens=SHORT,
        sampling={"temperature": 0.0},
    )
    return ChunkedAnalysis(client, **{**args, **overrides})


def usage_rows(app, key_name: str) -> int:
    with Store(app.data_dir / "workbench.db") as store:
        return store.db.execute(
            "SELECT count(*) FROM usage_log WHERE key_name = ?", [key_name]
        ).fetchone()[0]


def test_every_chunk_request_fits_and_together_they_cover_every_page_once(counter):
    planned = analysis(counter).plan()
    assert len(planned) >= 2
    numbers = [p["number"] for _, chunk in planned for p in chunk.pages]
    assert sorted(set(numbers)) == [1, 2, 3, 4] and numbers == sorted(numbers)
    for filename, chunk in planned:
        sent = counter.count_messages(
            chunk_messages(filename, chunk, "What are the section titles?")
        )
        assert sent + SHORT <= CONTEXT


def test_chunks_are_summarised_through_v1_then_the_question_is_answered_over_them(app, counter):
    name = "analyst-" + str(time.time_ns())
    with Store(app.data_dir / "workbench.db") as store:
        key = create_key(store.db, name)

    async def run():
        client = openai.AsyncOpenAI(base_url=app.v1, api_key=key, max_retries=0)
        try:
            job = analysis(counter, client)
            steps = [step async for step in job.run()]
            answer = await client.chat.completions.create(
                model="qwen3", messages=job.messages, max_tokens=SHORT, temperature=0.0
            )
            return job, steps, answer
        finally:
            await client.close()

    job, steps, answer = asyncio.run(run())
    total = len(steps)
    assert total >= 2
    assert [(s.phase, s.index, s.total) for s in steps] == [
        ("summarise", i, total) for i in range(1, total + 1)
    ]
    assert steps[1].describe().startswith(f"Summarising chunk 2 of {total} (pdflatex-outline.pdf")
    assert [(s.first, s.last) for s in job.summaries] == [(s.first, s.last) for s in steps]
    assert all(s.text for s in job.summaries)
    # The final request: the summaries with their pages, the question last; it fits.
    system, user = job.messages
    assert user == {"role": "user", "content": "What are the section titles?"}
    assert '<summary filename="pdflatex-outline.pdf" pages="1-' in system["content"]
    assert answer.usage.prompt_tokens == counter.count_messages(job.messages)
    assert answer.usage.prompt_tokens + SHORT <= CONTEXT
    assert answer.choices[0].message.content
    assert job.note().startswith(f"Answered from summaries of {total} chunks (pdflatex-outline.pdf")
    # Every request went through /v1 with the person's key (usage rows are written in batches).
    wait_until(
        lambda: usage_rows(app, name) >= total + 1, interval=0.2, message="usage rows missing"
    )
    assert usage_rows(app, name) == total + 1


def test_a_context_too_small_for_one_page_is_a_clear_error_before_any_request(counter):
    job = analysis(counter, max_context=200)

    async def run():
        return [step async for step in job.run()]

    with pytest.raises(AnalysisError, match="leaves no room to summarise even one page"):
        asyncio.run(run())


def test_a_question_is_needed():
    with pytest.raises(AnalysisError, match="Ask a question first"):
        ChunkedAnalysis(
            None, model="qwen3", counter=None, max_context=CONTEXT, question="  ", documents=[]
        )


def test_summaries_too_long_together_are_merged_in_groups_that_fit(counter):
    job = analysis(counter)
    summaries = [
        Summary("a.pdf", n, n, f"Page {n} explains topic {n}. " * 25) for n in range(1, 13)
    ]
    groups = job.groups(summaries)
    assert 1 < len(groups) < len(summaries)
    assert [s for group in groups for s in group] == summaries  # in order, none lost
    for group in groups:
        assert counter.count_messages(job._combine_messages(group)) + SHORT <= CONTEXT


def test_summaries_that_do_not_fit_together_are_merged_through_v1_until_they_do(app, counter):
    # Four summaries of ~100 tokens do not fit a 512-token context with room for the answer.
    summaries = [
        Summary("a.pdf", n, n, f"Page {n}: the parser keeps the indentation of code lines. " * 8)
        for n in range(1, 5)
    ]

    async def run():
        client = openai.AsyncOpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0)
        try:
            job = analysis(counter, client, max_context=512, answer_tokens=400)
            steps = [step async for step in job.reduce(summaries)]
            return job, steps
        finally:
            await client.close()

    job, steps = asyncio.run(run())
    assert steps and {s.phase for s in steps} == {"combine"}
    assert (
        steps[0].describe().startswith(f"Merging summaries 1 of {steps[0].total} (a.pdf, pages 1–")
    )
    assert counter.count_messages(job.messages) + 512 // 4 <= 512
    assert '<summary filename="a.pdf" pages="1-' in job.messages[0]["content"]


def reduce_without_merging(job, summaries):
    async def run():
        return [step async for step in job.reduce(summaries)]

    assert asyncio.run(run()) == []  # the summaries fit: no merge request was needed
    return job.messages


def test_the_final_request_carries_the_earlier_turns_when_they_fit(counter):
    history = [
        {"role": "user", "content": "Which licence is the PDF under?"},
        {"role": "assistant", "content": "CC-BY-SA-4.0 [page 1]."},
    ]
    job = analysis(counter, history=history, question="And may I sell copies?")
    summaries = [Summary("a.pdf", 1, 2, "Pages 1-2 name the licence.")]
    system, *earlier, question = reduce_without_merging(job, summaries)
    assert earlier == history
    assert question == {"role": "user", "content": "And may I sell copies?"}
    assert job.history_left_out == 0 and "left out" not in job.note()


def test_earlier_turns_that_do_not_fit_are_dropped_oldest_first_and_the_note_says_so(counter):
    history = []
    for n in range(1, 9):
        history += [
            {"role": "user", "content": f"Question {n}: " + "why? " * 30},
            {"role": "assistant", "content": f"Answer {n}: " + "because. " * 30},
        ]
    job = analysis(counter, history=history, answer_tokens=SHORT)
    summaries = [Summary("a.pdf", 1, 4, "The sections are Introduction and Method.")]
    messages = reduce_without_merging(job, summaries)
    kept = messages[1:-1]
    assert 0 < len(kept) < len(history) and kept == history[-len(kept) :]
    assert kept[0]["role"] == "user"  # never an answer without its question
    assert counter.count_messages(messages) + SHORT <= CONTEXT
    # The most turns that fit: one more (question and answer) would not.
    wider = job._final_messages(summaries, history[-len(kept) - 2 :])
    assert counter.count_messages(wider) + SHORT > CONTEXT
    assert job.history_left_out == len(history) - len(kept)
    assert f"The {job.history_left_out} oldest messages" in job.note()
