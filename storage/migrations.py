"""The schema, as ordered, named migrations (sqlite-utils' `Migrations`).

Never edit a migration once merged: databases in the field have already run it.
Change the schema by adding the next `m00N_...` function.
"""

import sqlite_utils
from sqlite_utils.migrations import Migrations

from storage.transactions import write

migrations = Migrations("workbench")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    """API keys, conversations and messages."""
    db["api_keys"].create(
        {
            "id": int,
            "name": str,
            "key_hash": str,
            "admin": int,
            "created_at": float,
            "last_used_at": float,
            "revoked_at": float,
        },
        pk="id",
        not_null={"name", "key_hash", "admin", "created_at"},
        defaults={"admin": 0},
    )
    # Partial unique indexes: a revoked name (or secret) may be issued again.
    db.execute(
        "CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL"
    )
    db.execute(
        "CREATE UNIQUE INDEX api_keys_active_hash ON api_keys (key_hash) WHERE revoked_at IS NULL"
    )

    db["conversations"].create(
        {
            "id": int,
            "owner": str,
            "title": str,
            "system_prompt": str,
            "params": str,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"owner", "system_prompt", "params", "created_at", "updated_at"},
        defaults={"system_prompt": "", "params": "{}"},
    )
    # The sidebar: WHERE owner = ? ORDER BY updated_at DESC, id DESC (id rides along as rowid).
    db["conversations"].create_index(
        ["owner", "updated_at"], index_name="conversations_owner_updated"
    )

    db["messages"].create(
        {
            "id": int,
            "conversation_id": int,
            "role": str,
            "content": str,
            "model": str,
            "status": str,
            "error": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "cached_tokens": int,
            "ttft_ms": float,
            "decode_tps": float,
            "total_ms": float,
            "finish_reason": str,
            "created_at": float,
        },
        pk="id",
        not_null={"conversation_id", "role", "content", "status", "created_at"},
        defaults={"status": "complete"},
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    # Listing a conversation's messages in order (and the foreign key check on delete).
    db["messages"].create_index(["conversation_id"], index_name="messages_conversation")


@migrations()
def m002_search(db: sqlite_utils.Database) -> None:
    """Full-text search over conversation titles and message contents (indexes existing rows)."""
    for table, column in (("conversations", "title"), ("messages", "content")):
        db[table].enable_fts([column], create_triggers=True, tokenize="porter")


@migrations()
def m003_documents(db: sqlite_utils.Database) -> None:
    """Uploaded documents, their pages, and which conversations they are attached to."""
    db["documents"].create(
        {
            "id": int,
            "owner": str,
            "filename": str,
            "sha256": str,
            "page_count": int,
            "total_tokens": int,
            "tokenizer": str,
            "empty_pages": str,
            "status": str,
            "created_at": float,
        },
        pk="id",
        not_null={
            "owner", "filename", "sha256", "page_count", "tokenizer", "empty_pages",
            "status", "created_at",
        },
        defaults={"empty_pages": "[]", "status": "ingesting"},
    )
    # Same file twice for the same owner is one document.
    db["documents"].create_index(
        ["owner", "sha256"], index_name="documents_owner_sha256", unique=True
    )
    db["document_pages"].create(
        {"document_id": int, "number": int, "text": str, "tokens": int},
        pk=("document_id", "number"),
        not_null={"text", "tokens"},
        foreign_keys=[("document_id", "documents", "id")],
    )
    db["conversation_documents"].create(
        {"conversation_id": int, "document_id": int, "attached_at": float},
        pk=("conversation_id", "document_id"),
        not_null={"attached_at"},
        foreign_keys=[
            ("conversation_id", "conversations", "id"),
            ("document_id", "documents", "id"),
        ],
    )
    db["conversation_documents"].create_index(
        ["document_id"], index_name="conversation_documents_document"
    )


@migrations()
def m004_usage_log(db: sqlite_utils.Database) -> None:
    """One row per /v1 request, for accounting and the usage plot."""
    db["usage_log"].create(
        {
            "id": int,
            "created_at": float,
            "key_name": str,
            "endpoint": str,
            "model": str,
            "status_code": int,
            "prompt_tokens": int,
            "completion_tokens": int,
            "latency_ms": float,
            "ttft_ms": float,
            "user": str,
            "error_code": str,
        },
        pk="id",
        not_null={
            "created_at", "key_name", "endpoint", "status_code", "prompt_tokens",
            "completion_tokens",
        },
        defaults={"prompt_tokens": 0, "completion_tokens": 0},
    )
    db["usage_log"].create_index(["key_name", "created_at"], index_name="usage_log_key_time")
    db["usage_log"].create_index(["created_at"], index_name="usage_log_time")


def apply(db: sqlite_utils.Database, *, stop_before: str | None = None) -> None:
    """Apply pending migrations; safe when several processes start at once.

    The whole run holds the write lock, so a second process waits, then finds nothing pending.
    """
    with write(db):
        migrations.apply(db, stop_before=stop_before)
