"""The components of the workbench page, created in layout order, each with a stable elem_id.

`build_components` only lays the page out; the modules named for each area wire the events.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from server.sampling import DEFAULT_PARAMS, MIN_TOP_P
from ui import clipboard, formatting, theme
from ui.document_layout import documents_panel, fit_offer

# localStorage keys of the remembered sign-in and the last open conversation.
KEY_STORAGE = "qwen-workbench-key"
CONVERSATION_STORAGE = "qwen-workbench-conversation"


@dataclass
class Components:
    """Every component the callbacks read or update."""

    # Server-side, per browser tab (gr.State never leaves the server).
    session: gr.State  # ui.session.Session | None
    conv_id: gr.State  # open conversation id, None for a new one
    message_ids: gr.State  # ids of the messages shown, in Chatbot order
    busy: gr.State  # an answer is being streamed
    turn: gr.State  # conversation id an answer is about to be streamed for
    # In the browser's localStorage (encrypted): survives reloads and restarts.
    saved_key: gr.BrowserState
    saved_conv: gr.BrowserState
    # Sign-in
    signin_panel: gr.Column
    key_box: gr.Textbox
    signin_btn: gr.Button
    signin_msg: gr.Markdown
    # Sidebar
    sidebar: gr.Sidebar
    new_btn: gr.Button
    search_box: gr.Textbox
    conv_list: gr.Radio
    conv_more: gr.Markdown
    import_btn: gr.UploadButton
    whoami: gr.Markdown
    signout_btn: gr.Button
    # Conversation
    workbench: gr.Column
    title_box: gr.Textbox
    rename_btn: gr.Button
    delete_btn: gr.Button
    confirm_row: gr.Row
    confirm_msg: gr.Markdown
    confirm_btn: gr.Button
    cancel_btn: gr.Button
    export_md: gr.DownloadButton
    export_json: gr.DownloadButton
    chatbot: gr.Chatbot
    gauge: gr.HTML
    draft: gr.Textbox
    send_btn: gr.Button
    stop_btn: gr.Button
    regen_btn: gr.Button
    # Settings
    system_prompt: gr.Textbox
    temperature: gr.Slider
    top_p: gr.Slider
    max_tokens: gr.Number
    presence: gr.Slider
    frequency: gr.Slider
    stop_seqs: gr.Textbox
    reset_btn: gr.Button
    # Usage
    usage_range: gr.Radio
    usage_refresh: gr.Button
    usage_requests: gr.BarPlot
    usage_tokens: gr.LinePlot
    usage_totals: gr.Markdown
    headroom: gr.HTML
    # Documents (PDFs attached to the conversation)
    doc_upload: gr.File
    doc_progress: gr.HTML
    doc_password_row: gr.Column
    doc_password: gr.Textbox
    doc_password_btn: gr.Button
    doc_pending: gr.State  # (path, filename) of an upload waiting for its password
    doc_status: gr.HTML
    doc_attached: gr.CheckboxGroup
    doc_pages_doc: gr.Dropdown
    doc_pages: gr.Textbox
    doc_pages_btn: gr.Button
    doc_pages_msg: gr.Markdown
    doc_fit: gr.HTML
    chunk_btn: gr.Button
    doc_delete_btn: gr.Button
    # Shown instead of sending when documents and conversation do not fit the context.
    offer_row: gr.Column
    offer_msg: gr.Markdown
    offer_pages_btn: gr.Button
    offer_chunks_btn: gr.Button
    offer_shorter_btn: gr.Button
    # The right-hand tabs: settings, documents, usage.
    side_tabs: gr.Tabs
    documents_tab: gr.Tab
    usage_tab: gr.Tab

    @property
    def settings(self) -> list:
        """The settings inputs, in the order ui.settings_panel reads them."""
        return [
            self.system_prompt, self.temperature, self.top_p, self.max_tokens,
            self.presence, self.frequency, self.stop_seqs,
        ]


def _signin() -> tuple:
    # Hidden until the page's load event has tried the remembered key: no sign-in flash.
    with gr.Column(elem_id="signin-panel", visible=False) as panel:
        gr.Markdown("## Qwen Workbench\nSign in with your API key (the same key as for `/v1`).")
        key_box = gr.Textbox(
            label="API key", type="password", placeholder="wb-…", elem_id="signin-key",
            max_lines=1,
        )
        signin_btn = gr.Button("Sign in", variant="primary", elem_id="signin-button")
        signin_msg = gr.Markdown("", elem_id="signin-message")
    return panel, key_box, signin_btn, signin_msg


def _sidebar() -> tuple:
    with gr.Sidebar(visible=False, elem_id="sidebar", width=300) as sidebar:
        gr.Markdown("### Qwen Workbench", elem_id="app-title")
        new_btn = gr.Button("+ New conversation", variant="primary", elem_id="new-conversation")
        search_box = gr.Textbox(
            placeholder="Search conversations…", show_label=False, elem_id="conversation-search",
            max_lines=1,
        )
        conv_list = gr.Radio(
            choices=[], value=None, show_label=False, elem_id="conversation-list",
            container=False,
        )
        conv_more = gr.Markdown("", elem_id="conversation-more")
        import_btn = gr.UploadButton(
            "Import JSON", file_types=[".json"], type="binary", size="sm",
            elem_id="import-json",
        )
        whoami = gr.Markdown("", elem_id="whoami")
        signout_btn = gr.Button("Sign out", size="sm", elem_id="signout-button")
    return sidebar, new_btn, search_box, conv_list, conv_more, import_btn, whoami, signout_btn


def _settings() -> tuple:
    d = DEFAULT_PARAMS
    system_prompt = gr.Textbox(
        label="System prompt", lines=4, max_lines=12, elem_id="system-prompt",
        placeholder="Optional instructions for the model",
    )
    temperature = gr.Slider(0, 2, value=d["temperature"], step=0.05, label="Temperature",
                            elem_id="temperature")
    top_p = gr.Slider(MIN_TOP_P, 1, value=d["top_p"], step=0.01, label="Top p", elem_id="top-p")
    # No fixed maximum: the context limit is the engine's, known once the app runs.
    max_tokens = gr.Number(value=d["max_tokens"], precision=0, minimum=1, label="Max tokens",
                           elem_id="max-tokens")
    presence = gr.Slider(-2, 2, value=d["presence_penalty"], step=0.1, label="Presence penalty",
                         elem_id="presence-penalty")
    frequency = gr.Slider(-2, 2, value=d["frequency_penalty"], step=0.1,
                          label="Frequency penalty", elem_id="frequency-penalty")
    stop_seqs = gr.Textbox(label="Stop sequences (one per line, up to 4)", lines=2,
                           elem_id="stop-sequences")
    reset_btn = gr.Button("Reset to defaults", size="sm", elem_id="settings-reset")
    return system_prompt, temperature, top_p, max_tokens, presence, frequency, stop_seqs, reset_btn


def _usage() -> tuple:
    headroom = gr.HTML(formatting.headroom_html(None), elem_id="rate-limit-headroom")
    with gr.Row():
        usage_range = gr.Radio(
            [("1 h", "1h"), ("24 h", "24h"), ("7 d", "7d")], value="1h", show_label=False,
            elem_id="usage-range", container=False, scale=3,
        )
        usage_refresh = gr.Button("Refresh", size="sm", elem_id="usage-refresh", scale=1)
    usage_totals = gr.Markdown("", elem_id="usage-totals")
    usage_requests = gr.BarPlot(
        x="time", y="requests", color="outcome", title="Requests", height=200,
        elem_id="usage-requests", x_title="", y_title="requests",
        color_map={"ok": "#2563eb", "error": "#dc2626"},
    )
    usage_tokens = gr.LinePlot(
        x="time", y="tokens", color="kind", title="Tokens", height=200,
        elem_id="usage-tokens", x_title="", y_title="tokens",
    )
    return usage_range, usage_refresh, usage_requests, usage_tokens, usage_totals, headroom


def build_components(browser_secret: str) -> Components:
    """Create the page (inside an open gr.Blocks) and return its components."""
    gr.HTML("", head=theme.head_html(), elem_id="workbench-style", js_on_load=clipboard.COPY_JS)
    session = gr.State(None)
    conv_id = gr.State(None)
    message_ids = gr.State([])
    busy = gr.State(False)
    turn = gr.State(None)
    saved_key = gr.BrowserState(None, storage_key=KEY_STORAGE, secret=browser_secret)
    saved_conv = gr.BrowserState(None, storage_key=CONVERSATION_STORAGE, secret=browser_secret)

    signin_panel, key_box, signin_btn, signin_msg = _signin()
    sidebar, new_btn, search_box, conv_list, conv_more, import_btn, whoami, signout_btn = (
        _sidebar())

    with gr.Column(visible=False, elem_id="workbench") as workbench:
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=480):
                with gr.Row(elem_id="conversation-header"):
                    title_box = gr.Textbox(
                        show_label=False, placeholder="New conversation", scale=5,
                        elem_id="conversation-title", max_lines=1, container=False,
                    )
                    rename_btn = gr.Button("Rename", size="sm", scale=0, min_width=80,
                                           elem_id="rename-button")
                    export_md = gr.DownloadButton("⇩ Markdown", size="sm", scale=0, min_width=110,
                                                  interactive=False, elem_id="export-markdown")
                    export_json = gr.DownloadButton("⇩ JSON", size="sm", scale=0, min_width=80,
                                                    interactive=False, elem_id="export-json")
                    delete_btn = gr.Button("Delete", size="sm", scale=0, variant="stop", min_width=80,
                                           interactive=False, elem_id="delete-button")
                with gr.Row(visible=False, elem_id="delete-confirm-row") as confirm_row:
                    confirm_msg = gr.Markdown("", elem_id="delete-confirm-message")
                    confirm_btn = gr.Button("Delete for good", variant="stop", size="sm",
                                            scale=0, elem_id="delete-confirm")
                    cancel_btn = gr.Button("Keep it", size="sm", scale=0, elem_id="delete-cancel")
                chatbot = gr.Chatbot(
                    value=[], elem_id="chatbot", show_label=False, height="64vh",
                    min_height=320, editable="user", buttons=["copy", "copy_all"],
                    feedback_options=None, layout="bubble",
                    placeholder="**Ask anything.** Answers stream here, with their stats.",
                )
                gauge = gr.HTML(formatting.gauge_html(None, 0), elem_id="context-gauge")
                offer = fit_offer()
                with gr.Row(equal_height=True, elem_id="composer"):
                    draft = gr.Textbox(
                        # lines=1 (growing to max_lines) is what makes Enter send and
                        # Shift+Enter start a new line.
                        show_label=False, lines=1, max_lines=12, elem_id="draft", autofocus=True,
                        placeholder="Message (Enter to send, Shift+Enter for a new line)",
                        scale=8, container=False,
                    )
                    with gr.Column(scale=1, min_width=130):
                        send_btn = gr.Button("Send", variant="primary", elem_id="send-button")
                        stop_btn = gr.Button("Stop", variant="stop", visible=False,
                                             elem_id="stop-button")
                        regen_btn = gr.Button("Regenerate", size="sm", elem_id="regenerate-button")
            with gr.Column(scale=1, min_width=300):
                with gr.Tabs(elem_id="side-tabs") as side_tabs:
                    with gr.Tab("Settings", id="settings", elem_id="settings-tab"):
                        settings = _settings()
                    with gr.Tab("Documents", id="documents", elem_id="documents-tab") as documents_tab:
                        documents = documents_panel()
                    with gr.Tab("Usage", id="usage", elem_id="usage-tab") as usage_tab:
                        usage = _usage()
    system_prompt, temperature, top_p, max_tokens, presence, frequency, stop_seqs, reset_btn = settings
    usage_range, usage_refresh, usage_requests, usage_tokens, usage_totals, headroom = usage
    names = Components.__dataclass_fields__
    found = {**locals(), **documents, **offer}
    return Components(**{name: value for name, value in found.items() if name in names})
