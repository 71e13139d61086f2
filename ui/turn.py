"""One answer, streamed from /v1 into the chat and stored however it ends.

Two ways to make the request: directly (the conversation's prompt, documents first), or
after a chunked analysis (`server.workbench.analysis`), whose progress shows in the chat
("Summarising chunk 2 of 5 …") before the final answer streams in. Either way the answer is
stored with its stats when it completes, is stopped (the partial kept) or fails (a readable
message), and Stop can wait for that (`InFlight`). While it streams, its text so far is
saved every few seconds (`AnswerDraft`), so a server that stops mid-answer loses little.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

import anyio
import gradio as gr

from server.settings import SERVED_MODEL_NAME
from server.workbench import Workbench
from server.workbench.analysis import AnalysisError
from server.workbench.answer_draft import AnswerDraft
from ui import formatting
from ui.answer_stream import (
    AnswerStream,
    ApiClient,
    InFlight,
    Queued,
    describe_error,
    with_queue_notices,
)
from ui.document_formatting import chunk_progress_message
from ui.layout import Components

# Redraw at most this often while streaming: fast engines send hundreds of chunks a second.
REDRAW_SECONDS = 0.05


def last_question(messages: list[dict]) -> str | None:
    """The conversation's last user message if nothing answered it yet."""
    if messages and messages[-1]["role"] == "user":
        return messages[-1]["content"]
    return None


def make_stream(c: Components, wb: Workbench, api: ApiClient, inflight: InFlight, *,
                chunked: bool):
    """The streaming step of a turn (a Gradio async generator over [chatbot, headroom])."""

    async def stream(request: gr.Request, session, turn):
        if session is None or turn is None:
            return
        owner = session.owner
        conversation = await anyio.to_thread.run_sync(wb.get_conversation, owner, turn)
        if conversation is None:
            return
        stored = await anyio.to_thread.run_sync(wb.messages, owner, turn)
        shown = formatting.chat_messages(stored)
        client = api.for_key(session.key)
        answer = AnswerStream(client, model=SERVED_MODEL_NAME, messages=[],
                              params=conversation["params"])
        status, error, note, chunks = "complete", None, "", None
        draft = AnswerDraft(wb, owner, turn, model=SERVED_MODEL_NAME)
        inflight.begin(request.session_hash)
        try:
            if chunked:
                analysis = await anyio.to_thread.run_sync(partial(
                    wb.chunked_analysis, owner, turn, client,
                    question=last_question(stored) or ""))
                yield {c.chatbot: shown + [chunk_progress_message("Planning the chunks")]}
                async for step in analysis.run():
                    yield {c.chatbot: shown + [
                        chunk_progress_message(step.describe(), step.index, step.total)]}
                answer.messages, note = analysis.messages, analysis.note()
            else:
                answer.messages = await anyio.to_thread.run_sync(partial(
                    wb.prompt, owner, turn, system_prompt=conversation["system_prompt"]))
            yield {c.chatbot: shown + [formatting.streaming_message("")]}
            chunks = with_queue_notices(answer.chunks(), wb.engine_queue)
            redrawn = 0.0
            async for text in chunks:
                if isinstance(text, Queued):
                    yield {c.chatbot: shown + [formatting.queued_message(text.waiting)]}
                    continue
                draft.update(text)
                now = time.monotonic()
                if now - redrawn >= REDRAW_SECONDS:
                    redrawn = now
                    yield {
                        c.chatbot: shown + [formatting.streaming_message(text)],
                        c.headroom: formatting.headroom_html(answer.headers),
                    }
        except (asyncio.CancelledError, GeneratorExit):
            status = "stopped"
            raise
        except AnalysisError as exc:
            status, error = "error", str(exc)
        except Exception as exc:  # every failure becomes a readable message in the chat
            status, error = "error", describe_error(exc)
        finally:
            if chunks is not None:
                await chunks.aclose()
            await answer.close()
            await store_answer(wb, owner, turn, answer, status, error, note, draft)
            inflight.end(request.session_hash)
        yield {c.headroom: formatting.headroom_html(answer.headers)}

    return stream


async def store_answer(wb: Workbench, owner: str, cid: int, answer: AnswerStream,
                       status: str, error: str | None, note: str = "",
                       draft: AnswerDraft | None = None) -> None:
    """Store the answer as it ended; shielded, so a second cancel cannot lose it.

    `note` (how a chunked answer was made) ends the stored text, once the answer began.
    The row `draft` began while streaming is finished, else one is added.
    """

    async def store() -> None:
        message_id = await draft.settled() if draft is not None else None
        prompt_tokens = completion_tokens = None
        if answer.usage is None and answer.started is not None:
            # Cut short: no usage chunk arrived, so count what was sent and what came back.
            prompt_tokens = await wb.count_prompt(answer.messages)
            completion_tokens = await wb.count_text(answer.text) if answer.text else 0
        stats = answer.stats(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        if answer.started is None:  # never sent (stopped or failed while chunking)
            stats = {}
        text = answer.text
        if note and answer.started is not None:
            text = f"{text.rstrip()}\n\n*{note}*" if text else f"*{note}*"
        await anyio.to_thread.run_sync(partial(
            wb.save_answer, owner, cid, text, model=SERVED_MODEL_NAME, stats=stats,
            status=status, error=error, message_id=message_id,
        ))

    await asyncio.shield(asyncio.ensure_future(store()))
