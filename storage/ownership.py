"""Owner scoping: a conversation under another owner is indistinguishable from a missing one."""

import sqlite_utils

from storage.errors import NotFoundError

CONVERSATION_COLUMNS = "id, owner, title, system_prompt, params, created_at, updated_at"


def owned_conversation(db: sqlite_utils.Database, owner: str, cid: int) -> dict | None:
    """The raw conversation row if `owner` owns it, else None."""
    rows = list(
        db.query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ? AND owner = ?",
            [cid, owner],
        )
    )
    return rows[0] if rows else None


def require_conversation(db: sqlite_utils.Database, owner: str, cid: int) -> dict:
    """The raw conversation row; NotFoundError if `owner` does not own it."""
    row = owned_conversation(db, owner, cid)
    if row is None:
        raise NotFoundError(f"conversation {cid} not found")
    return row


def touch_conversation(db: sqlite_utils.Database, cid: int, now: float) -> None:
    """Mark a conversation as changed, moving it to the top of the sidebar."""
    db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", [now, cid])
