"""Messages of a conversation, with the stats of each answer; scoped to the owner."""

import time

import sqlite_utils

from storage.ownership import require_conversation, touch_conversation
from storage.transactions import write

ROLES = ("system", "user", "assistant", "tool")
# How an answer ended; STREAMING marks one still being written (checkpointed as it grows).
STATUSES = ("complete", "stopped", "error")
STREAMING = "streaming"
INTERRUPTED = "The server stopped while this answer was being written; the text up to then is kept."
# Per-answer stats, stored as columns of `messages` and flattened into list_messages().
STAT_TYPES = {
    "prompt_tokens": int,
    "completion_tokens": int,
    "cached_tokens": int,
    "ttft_ms": float,
    "decode_tps": float,
    "total_ms": float,
    "finish_reason": str,
    "replica": str,
}
STAT_KEYS = tuple(STAT_TYPES)
TITLE_CHARS = 60

_MESSAGE_COLUMNS = ", ".join(
    ("id", "role", "content", "model", "status", "error", "created_at") + STAT_KEYS
)


def _stats_columns(stats: dict | None) -> dict:
    if not stats:
        return {}
    unknown = set(stats) - set(STAT_TYPES)
    if unknown:
        raise ValueError(f"unknown stats keys: {sorted(unknown)}; known: {list(STAT_KEYS)}")
    return dict(stats)


def _check(status: str | None, role: str | None = None) -> None:
    if status is not None and status not in (*STATUSES, STREAMING):
        raise ValueError(f"status must be one of {(*STATUSES, STREAMING)}, not {status!r}")
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")


def title_from(text: str) -> str:
    """A conversation title from its first user message: one line, about TITLE_CHARS long."""
    line = " ".join(text.split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"


def add_message(
    db: sqlite_utils.Database,
    owner: str,
    cid: int,
    role: str,
    content: str,
    *,
    model: str | None = None,
    stats: dict | None = None,
    status: str = "complete",
    error: str | None = None,
    created_at: float | None = None,
) -> int:
    """Append a message; returns its id. Raises NotFoundError for another owner's conversation.

    `status` "stopped" or "error" marks an answer cut short: its partial text is kept and
    `error` says why. The first user message titles an untitled conversation.
    """
    _check(status, role)
    columns = _stats_columns(stats)
    now = time.time() if created_at is None else created_at
    with write(db):
        conversation = require_conversation(db, owner, cid)
        table = db["messages"].insert(
            {
                "conversation_id": cid,
                "role": role,
                "content": content,
                "model": model,
                "status": status,
                "error": error,
                "created_at": now,
                **columns,
            }
        )
        changes = {"updated_at": max(now, conversation["updated_at"])}
        if conversation["title"] is None and role == "user" and content.strip():
            changes["title"] = title_from(content)
        db["conversations"].update(cid, changes)
    return table.last_pk


def _owned_message(db: sqlite_utils.Database, owner: str, message_id: int) -> int | None:
    row = db.execute(
        "SELECT messages.conversation_id FROM messages"
        " JOIN conversations ON conversations.id = messages.conversation_id"
        " WHERE messages.id = ? AND conversations.owner = ?",
        [message_id, owner],
    ).fetchone()
    return row[0] if row else None


def update_message(
    db: sqlite_utils.Database,
    owner: str,
    message_id: int,
    *,
    content: str | None = None,
    stats: dict | None = None,
    status: str | None = None,
    error: str | None = None,
) -> bool:
    """Change a message (e.g. a streamed answer as it completes); None leaves a field as is."""
    _check(status)
    changes = _stats_columns(stats)
    for field, value in (("content", content), ("status", status), ("error", error)):
        if value is not None:
            changes[field] = value
    with write(db):
        cid = _owned_message(db, owner, message_id)
        if cid is None:
            return False
        if changes:
            db["messages"].update(message_id, changes)
        touch_conversation(db, cid, time.time())
    return True


def finish_interrupted_answers(db: sqlite_utils.Database) -> int:
    """Mark answers left "streaming" by a server that stopped as failed (text kept).

    For the app's start-up only: another process's answers may still be streaming.
    Returns how many there were.
    """
    with write(db):
        cursor = db.execute(
            "UPDATE messages SET status = 'error', error = ? WHERE status = ?",
            [INTERRUPTED, STREAMING],
        )
        return cursor.rowcount


def delete_message(db: sqlite_utils.Database, owner: str, message_id: int) -> bool:
    """Delete one message; False if not found."""
    with write(db):
        cid = _owned_message(db, owner, message_id)
        if cid is None:
            return False
        db.execute("DELETE FROM messages WHERE id = ?", [message_id])
        touch_conversation(db, cid, time.time())
    return True


def list_messages(db: sqlite_utils.Database, owner: str, cid: int) -> list[dict]:
    """The conversation's messages in order, stats flattened; [] if not found."""
    rows = db.query(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
        " AND conversation_id IN (SELECT id FROM conversations WHERE id = ? AND owner = ?)"
        " ORDER BY id",
        [cid, cid, owner],
    )
    return list(rows)
