"""Chat: send, stream the answer, stop, regenerate, edit a question and resend.

Each action is a chain: a quick step stores the person's side (the user message, settings) and
shows the placeholder; the streaming step (ui.turn) streams from /v1 and stores the answer
however it ends (complete, stopped, failed); a last step redraws the conversation from storage.
Stop cancels the streaming step: the generator closes the HTTP stream (the gateway aborts the
engine request) and stores the partial answer with status "stopped".

With documents attached, a request that would not fit the context is not sent: the offer
under the gauge says so and proposes page ranges, a chunked analysis, or an answer in the
room left (never a silent truncation, never the engine's error as the answer).
"""

from __future__ import annotations

import anyio
import gradio as gr

from server.workbench import Workbench
from ui import formatting, gauge, usage_panel, views
from ui.answer_stream import ApiClient, InFlight
from ui.document_formatting import chunk_progress_message, offer_markdown
from ui.layout import Components
from ui.settings_panel import read_settings
from ui.turn import last_question, make_stream

# "Answer in the room left" is offered only when the room is worth an answer.
MIN_ROOM = 32


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
    """Attach send, stream, stop, regenerate, edit and the over-context offer."""
    outputs = views.view_outputs(c) | {c.draft, c.offer_msg, c.offer_shorter_btn}
    context = [c.session, c.conv_id, c.busy, c.search_box]

    def streaming_view(owner: str, cid: int, query: str, placeholder: dict | None = None) -> dict:
        view = views.conversation_view(c, wb, owner, cid, query)
        view[c.chatbot] = view[c.chatbot] + [placeholder or formatting.streaming_message("")]
        return {**view, **views.busy_controls(c, cid)}

    def over_context(owner: str, cid: int | None, system_prompt: str, params: dict,
                     draft: str | None = None) -> dict | None:
        """The offer, when documents are attached and the request would not fit."""
        fit = wb.overflow(owner, cid, system_prompt=system_prompt, draft=draft,
                          max_tokens=params["max_tokens"])
        if fit is None:
            return None
        return {
            c.offer_row: gr.Column(visible=True),
            c.offer_msg: offer_markdown(fit),
            c.offer_shorter_btn: gr.Button(
                value=f"Answer in the {fit.room:,} tokens left", visible=fit.room >= MIN_ROOM),
            c.turn: None,
        }

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
        offer = over_context(session.owner, cid, system_prompt, params, draft.strip())
        if offer:  # the draft stays in the box, unsent
            return offer
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
        offer = over_context(session.owner, cid, system_prompt, params)
        if offer:
            return {**views.conversation_view(c, wb, session.owner, cid, query), **offer}
        return streaming_view(session.owner, cid, query)

    def start_edit(edit: gr.EditData, session, cid, busy, query, message_ids, *settings):
        """Resend an edited question: the last one in place (its answer is replaced); an
        earlier one in a copy of the conversation up to it, so no later answer is lost."""
        if session is None or cid is None:
            return {c.turn: None}
        index = edit.index if isinstance(edit.index, int) else edit.index[0]
        message_id = message_ids[index] if 0 <= index < len(message_ids) else None
        text = _edited_text(edit.value)
        if busy or message_id is None or not text.strip():
            gr.Warning("Nothing was resent: a question cannot be edited while an answer "
                       "streams, or left empty.")
            # Redraw: the Chatbot already shows the rejected edit.
            return {**views.conversation_view(c, wb, session.owner, cid, query), c.turn: None}
        system_prompt, params = read_settings(*settings)
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        resend = wb.resend_edited(session.owner, cid, message_id, text)
        if resend is None:
            gr.Warning("Only your own questions can be edited and resent.")
            return {**views.conversation_view(c, wb, session.owner, cid, query), c.turn: None}
        if resend.branched:
            gr.Info(f"The edited question goes on in a new conversation, “{resend.title}”; "
                    "the original keeps its later messages.")
        cid = resend.cid
        offer = over_context(session.owner, cid, system_prompt, params)
        if offer:
            return {**views.conversation_view(c, wb, session.owner, cid, query), **offer}
        return streaming_view(session.owner, cid, query)

    def start_in_room_left(session, cid, busy, query, draft, *settings):
        """Send the draft (or answer the unanswered question) with max tokens = the room left."""
        if session is None or busy or cid is None:
            return {c.turn: None}
        system_prompt, params = read_settings(*settings)
        question = (draft or "").strip()
        fit = wb.fit(session.owner, cid, system_prompt=system_prompt, draft=question or None)
        if fit.room < MIN_ROOM:
            gr.Warning("There is no room left for an answer: choose pages or analyse in chunks.")
            return {c.turn: None}
        params = {**params, "max_tokens": fit.room}
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        if question:
            wb.add_user_message(session.owner, cid, question)
        elif last_question(wb.messages(session.owner, cid)) is None:
            gr.Warning("Type your question first.")
            return {c.turn: None}
        return {**streaming_view(session.owner, cid, query), c.draft: ""}

    def start_chunked(session, cid, busy, query, draft, *settings):
        """Store the question (the draft, or the one left unanswered) and start the analysis."""
        if session is None or busy:
            return {c.turn: None}
        if cid is None or not wb.documents.attached(session.owner, cid):
            gr.Warning("Attach a document first: the analysis reads the attached documents.")
            return {c.turn: None}
        system_prompt, params = read_settings(*settings)
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        question = (draft or "").strip()
        if question:
            wb.add_user_message(session.owner, cid, question)
        elif last_question(wb.messages(session.owner, cid)) is None:
            gr.Warning("Type your question first: the chunks are summarised for it.")
            return {c.turn: None}
        placeholder = chunk_progress_message("Planning the chunks")
        return {**streaming_view(session.owner, cid, query, placeholder), c.draft: ""}

    def finish(session, cid, busy, query):
        if session is None:
            return views.idle_controls(c)
        return {**views.conversation_view(c, wb, session.owner, cid, query), **views.idle_controls(c)}

    def finish_turn(session, cid, busy, query, turn):
        if turn is None:  # nothing was streamed (refused, or the offer is shown): keep the page
            return views.idle_controls(c)
        return finish(session, cid, busy, query)

    async def stop(request: gr.Request, session, cid, busy, query):
        # The cancelled generator stores the partial answer; wait for it, then redraw.
        await inflight.wait(request.session_hash)
        return await anyio.to_thread.run_sync(finish, session, cid, busy, query)

    common = dict(api_visibility="private", show_progress="hidden")
    direct = make_stream(c, wb, api, inflight, chunked=False)
    chunked = make_stream(c, wb, api, inflight, chunked=True)
    with_draft = context + [c.draft, *c.settings]
    starts = [
        (gr.on([c.send_btn.click, c.draft.submit], start_send, inputs=with_draft,
               outputs=outputs, **common), direct),
        (c.regen_btn.click(start_regenerate, inputs=context + c.settings, outputs=outputs,
                           **common), direct),
        (c.chatbot.edit(start_edit, inputs=context + [c.message_ids, *c.settings],
                        outputs=outputs, **common), direct),
        (c.offer_shorter_btn.click(start_in_room_left, inputs=with_draft, outputs=outputs,
                                   **common), direct),
        (gr.on([c.chunk_btn.click, c.offer_chunks_btn.click], start_chunked, inputs=with_draft,
               outputs=outputs, **common), chunked),
    ]
    streams = []
    for start, stream_fn in starts:
        stream = start.then(
            stream_fn, inputs=[c.session, c.turn], outputs=[c.chatbot, c.headroom],
            concurrency_limit=None, **common,
        )
        done = stream.then(finish_turn, inputs=context + [c.turn], outputs=outputs, **common)
        usage_panel.chain(gauge.chain(done, c, wb), c, wb)
        streams.append(stream)
    # The browser sends the cancel only once the clicked event's own function is done, so the
    # cancel is an event without a function, and the redraw (which waits for the cancelled
    # stream to store its partial answer) follows it.
    stopped = c.stop_btn.click(None, cancels=streams, **common).then(
        stop, inputs=context, outputs=outputs, **common)
    usage_panel.chain(gauge.chain(stopped, c, wb), c, wb)
    c.offer_pages_btn.click(
        lambda: {c.side_tabs: gr.Tabs(selected="documents"), c.offer_row: gr.Column(visible=False)},
        outputs={c.side_tabs, c.offer_row}, **common)

