"""Conversations, scoped to an owner (the API key's name), and their export and import.

A conversation id under the wrong owner behaves exactly as one that does not exist.
Messages live in `storage.messages`, search in `storage.search`.
"""

import json
import math
import time

import sqlite_utils

from storage.documents import attach_document, conversation_documents, find_document
from storage.errors import ImportFormatError
from storage.messages import (
    ROLES,
    STAT_KEYS,
    STAT_TYPES,
    STATUSES,
    STREAMING,
    add_message,
    list_messages,
)
from storage.ownership import (
    CONVERSATION_COLUMNS,
    owned_conversation,
    require_conversation,
    touch_conversation,
)
from storage.transactions import write

EXPORT_FORMAT = "qwen-workbench.conversation"
EXPORT_VERSION = 1
DOCUMENT_KEYS = ("filename", "sha256", "page_count", "total_tokens")


def _conversation(row: dict) -> dict:
    return {**row, "params": json.loads(row["params"])}


# Longest title kept: a pasted page of text stays in the conversation, not in the sidebar.
MAX_TITLE_CHARS = 200


def _title(title: str | None) -> str | None:
    if title is None or len(title) <= MAX_TITLE_CHARS:
        return title
    return title[: MAX_TITLE_CHARS - 1].rstrip() + "…"


def create_conversation(
    db: sqlite_utils.Database,
    owner: str,
    *,
    title: str | None = None,
    system_prompt: str = "",
    params: dict | None = None,
    created_at: float | None = None,
) -> int:
    """A new, empty conversation; returns its id."""
    now = time.time() if created_at is None else created_at
    with write(db):
        table = db["conversations"].insert(
            {
                "owner": owner,
                "title": _title(title),
                "system_prompt": system_prompt,
                "params": json.dumps(params or {}),
                "created_at": now,
                "updated_at": now,
            }
        )
    return table.last_pk


def get_conversation(db: sqlite_utils.Database, owner: str, cid: int) -> dict | None:
    """{id, owner, title, system_prompt, params, created_at, updated_at}, or None."""
    row = owned_conversation(db, owner, cid)
    return _conversation(row) if row else None


def list_conversations(
    db: sqlite_utils.Database, owner: str, *, limit: int = 50, offset: int = 0
) -> list[dict]:
    """The owner's conversations, most recently updated first (the sidebar)."""
    rows = db.query(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE owner = ?"
        " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
        [owner, limit, offset],
    )
    return [_conversation(row) for row in rows]


def count_conversations(db: sqlite_utils.Database, owner: str) -> int:
    """How many conversations the owner has."""
    return db.execute("SELECT count(*) FROM conversations WHERE owner = ?", [owner]).fetchone()[0]


def rename_conversation(db: sqlite_utils.Database, owner: str, cid: int, title: str) -> bool:
    """Set the title (cut to MAX_TITLE_CHARS); False if not found."""
    with write(db):
        cursor = db.execute(
            "UPDATE conversations SET title = ?, updated_at = ? WHERE id = ? AND owner = ?",
            [_title(title), time.time(), cid, owner],
        )
    return cursor.rowcount > 0


def update_conversation_settings(
    db: sqlite_utils.Database,
    owner: str,
    cid: int,
    *,
    system_prompt: str | None = None,
    params: dict | None = None,
) -> bool:
    """Change the system prompt and/or sampling parameters (None leaves one as is)."""
    with write(db):
        row = owned_conversation(db, owner, cid)
        if row is None:
            return False
        changes = {"updated_at": time.time()}
        if system_prompt is not None:
            changes["system_prompt"] = system_prompt
        if params is not None:
            changes["params"] = json.dumps(params)
        db["conversations"].update(cid, changes)
    return True


def delete_conversation(db: sqlite_utils.Database, owner: str, cid: int) -> bool:
    """Delete a conversation with its messages, search entries and document attachments."""
    with write(db):
        if owned_conversation(db, owner, cid) is None:
            return False
        # The FTS rows go with the rows, through the triggers enable_fts() created.
        db.execute("DELETE FROM messages WHERE conversation_id = ?", [cid])
        db.execute("DELETE FROM conversation_documents WHERE conversation_id = ?", [cid])
        db.execute("DELETE FROM conversations WHERE id = ?", [cid])
    return True


# Export and import ----------------------------------------------------------------------


def export_json(db: sqlite_utils.Database, owner: str, cid: int) -> dict:
    """The conversation as a portable dict (what import_json takes back)."""
    conversation = _conversation(require_conversation(db, owner, cid))
    messages = []
    for message in list_messages(db, owner, cid):
        stats = {key: message[key] for key in STAT_KEYS if message[key] is not None}
        messages.append(
            {
                "role": message["role"],
                "content": message["content"],
                "model": message["model"],
                # An answer still being written goes out as what it is so far.
                "status": "stopped" if message["status"] == STREAMING else message["status"],
                "error": message["error"],
                "created_at": message["created_at"],
                "stats": stats,
            }
        )
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "title": conversation["title"],
        "system_prompt": conversation["system_prompt"],
        "params": conversation["params"],
        "created_at": conversation["created_at"],
        "updated_at": conversation["updated_at"],
        # References, not contents: a PDF's pages can run to megabytes and the importer
        # re-attaches its own copy of the same bytes (by sha256).
        "documents": [
            {key: document[key] for key in DOCUMENT_KEYS}
            for document in conversation_documents(db, owner, cid)
        ],
        "messages": messages,
    }


def _fail(message: str):
    raise ImportFormatError(message)


def _validate_message(index: int, message) -> dict:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        _fail(f"{where} must be an object")
    if message.get("role") not in ROLES:
        _fail(f"{where}.role must be one of {list(ROLES)}")
    if not isinstance(message.get("content"), str):
        _fail(f"{where}.content must be a string")
    status = message.get("status", "complete")
    if status not in STATUSES:
        _fail(f"{where}.status must be one of {list(STATUSES)}")
    for field in ("model", "error"):
        if not isinstance(message.get(field), (str, type(None))):
            _fail(f"{where}.{field} must be a string or null")
    created_at = message.get("created_at")
    if created_at is not None and not _is_time(created_at):
        _fail(f"{where}.created_at must be a unix timestamp")
    stats = message.get("stats") or {}
    if not isinstance(stats, dict):
        _fail(f"{where}.stats must be an object")
    for key, value in stats.items():
        expected = STAT_TYPES.get(key)
        if expected is None:
            _fail(f"{where}.stats.{key} is not a known stat ({', '.join(STAT_KEYS)})")
        ok = isinstance(value, str) if expected is str else _is_number(value)
        if value is not None and not ok:
            _fail(f"{where}.stats.{key} must be a {expected.__name__}")
    return {**message, "status": status, "stats": stats}


def _validate_documents(documents) -> list[dict]:
    if not isinstance(documents, list):
        _fail("documents must be a list")
    for index, document in enumerate(documents):
        where = f"documents[{index}]"
        if not isinstance(document, dict):
            _fail(f"{where} must be an object")
        if not isinstance(document.get("filename"), str):
            _fail(f"{where}.filename must be a string")
        sha256 = document.get("sha256")
        if not (
            isinstance(sha256, str)
            and len(sha256) == 64
            and all(c in "0123456789abcdef" for c in sha256)
        ):
            _fail(f"{where}.sha256 must be 64 lowercase hex digits")
    return documents


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_time(value) -> bool:
    return _is_number(value) and value >= 0


def import_json(db: sqlite_utils.Database, owner: str, data: dict) -> int:
    """Create a new conversation for `owner` from export_json() output; returns its id.

    Exported documents are re-attached when the owner has the same bytes (by sha256);
    the others are left out (unattached_documents() names them).
    Raises ImportFormatError naming the first problem; nothing is stored then.
    """
    if not isinstance(data, dict):
        _fail("a conversation export must be a JSON object")
    if data.get("format") != EXPORT_FORMAT:
        _fail(f"not a conversation export: 'format' must be {EXPORT_FORMAT!r}")
    if data.get("version") != EXPORT_VERSION:
        _fail(
            f"unsupported export version {data.get('version')!r};"
            f" this version reads {EXPORT_VERSION}"
        )
    if not isinstance(data.get("title"), (str, type(None))):
        _fail("title must be a string or null")
    if not isinstance(data.get("system_prompt", ""), str):
        _fail("system_prompt must be a string")
    if not isinstance(data.get("params", {}), dict):
        _fail("params must be an object")
    created_at = data.get("created_at")
    if created_at is not None and not _is_time(created_at):
        _fail("created_at must be a unix timestamp")
    if not isinstance(data.get("messages"), list):
        _fail("messages must be a list")
    messages = [_validate_message(i, m) for i, m in enumerate(data["messages"])]
    documents = _validate_documents(data.get("documents", []))
    with write(db):
        cid = create_conversation(
            db,
            owner,
            title=data.get("title"),
            system_prompt=data.get("system_prompt", ""),
            params=data.get("params", {}),
            created_at=created_at,
        )
        for message in messages:
            add_message(
                db,
                owner,
                cid,
                message["role"],
                message["content"],
                model=message.get("model"),
                stats=message["stats"],
                status=message["status"],
                error=message.get("error"),
                created_at=message.get("created_at"),
            )
        for document in documents:
            own = find_document(db, owner, document["sha256"])
            if own is not None:
                attach_document(db, owner, cid, own["id"])
        # An import is the newest thing the owner did: show it at the top of the sidebar.
        touch_conversation(db, cid, time.time())
    return cid


def unattached_documents(db: sqlite_utils.Database, owner: str, cid: int, data: dict) -> list[str]:
    """File names of the export's documents that import_json could not re-attach to `cid`."""
    attached = {d["sha256"] for d in conversation_documents(db, owner, cid)}
    return [d["filename"] for d in data.get("documents", []) if d["sha256"] not in attached]
