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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import gradio as gr

from server.workbench.answer import ApiClient
from ui import formatting
from ui.gauge import Gauge, build_gauge
from ui.settings_panel import read_settings
from ui.turn import InFlight, make_stream

if TYPE_CHECKING:  # ui.views composes the areas; an area only takes the page it is given
    from ui.views import Page


def _edited_text(value) -> str:
    """The text of an edited Chatbot message (a string, a text part, or a list of parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("text") or value.get("content") or "")
    if isinstance(value, list):
        return "\n".join(_edited_text(v) for v in value)
    return ""


@dataclass(frozen=True)
class Chat:
    """The chat column: the conversation, the gauge, the over-context offer, the composer."""

    chatbot: gr.Chatbot
    gauge: gr.HTML
    offer_row: gr.Column
    offer_msg: gr.Markdown
    offer_pages_btn: gr.Button
    offer_chunks_btn: gr.Button
    offer_shorter_btn: gr.Button
    draft: gr.Textbox
    send_btn: gr.Button
    stop_btn: gr.Button
    regen_btn: gr.Button

    def controls(self, *, busy: bool) -> dict:
        """Stop shown while an answer streams, Send and Regenerate otherwise."""
        return {
            self.send_btn: gr.Button(visible=not busy),
            self.regen_btn: gr.Button(visible=not busy),
            self.stop_btn: gr.Button(visible=busy),
        }


def build() -> Chat:
    """Create the chat column's components (under the conversation's header)."""
    chatbot = gr.Chatbot(
        value=[],
        elem_id="chatbot",
        show_label=False,
        height="64vh",
        min_height=320,
        editable="user",
        buttons=["copy", "copy_all"],
        feedback_options=None,
        layout="bubble",
        placeholder="**Ask anything.** Answers stream here, with their stats.",
    )
    meter = build_gauge()
    # Shown instead of sending when documents and conversation do not fit the context.
    with gr.Column(visible=False, elem_id="fit-offer") as offer_row:
        offer_msg = gr.Markdown("", elem_id="fit-offer-message")
        with gr.Row():
            offer_pages_btn = gr.Button("Choose pages", size="sm", elem_id="offer-pages")
            offer_chunks_btn = gr.Button(
                "Analyse in chunks", size="sm", variant="primary", elem_id="offer-chunks"
            )
            offer_shorter_btn = gr.Button(
                "Answer in the room left", size="sm", elem_id="offer-shorter"
            )
    with gr.Row(equal_height=True, elem_id="composer"):
        draft = gr.Textbox(
            # lines=1 (growing to max_lines) is what makes Enter send and Shift+Enter start a
            # new line.
            show_label=False,
            lines=1,
            max_lines=12,
            elem_id="draft",
            autofocus=True,
            placeholder="Message (Enter to send, Shift+Enter for a new line)",
            scale=8,
            container=False,
        )
        with gr.Column(scale=1, min_width=130):
            send_btn = gr.Button("Send", variant="primary", elem_id="send-button")
            stop_btn = gr.Button("Stop", variant="stop", visible=False, elem_id="stop-button")
            regen_btn = gr.Button("Regenerate", size="sm", elem_id="regenerate-button")
    return Chat(
        chatbot,
        meter,
        offer_row,
        offer_msg,
        offer_pages_btn,
        offer_chunks_btn,
        offer_shorter_btn,
        draft,
        send_btn,
        stop_btn,
        regen_btn,
    )


def wire(
    chat: Chat,
    page: Page,
    api: ApiClient,
    inflight: InFlight,
    *,
    gauge: Gauge,
    usage_chain: Callable,
    headroom: gr.HTML,
    side_tabs: gr.Tabs,
) -> None:
    """Attach send, stream, stop, regenerate, edit and the over-context offer (`headroom`:
    the usage tab's rate-limit headroom, redrawn as the answer streams)."""
    wb, state, fields = page.wb, page.state, page.settings.fields
    outputs = page.outputs | {chat.draft, chat.offer_msg, chat.offer_shorter_btn}
    context = page.context

    def streaming_view(owner: str, cid: int, query: str, placeholder: dict | None = None) -> dict:
        view = page.conversation_view(owner, cid, query)
        view[chat.chatbot] = view[chat.chatbot] + [placeholder or formatting.streaming_message("")]
        return {**view, **page.busy_controls(cid)}

    def over_context(
        owner: str, cid: int | None, system_prompt: str, params: dict, draft: str | None = None
    ) -> dict | None:
        """The offer, when documents are attached and the request would not fit."""
        fit = wb.overflow(
            owner, cid, system_prompt=system_prompt, draft=draft, max_tokens=params["max_tokens"]
        )
        if fit is None:
            return None
        return {
            chat.offer_row: gr.Column(visible=True),
            chat.offer_msg: formatting.offer_markdown(fit),
            chat.offer_shorter_btn: gr.Button(
                value=f"Answer in the {fit.room:,} tokens left", visible=fit.room_for_answer
            ),
            state.turn: None,
        }

    def start_send(session, cid, busy, query, draft, *settings):
        if session is None or not (draft or "").strip():
            return {state.turn: None}
        if busy:
            # Enter still submits while Send is hidden: keep the draft and say why.
            gr.Warning("An answer is still streaming: wait for it, or stop it, then send.")
            return {state.turn: None}
        system_prompt, params = read_settings(*settings)
        cid, _ = wb.open_conversation(
            session.owner, cid, system_prompt=system_prompt, params=params
        )
        offer = over_context(session.owner, cid, system_prompt, params, draft.strip())
        if offer:  # the draft stays in the box, unsent
            return offer
        # Stored before the model is asked: whatever happens next, the question is kept.
        wb.add_user_message(session.owner, cid, draft.strip())
        return {**streaming_view(session.owner, cid, query), chat.draft: ""}

    def start_regenerate(session, cid, busy, query, *settings):
        if session is None or busy or cid is None:
            return {state.turn: None}
        system_prompt, params = read_settings(*settings)
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        if not wb.drop_last_answer(session.owner, cid):
            gr.Warning("There is no question to answer again yet.")
            return {state.turn: None}
        offer = over_context(session.owner, cid, system_prompt, params)
        if offer:
            return {**page.conversation_view(session.owner, cid, query), **offer}
        return streaming_view(session.owner, cid, query)

    def start_edit(edit: gr.EditData, session, cid, busy, query, message_ids, *settings):
        """Resend an edited question: the last one in place (its answer is replaced); an
        earlier one in a copy of the conversation up to it, so no later answer is lost."""
        if session is None or cid is None:
            return {state.turn: None}
        index = edit.index if isinstance(edit.index, int) else edit.index[0]
        message_id = message_ids[index] if 0 <= index < len(message_ids) else None
        text = _edited_text(edit.value)
        if busy or message_id is None or not text.strip():
            gr.Warning(
                "Nothing was resent: a question cannot be edited while an answer "
                "streams, or left empty."
            )
            # Redraw: the Chatbot already shows the rejected edit.
            return {**page.conversation_view(session.owner, cid, query), state.turn: None}
        system_prompt, params = read_settings(*settings)
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        resend = wb.resend_edited(session.owner, cid, message_id, text)
        if resend is None:
            gr.Warning("Only your own questions can be edited and resent.")
            return {**page.conversation_view(session.owner, cid, query), state.turn: None}
        if resend.branched:
            gr.Info(
                f"The edited question goes on in a new conversation, “{resend.title}”; "
                "the original keeps its later messages."
            )
        cid = resend.cid
        offer = over_context(session.owner, cid, system_prompt, params)
        if offer:
            return {**page.conversation_view(session.owner, cid, query), **offer}
        return streaming_view(session.owner, cid, query)

    def start_in_room_left(session, cid, busy, query, draft, *settings):
        """Send the draft (or answer the unanswered question) with max tokens = the room left."""
        if session is None or busy or cid is None:
            return {state.turn: None}
        system_prompt, params = read_settings(*settings)
        params = wb.in_room_left(
            session.owner,
            cid,
            system_prompt=system_prompt,
            params=params,
            draft=(draft or "").strip() or None,
        )
        if params is None:
            gr.Warning("There is no room left for an answer: choose pages or analyse in chunks.")
            return {state.turn: None}
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        if not wb.question_to_answer(session.owner, cid, draft):
            gr.Warning("Type your question first.")
            return {state.turn: None}
        return {**streaming_view(session.owner, cid, query), chat.draft: ""}

    def start_chunked(session, cid, busy, query, draft, *settings):
        """Store the question (the draft, or the one left unanswered) and start the analysis."""
        if session is None or busy:
            return {state.turn: None}
        if cid is None or not wb.documents.attached(session.owner, cid):
            gr.Warning("Attach a document first: the analysis reads the attached documents.")
            return {state.turn: None}
        system_prompt, params = read_settings(*settings)
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)
        if not wb.question_to_answer(session.owner, cid, draft):
            gr.Warning("Type your question first: the chunks are summarised for it.")
            return {state.turn: None}
        placeholder = formatting.chunk_progress_message("Planning the chunks")
        return {**streaming_view(session.owner, cid, query, placeholder), chat.draft: ""}

    def finish(session, cid, busy, query):
        if session is None:
            return page.idle_controls()
        return {**page.conversation_view(session.owner, cid, query), **page.idle_controls()}

    def finish_turn(session, cid, busy, query, turn):
        if turn is None:
            # Nothing was streamed (refused, or the offer is shown) and nothing was made busy:
            # change nothing. Idle controls here would clear the turn of an answer the offer
            # started meanwhile, and that answer's own redraw (with its stats) would be skipped.
            return {}
        return finish(session, cid, busy, query)

    async def stop(request: gr.Request, session, cid, busy, query):
        # The cancelled generator stores the partial answer; wait for it, then redraw.
        await inflight.wait(request.session_hash)
        return await anyio.to_thread.run_sync(finish, session, cid, busy, query)

    common = dict(api_visibility="private", show_progress="hidden")
    direct = make_stream(wb, api, inflight, chat.chatbot, headroom, chunked=False)
    chunked = make_stream(wb, api, inflight, chat.chatbot, headroom, chunked=True)
    with_draft = context + [chat.draft, *fields]
    chunk_clicks = [page.documents.chunk_btn.click, chat.offer_chunks_btn.click]
    starts = [
        (
            gr.on(
                [chat.send_btn.click, chat.draft.submit],
                start_send,
                inputs=with_draft,
                outputs=outputs,
                **common,
            ),
            direct,
        ),
        (
            chat.regen_btn.click(
                start_regenerate, inputs=context + fields, outputs=outputs, **common
            ),
            direct,
        ),
        (
            chat.chatbot.edit(
                start_edit, inputs=context + [state.message_ids, *fields], outputs=outputs, **common
            ),
            direct,
        ),
        (
            chat.offer_shorter_btn.click(
                start_in_room_left, inputs=with_draft, outputs=outputs, **common
            ),
            direct,
        ),
        (gr.on(chunk_clicks, start_chunked, inputs=with_draft, outputs=outputs, **common), chunked),
    ]
    streams = []
    for start, stream_fn in starts:
        stream = start.then(
            stream_fn,
            inputs=[state.session, state.turn],
            outputs=[chat.chatbot, headroom],
            concurrency_limit=None,
            **common,
        )
        done = stream.then(finish_turn, inputs=context + [state.turn], outputs=outputs, **common)
        usage_chain(gauge.chain(done))
        streams.append(stream)
    # The browser sends the cancel only once the clicked event's own function is done, so the
    # cancel is an event without a function, and the redraw (which waits for the cancelled
    # stream to store its partial answer) follows it.
    stopped = chat.stop_btn.click(None, cancels=streams, **common).then(
        stop, inputs=context, outputs=outputs, **common
    )
    usage_chain(gauge.chain(stopped))
    chat.offer_pages_btn.click(
        lambda: {
            side_tabs: gr.Tabs(selected="documents"),
            chat.offer_row: gr.Column(visible=False),
        },
        outputs={side_tabs, chat.offer_row},
        **common,
    )
