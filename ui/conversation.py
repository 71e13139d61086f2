"""The open conversation's header: title and rename, exports, delete after a confirmation.

The exports are download buttons whose files are rewritten with every redraw (`Header.show`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from server.workbench import Workbench
from ui.gauge import Gauge

if TYPE_CHECKING:  # ui.views composes the areas; an area only takes the page it is given
    from ui.views import Page

# Export files are written here for the download buttons (Gradio serves from the temp dir).
EXPORT_DIR = Path(tempfile.gettempdir()) / "qwen-workbench-exports"


@dataclass(frozen=True)
class Header:
    """The header row above the chat and the delete confirmation under it."""

    title_box: gr.Textbox
    rename_btn: gr.Button
    export_md: gr.DownloadButton
    export_json: gr.DownloadButton
    delete_btn: gr.Button
    confirm_row: gr.Row
    confirm_msg: gr.Markdown
    confirm_btn: gr.Button
    cancel_btn: gr.Button

    @property
    def shown(self) -> list:
        """What `show` updates."""
        return [
            self.title_box,
            self.export_md,
            self.export_json,
            self.delete_btn,
            self.rename_btn,
            self.confirm_row,
        ]

    def show(self, wb: Workbench, owner: str, conversation: dict | None) -> dict:
        """The header of a stored conversation (None: a new one, nothing to export yet)."""
        if conversation is None:
            export_md = gr.DownloadButton(value=None, interactive=False)
            export_json = gr.DownloadButton(value=None, interactive=False)
        else:
            md_path, json_path = _export_files(wb, owner, conversation["id"])
            export_md = gr.DownloadButton(value=md_path, interactive=True)
            export_json = gr.DownloadButton(value=json_path, interactive=True)
        stored = conversation is not None
        return {
            self.title_box: (conversation or {}).get("title") or "",
            self.export_md: export_md,
            self.export_json: export_json,
            self.delete_btn: gr.Button(interactive=stored),
            self.rename_btn: gr.Button(interactive=stored),
            self.confirm_row: gr.Row(visible=False),
        }


def build() -> Header:
    """Create the header (inside the chat's column)."""
    with gr.Row(elem_id="conversation-header"):
        title_box = gr.Textbox(
            show_label=False,
            placeholder="New conversation",
            scale=5,
            elem_id="conversation-title",
            max_lines=1,
            container=False,
        )
        rename_btn = gr.Button("Rename", size="sm", scale=0, min_width=80, elem_id="rename-button")
        export_md = gr.DownloadButton(
            "⇩ Markdown",
            size="sm",
            scale=0,
            min_width=110,
            interactive=False,
            elem_id="export-markdown",
        )
        export_json = gr.DownloadButton(
            "⇩ JSON", size="sm", scale=0, min_width=80, interactive=False, elem_id="export-json"
        )
        delete_btn = gr.Button(
            "Delete",
            size="sm",
            scale=0,
            variant="stop",
            min_width=80,
            interactive=False,
            elem_id="delete-button",
        )
    with gr.Row(visible=False, elem_id="delete-confirm-row") as confirm_row:
        confirm_msg = gr.Markdown("", elem_id="delete-confirm-message")
        confirm_btn = gr.Button(
            "Delete for good", variant="stop", size="sm", scale=0, elem_id="delete-confirm"
        )
        cancel_btn = gr.Button("Keep it", size="sm", scale=0, elem_id="delete-cancel")
    return Header(
        title_box,
        rename_btn,
        export_md,
        export_json,
        delete_btn,
        confirm_row,
        confirm_msg,
        confirm_btn,
        cancel_btn,
    )


def _export_folder(owner: str, cid: int) -> Path:
    # One folder per owner and conversation, private to this user account on the host.
    EXPORT_DIR.mkdir(mode=0o700, exist_ok=True)
    return EXPORT_DIR / hashlib.sha256(owner.encode()).hexdigest()[:16] / str(cid)


def _export_files(wb: Workbench, owner: str, cid: int) -> tuple[str, str]:
    # Rewritten with every redraw; Gradio copies what it serves into its own cache.
    folder = _export_folder(owner, cid)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (wb.export_markdown(owner, cid), wb.export_json(owner, cid)):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    return paths[0], paths[1]


def wire(header: Header, page: Page, gauge: Gauge) -> None:
    """Attach rename and the two-step delete."""
    wb, outputs = page.wb, page.outputs

    def rename(session, cid, busy, query, title):
        if session is None or cid is None:
            return {}
        try:
            wb.rename(session.owner, cid, title)
        except ValueError as exc:
            gr.Warning(str(exc).capitalize())
        if busy:
            # Keep the streaming chat as it is: only the list and the title change.
            return {**page.sidebar_list(session.owner, query, cid), header.title_box: title}
        return page.conversation_view(session.owner, cid, query)

    def ask_delete(session, cid, title):
        if session is None or cid is None:
            return {}
        name = title or "this conversation"
        return {
            header.confirm_row: gr.Row(visible=True),
            header.confirm_msg: f"Delete **{name}** and all its messages? This cannot be undone.",
        }

    def delete(session, cid, busy, query):
        if session is None or cid is None:
            return {header.confirm_row: gr.Row(visible=False)}
        if busy:
            gr.Warning("An answer is streaming: stop it before deleting the conversation.")
            return {header.confirm_row: gr.Row(visible=False)}
        wb.delete(session.owner, cid)
        shutil.rmtree(_export_folder(session.owner, cid), ignore_errors=True)
        newest = wb.list_conversations(session.owner, limit=1)
        return page.conversation_view(session.owner, newest[0]["id"] if newest else None, query)

    common = dict(api_visibility="private", show_progress="hidden")
    gr.on(
        [header.rename_btn.click, header.title_box.submit],
        rename,
        inputs=page.context + [header.title_box],
        outputs=outputs,
        **common,
    )
    header.delete_btn.click(
        ask_delete,
        inputs=[page.state.session, page.state.conv_id, header.title_box],
        outputs={header.confirm_row, header.confirm_msg},
        **common,
    )
    header.cancel_btn.click(lambda: gr.Row(visible=False), outputs=header.confirm_row, **common)
    deleted = header.confirm_btn.click(delete, inputs=page.context, outputs=outputs, **common)
    gauge.chain(deleted)
