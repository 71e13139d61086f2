"""Conversations and messages: owner scoping, titles, cut-short answers, delete, export/import."""

import json

import pytest

from server.workbench.markdown import export_markdown
from storage import ImportFormatError, NotFoundError, messages
from storage import conversations as conv
from storage.conversations import (
    create_conversation,
    delete_conversation,
    export_json,
    get_conversation,
    import_json,
    list_conversations,
    rename_conversation,
    update_conversation_settings,
)
from storage.messages import add_message, delete_message, list_messages, update_message

STATS = {
    "prompt_tokens": 12,
    "completion_tokens": 34,
    "cached_tokens": 8,
    "ttft_ms": 150.0,
    "decode_tps": 22.5,
    "total_ms": 1660.0,
    "finish_reason": "stop",
    "replica": "http://gpu1:8001",
}
NO_STATS = dict.fromkeys(STATS)


@pytest.fixture
def clock(monkeypatch):
    """time.time() that advances one second per call, so ordering is deterministic."""
    now = [1_000.0]

    def tick() -> float:
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(conv.time, "time", tick)
    return now


def test_new_conversation_has_exactly_these_fields(db, clock):
    cid = create_conversation(db, "alice", system_prompt="Be brief.", params={"temperature": 0.2})
    assert get_conversation(db, "alice", cid) == {
        "id": cid,
        "owner": "alice",
        "title": None,
        "system_prompt": "Be brief.",
        "params": {"temperature": 0.2},
        "created_at": 1001.0,
        "updated_at": 1001.0,
    }


def test_another_owner_sees_nothing_and_changes_nothing(db):
    cid = create_conversation(db, "alice", title="private")
    mid = add_message(db, "alice", cid, "user", "secret plans")
    assert get_conversation(db, "bob", cid) is None
    assert list_conversations(db, "bob") == []
    assert list_messages(db, "bob", cid) == []
    assert rename_conversation(db, "bob", cid, "mine now") is False
    assert update_conversation_settings(db, "bob", cid, system_prompt="x") is False
    assert update_message(db, "bob", mid, content="changed") is False
    assert delete_message(db, "bob", mid) is False
    assert delete_conversation(db, "bob", cid) is False
    with pytest.raises(NotFoundError):
        add_message(db, "bob", cid, "user", "hello")
    with pytest.raises(NotFoundError):
        export_json(db, "bob", cid)
    assert get_conversation(db, "alice", cid)["title"] == "private"
    assert [m["content"] for m in list_messages(db, "alice", cid)] == ["secret plans"]


def test_sidebar_lists_most_recently_updated_first_and_pages(db, clock):
    first = create_conversation(db, "alice", title="first")
    second = create_conversation(db, "alice", title="second")
    third = create_conversation(db, "alice", title="third")
    add_message(db, "alice", first, "user", "bump")
    ids = lambda **page: [c["id"] for c in list_conversations(db, "alice", **page)]  # noqa: E731
    assert ids() == [first, third, second]
    assert ids(limit=2) == [first, third]
    assert ids(limit=2, offset=2) == [second]


def test_conversations_are_counted_per_owner(db):
    for _ in range(3):
        create_conversation(db, "alice")
    create_conversation(db, "bob")
    assert (
        conv.count_conversations(db, "alice"),
        conv.count_conversations(db, "bob"),
        conv.count_conversations(db, "carol"),
    ) == (3, 1, 0)


def test_first_user_message_titles_an_untitled_conversation(db):
    cid = create_conversation(db, "alice")
    add_message(db, "alice", cid, "system", "You are helpful.")
    add_message(
        db,
        "alice",
        cid,
        "user",
        "  How do I\nreverse a linked list in Rust without unsafe code or cloning nodes?",
    )
    add_message(db, "alice", cid, "user", "another question")
    assert get_conversation(db, "alice", cid)["title"] == (
        "How do I reverse a linked list in Rust without unsafe code…"
    )


def test_messages_list_in_order_with_stats_flattened(db, clock):
    cid = create_conversation(db, "alice")
    user = add_message(db, "alice", cid, "user", "hi")
    answer = add_message(db, "alice", cid, "assistant", "hello", model="qwen3", stats=STATS)
    assert list_messages(db, "alice", cid) == [
        {
            "id": user,
            "role": "user",
            "content": "hi",
            "model": None,
            "status": "complete",
            "error": None,
            "created_at": 1002.0,
            **NO_STATS,
        },
        {
            "id": answer,
            "role": "assistant",
            "content": "hello",
            "model": "qwen3",
            "status": "complete",
            "error": None,
            "created_at": 1003.0,
            **STATS,
        },
    ]
    assert get_conversation(db, "alice", cid)["updated_at"] == 1003.0


def test_answer_cut_short_keeps_partial_text_and_the_reason(db):
    cid = create_conversation(db, "alice")
    mid = add_message(db, "alice", cid, "assistant", "The answer is", model="qwen3")
    assert update_message(
        db,
        "alice",
        mid,
        content="The answer is 4",
        status="stopped",
        error="stopped by user",
        stats={"completion_tokens": 4, "finish_reason": "abort"},
    )
    [message] = list_messages(db, "alice", cid)
    assert (message["content"], message["status"], message["error"]) == (
        "The answer is 4",
        "stopped",
        "stopped by user",
    )
    assert (message["completion_tokens"], message["finish_reason"]) == (4, "abort")


def test_answers_a_stopped_server_left_streaming_are_marked_failed_with_their_text(db):
    cid = create_conversation(db, "alice")
    add_message(db, "alice", cid, "user", "Tell a story.")
    mid = add_message(
        db, "alice", cid, "assistant", "Once", model="qwen3", status=messages.STREAMING
    )
    update_message(db, "alice", mid, content="Once upon a time")
    # An export taken mid-answer carries the text so far, as a stopped answer (importable).
    exported = export_json(db, "alice", cid)
    assert exported["messages"][-1]["status"] == "stopped"
    copy = import_json(db, "bob", exported)
    assert [m["status"] for m in list_messages(db, "bob", copy)] == ["complete", "stopped"]
    assert "Once upon a time\n\n> Answer still being written" in export_markdown(db, "alice", cid)

    done = add_message(db, "alice", cid, "assistant", "Done.", status="complete")
    assert messages.finish_interrupted_answers(db) == 1
    assert messages.finish_interrupted_answers(db) == 0
    by_id = {m["id"]: m for m in list_messages(db, "alice", cid)}
    assert (by_id[mid]["content"], by_id[mid]["status"]) == ("Once upon a time", "error")
    assert by_id[mid]["error"].startswith("The server stopped while this answer")
    assert (by_id[done]["status"], by_id[done]["error"]) == ("complete", None)


def test_invalid_role_status_or_stats_key_is_refused(db):
    cid = create_conversation(db, "alice")
    with pytest.raises(ValueError, match="role"):
        add_message(db, "alice", cid, "robot", "x")
    with pytest.raises(ValueError, match="status"):
        add_message(db, "alice", cid, "assistant", "x", status="done")
    with pytest.raises(ValueError, match="unknown stats keys"):
        add_message(db, "alice", cid, "assistant", "x", stats={"tps": 3})
    assert list_messages(db, "alice", cid) == []


def test_settings_and_rename_change_only_what_is_given(db):
    cid = create_conversation(db, "alice", system_prompt="a", params={"top_p": 0.9})
    assert update_conversation_settings(db, "alice", cid, params={"temperature": 1.0})
    assert rename_conversation(db, "alice", cid, "Renamed")
    got = get_conversation(db, "alice", cid)
    assert (got["title"], got["system_prompt"], got["params"]) == (
        "Renamed",
        "a",
        {"temperature": 1.0},
    )


def test_titles_are_cut_to_a_sidebar_length(db):
    pasted = "word " * 10_000
    cid = create_conversation(db, "alice", title=pasted)
    assert len(get_conversation(db, "alice", cid)["title"]) == conv.MAX_TITLE_CHARS
    assert get_conversation(db, "alice", cid)["title"].endswith("word…")
    exact = "x" * conv.MAX_TITLE_CHARS
    assert rename_conversation(db, "alice", cid, exact)
    assert get_conversation(db, "alice", cid)["title"] == exact
    assert rename_conversation(db, "alice", cid, exact + "y")
    assert get_conversation(db, "alice", cid)["title"] == "x" * (conv.MAX_TITLE_CHARS - 1) + "…"


def fts_rows(db, table: str, match: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH ?", [match]).fetchone()[0]


def test_delete_conversation_removes_messages_search_rows_and_attachments(db):
    cid = create_conversation(db, "alice", title="zebra talk")
    keep = create_conversation(db, "alice", title="other")
    add_message(db, "alice", cid, "user", "zebras are striped")
    add_message(db, "alice", keep, "user", "kept message")
    doc = (
        db["documents"]
        .insert(
            {
                "owner": "alice",
                "filename": "z.pdf",
                "sha256": "z",
                "page_count": 1,
                "tokenizer": "t",
                "status": "ready",
                "created_at": 1.0,
            }
        )
        .last_pk
    )
    db["conversation_documents"].insert(
        {"conversation_id": cid, "document_id": doc, "attached_at": 1.0}
    )

    assert delete_conversation(db, "alice", cid) is True
    assert get_conversation(db, "alice", cid) is None
    assert db.execute(
        "SELECT count(*) FROM messages WHERE conversation_id = ?", [cid]
    ).fetchone() == (0,)
    assert fts_rows(db, "messages_fts", "zebras") == 0
    assert fts_rows(db, "conversations_fts", "zebra") == 0
    assert db["conversation_documents"].count == 0
    assert db["documents"].count == 1  # the document itself stays in the owner's library
    assert [m["content"] for m in list_messages(db, "alice", keep)] == ["kept message"]
    assert delete_conversation(db, "alice", cid) is False


def test_delete_message_removes_it_from_search(db):
    cid = create_conversation(db, "alice", title="t")
    mid = add_message(db, "alice", cid, "user", "ephemeral words")
    assert delete_message(db, "alice", mid) is True
    assert list_messages(db, "alice", cid) == []
    assert fts_rows(db, "messages_fts", "ephemeral") == 0


def make_exportable(db) -> int:
    cid = create_conversation(
        db, "alice", system_prompt="Answer in French.", params={"temperature": 0.7}
    )
    add_message(db, "alice", cid, "user", "What is 2+2?")
    add_message(db, "alice", cid, "assistant", "Quatre.", model="qwen3", stats=STATS)
    add_message(db, "alice", cid, "user", "And 3+3?")
    add_message(
        db,
        "alice",
        cid,
        "assistant",
        "Si",
        model="qwen3",
        status="error",
        error="engine died",
        stats={"completion_tokens": 1},
    )
    return cid


def test_export_json_then_import_round_trips_for_another_owner(db, clock):
    data = export_json(db, "alice", make_exportable(db))
    assert data["format"] == "qwen-workbench.conversation" and data["version"] == 1
    assert [(m["role"], m["status"]) for m in data["messages"]] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "error"),
    ]
    assert data["messages"][1]["stats"] == STATS
    assert data["messages"][3] == {
        "role": "assistant",
        "content": "Si",
        "model": "qwen3",
        "status": "error",
        "error": "engine died",
        "created_at": 1005.0,
        "stats": {"completion_tokens": 1},
    }
    # Through real JSON text, as a file would carry it.
    new = import_json(db, "bob", json.loads(json.dumps(data)))
    again = export_json(db, "bob", new)
    assert again["updated_at"] > data["updated_at"]  # imported: top of bob's sidebar
    assert {**again, "updated_at": None} == {**data, "updated_at": None}
    assert list_conversations(db, "bob")[0]["id"] == new


def test_export_markdown_shows_roles_answers_and_stats(db, clock):
    cid = make_exportable(db)
    assert export_markdown(db, "alice", cid) == (
        "# What is 2+2?\n\n"
        "*Created 1970-01-01 00:16 UTC*\n\n"
        "## System prompt\n\nAnswer in French.\n\n"
        "## User\n\nWhat is 2+2?\n\n"
        "## Assistant (qwen3)\n\nQuatre.\n\n"
        "*TTFT 150 ms · decode 22.5 tok/s · prompt 12 · cached 8 · completion 34"
        " · total 1,660 ms · finish stop · replica gpu1:8001*\n\n"
        "## User\n\nAnd 3+3?\n\n"
        "## Assistant (qwen3)\n\nSi\n\n"
        "> Answer error: engine died\n\n"
        "*completion 1 · failed*\n"
    )


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "must be a JSON object"),
        ({"format": "something else", "version": 1, "messages": []}, "'format' must be"),
        (
            {"format": "qwen-workbench.conversation", "version": 99, "messages": []},
            "unsupported export version 99",
        ),
        ({"format": "qwen-workbench.conversation", "version": 1}, "messages must be a list"),
        (
            {"format": "qwen-workbench.conversation", "version": 1, "messages": ["hi"]},
            r"messages\[0\] must be an object",
        ),
        (
            {
                "format": "qwen-workbench.conversation",
                "version": 1,
                "messages": [{"role": "wizard", "content": "x"}],
            },
            r"messages\[0\].role must be one of",
        ),
        (
            {
                "format": "qwen-workbench.conversation",
                "version": 1,
                "messages": [{"role": "user", "content": 5}],
            },
            r"messages\[0\].content must be a string",
        ),
        (
            {
                "format": "qwen-workbench.conversation",
                "version": 1,
                "messages": [{"role": "user", "content": "x", "stats": {"ttft_ms": "fast"}}],
            },
            r"messages\[0\].stats.ttft_ms must be a float",
        ),
        (
            {
                "format": "qwen-workbench.conversation",
                "version": 1,
                "messages": [{"role": "user", "content": "x", "stats": {"bogus": 1}}],
            },
            r"messages\[0\].stats.bogus is not a known stat",
        ),
        (
            {"format": "qwen-workbench.conversation", "version": 1, "params": [], "messages": []},
            "params must be an object",
        ),
    ],
)
def test_import_rejects_bad_data_with_a_clear_message_and_stores_nothing(db, data, message):
    with pytest.raises(ImportFormatError, match=message):
        import_json(db, "alice", data)
    assert db["conversations"].count == 0
