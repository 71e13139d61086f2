"""The browser workbench: a Gradio 6 app that the server mounts at `/`.

`build_ui(services)` (mounted at `/` by `ui.app`) lays the page out (ui.layout) and wires each area (session, sidebar,
conversation actions, chat, settings, documents, gauge, usage). It reaches the model only through our
own /v1 (ui.answer_stream) and storage only through `server.workbench.Workbench`.
"""

from __future__ import annotations

import gradio as gr

from server.services import Services
from server.workbench import Workbench
from ui import (
    chat,
    conversation,
    documents,
    gauge,
    session,
    settings_panel,
    sidebar,
    usage_panel,
)
from ui.answer_stream import ApiClient, InFlight
from ui.layout import build_components

__all__ = ["build_ui"]


def build_ui(services: Services) -> gr.Blocks:
    """The workbench page for the app's services (settings, store, counter, engine)."""
    wb = Workbench(services)
    api = ApiClient(services.settings.self_url, services.settings.tls_cert)
    # Served files (exports, imports) leave Gradio's cache after a day: a redraw makes new ones.
    with gr.Blocks(title="Qwen Workbench", fill_width=True, delete_cache=(3600, 86400)) as demo:
        c = build_components(wb.browser_secret())
        session.wire(c, wb, demo)
        sidebar.wire(c, wb)
        conversation.wire(c, wb)
        chat.wire(c, wb, api, InFlight())
        settings_panel.wire(c, wb)
        documents.wire(c, wb)
        gauge.wire(c, wb)
        usage_panel.wire(c, wb)
    # Many people stream at once: the gateway enforces the per-key limits, not the UI queue.
    demo.queue(default_concurrency_limit=32)
    return demo
