"""The documents tab: upload a PDF (with a progress bar), attach documents, choose pages.

An upload is read in a worker thread (`wb.documents.upload`), which reports pages as they
are stored; the callback polls that and redraws the progress bar. The finished document is
attached to the open conversation (a new conversation is created for it if none is open).
A password-protected PDF keeps its upload waiting while the person types the password.
Every unreadable file shows its own message and leaves nothing stored (ingestion's promise).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import gradio as gr

from server.documents.errors import DocumentError, EncryptedPdfError, WrongPasswordError
from server.workbench import NotFoundError, Workbench
from ui.formatting import document_choices, document_html, error_html, progress_html
from ui.gauge import Gauge
from ui.settings_panel import read_settings

if TYPE_CHECKING:  # ui.views composes the areas; an area only takes the page it is given
    from ui.views import Page

POLL_SECONDS = 0.2


class UploadProgress:
    """Pages done / total, written by the ingesting thread, read by the callback.

    Setting `cancelled` makes the next report raise, which makes ingestion discard the
    half-stored document (the person left, or the event was cancelled).
    """

    def __init__(self):
        self.done: int | None = None
        self.total: int | None = None
        self.cancelled = threading.Event()

    def __call__(self, done: int, total: int) -> None:
        if self.cancelled.is_set():
            raise RuntimeError("upload cancelled")
        self.done, self.total = done, total


@dataclass(frozen=True)
class DocumentsTab:
    """The documents tab's components."""

    upload: gr.File
    progress: gr.HTML
    password_row: gr.Column
    password: gr.Textbox
    password_btn: gr.Button
    status: gr.HTML
    attached: gr.CheckboxGroup
    fit: gr.HTML  # drawn by the gauge
    pages_doc: gr.Dropdown
    pages: gr.Textbox
    pages_btn: gr.Button
    delete_btn: gr.Button
    pages_msg: gr.Markdown
    chunk_btn: gr.Button  # shown by the gauge, wired by the chat
    pending: gr.State  # (path, filename) of an upload waiting for its password

    @property
    def shown(self) -> list:
        """What `show` updates."""
        return [self.attached, self.pages_doc, self.pages]

    def show(self, wb: Workbench, owner: str, cid: int | None, chosen: int | None = None) -> dict:
        """The tab for conversation `cid`: the owner's documents (attached ones ticked) and the
        page ranges of one attached document (`chosen`, else the first)."""
        attached = wb.documents.attached(owner, cid)
        ids = [a.id for a in attached]
        pick = chosen if chosen in ids else (ids[0] if ids else None)
        return {
            self.attached: gr.CheckboxGroup(
                choices=document_choices(wb.documents.list_documents(owner)), value=ids
            ),
            self.pages_doc: gr.Dropdown(choices=[(a.filename, a.id) for a in attached], value=pick),
            self.pages: next((a.spec for a in attached if a.id == pick), ""),
        }


def build() -> DocumentsTab:
    """Create the tab's components (inside the documents tab)."""
    upload = gr.File(
        label="Upload a PDF",
        file_types=[".pdf"],
        type="filepath",
        height=110,
        elem_id="document-upload",
    )
    progress = gr.HTML("", elem_id="document-progress")
    with gr.Column(visible=False, elem_id="document-password-row") as password_row:
        password = gr.Textbox(
            label="Password of this PDF",
            type="password",
            max_lines=1,
            placeholder="Enter to open",
            elem_id="document-password",
        )
        password_btn = gr.Button(
            "Open with this password", size="sm", elem_id="document-password-submit"
        )
    status = gr.HTML("", elem_id="document-status")
    attached = gr.CheckboxGroup(
        choices=[],
        value=[],
        label="Your documents (ticked: attached to this conversation)",
        elem_id="document-list",
    )
    fit = gr.HTML("", elem_id="document-fit")
    with gr.Group():
        with gr.Row(equal_height=True):
            pages_doc = gr.Dropdown(
                choices=[],
                value=None,
                label="Pages of",
                scale=3,
                elem_id="document-pages-of",
                allow_custom_value=False,
            )
            pages = gr.Textbox(
                label="Pages to include",
                placeholder="all, or e.g. 1-3, 7",
                max_lines=1,
                scale=2,
                elem_id="document-pages",
            )
    with gr.Row():
        pages_btn = gr.Button("Apply pages", size="sm", scale=2, elem_id="document-pages-apply")
        delete_btn = gr.Button(
            "Delete document", size="sm", scale=1, min_width=110, elem_id="document-delete"
        )
    pages_msg = gr.Markdown("", elem_id="document-pages-message")
    chunk_btn = gr.Button(
        "Analyse in chunks", visible=False, variant="primary", elem_id="analyse-chunks"
    )
    return DocumentsTab(
        upload,
        progress,
        password_row,
        password,
        password_btn,
        status,
        attached,
        fit,
        pages_doc,
        pages,
        pages_btn,
        delete_btn,
        pages_msg,
        chunk_btn,
        pending=gr.State(None),
    )


def wire(tab: DocumentsTab, page: Page, gauge: Gauge) -> None:
    """Attach upload, password, attach/detach, page ranges and delete."""
    wb, view_outputs, fields = page.wb, page.outputs, page.settings.fields
    upload_outputs = view_outputs | {
        tab.progress,
        tab.status,
        tab.password_row,
        tab.password,
        tab.pending,
        tab.upload,
        tab.pages_msg,
    }

    def conversation_for(owner: str, cid: int | None, settings: tuple) -> tuple[int, bool]:
        system_prompt, params = read_settings(*settings)
        return wb.open_conversation(
            owner, cid, system_prompt=system_prompt, params=params, keep_settings=True
        )

    def redraw(owner: str, cid: int, busy: bool, created: bool, query: str) -> dict:
        if created and not busy:  # the new conversation opens (its settings are the panel's)
            return page.conversation_view(owner, cid, query, settings=False)
        return page.documents_view(owner, cid)

    async def ingest(session, cid, busy, query, pending, password, settings):
        path, filename = pending
        progress = UploadProgress()
        task = asyncio.ensure_future(
            anyio.to_thread.run_sync(
                partial(
                    wb.documents.upload,
                    session.owner,
                    path,
                    filename=filename,
                    password=password or None,
                    progress=progress,
                )
            )
        )
        # The previous upload's result goes: this one's progress replaces it.
        yield {tab.status: "", tab.pages_msg: ""}
        try:
            while not task.done():
                yield {tab.progress: progress_html(progress.done, progress.total, filename)}
                await asyncio.wait({task}, timeout=POLL_SECONDS)
        finally:
            if not task.done():
                progress.cancelled.set()
        try:
            document = task.result()
        except (EncryptedPdfError, WrongPasswordError) as exc:
            yield {
                tab.progress: "",
                tab.status: error_html(str(exc)),
                tab.pending: pending,
                tab.password_row: gr.Column(visible=True),
                tab.password: "",
            }
            return
        except DocumentError as exc:
            yield {
                tab.progress: "",
                tab.status: error_html(str(exc)),
                tab.pending: None,
                tab.password_row: gr.Column(visible=False),
                tab.upload: None,
            }
            return
        cid, created = await anyio.to_thread.run_sync(
            conversation_for, session.owner, cid, settings
        )
        await anyio.to_thread.run_sync(wb.documents.attach, session.owner, cid, document["id"])
        view = await anyio.to_thread.run_sync(redraw, session.owner, cid, busy, created, query)
        done = progress.total or document["page_count"]
        yield {
            **view,
            tab.progress: progress_html(done, done, document["filename"], finished=True),
            tab.status: document_html(document, wb.max_context),
            tab.pending: None,
            tab.password_row: gr.Column(visible=False),
            tab.password: "",
            tab.upload: None,
            tab.pages_msg: "",
        }

    async def upload(session, cid, busy, query, path, *settings):
        if session is None or not path:
            return
        pending = (path, Path(path).name)
        async for update in ingest(session, cid, busy, query, pending, None, settings):
            yield update

    async def open_with_password(session, cid, busy, query, pending, password, *settings):
        if session is None or not pending:
            return
        if not password:
            yield {tab.status: error_html("Type the PDF's password, then press Open.")}
            return
        async for update in ingest(session, cid, busy, query, pending, password, settings):
            yield update

    def set_attached(session, cid, busy, query, ids, *settings):
        if session is None:
            return {}
        ids = [int(i) for i in ids or []]
        if cid is None and not ids:
            return page.documents_view(session.owner, None)
        cid, created = conversation_for(session.owner, cid, settings)
        try:
            wb.documents.set_attached(session.owner, cid, ids)
        except NotFoundError:
            gr.Warning("That document is gone (deleted in another tab?): the list is redrawn.")
        return redraw(session.owner, cid, busy, created, query)

    def show_pages(session, cid, chosen):
        if session is None:
            return {}
        return {**page.documents_view(session.owner, cid, chosen), tab.pages_msg: ""}

    def apply_pages(session, cid, chosen, spec):
        if session is None or cid is None or chosen is None:
            return {tab.pages_msg: "Attach a document first, then choose its pages."}
        try:
            stored = wb.documents.set_pages(session.owner, cid, int(chosen), spec)
        except ValueError as exc:
            return {tab.pages_msg: f"⚠ Not applied: {exc}."}
        attached = {a.id: a for a in wb.documents.attached(session.owner, cid)}
        chosen_doc = attached[int(chosen)]
        what = f"pages {stored}" if stored else "all pages"
        return {
            **page.documents_view(session.owner, cid, int(chosen)),
            tab.pages_msg: f"Using {what} of **{chosen_doc.filename}**: "
            f"{chosen_doc.tokens:,} tokens.",
        }

    def delete(session, cid, chosen):
        if session is None or chosen is None:
            return {tab.pages_msg: "Choose an attached document to delete."}
        document = wb.documents.get(session.owner, int(chosen))
        wb.documents.delete(session.owner, int(chosen))
        name = document["filename"] if document else "The document"
        return {
            **page.documents_view(session.owner, cid),
            tab.pages_msg: f"Deleted **{name}** (from every conversation).",
            tab.status: "",
        }

    common = dict(api_visibility="private", show_progress="hidden")
    context, shown = page.context, [page.state.session, page.state.conv_id]
    uploaded = tab.upload.upload(
        upload, inputs=context + [tab.upload, *fields], outputs=upload_outputs, **common
    )
    # Removing the file from the upload box drops an upload that waits for its password.
    tab.upload.clear(
        lambda: {tab.pending: None, tab.password_row: gr.Column(visible=False), tab.password: ""},
        outputs={tab.pending, tab.password_row, tab.password},
        **common,
    )
    opened = gr.on(
        [tab.password_btn.click, tab.password.submit],
        open_with_password,
        inputs=context + [tab.pending, tab.password, *fields],
        outputs=upload_outputs,
        **common,
    )
    attached = tab.attached.input(
        set_attached, inputs=context + [tab.attached, *fields], outputs=view_outputs, **common
    )
    tab.pages_doc.input(
        show_pages,
        inputs=shown + [tab.pages_doc],
        outputs=page.document_outputs | {tab.pages_msg},
        **common,
    )
    pages = gr.on(
        [tab.pages_btn.click, tab.pages.submit],
        apply_pages,
        inputs=shown + [tab.pages_doc, tab.pages],
        outputs=page.document_outputs | {tab.pages_msg},
        **common,
    )
    deleted = tab.delete_btn.click(
        delete,
        inputs=shown + [tab.pages_doc],
        outputs=page.document_outputs | {tab.pages_msg, tab.status},
        **common,
    )
    for event in (uploaded, opened, attached, pages, deleted):
        gauge.chain(event)
