"""What a browser tab keeps, and what the page shows for one conversation, redrawn from storage.

`State` is the tab's state (server-side, and the sign-in remembered in the browser). `Page` is
the one redraw: every callback that changes which conversation is open, or what it contains,
returns `page.conversation_view(...)`, so the page always shows what is stored. It holds the
areas that redraw touches (sidebar, conversation header, chat, settings, documents tab), each
built by its own module.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from server.sampling import DEFAULT_PARAMS
from server.workbench import Workbench
from ui import formatting
from ui.chat import Chat
from ui.conversation import Header
from ui.documents import DocumentsTab
from ui.settings_panel import SettingsPanel
from ui.sidebar import Sidebar

# localStorage keys of the remembered sign-in and the last open conversation.
KEY_STORAGE = "qwen-workbench-key"
CONVERSATION_STORAGE = "qwen-workbench-conversation"


@dataclass(frozen=True)
class State:
    """Per browser tab: gr.State never leaves the server; gr.BrowserState is the browser's
    localStorage (encrypted), which survives reloads and restarts."""

    session: gr.State  # ui.session.Session | None
    conv_id: gr.State  # open conversation id, None for a new one
    message_ids: gr.State  # ids of the messages shown, in Chatbot order
    busy: gr.State  # an answer is being streamed
    turn: gr.State  # conversation id an answer is about to be streamed for
    saved_key: gr.BrowserState
    saved_conv: gr.BrowserState

    @classmethod
    def build(cls, browser_secret: str) -> State:
        """Create the tab's state (inside an open gr.Blocks)."""
        return cls(
            session=gr.State(None),
            conv_id=gr.State(None),
            message_ids=gr.State([]),
            busy=gr.State(False),
            turn=gr.State(None),
            saved_key=gr.BrowserState(None, storage_key=KEY_STORAGE, secret=browser_secret),
            saved_conv=gr.BrowserState(
                None, storage_key=CONVERSATION_STORAGE, secret=browser_secret
            ),
        )


@dataclass(frozen=True)
class Page:
    """The redraw of one conversation across the areas that show it."""

    wb: Workbench
    state: State
    sidebar: Sidebar
    header: Header
    chat: Chat
    settings: SettingsPanel
    documents: DocumentsTab

    @property
    def context(self) -> list:
        """What most callbacks start from: session, open conversation, busy, search query."""
        return [self.state.session, self.state.conv_id, self.state.busy, self.sidebar.search_box]

    def sidebar_list(self, owner: str, query: str, cid: int | None) -> dict:
        """The sidebar's list (search results or the newest conversations)."""
        return self.sidebar.listing(self.wb, owner, query, cid)

    def documents_view(self, owner: str, cid: int | None, chosen: int | None = None) -> dict:
        """The documents tab for `cid`; the over-context offer goes (the pages may change)."""
        return {
            **self.documents.show(self.wb, owner, cid, chosen),
            self.chat.offer_row: gr.Column(visible=False),
        }

    def conversation_view(
        self, owner: str, cid: int | None, query: str = "", *, settings: bool = True
    ) -> dict:
        """Updates that show conversation `cid` (None or not the owner's: a new, empty one).

        With `settings=False` the settings panel keeps its values (a new conversation started
        from the panel inherits them).
        """
        conversation = self.wb.get_conversation(owner, cid) if cid is not None else None
        if conversation is None:
            cid, messages = None, []
            system_prompt, params = "", dict(DEFAULT_PARAMS)
        else:
            messages = self.wb.messages(owner, cid)
            system_prompt, params = conversation["system_prompt"], conversation["params"]
        state = self.state
        return {
            state.conv_id: cid,
            # Wrapped: the browser only stores truthy values (None would leave the old one).
            state.saved_conv: {"id": cid},
            state.message_ids: formatting.shown_message_ids(messages),
            self.chat.chatbot: formatting.chat_messages(messages),
            **self.header.show(self.wb, owner, conversation),
            **(self.settings.show(system_prompt, params) if settings else {}),
            **self.sidebar_list(owner, query, cid),
            **self.documents_view(owner, cid),
        }

    def streaming_chat(self, owner: str, cid: int | None) -> list[dict]:
        """The chat of a conversation whose answer is streaming: stored messages, then the
        answer so far (stored while it streams) or a waiting placeholder."""
        messages = self.wb.messages(owner, cid) if cid is not None else []
        shown = formatting.chat_messages(messages)
        if not messages or messages[-1]["role"] != "assistant":
            shown.append(formatting.streaming_message(""))
        return shown

    def idle_controls(self) -> dict:
        """Send/Regenerate shown, Stop hidden: no answer is streaming."""
        return {self.state.busy: False, self.state.turn: None, **self.chat.controls(busy=False)}

    def busy_controls(self, cid: int) -> dict:
        """Stop shown while an answer for `cid` streams; Send and Regenerate hidden."""
        return {self.state.busy: True, self.state.turn: cid, **self.chat.controls(busy=True)}

    @property
    def outputs(self) -> set:
        """Every component conversation_view and the control helpers may update."""
        state = self.state
        return {
            state.conv_id,
            state.saved_conv,
            state.message_ids,
            state.busy,
            state.turn,
            self.chat.chatbot,
            self.chat.send_btn,
            self.chat.regen_btn,
            self.chat.stop_btn,
            *self.header.shown,
            *self.settings.fields,
            self.sidebar.conv_list,
            self.sidebar.conv_more,
            *self.document_outputs,
        }

    @property
    def document_outputs(self) -> set:
        """Every component documents_view updates."""
        return {*self.documents.shown, self.chat.offer_row}
