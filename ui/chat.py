"""Chat: send, stream the answer, stop, regenerate, edit the last message and resend.

Each action is a chain: a quick step stores the person's side (the user message, settings) and
shows the placeholder; `stream_answer` streams from /v1 and stores the answer however it ends
(complete, stopped, failed); a last step redraws the conversation from storage.
Stop cancels the streaming step: the generator closes the HTTP stream (the gateway aborts the
engine request) and stores the partial answer with status "stopped".
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

import anyio
import gradio as gr

from server.settings import SERVED_MODEL_NAME
from server.workbench import Workbench
from ui import formatting, gauge, usage, views
from ui.api import ApiClient, describe_error
from ui.layout import Components
from ui.settings_panel import read_settings
from ui.streaming import AnswerStream, InFlight

# Redraw at most this often while streaming: fast engines send hundreds of chunks a second.
REDRAW_SECONDS = 0.05


def _edited_text(value) -> str:
    """The text of an edited Chatbot message (a string, a text part, or a list of parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("text") or value.get("content") or "")
    if isinstance(value, list):
        return "\n".join(_edited_text(v) for v in value)
    return ""


def wire(c: Components, wb: Workbench, api: ApiClient, inflight: InFlight) -> None:
    """Attach send, stream, stop, regenerate and edit."""
    outputs = views.view_outputs(c) | {c.draft}
    context = [c.session, c.conv_id, c.busy, c.search_box]

    def streaming_view(owner: str, cid: int, query: str) -> dict:
        view = views.conversation_view(c, wb, owner, cid, query)
        view[c.chatbot] = view[c.chatbot] + [formatting.streaming_message("")]
        return {**view, **views.busy_controls(c, cid)}

    def start_send(session, cid, busy, query, draft, *settings):
        if session is None or not (draft or "").strip():
            return {c.turn: None}
        if busy:
            # Enter still submits while Send is hidden: keep the draft and say why.
            gr.Warning("An answer is still streaming: wait for it, or stop it, then send.")
            return {c.turn: None}
        system_prompt, params = read_settings(*settings)
        if cid is None or wb.get_conversation(session.owner, cid) is None:
            cid = wb.create_conversation(session.owner, system_prompt=system_prompt, params=params)
        else:
            wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        # Stored before the model is asked: whatever happens next, the question is kept.
        wb.add_user_message(session.owner, cid, draft.strip())
        return {**streaming_view(session.owner, cid, query), c.draft: ""}

    def start_regenerate(session, cid, busy, query, *settings):
        if session is None or busy or cid is None:
            return {c.turn: None}
        system_prompt, params = read_settings(*settings)
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        if not wb.drop_last_answer(session.owner, cid):
            gr.Warning("There is no question to answer again yet.")
            return {c.turn: None}
        return streaming_view(session.owner, cid, query)

    def start_edit(edit: gr.EditData, session, cid, busy, query, message_ids, *settings):
        if session is None or cid is None:
            return {c.turn: None}
        index = edit.index if isinstance(edit.index, int) else edit.index[0]
        message_id = message_ids[index] if 0 <= index < len(message_ids) else None
        if busy or message_id is None or not wb.edit_last_user_message(
            session.owner, cid, message_id, _edited_text(edit.value)
        ):
            gr.Warning("Only your last message can be edited and resent (and not while answering).")
            # Redraw: the Chatbot already shows the rejected edit.
            return {**views.conversation_view(c, wb, session.owner, cid, query), c.turn: None}
        system_prompt, params = read_settings(*settings)
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        return streaming_view(session.owner, cid, query)

    async def stream_answer(request: gr.Request, session, turn):
        if session is None or turn is None:
            return
        owner = session.owner
        conversation = await anyio.to_thread.run_sync(wb.get_conversation, owner, turn)
        if conversation is None:
            return
        stored = await anyio.to_thread.run_sync(wb.messages, owner, turn)
        shown = formatting.chat_messages(stored)
        prompt = await anyio.to_thread.run_sync(partial(
            wb.prompt, owner, turn, system_prompt=conversation["system_prompt"]))
        answer = AnswerStream(
            api.for_key(session.key), model=SERVED_MODEL_NAME, messages=prompt,
            params=conversation["params"],
        )
        chunks = answer.chunks()
        status, error = "complete", None
        inflight.begin(request.session_hash)
        try:
            redrawn = 0.0
            async for text in chunks:
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
        except Exception as exc:  # every failure becomes a readable message in the chat
            status, error = "error", describe_error(exc)
        finally:
            await chunks.aclose()
            await answer.close()
            await _store_answer(wb, owner, turn, prompt, answer, status, error)
            inflight.end(request.session_hash)
        yield {c.headroom: formatting.headroom_html(answer.headers)}

    def finish(session, cid, busy, query):
        if session is None:
            return views.idle_controls(c)
        return {**views.conversation_view(c, wb, session.owner, cid, query), **views.idle_controls(c)}

    async def stop(request: gr.Request, session, cid, busy, query):
        # The cancelled generator stores the partial answer; wait for it, then redraw.
        await inflight.wait(request.session_hash)
        return await anyio.to_thread.run_sync(finish, session, cid, busy, query)

    common = dict(api_visibility="private", show_progress="hidden")
    starts = [
        gr.on([c.send_btn.click, c.draft.submit], start_send,
              inputs=context + [c.draft, *c.settings], outputs=outputs, **common),
        c.regen_btn.click(start_regenerate, inputs=context + c.settings, outputs=outputs, **common),
        c.chatbot.edit(start_edit, inputs=context + [c.message_ids, *c.settings],
                       outputs=outputs, **common),
    ]
    streams = []
    for start in starts:
        stream = start.then(
            stream_answer, inputs=[c.session, c.turn], outputs=[c.chatbot, c.headroom],
            concurrency_limit=None, **common,
        )
        done = stream.then(finish, inputs=context, outputs=outputs, **common)
        usage.chain(gauge.chain(done, c, wb), c, wb)
        streams.append(stream)
    # The browser sends the cancel only once the clicked event's own function is done, so the
    # cancel is an event without a function, and the redraw (which waits for the cancelled
    # stream to store its partial answer) follows it.
    stopped = c.stop_btn.click(None, cancels=streams, **common).then(
        stop, inputs=context, outputs=outputs, **common)
    usage.chain(gauge.chain(stopped, c, wb), c, wb)


async def _store_answer(
    wb: Workbench, owner: str, cid: int, prompt: list[dict], answer: AnswerStream,
    status: str, error: str | None,
) -> None:
    """Store the answer as it ended; shielded, so a second cancel cannot lose it."""

    async def store() -> None:
        prompt_tokens = completion_tokens = None
        if answer.usage is None:
            # Cut short: no usage chunk arrived, so count what was sent and what came back.
            prompt_tokens = await wb.count_prompt(prompt)
            completion_tokens = await wb.count_text(answer.text) if answer.text else 0
        stats = answer.stats(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        await anyio.to_thread.run_sync(partial(
            wb.save_answer, owner, cid, answer.text, model=SERVED_MODEL_NAME, stats=stats,
            status=status, error=error,
        ))

    await asyncio.shield(asyncio.ensure_future(store()))
