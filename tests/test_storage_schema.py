"""The schema: exact columns after migrations, indexes, idempotence, upgrading old databases."""

import sqlite_utils

from storage import Store
from storage.conversations import create_conversation, delete_conversation
from storage.messages import add_message, list_messages
from storage.migrations import migrations
from storage.search import search_conversations

EXPECTED_COLUMNS = {
    "api_keys": {
        "id": int,
        "name": str,
        "key_hash": str,
        "admin": int,
        "created_at": float,
        "last_used_at": float,
        "revoked_at": float,
    },
    "conversations": {
        "id": int,
        "owner": str,
        "title": str,
        "system_prompt": str,
        "params": str,
        "created_at": float,
        "updated_at": float,
    },
    "messages": {
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
        "replica": str,
    },
    "conversations_fts": {"title": str},
    "messages_fts": {"content": str},
    "conversations_cjk": {"title": str},
    "messages_cjk": {"content": str},
    "documents": {
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
    "document_pages": {"document_id": int, "number": int, "text": str, "tokens": int},
    "conversation_documents": {"conversation_id": int, "document_id": int, "attached_at": float},
    "usage_log": {
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
        "request_id": str,
    },
    "responses": {
        "id": str,
        "key_name": str,
        "created_at": float,
        "input": str,
        "output": str,
    },
    "_sqlite_migrations": {"id": int, "migration_set": str, "name": str, "applied_at": str},
    # SQLite's own bookkeeping for AUTOINCREMENT.
    "sqlite_sequence": {"name": str, "seq": str},
}
MIGRATION_NAMES = [
    "m001_initial",
    "m002_search",
    "m003_documents",
    "m004_usage_log",
    "m005_cjk_search",
    "m006_answer_replica",
    "m007_responses",
    "m008_usage_request_id",
]
# _content: the own copy of the text kept by the *_cjk tables (not external content).
FTS_SHADOW_SUFFIXES = ("_data", "_idx", "_docsize", "_config", "_content")


def applied(db: sqlite_utils.Database) -> list[str]:
    return [m.name for m in migrations.applied(db)]


def test_migrated_schema_has_exactly_these_tables_and_columns(tmp_path):
    with Store(tmp_path / "data" / "workbench.db") as store:
        db = store.db
        tables = [t for t in db.table_names() if not t.endswith(FTS_SHADOW_SUFFIXES)]
        assert {t: db[t].columns_dict for t in tables} == EXPECTED_COLUMNS
        assert applied(db) == MIGRATION_NAMES


def test_indexes_cover_sidebar_messages_keys_documents_and_usage(tmp_path):
    with Store(tmp_path / "workbench.db") as store:
        db = store.db
        indexes = {
            (t, i.name): (tuple(i.columns), bool(i.unique))
            for t in db.table_names()
            for i in db[t].indexes
            if not i.name.startswith("sqlite_autoindex")
        }
    assert indexes == {
        ("_sqlite_migrations", "idx__sqlite_migrations_migration_set_name"): (
            ("migration_set", "name"),
            True,
        ),
        ("api_keys", "api_keys_active_name"): (("name",), True),
        ("api_keys", "api_keys_active_hash"): (("key_hash",), True),
        ("conversations", "conversations_owner_updated"): (("owner", "updated_at"), False),
        ("messages", "messages_conversation"): (("conversation_id",), False),
        ("documents", "documents_owner_sha256"): (("owner", "sha256"), True),
        ("conversation_documents", "conversation_documents_document"): (("document_id",), False),
        ("usage_log", "usage_log_key_time"): (("key_name", "created_at"), False),
        ("usage_log", "usage_log_time"): (("created_at",), False),
        ("usage_log", "usage_log_request"): (("request_id",), True),
    }


def test_sidebar_and_message_listing_use_their_indexes(tmp_path):
    with Store(tmp_path / "workbench.db") as store:
        plan = lambda sql, params: " ".join(  # noqa: E731
            row["detail"] for row in store.db.query("EXPLAIN QUERY PLAN " + sql, params)
        )
        sidebar = plan(
            "SELECT * FROM conversations WHERE owner = ?"
            " ORDER BY updated_at DESC, id DESC LIMIT 50",
            ["alice"],
        )
        messages = plan("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", [1])
    # The index delivers rows already in order: no sort step ("USE TEMP B-TREE").
    assert sidebar == "SEARCH conversations USING INDEX conversations_owner_updated (owner=?)"
    assert messages == "SEARCH messages USING INDEX messages_conversation (conversation_id=?)"


def test_ids_of_deleted_rows_are_never_reused(tmp_path):
    with Store(tmp_path / "workbench.db") as store:
        db = store.db
        first = create_conversation(db, "alice")
        message = add_message(db, "alice", first, "user", "hi")
        delete_conversation(db, "alice", first)
        second = create_conversation(db, "alice")
        assert second == first + 1
        assert add_message(db, "alice", second, "user", "hi") == message + 1


def test_opening_again_applies_nothing_and_keeps_rows(tmp_path):
    path = tmp_path / "workbench.db"
    with Store(path) as store:
        cid = create_conversation(store.db, "alice", title="kept")
        first = [(m.name, m.applied_at) for m in migrations.applied(store.db)]
    with Store(path) as store:
        assert [(m.name, m.applied_at) for m in migrations.applied(store.db)] == first
        assert store.db["conversations"].get(cid)["title"] == "kept"


def test_database_from_first_migration_upgrades_without_losing_rows(tmp_path):
    path = tmp_path / "workbench.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m002_search")
    assert applied(old) == ["m001_initial"]
    assert "messages_fts" not in old.table_names()
    old["api_keys"].insert({"name": "alice", "key_hash": "h" * 64, "admin": 1, "created_at": 1.0})
    old["conversations"].insert(
        {"id": 7, "owner": "alice", "title": "Old times", "created_at": 2.0, "updated_at": 3.0}
    )
    old["messages"].insert(
        {"conversation_id": 7, "role": "user", "content": "remember the walrus", "created_at": 2.5}
    )
    old.close()

    with Store(path) as store:
        db = store.db
        assert applied(db) == MIGRATION_NAMES
        assert list(db.query("SELECT name, key_hash, admin, created_at FROM api_keys")) == [
            {"name": "alice", "key_hash": "h" * 64, "admin": 1, "created_at": 1.0}
        ]
        assert list(
            db.query("SELECT id, owner, title, system_prompt, params FROM conversations")
        ) == [
            {"id": 7, "owner": "alice", "title": "Old times", "system_prompt": "", "params": "{}"}
        ]
        assert [(m["role"], m["content"], m["status"]) for m in list_messages(db, "alice", 7)] == [
            ("user", "remember the walrus", "complete")
        ]
        # The search index was built from the rows that were already there.
        assert [h["conversation_id"] for h in search_conversations(db, "alice", "walrus")] == [7]
        assert [h["conversation_id"] for h in search_conversations(db, "alice", "old times")] == [7]
        # And the new tables work alongside the old rows.
        add_message(db, "alice", 7, "assistant", "goo goo g'joob")
        assert len(list_messages(db, "alice", 7)) == 2


def test_database_from_m004_gets_its_cjk_rows_searchable(tmp_path):
    path = tmp_path / "workbench.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m005_cjk_search")
    assert applied(old) == MIGRATION_NAMES[: MIGRATION_NAMES.index("m005_cjk_search")]
    old["conversations"].insert_all(
        [
            {
                "id": 1,
                "owner": "alice",
                "title": "长文档分析",
                "created_at": 1.0,
                "updated_at": 1.0,
            },
            {"id": 2, "owner": "alice", "title": "misc", "created_at": 1.0, "updated_at": 2.0},
            {"id": 3, "owner": "alice", "title": None, "created_at": 1.0, "updated_at": 3.0},
        ]
    )
    old["messages"].insert_all(
        [
            {
                "conversation_id": 2,
                "role": "user",
                "content": "日本語の文書を検索する",
                "created_at": 2.0,
            },
            {
                "conversation_id": 3,
                "role": "user",
                "content": "plain English only",
                "created_at": 3.0,
            },
            {
                "conversation_id": 3,
                "role": "user",
                "content": "café, déjà vu 😀",
                "created_at": 3.0,
            },
        ]
    )
    old.close()

    with Store(path) as store:
        db = store.db
        assert applied(db) == MIGRATION_NAMES

        def found(query: str) -> list[int]:
            return [h["conversation_id"] for h in search_conversations(db, "alice", query)]

        assert found("文档") == [1]
        assert found("文書") == [2]
        assert found("検索") == [2]
        # Only rows with CJK were copied into the trigram indexes (not accents, not emoji).
        assert [r["rowid"] for r in db.query("SELECT rowid FROM messages_cjk")] == [1]
        assert [r["rowid"] for r in db.query("SELECT rowid FROM conversations_cjk")] == [1]
        assert found("english") == [3]
