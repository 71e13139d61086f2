"""The documents tab and the over-context offer: components only, each with a stable elem_id.

`ui.documents` wires the tab's events; `ui.chat` shows the offer and wires its buttons.
"""

from __future__ import annotations

import gradio as gr


def documents_panel() -> dict:
    """The documents tab's components, by name (inside an open gr.Tab)."""
    doc_upload = gr.File(
        label="Upload a PDF", file_types=[".pdf"], type="filepath", height=110,
        elem_id="document-upload",
    )
    doc_progress = gr.HTML("", elem_id="document-progress")
    with gr.Column(visible=False, elem_id="document-password-row") as doc_password_row:
        doc_password = gr.Textbox(
            label="Password of this PDF", type="password", max_lines=1,
            placeholder="Enter to open", elem_id="document-password",
        )
        doc_password_btn = gr.Button("Open with this password", size="sm",
                                     elem_id="document-password-submit")
    doc_status = gr.HTML("", elem_id="document-status")
    doc_attached = gr.CheckboxGroup(
        choices=[], value=[], label="Your documents (ticked: attached to this conversation)",
        elem_id="document-list",
    )
    doc_fit = gr.HTML("", elem_id="document-fit")
    with gr.Group():
        with gr.Row(equal_height=True):
            doc_pages_doc = gr.Dropdown(
                choices=[], value=None, label="Pages of", scale=3, elem_id="document-pages-of",
                allow_custom_value=False,
            )
            doc_pages = gr.Textbox(
                label="Pages to include", placeholder="all, or e.g. 1-3, 7", max_lines=1,
                scale=2, elem_id="document-pages",
            )
    with gr.Row():
        doc_pages_btn = gr.Button("Apply pages", size="sm", scale=2, elem_id="document-pages-apply")
        doc_delete_btn = gr.Button("Delete document", size="sm", scale=1, min_width=110,
                                   elem_id="document-delete")
    doc_pages_msg = gr.Markdown("", elem_id="document-pages-message")
    chunk_btn = gr.Button("Analyse in chunks", visible=False, variant="primary",
                          elem_id="analyse-chunks")
    doc_pending = gr.State(None)
    return dict(locals())


def fit_offer() -> dict:
    """The offer shown under the gauge when a request with documents would not fit."""
    with gr.Column(visible=False, elem_id="fit-offer") as offer_row:
        offer_msg = gr.Markdown("", elem_id="fit-offer-message")
        with gr.Row():
            offer_pages_btn = gr.Button("Choose pages", size="sm", elem_id="offer-pages")
            offer_chunks_btn = gr.Button("Analyse in chunks", size="sm", variant="primary",
                                         elem_id="offer-chunks")
            offer_shorter_btn = gr.Button("Answer in the room left", size="sm",
                                          elem_id="offer-shorter")
    return dict(locals())
