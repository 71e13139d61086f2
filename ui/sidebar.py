"""The sidebar: conversations newest first, full-text search, new conversation, import JSON."""

from __future__ import annotations

import gradio as gr

from server.workbench import ImportFormatError, Workbench
from ui import gauge, views
from ui.layout import Components


def wire(c: Components, wb: Workbench) -> None:
    """Attach open, search, new and import."""
    outputs = views.view_outputs(c)

    def open_conversation(session, cid, busy, query, chosen):
        if session is None:
            return {}
        if busy:
            # The streaming answer redraws the chat: switching now would mix two conversations.
            gr.Warning("An answer is streaming: stop it or wait before switching.")
            return views.sidebar_list(c, wb, session.owner, query, cid)
        return views.conversation_view(c, wb, session.owner, chosen, query)

    def search(session, cid, query):
        if session is None:
            return {}
        return views.sidebar_list(c, wb, session.owner, query, cid)

    def new_conversation(session, cid, busy, query):
        if session is None:
            return {}
        if busy:
            # The Chatbot's trash icon has already emptied the chat in the browser: show the
            # conversation again, the answer so far included (the stream's next update
            # replaces it).
            gr.Warning("An answer is streaming: stop it or wait before starting a new one.")
            return {c.chatbot: views.streaming_chat(wb, session.owner, cid)}
        # The panel's settings carry over: they apply to the first message sent.
        return views.conversation_view(c, wb, session.owner, None, query, settings=False)

    def import_json(session, busy, data: bytes | None):
        if session is None or data is None:
            return {}
        try:
            cid, missing = wb.import_json(session.owner, data)
        except ImportFormatError as exc:
            gr.Warning(f"Not imported: {exc}")
            return {}
        if missing:
            gr.Info(f"Conversation imported. Upload {', '.join(missing)} to attach"
                    f" {'it' if len(missing) == 1 else 'them'} again.")
        else:
            gr.Info("Conversation imported.")
        if busy:
            return views.sidebar_list(c, wb, session.owner, "", None)
        return {**views.conversation_view(c, wb, session.owner, cid, ""), c.search_box: ""}

    common = dict(api_visibility="private", show_progress="hidden")
    opened = c.conv_list.input(
        open_conversation, inputs=[c.session, c.conv_id, c.busy, c.search_box, c.conv_list],
        outputs=outputs, **common,
    )
    c.search_box.change(
        search, inputs=[c.session, c.conv_id, c.search_box], outputs={c.conv_list, c.conv_more},
        trigger_mode="always_last", **common,
    )
    # The Chatbot's own trash icon means the same as "New conversation": nothing is deleted.
    new = gr.on([c.new_btn.click, c.chatbot.clear], new_conversation,
                inputs=[c.session, c.conv_id, c.busy, c.search_box], outputs=outputs, **common)
    imported = c.import_btn.upload(
        import_json, inputs=[c.session, c.busy, c.import_btn], outputs=outputs | {c.search_box},
        **common,
    )
    for event in (opened, new, imported):
        gauge.chain(event, c, wb)
