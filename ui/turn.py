"""The streaming step of a turn: one answer, streamed from /v1 into the chat.

Two ways to make the request: directly (the conversation's prompt, documents first), or
after a chunked analysis (`server.workbench.analysis`), whose progress shows in the chat
("Summarising chunk 2 of 5 …") before the final answer streams in. Either way the answer is
stored with its stats when it completes, is stopped (the partial kept) or fails (a readable
message), and Stop can wait for that (`InFlight`). While it streams, its text so far is
saved every few seconds. What is streamed, measured and stored is `server.workbench.answer`'s;
this module only draws it.
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
from server.workbench.answer import (
    AnswerDraft,
    AnswerStream,
    ApiClient,
    Queued,
    describe_error,
    store_answer,
    with_queue_notices,
)
from server.workbench.conversations import last_question
from ui import formatting
from ui.formatting import chunk_progress_message

# Redraw at most this often while streaming: fast engines send hundreds of chunks a second.
REDRAW_SECONDS = 0.05


class InFlight:
    """Answers streaming now, per browser session, so Stop can wait for the partial to be saved."""

    def __init__(self):
        self._done: dict[str, asyncio.Event] = {}

    def begin(self, session_hash: str) -> None:
        """Mark an answer as streaming for this browser session."""
        self._done[session_hash] = asyncio.Event()

    def end(self, session_hash: str) -> None:
        """The answer is saved (complete, stopped or failed)."""
        event = self._done.pop(session_hash, None)
        if event is not None:
            event.set()

    async def wait(self, session_hash: str, timeout: float = 15.0) -> None:
        """Until the session's answer (if any) is saved, or the timeout passes."""
        event = self._done.get(session_hash)
        if event is not None:
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                pass


def make_stream(
    wb: Workbench,
    api: ApiClient,
    inflight: InFlight,
    chatbot: gr.Chatbot,
    headroom: gr.HTML,
    *,
    chunked: bool,
):
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
        answer = AnswerStream(
            client, model=SERVED_MODEL_NAME, messages=[], params=conversation["params"]
        )
        status, error, note, chunks = "complete", None, "", None
        draft = AnswerDraft(wb, owner, turn, model=SERVED_MODEL_NAME)
        inflight.begin(request.session_hash)
        try:
            if chunked:
                analysis = await anyio.to_thread.run_sync(
                    partial(
                        wb.chunked_analysis,
                        owner,
                        turn,
                        client,
                        question=last_question(stored) or "",
                    )
                )
                yield {chatbot: shown + [chunk_progress_message("Planning the chunks")]}
                async for step in analysis.run():
                    yield {
                        chatbot: shown
                        + [chunk_progress_message(step.describe(), step.index, step.total)]
                    }
                answer.messages, note = analysis.messages, analysis.note()
            else:
                answer.messages = await anyio.to_thread.run_sync(
                    partial(wb.prompt, owner, turn, system_prompt=conversation["system_prompt"])
                )
            yield {chatbot: shown + [formatting.streaming_message("")]}
            chunks = with_queue_notices(answer.chunks(), wb.engine_queue)
            redrawn = 0.0
            async for text in chunks:
                if isinstance(text, Queued):
                    yield {chatbot: shown + [formatting.queued_message(text.waiting)]}
                    continue
                draft.update(text)
                now = time.monotonic()
                if now - redrawn >= REDRAW_SECONDS:
                    redrawn = now
                    yield {
                        chatbot: shown + [formatting.streaming_message(text)],
                        headroom: formatting.headroom_html(answer.headers),
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
        yield {headroom: formatting.headroom_html(answer.headers)}

    return stream
