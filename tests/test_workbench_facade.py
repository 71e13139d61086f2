"""server.workbench: the owner-scoped facade the UI calls (real SQLite, real tokenizer)."""

from __future__ import annotations

import asyncio
import json
import math
from types import SimpleNamespace

import pytest

from server.sampling import DEFAULT_PARAMS, normalize_params
from server.tokens import TokenCounter
from server.workbench import Identity, ImportFormatError, NotFoundError, Resend, Workbench
from server.workbench.fit import prompt_messages
from storage import Store
from storage.keys import create_key, revoke_key
from storage.usage import log_request


@pytest.fixture(scope="module")
def counter(model_dir) -> TokenCounter:
    return TokenCounter.from_dir(model_dir)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "workbench.db") as store:
        yield store


@pytest.fixture
def wb(store, counter, tmp_path) -> Workbench:
    services = SimpleNamespace(
        store=store,
        counter=counter,
        engine=SimpleNamespace(max_context=8192),
        settings=SimpleNamespace(data_dir=tmp_path),
    )
    return Workbench(services)


def conversation_with(wb: Workbench, owner: str, *turns: tuple[str, str, str]) -> int:
    """A conversation of (question, answer, answer status) turns."""
    cid = wb.create_conversation(owner)
    for question, answer, status in turns:
        wb.add_user_message(owner, cid, question)
        wb.save_answer(
            owner,
            cid,
            answer,
            model="qwen3",
            stats={"completion_tokens": 3},
            status=status,
            error="boom" if status == "error" else None,
        )
    return cid


def test_sign_in_accepts_active_keys_and_nothing_else(wb, store):
    secret = create_key(store.db, "alice")
    assert wb.sign_in(secret) == Identity(owner="alice", admin=False)
    assert wb.sign_in(f"  {secret}\n") == Identity(owner="alice", admin=False)
    assert wb.sign_in("wb-wrong") is None
    assert wb.sign_in("") is None and wb.sign_in(None) is None
    revoke_key(store.db, "alice")
    assert wb.sign_in(secret) is None


def test_an_owner_sees_and_touches_only_their_own_conversations(wb):
    cid = conversation_with(wb, "alice", ("Secret plans about walruses", "Noted.", "complete"))
    assert [c["id"] for c in wb.list_conversations("alice")] == [cid]
    assert wb.list_conversations("bob") == []
    assert wb.get_conversation("bob", cid) is None
    assert wb.messages("bob", cid) == []
    assert wb.search("bob", "walruses") == []
    assert wb.rename("bob", cid, "mine now") is False
    assert wb.delete("bob", cid) is False
    assert wb.save_settings("bob", cid, system_prompt="x", params={}) is False
    with pytest.raises(NotFoundError):
        wb.add_user_message("bob", cid, "hi")
    with pytest.raises(NotFoundError):
        wb.export_json("bob", cid)
    assert wb.get_conversation("alice", cid)["title"] == "Secret plans about walruses"
    assert [hit["conversation_id"] for hit in wb.search("alice", "walruses")] == [cid]


def test_params_are_completed_with_the_documented_defaults_and_clamped():
    assert normalize_params(None) == {
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 2048,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop": [],
    }
    assert normalize_params(
        {
            "temperature": 5,
            "top_p": -1,
            "max_tokens": 0,
            "presence_penalty": math.nan,
            "frequency_penalty": "-9",
            "stop": ["a", "", "b", "c", "d", "e"],
        }
    ) == {
        "temperature": 2.0,
        "top_p": 0.01,
        "max_tokens": 1,
        "presence_penalty": 0.0,
        "frequency_penalty": -2.0,
        "stop": ["a", "b", "c", "d"],
    }
    assert normalize_params({"stop": "END", "temperature": None})["stop"] == ["END"]
    assert normalize_params({"temperature": None})["temperature"] == DEFAULT_PARAMS["temperature"]


def test_settings_are_remembered_and_an_unchanged_save_does_not_reorder(wb):
    first = wb.create_conversation("alice", system_prompt="Be brief.", params={"temperature": 0.2})
    second = wb.create_conversation("alice")
    assert wb.get_conversation("alice", first)["params"]["temperature"] == 0.2
    assert [c["id"] for c in wb.list_conversations("alice")] == [second, first]
    same = wb.get_conversation("alice", first)
    assert wb.save_settings("alice", first, system_prompt="Be brief.", params=same["params"])
    assert [c["id"] for c in wb.list_conversations("alice")] == [second, first]
    assert wb.save_settings(
        "alice", first, system_prompt="Be very brief.", params={**same["params"], "max_tokens": 64}
    )
    changed = wb.get_conversation("alice", first)
    assert (changed["system_prompt"], changed["params"]["max_tokens"]) == ("Be very brief.", 64)
    assert [c["id"] for c in wb.list_conversations("alice")] == [first, second]


def test_prompt_leaves_out_failed_answers_and_keeps_stopped_partials(wb):
    cid = conversation_with(
        wb,
        "alice",
        ("one", "partial", "stopped"),
        ("two", "", "error"),
        ("three", "ok", "complete"),
    )
    assert prompt_messages("Be kind.", wb.messages("alice", cid), "four") == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "partial"},
        {"role": "user", "content": "two"},
        {"role": "user", "content": "three"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "four"},
    ]
    assert prompt_messages("  ", [], None) == []


def test_regenerate_drops_the_answers_after_the_last_question(wb):
    cid = conversation_with(wb, "alice", ("q1", "a1", "complete"), ("q2", "a2", "error"))
    assert wb.drop_last_answer("alice", cid) is True
    assert [(m["role"], m["content"]) for m in wb.messages("alice", cid)] == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
    ]
    # Nothing to drop: still a question to answer.
    assert wb.drop_last_answer("alice", cid) is True
    empty = wb.create_conversation("alice")
    assert wb.drop_last_answer("alice", empty) is False


def test_a_question_goes_to_the_open_conversation_with_the_panels_settings_or_a_new_one(wb):
    params = normalize_params({"temperature": 0.2})
    cid, created = wb.open_conversation("alice", None, system_prompt="Be brief.", params=params)
    assert created and wb.get_conversation("alice", cid)["params"]["temperature"] == 0.2
    again = wb.open_conversation("alice", cid, system_prompt="Be terse.", params=params)
    assert again == (cid, False)
    assert wb.get_conversation("alice", cid)["system_prompt"] == "Be terse."
    kept = wb.open_conversation("alice", cid, system_prompt="", params={}, keep_settings=True)
    assert (
        kept == (cid, False) and wb.get_conversation("alice", cid)["system_prompt"] == "Be terse."
    )
    # Another owner's id is a missing conversation: bob gets his own, alice's is untouched.
    theirs, created = wb.open_conversation("bob", cid, system_prompt="", params=params)
    assert created and theirs != cid and wb.count_conversations("alice") == 1


def test_the_question_to_answer_is_the_draft_or_the_one_left_unanswered(wb):
    cid = conversation_with(wb, "alice", ("q1", "a1", "complete"))
    assert wb.question_to_answer("alice", cid, "   ") is False  # answered already
    assert wb.question_to_answer("alice", cid, " q2 ") is True
    assert wb.question_to_answer("alice", cid, None) is True  # q2 waits for its answer
    assert [m["content"] for m in wb.messages("alice", cid)] == ["q1", "a1", "q2"]
    assert wb.question_to_answer("alice", wb.create_conversation("alice"), "") is False


def test_only_the_last_question_can_be_edited_and_what_followed_goes(wb):
    cid = conversation_with(wb, "alice", ("q1", "a1", "complete"), ("q2", "a2", "complete"))
    q1, _, q2, _ = (m["id"] for m in wb.messages("alice", cid))
    assert wb.edit_last_user_message("alice", cid, q1, "new q1") is False
    assert wb.edit_last_user_message("alice", cid, q2, "   ") is False
    assert wb.edit_last_user_message("bob", cid, q2, "hijack") is False
    assert wb.edit_last_user_message("alice", cid, q2, " new q2 ") is True
    assert [(m["role"], m["content"]) for m in wb.messages("alice", cid)] == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "new q2"),
    ]


def test_an_edited_question_is_resent_in_place_when_last_else_in_a_branch(wb):
    cid = conversation_with(wb, "alice", ("q1", "a1", "complete"), ("q2", "a2", "complete"))
    q1, _, q2, _ = (m["id"] for m in wb.messages("alice", cid))
    assert wb.resend_edited("alice", cid, q2, "new q2") == Resend(cid, branched=False, title=None)
    assert [m["content"] for m in wb.messages("alice", cid)] == ["q1", "a1", "new q2"]
    branch = wb.resend_edited("alice", cid, q1, "new q1")
    assert branch.branched and branch.cid != cid
    assert branch.title == wb.get_conversation("alice", branch.cid)["title"]
    assert branch.title.endswith(" (edited)")
    assert [m["content"] for m in wb.messages("alice", branch.cid)] == ["new q1"]
    assert [m["content"] for m in wb.messages("alice", cid)] == ["q1", "a1", "new q2"]
    assert wb.resend_edited("alice", cid, q1, "  ") is None
    assert wb.resend_edited("bob", cid, q1, "hijack") is None
    assert wb.count_conversations("alice") == 2


def test_prompt_counts_are_the_tokenizers_with_the_chat_template(wb, counter):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi 你好"}]
    assert asyncio.run(wb.count_prompt(messages)) == counter.count_messages(messages)
    assert asyncio.run(wb.count_text("def f():\n    return 1")) == counter.count_text(
        "def f():\n    return 1"
    )


def test_export_then_import_makes_an_equal_new_conversation(wb):
    cid = conversation_with(wb, "alice", ("Port this to Rust", "fn main() {}", "stopped"))
    wb.rename("alice", cid, "Rust: port")
    md_name, markdown = wb.export_markdown("alice", cid)
    assert md_name == "rust-port.md"
    assert markdown.startswith("# Rust: port\n") and "fn main() {}" in markdown
    json_name, text = wb.export_json("alice", cid)
    assert json_name == "rust-port.json"
    copy, missing = wb.import_json("bob", text.encode())
    assert copy != cid and missing == []
    strip = lambda ms: [(m["role"], m["content"], m["status"]) for m in ms]  # noqa: E731
    assert strip(wb.messages("bob", copy)) == strip(wb.messages("alice", cid))
    assert wb.get_conversation("bob", copy)["title"] == "Rust: port"


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"format": "something else"}).encode(), "not a conversation export"),
    ],
)
def test_import_of_a_bad_file_says_what_is_wrong_and_stores_nothing(wb, raw, message):
    with pytest.raises(ImportFormatError, match=message):
        wb.import_json("alice", raw)
    assert wb.list_conversations("alice") == []


def test_rename_refuses_an_empty_title(wb):
    cid = wb.create_conversation("alice")
    with pytest.raises(ValueError):
        wb.rename("alice", cid, "  \n ")
    assert wb.rename("alice", cid, "  Two   words ") is True
    assert wb.get_conversation("alice", cid)["title"] == "Two words"


def test_usage_series_counts_only_the_owners_key(wb, store):
    for key_name, tokens in (("alice", 10), ("alice", 5), ("bob", 100)):
        log_request(
            store.db,
            key_name=key_name,
            endpoint="/v1/chat/completions",
            model="qwen3",
            status_code=200,
            prompt_tokens=tokens,
            completion_tokens=1,
        )
    rows = wb.usage_series("alice", window_seconds=600, bucket_seconds=60)
    assert sum(r["requests"] for r in rows) == 2
    assert sum(r["prompt_tokens"] for r in rows) == 15
    by_endpoint = wb.usage_by_endpoint("alice", window_seconds=600)
    assert [(e["endpoint"], e["requests"], e["prompt_tokens"]) for e in by_endpoint] == [
        ("/v1/chat/completions", 2, 15)
    ]


def test_the_browser_secret_is_stable_per_data_dir(wb, tmp_path):
    other = Workbench(SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path / "elsewhere")))
    assert wb.browser_secret() == wb.browser_secret()
    assert wb.browser_secret() != other.browser_secret()
    assert len(wb.browser_secret()) == 32


def test_a_stopped_app_says_so_instead_of_failing_obscurely(tmp_path):
    services = SimpleNamespace(store=None, settings=SimpleNamespace(data_dir=tmp_path))
    with pytest.raises(RuntimeError, match="not running"):
        Workbench(services).list_conversations("alice")


def test_the_prompt_of_a_conversation_is_its_history_plus_the_draft(wb):
    cid = conversation_with(wb, "alice", ("q1", "a1", "complete"))
    assert wb.prompt("alice", cid, system_prompt="S", draft="q2") == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    assert wb.prompt("alice", None, system_prompt="", draft="hi") == [
        {"role": "user", "content": "hi"}
    ]
    assert wb.prompt("bob", cid, system_prompt="") == []


def test_an_answer_begun_while_streaming_is_checkpointed_then_finished_in_place(wb):
    cid = conversation_with(wb, "alice")
    wb.add_user_message("alice", cid, "Count to five.")
    mid = wb.begin_answer("alice", cid, "1", model="qwen3")
    wb.checkpoint_answer("alice", mid, "1 2 3")
    assert [(m["content"], m["status"]) for m in wb.messages("alice", cid)][-1] == (
        "1 2 3",
        "streaming",
    )
    assert (
        wb.save_answer(
            "alice", cid, "1 2 3 4 5", model="qwen3", stats={"ttft_ms": 9.5}, message_id=mid
        )
        == mid
    )
    [_, answer] = wb.messages("alice", cid)
    assert (answer["id"], answer["content"], answer["status"], answer["ttft_ms"]) == (
        mid,
        "1 2 3 4 5",
        "complete",
        9.5,
    )
    # Another owner cannot finish it; a row that is gone is added again.
    with pytest.raises(NotFoundError):
        wb.save_answer("bob", cid, "hijack", model="qwen3", stats={}, message_id=mid)
    assert wb.messages("alice", cid)[-1]["content"] == "1 2 3 4 5"
    wb.drop_last_answer("alice", cid)
    again = wb.save_answer(
        "alice", cid, "1 2", model="qwen3", stats={}, status="stopped", message_id=mid
    )
    assert again != mid
    assert [(m["id"], m["content"]) for m in wb.messages("alice", cid)][-1] == (again, "1 2")


async def test_answer_draft_writes_one_at_a_time_and_settles_before_the_final_save(wb, monkeypatch):
    from server.workbench import answer

    monkeypatch.setattr(answer, "CHECKPOINT_SECONDS", 0.0)
    cid = conversation_with(wb, "alice")
    wb.add_user_message("alice", cid, "Count.")
    assert await answer.AnswerDraft(wb, "alice", cid, model="qwen3").settled() is None
    draft = answer.AnswerDraft(wb, "alice", cid, model="qwen3")
    texts = [" ".join(str(n) for n in range(1, i + 1)) for i in range(1, 200)]
    for text in texts:
        draft.update(text)  # never waits for SQLite
        await asyncio.sleep(0.001)
    mid = await draft.settled()
    [_, row] = wb.messages("alice", cid)
    assert (row["id"], row["status"]) == (mid, "streaming")
    assert row["content"] in texts and row["content"] != texts[0]  # begun, then checkpointed
    wb.save_answer("alice", cid, texts[-1], model="qwen3", stats={}, message_id=mid)
    [_, row] = wb.messages("alice", cid)
    assert (row["id"], row["content"], row["status"]) == (mid, texts[-1], "complete")
