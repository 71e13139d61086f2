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
    # SQL rather than table.create(): ids handed to clients need AUTOINCREMENT, which
    # create() cannot express. Without it SQLite reuses the id of a deleted last row, and
    # a stale id held by a browser tab or a worker would silently address the new row.
    db.executescript(
        """
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL,
            admin INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            last_used_at REAL,
            revoked_at REAL
        );
        -- Partial unique indexes: a revoked name (or secret) may be issued again.
        CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
        CREATE UNIQUE INDEX api_keys_active_hash ON api_keys (key_hash) WHERE revoked_at IS NULL;

        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            title TEXT,
            system_prompt TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        -- The sidebar: WHERE owner = ? ORDER BY updated_at DESC, id DESC; the index rows
        -- end with the rowid, so the index yields them in order with no sort step.
        CREATE INDEX conversations_owner_updated ON conversations (owner, updated_at);

        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations (id),
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            model TEXT,
            status TEXT NOT NULL DEFAULT 'complete',
            error TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cached_tokens INTEGER,
            ttft_ms REAL,
            decode_tps REAL,
            total_ms REAL,
            finish_reason TEXT,
            created_at REAL NOT NULL
        );
        -- A conversation's messages in order, and the foreign key check on delete.
        CREATE INDEX messages_conversation ON messages (conversation_id);
        """
    )


@migrations()
def m002_search(db: sqlite_utils.Database) -> None:
    """Full-text search over conversation titles and message contents (indexes existing rows)."""
    for table, column in (("conversations", "title"), ("messages", "content")):
        db[table].enable_fts([column], create_triggers=True, tokenize="porter")


@migrations()
def m003_documents(db: sqlite_utils.Database) -> None:
    """Uploaded documents, their pages, and which conversations they are attached to."""
    # SQL for AUTOINCREMENT (see m001): an ingestion worker holding the id of a discarded
    # document must not write pages into the next one.
    db.execute(
        """
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            filename TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            page_count INTEGER NOT NULL,
            total_tokens INTEGER,
            tokenizer TEXT NOT NULL,
            empty_pages TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL DEFAULT 'ingesting',
            created_at REAL NOT NULL
        )
        """
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
            "created_at",
            "key_name",
            "endpoint",
            "status_code",
            "prompt_tokens",
            "completion_tokens",
        },
        defaults={"prompt_tokens": 0, "completion_tokens": 0},
    )
    db["usage_log"].create_index(["key_name", "created_at"], index_name="usage_log_key_time")
    db["usage_log"].create_index(["created_at"], index_name="usage_log_time")


# Han (with its extensions and compatibility ideographs), kana and Hangul: scripts written
# without spaces, which the porter/unicode61 tokenizer keeps as one token per run. Part of
# m005 (its triggers hold it; storage.search routes queries by it): to change it, add a
# migration that recreates the triggers. Escapes, not characters: NFC turns U+F900 into U+8C48.
CJK_CHARS = (
    "\u4e00-\u9fff\u3041-\u30ff\uac00-\ud7a3\u3400-\u4dbf\uf900-\ufaff\u1100-\u11ff"
    "\u3131-\u318e\u31f0-\u31ff\uff66-\uff9f\U00020000-\U0003134f"
)


@migrations()
def m005_cjk_search(db: sqlite_utils.Database) -> None:
    """Substring search for CJK text: trigram indexes of the titles and messages that have any."""

    # Own-content FTS5 tables (not external content like m002's): a delete is a plain
    # DELETE by rowid, and only rows with CJK are copied, so the trigram index (several
    # times the text's size) stays proportional to the CJK text alone.
    def has_cjk(text: str) -> str:
        # GLOB tests the class at each character (22 s over 1M English messages); "more
        # bytes than characters" skips pure ASCII text first, 50 times faster.
        not_ascii = f"length(CAST({text} AS BLOB)) > length({text})"
        return f"{not_ascii} AND {text} GLOB '*[{CJK_CHARS}]*'"

    for table, column in (("messages", "content"), ("conversations", "title")):
        index = f"{table}_cjk"
        copy = f"INSERT INTO {index} (rowid, {column}) SELECT new.id, new.{column}"
        db.execute(f"CREATE VIRTUAL TABLE {index} USING fts5({column}, tokenize='trigram')")
        db.execute(
            f"CREATE TRIGGER {index}_ai AFTER INSERT ON {table} BEGIN"
            f" {copy} WHERE {has_cjk(f'new.{column}')}; END"
        )
        db.execute(
            f"CREATE TRIGGER {index}_ad AFTER DELETE ON {table} BEGIN"
            f" DELETE FROM {index} WHERE rowid = old.id; END"
        )
        db.execute(
            f"CREATE TRIGGER {index}_au AFTER UPDATE OF {column} ON {table} BEGIN"
            f" DELETE FROM {index} WHERE rowid = old.id;"
            f" {copy} WHERE {has_cjk(f'new.{column}')}; END"
        )
        db.execute(
            f"INSERT INTO {index} (rowid, {column})"
            f" SELECT id, {column} FROM {table} WHERE {has_cjk(column)}"
        )


@migrations()
def m006_answer_replica(db: sqlite_utils.Database) -> None:
    """Which engine replica gave an answer (behind vllm-router; NULL with one engine)."""
    db.execute("ALTER TABLE messages ADD COLUMN replica TEXT")


@migrations()
def m007_responses(db: sqlite_utils.Database) -> None:
    """Stored Responses API responses, so a later request can continue one by its id."""
    db["responses"].create(
        {"id": str, "key_name": str, "created_at": float, "input": str, "output": str},
        pk="id",
        not_null={"key_name", "created_at", "input", "output"},
    )


@migrations()
def m008_usage_request_id(db: sqlite_utils.Database) -> None:
    """Each usage row's request id, unique: a row replayed from a process's journal after a
    crash (server.gateway.accounting) is then never counted twice."""
    db.execute("ALTER TABLE usage_log ADD COLUMN request_id TEXT")
    db.execute("CREATE UNIQUE INDEX usage_log_request ON usage_log (request_id)")


def apply(db: sqlite_utils.Database, *, stop_before: str | None = None) -> None:
    """Apply pending migrations; safe when several processes start at once.

    The whole run holds the write lock, so a second process waits, then finds nothing pending.
    """
    with write(db):
        migrations.apply(db, stop_before=stop_before)
