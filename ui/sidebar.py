"""The sidebar: conversations newest first, full-text search, new conversation, import JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from server.workbench import ImportFormatError, Workbench
from ui import formatting
from ui.gauge import Gauge

if TYPE_CHECKING:  # ui.views composes the areas; an area only takes the page it is given
    from ui.views import Page

# The sidebar lists this many conversations (newest first); search reaches every one.
SIDEBAR_CONVERSATIONS = 200


@dataclass(frozen=True)
class Sidebar:
    """The sidebar's components (the sign-in shows and hides `panel`)."""

    panel: gr.Sidebar
    new_btn: gr.Button
    search_box: gr.Textbox
    conv_list: gr.Radio
    conv_more: gr.Markdown
    import_btn: gr.UploadButton
    whoami: gr.Markdown
    signout_btn: gr.Button

    def listing(self, wb: Workbench, owner: str, query: str, cid: int | None) -> dict:
        """The list: search results while there is a query, else the newest
        SIDEBAR_CONVERSATIONS conversations (with a note saying how many more search finds)."""
        more = ""
        if query and query.strip():
            choices = formatting.search_choices(wb.search(owner, query))
        else:
            shown = wb.list_conversations(owner, limit=SIDEBAR_CONVERSATIONS + 1)
            if len(shown) > SIDEBAR_CONVERSATIONS:
                shown = shown[:SIDEBAR_CONVERSATIONS]
                total = wb.count_conversations(owner)
                more = (
                    f"The newest {SIDEBAR_CONVERSATIONS} of {total:,} conversations: "
                    "search finds the others."
                )
            choices = formatting.conversation_choices(shown)
        value = cid if any(v == cid for _, v in choices) else None
        return {self.conv_list: gr.Radio(choices=choices, value=value), self.conv_more: more}


def build() -> Sidebar:
    """Create the sidebar (hidden until sign-in)."""
    with gr.Sidebar(visible=False, elem_id="sidebar", width=300) as panel:
        gr.Markdown("### Qwen Workbench", elem_id="app-title")
        new_btn = gr.Button("+ New conversation", variant="primary", elem_id="new-conversation")
        search_box = gr.Textbox(
            placeholder="Search conversations…",
            show_label=False,
            elem_id="conversation-search",
            max_lines=1,
        )
        conv_list = gr.Radio(
            choices=[],
            value=None,
            show_label=False,
            elem_id="conversation-list",
            container=False,
        )
        conv_more = gr.Markdown("", elem_id="conversation-more")
        import_btn = gr.UploadButton(
            "Import JSON",
            file_types=[".json"],
            type="binary",
            size="sm",
            elem_id="import-json",
        )
        whoami = gr.Markdown("", elem_id="whoami")
        signout_btn = gr.Button("Sign out", size="sm", elem_id="signout-button")
    return Sidebar(
        panel, new_btn, search_box, conv_list, conv_more, import_btn, whoami, signout_btn
    )


def wire(sidebar: Sidebar, page: Page, gauge: Gauge) -> None:
    """Attach open, search, new and import."""
    wb, outputs, state = page.wb, page.outputs, page.state

    def open_conversation(session, cid, busy, query, chosen):
        if session is None:
            return {}
        if busy:
            # The streaming answer redraws the chat: switching now would mix two conversations.
            gr.Warning("An answer is streaming: stop it or wait before switching.")
            return page.sidebar_list(session.owner, query, cid)
        return page.conversation_view(session.owner, chosen, query)

    def search(session, cid, query):
        if session is None:
            return {}
        return page.sidebar_list(session.owner, query, cid)

    def new_conversation(session, cid, busy, query):
        if session is None:
            return {}
        if busy:
            # The Chatbot's trash icon has already emptied the chat in the browser: show the
            # conversation again, the answer so far included (the stream's next update
            # replaces it).
            gr.Warning("An answer is streaming: stop it or wait before starting a new one.")
            return {page.chat.chatbot: page.streaming_chat(session.owner, cid)}
        # The panel's settings carry over: they apply to the first message sent.
        return page.conversation_view(session.owner, None, query, settings=False)

    def import_json(session, busy, data: bytes | None):
        if session is None or data is None:
            return {}
        try:
            cid, missing = wb.import_json(session.owner, data)
        except ImportFormatError as exc:
            gr.Warning(f"Not imported: {exc}")
            return {}
        if missing:
            gr.Info(
                f"Conversation imported. Upload {', '.join(missing)} to attach"
                f" {'it' if len(missing) == 1 else 'them'} again."
            )
        else:
            gr.Info("Conversation imported.")
        if busy:
            return page.sidebar_list(session.owner, "", None)
        return {**page.conversation_view(session.owner, cid, ""), sidebar.search_box: ""}

    common = dict(api_visibility="private", show_progress="hidden")
    opened = sidebar.conv_list.input(
        open_conversation,
        inputs=page.context + [sidebar.conv_list],
        outputs=outputs,
        **common,
    )
    sidebar.search_box.change(
        search,
        inputs=[state.session, state.conv_id, sidebar.search_box],
        outputs={sidebar.conv_list, sidebar.conv_more},
        trigger_mode="always_last",
        **common,
    )
    # The Chatbot's own trash icon means the same as "New conversation": nothing is deleted.
    new = gr.on(
        [sidebar.new_btn.click, page.chat.chatbot.clear],
        new_conversation,
        inputs=page.context,
        outputs=outputs,
        **common,
    )
    imported = sidebar.import_btn.upload(
        import_json,
        inputs=[state.session, state.busy, sidebar.import_btn],
        outputs=outputs | {sidebar.search_box},
        **common,
    )
    for event in (opened, new, imported):
        gauge.chain(event)
