"""The browser workbench: a Gradio 6 app that the server mounts at `/`.

`build_ui(services)` (mounted at `/` by `ui.app`) lays the page out: each area's module builds
its own components in page order (session: sign-in; sidebar; conversation: the header; chat:
the chat, the gauge, the over-context offer, the composer; settings_panel; documents;
usage_panel) and then wires its events, given explicitly the few components of other areas it
needs. `ui.views.Page` is the redraw of one conversation across the areas that show it. The UI
reaches the model only through our own /v1 (`server.workbench.answer`) and storage only through
`server.workbench.Workbench`.
"""

from __future__ import annotations

import gradio as gr

from server.services import Services
from server.workbench import Workbench
from server.workbench.answer import ApiClient
from ui import (
    chat,
    clipboard,
    conversation,
    documents,
    session,
    settings_panel,
    sidebar,
    theme,
    usage_panel,
)
from ui.gauge import Gauge
from ui.turn import InFlight
from ui.views import Page, State

__all__ = ["build_ui"]


def build_ui(services: Services) -> gr.Blocks:
    """The workbench page for the app's services (settings, store, counter, engine)."""
    wb = Workbench(services)
    api = ApiClient(services.settings.self_url, services.settings.tls_cert)
    # Served files (exports, imports) leave Gradio's cache after a day: a redraw makes new ones.
    with gr.Blocks(title="Qwen Workbench", fill_width=True, delete_cache=(3600, 86400)) as demo:
        gr.HTML("", head=theme.head_html(), elem_id="workbench-style", js_on_load=clipboard.COPY_JS)
        state = State.build(wb.browser_secret())
        signin = session.build()
        side = sidebar.build()
        with gr.Column(visible=False, elem_id="workbench") as workbench:
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=480):
                    header = conversation.build()
                    talk = chat.build()
                with gr.Column(scale=1, min_width=300):
                    with gr.Tabs(elem_id="side-tabs") as side_tabs:
                        with gr.Tab("Settings", id="settings", elem_id="settings-tab"):
                            settings = settings_panel.build()
                        with gr.Tab("Documents", id="documents", elem_id="documents-tab"):
                            docs = documents.build()
                        with gr.Tab("Usage", id="usage", elem_id="usage-tab") as usage_tab:
                            usage = usage_panel.build()

        page = Page(wb, state, side, header, talk, settings, docs)
        gauge = Gauge(
            wb,
            inputs=[
                state.session,
                state.conv_id,
                talk.draft,
                settings.system_prompt,
                settings.max_tokens,
            ],
            outputs=[talk.gauge, docs.fit, docs.chunk_btn],
        )
        session.wire(signin, page, workbench, demo, gauge)
        sidebar.wire(side, page, gauge)
        conversation.wire(header, page, gauge)
        usage_chain = usage_panel.wire(usage, wb, state.session, usage_tab)
        chat.wire(
            talk,
            page,
            api,
            InFlight(),
            gauge=gauge,
            usage_chain=usage_chain,
            headroom=usage.headroom,
            side_tabs=side_tabs,
        )
        settings_panel.wire(settings, wb, state.session, state.conv_id)
        documents.wire(docs, page, gauge)
        gauge.wire([talk.draft.change, settings.system_prompt.change, settings.max_tokens.change])
    # Many people stream at once: the gateway enforces the per-key limits, not the UI queue.
    demo.queue(default_concurrency_limit=32)
    return demo
