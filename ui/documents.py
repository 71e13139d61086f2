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
from functools import partial
from pathlib import Path

import anyio
import gradio as gr

from server.documents.errors import DocumentError, EncryptedPdfError, WrongPasswordError
from server.workbench import NotFoundError, Workbench
from ui import gauge, views
from ui.document_formatting import document_html, error_html, progress_html
from ui.layout import Components
from ui.settings_panel import read_settings

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


def _conversation_for(wb: Workbench, owner: str, cid: int | None, settings: tuple) -> tuple[int, bool]:
    """The open conversation, or a new one with the panel's settings; (id, created)."""
    if cid is not None and wb.get_conversation(owner, cid) is not None:
        return cid, False
    system_prompt, params = read_settings(*settings)
    return wb.create_conversation(owner, system_prompt=system_prompt, params=params), True


def wire(c: Components, wb: Workbench) -> None:
    """Attach upload, password, attach/detach, page ranges and delete."""
    view_outputs = views.view_outputs(c)
    upload_outputs = view_outputs | {
        c.doc_progress, c.doc_status, c.doc_password_row, c.doc_password, c.doc_pending,
        c.doc_upload, c.doc_pages_msg,
    }

    def redraw(owner: str, cid: int, busy: bool, created: bool, query: str) -> dict:
        if created and not busy:  # the new conversation opens (its settings are the panel's)
            return views.conversation_view(c, wb, owner, cid, query, settings=False)
        return views.documents_view(c, wb, owner, cid)

    async def ingest(session, cid, busy, query, pending, password, settings):
        path, filename = pending
        progress = UploadProgress()
        task = asyncio.ensure_future(anyio.to_thread.run_sync(partial(
            wb.documents.upload, session.owner, path, filename=filename,
            password=password or None, progress=progress)))
        # The previous upload's result goes: this one's progress replaces it.
        yield {c.doc_status: "", c.doc_pages_msg: ""}
        try:
            while not task.done():
                yield {c.doc_progress: progress_html(progress.done, progress.total, filename)}
                await asyncio.wait({task}, timeout=POLL_SECONDS)
        finally:
            if not task.done():
                progress.cancelled.set()
        try:
            document = task.result()
        except (EncryptedPdfError, WrongPasswordError) as exc:
            yield {c.doc_progress: "", c.doc_status: error_html(str(exc)), c.doc_pending: pending,
                   c.doc_password_row: gr.Column(visible=True), c.doc_password: ""}
            return
        except DocumentError as exc:
            yield {c.doc_progress: "", c.doc_status: error_html(str(exc)), c.doc_pending: None,
                   c.doc_password_row: gr.Column(visible=False), c.doc_upload: None}
            return
        cid, created = await anyio.to_thread.run_sync(
            _conversation_for, wb, session.owner, cid, settings)
        await anyio.to_thread.run_sync(wb.documents.attach, session.owner, cid, document["id"])
        view = await anyio.to_thread.run_sync(redraw, session.owner, cid, busy, created, query)
        done = progress.total or document["page_count"]
        yield {
            **view,
            c.doc_progress: progress_html(done, done, document["filename"], finished=True),
            c.doc_status: document_html(document, wb.max_context),
            c.doc_pending: None, c.doc_password_row: gr.Column(visible=False),
            c.doc_password: "", c.doc_upload: None, c.doc_pages_msg: "",
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
            yield {c.doc_status: error_html("Type the PDF's password, then press Open.")}
            return
        async for update in ingest(session, cid, busy, query, pending, password, settings):
            yield update

    def set_attached(session, cid, busy, query, ids, *settings):
        if session is None:
            return {}
        ids = [int(i) for i in ids or []]
        if cid is None and not ids:
            return views.documents_view(c, wb, session.owner, None)
        cid, created = _conversation_for(wb, session.owner, cid, settings)
        try:
            wb.documents.set_attached(session.owner, cid, ids)
        except NotFoundError:
            gr.Warning("That document is gone (deleted in another tab?): the list is redrawn.")
        return redraw(session.owner, cid, busy, created, query)

    def show_pages(session, cid, chosen):
        if session is None:
            return {}
        return {**views.documents_view(c, wb, session.owner, cid, chosen), c.doc_pages_msg: ""}

    def apply_pages(session, cid, chosen, spec):
        if session is None or cid is None or chosen is None:
            return {c.doc_pages_msg: "Attach a document first, then choose its pages."}
        try:
            stored = wb.documents.set_pages(session.owner, cid, int(chosen), spec)
        except ValueError as exc:
            return {c.doc_pages_msg: f"⚠ Not applied: {exc}."}
        attached = {a.id: a for a in wb.documents.attached(session.owner, cid)}
        chosen_doc = attached[int(chosen)]
        what = f"pages {stored}" if stored else "all pages"
        return {
            **views.documents_view(c, wb, session.owner, cid, int(chosen)),
            c.doc_pages_msg: f"Using {what} of **{chosen_doc.filename}**: "
                             f"{chosen_doc.tokens:,} tokens.",
        }

    def delete(session, cid, chosen):
        if session is None or chosen is None:
            return {c.doc_pages_msg: "Choose an attached document to delete."}
        document = wb.documents.get(session.owner, int(chosen))
        wb.documents.delete(session.owner, int(chosen))
        name = document["filename"] if document else "The document"
        return {**views.documents_view(c, wb, session.owner, cid),
                c.doc_pages_msg: f"Deleted **{name}** (from every conversation).",
                c.doc_status: ""}

    common = dict(api_visibility="private", show_progress="hidden")
    context = [c.session, c.conv_id, c.busy, c.search_box]
    uploaded = c.doc_upload.upload(
        upload, inputs=context + [c.doc_upload, *c.settings], outputs=upload_outputs, **common)
    # Removing the file from the upload box drops an upload that waits for its password.
    c.doc_upload.clear(
        lambda: {c.doc_pending: None, c.doc_password_row: gr.Column(visible=False),
                 c.doc_password: ""},
        outputs={c.doc_pending, c.doc_password_row, c.doc_password}, **common)
    opened = gr.on(
        [c.doc_password_btn.click, c.doc_password.submit], open_with_password,
        inputs=context + [c.doc_pending, c.doc_password, *c.settings], outputs=upload_outputs,
        **common)
    attached = c.doc_attached.input(
        set_attached, inputs=context + [c.doc_attached, *c.settings], outputs=view_outputs,
        **common)
    c.doc_pages_doc.input(show_pages, inputs=[c.session, c.conv_id, c.doc_pages_doc],
                          outputs=views.document_outputs(c) | {c.doc_pages_msg}, **common)
    pages = gr.on(
        [c.doc_pages_btn.click, c.doc_pages.submit], apply_pages,
        inputs=[c.session, c.conv_id, c.doc_pages_doc, c.doc_pages],
        outputs=views.document_outputs(c) | {c.doc_pages_msg}, **common)
    deleted = c.doc_delete_btn.click(
        delete, inputs=[c.session, c.conv_id, c.doc_pages_doc],
        outputs=views.document_outputs(c) | {c.doc_pages_msg, c.doc_status}, **common)
    for event in (uploaded, opened, attached, pages, deleted):
        gauge.chain(event, c, wb)
