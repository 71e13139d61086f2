"""What the page shows for one conversation, as component updates built from storage.

Every callback that changes which conversation is open, or what it contains, returns
`conversation_view(...)`, so the page is always redrawn from what is stored.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from server.sampling import DEFAULT_PARAMS
from server.workbench import Workbench
from ui import formatting
from ui.document_formatting import document_choices
from ui.layout import Components

# The sidebar lists this many conversations (newest first); search reaches every one.
SIDEBAR_CONVERSATIONS = 200
# Export files are written here for the download buttons (Gradio serves from the temp dir).
EXPORT_DIR = Path(tempfile.gettempdir()) / "qwen-workbench-exports"


def sidebar_list(c: Components, wb: Workbench, owner: str, query: str, cid: int | None) -> dict:
    """The sidebar list: search results while there is a query, else the newest
    SIDEBAR_CONVERSATIONS conversations (with a note saying how many more search can find)."""
    more = ""
    if query and query.strip():
        choices = formatting.search_choices(wb.search(owner, query))
    else:
        shown = wb.list_conversations(owner, limit=SIDEBAR_CONVERSATIONS + 1)
        if len(shown) > SIDEBAR_CONVERSATIONS:
            shown = shown[:SIDEBAR_CONVERSATIONS]
            total = wb.count_conversations(owner)
            more = (f"The newest {SIDEBAR_CONVERSATIONS} of {total:,} conversations: "
                    "search finds the others.")
        choices = formatting.conversation_choices(shown)
    value = cid if any(v == cid for _, v in choices) else None
    return {c.conv_list: gr.Radio(choices=choices, value=value), c.conv_more: more}


def settings_values(c: Components, system_prompt: str, params: dict) -> dict:
    """Settings fields filled with a conversation's (or the default) settings."""
    return {
        c.system_prompt: system_prompt,
        c.temperature: params["temperature"],
        c.top_p: params["top_p"],
        c.max_tokens: params["max_tokens"],
        c.presence: params["presence_penalty"],
        c.frequency: params["frequency_penalty"],
        c.stop_seqs: "\n".join(params["stop"]),
    }


def documents_view(c: Components, wb: Workbench, owner: str, cid: int | None,
                   chosen: int | None = None) -> dict:
    """The documents tab for conversation `cid`: the owner's documents (attached ones ticked)
    and the page ranges of one attached document (`chosen`, else the first)."""
    attached = wb.documents.attached(owner, cid)
    ids = [a.id for a in attached]
    pick = chosen if chosen in ids else (ids[0] if ids else None)
    return {
        c.doc_attached: gr.CheckboxGroup(
            choices=document_choices(wb.documents.list_documents(owner)), value=ids),
        c.doc_pages_doc: gr.Dropdown(choices=[(a.filename, a.id) for a in attached], value=pick),
        c.doc_pages: next((a.spec for a in attached if a.id == pick), ""),
        c.offer_row: gr.Column(visible=False),
    }


def _export_folder(owner: str, cid: int) -> Path:
    # One folder per owner and conversation, private to this user account on the host.
    EXPORT_DIR.mkdir(mode=0o700, exist_ok=True)
    return EXPORT_DIR / hashlib.sha256(owner.encode()).hexdigest()[:16] / str(cid)


def forget_exports(owner: str, cid: int) -> None:
    """Remove a deleted conversation's export files."""
    shutil.rmtree(_export_folder(owner, cid), ignore_errors=True)


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


def conversation_view(
    c: Components, wb: Workbench, owner: str, cid: int | None, query: str = "",
    *, settings: bool = True,
) -> dict:
    """Updates that show conversation `cid` (None or not the owner's: a new, empty one).

    With `settings=False` the settings panel keeps its values (a new conversation started
    from the panel inherits them).
    """
    conversation = wb.get_conversation(owner, cid) if cid is not None else None
    if conversation is None:
        cid, messages = None, []
        system_prompt, params, title = "", dict(DEFAULT_PARAMS), ""
    else:
        messages = wb.messages(owner, cid)
        system_prompt, params = conversation["system_prompt"], conversation["params"]
        title = conversation["title"] or ""
    if cid is None:
        export_md = gr.DownloadButton(value=None, interactive=False)
        export_json = gr.DownloadButton(value=None, interactive=False)
    else:
        md_path, json_path = _export_files(wb, owner, cid)
        export_md = gr.DownloadButton(value=md_path, interactive=True)
        export_json = gr.DownloadButton(value=json_path, interactive=True)
    return {
        c.conv_id: cid,
        # Wrapped: the browser only stores truthy values (None would leave the old one).
        c.saved_conv: {"id": cid},
        c.chatbot: formatting.chat_messages(messages),
        c.message_ids: formatting.shown_message_ids(messages),
        c.title_box: title,
        c.export_md: export_md,
        c.export_json: export_json,
        c.delete_btn: gr.Button(interactive=cid is not None),
        c.rename_btn: gr.Button(interactive=cid is not None),
        c.confirm_row: gr.Row(visible=False),
        **(settings_values(c, system_prompt, params) if settings else {}),
        **sidebar_list(c, wb, owner, query, cid),
        **documents_view(c, wb, owner, cid),
    }


def streaming_chat(wb: Workbench, owner: str, cid: int | None) -> list[dict]:
    """The chat of a conversation whose answer is streaming: stored messages, then the
    answer so far (stored while it streams) or a waiting placeholder."""
    messages = wb.messages(owner, cid) if cid is not None else []
    shown = formatting.chat_messages(messages)
    if not messages or messages[-1]["role"] != "assistant":
        shown.append(formatting.streaming_message(""))
    return shown


def idle_controls(c: Components) -> dict:
    """Send/Regenerate shown, Stop hidden: no answer is streaming."""
    return {
        c.busy: False,
        c.turn: None,
        c.send_btn: gr.Button(visible=True),
        c.regen_btn: gr.Button(visible=True),
        c.stop_btn: gr.Button(visible=False),
    }


def busy_controls(c: Components, cid: int) -> dict:
    """Stop shown while an answer for `cid` streams; Send and Regenerate hidden."""
    return {
        c.busy: True,
        c.turn: cid,
        c.send_btn: gr.Button(visible=False),
        c.regen_btn: gr.Button(visible=False),
        c.stop_btn: gr.Button(visible=True),
    }


def view_outputs(c: Components) -> set:
    """Every component conversation_view and the control helpers may update."""
    return {
        c.conv_id, c.saved_conv, c.chatbot, c.message_ids, c.title_box, c.export_md,
        c.export_json, c.delete_btn, c.rename_btn, c.confirm_row, c.conv_list, c.conv_more,
        *c.settings,
        c.busy, c.turn, c.send_btn, c.regen_btn, c.stop_btn,
        *document_outputs(c),
    }


def document_outputs(c: Components) -> set:
    """Every component documents_view updates."""
    return {c.doc_attached, c.doc_pages_doc, c.doc_pages, c.offer_row}
