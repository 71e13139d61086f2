"""Conversations over time in the browser: reload, restart, a crash mid-answer, search,
rename and delete, export and import, other keys, a long history.

Chromium → Gradio UI → our /v1 → the real vLLM engine, real SQLite (read directly only to
check what was stored).
"""

from __future__ import annotations

import os
import re
import secrets
import signal

from playwright.sync_api import expect

from storage import Store
from storage.keys import create_key
from tests.helpers import app_env, wait_until
from tests.ui_helpers import (
    STREAM_TIMEOUT,
    answer_text,
    last_answer,
    new_conversation,
    open_conversation_id,
    send,
    sign_in,
    stored_messages,
    unique,
    wait_for_answer,
)


def test_reload_signs_back_in_and_reopens_the_conversation(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page)
    question = f"What is a {unique('pelican')}?"
    draft = page.locator("#draft textarea")
    draft.fill("Hello,")
    draft.press("Shift+Enter")  # a new line, not a send
    expect(draft).to_have_value("Hello,\n")
    send(page, question, enter=True)
    wait_for_answer(page)
    cid = open_conversation_id(page)
    page.reload()
    expect(page.locator("#chatbot [data-testid=user]").last).to_contain_text(question)
    expect(last_answer(page).locator(".wb-stats")).to_be_visible()
    expect(page.locator(f"#conversation-list input[value='{cid}']")).to_be_checked()
    # Newest first: the conversation just used tops the list.
    expect(page.locator("#conversation-list label").first).to_contain_text(question[:40])


def test_search_finds_a_conversation_by_words_of_its_answer(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=40)
    send(page, f"Describe the ocean in two sentences. ({unique('ref')})")
    wait_for_answer(page)
    cid = open_conversation_id(page)
    stored = stored_messages(app, cid)[-1]["content"]
    words = sorted(set(re.findall(r"[A-Za-z]{5,}", stored)), key=len, reverse=True)[:2]
    assert words, stored
    page.locator("#conversation-search input").fill(" ".join(words))
    expect(page.locator(f"#conversation-list input[value='{cid}']")).to_have_count(1)
    expect(page.locator("#conversation-list")).to_contain_text(words[0])
    # A word nobody wrote finds nothing.
    page.locator("#conversation-search input").fill(unique("zzqx").replace("-", ""))
    expect(page.locator("#conversation-list label")).to_have_count(0)


def test_rename_then_delete_after_confirming(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=8)
    send(page, "Name three colours.")
    wait_for_answer(page)
    cid = open_conversation_id(page)
    title = unique("Colours")
    page.locator("#conversation-title input").fill(title)
    page.locator("#rename-button").click()
    entry = page.locator("#conversation-list label", has=page.locator(f"input[value='{cid}']"))
    expect(entry).to_contain_text(title)
    page.reload()
    expect(entry).to_contain_text(title)
    # Delete asks first; "Keep it" keeps it.
    page.locator("#delete-button").click()
    expect(page.locator("#delete-confirm-message")).to_contain_text(title)
    page.locator("#delete-cancel").click()
    expect(page.locator("#delete-confirm")).to_be_hidden()
    expect(entry).to_have_count(1)
    page.locator("#delete-button").click()
    page.locator("#delete-confirm").click()
    expect(entry).to_have_count(0)
    expect(page.locator("#conversation-list")).not_to_contain_text(title)
    assert stored_messages(app, cid) == []


def test_another_key_sees_none_of_the_first_keys_conversations(browser, page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=8)
    question = f"Hello from {unique('alice')}"
    send(page, question)
    wait_for_answer(page)
    cid = open_conversation_id(page)
    with Store(app.data_dir / "workbench.db") as store:
        bob_key = create_key(store.db, unique("bob"))
    bob = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    try:
        sign_in(bob, app.url, bob_key)
        expect(bob.locator("#whoami")).to_contain_text("bob")
        expect(bob.locator("#conversation-list label")).to_have_count(0)
        expect(bob.locator("#chatbot [data-testid=user]")).to_have_count(0)
        bob.locator("#conversation-search input").fill(question.split()[-1])
        expect(bob.locator("#conversation-list label")).to_have_count(0)
        expect(bob.locator(f"#conversation-list input[value='{cid}']")).to_have_count(0)
    finally:
        bob.context.close()


def test_a_long_history_lists_the_newest_and_search_finds_the_rest(page, app):
    from storage.conversations import create_conversation

    owner = unique("archivist")
    with Store(app.data_dir / "workbench.db") as store:
        key = create_key(store.db, owner)
        for n in range(203):
            create_conversation(store.db, owner, title=f"Topic {n:03d}", created_at=1_000 + n)
    sign_in(page, app.url, key)
    expect(page.locator("#conversation-list label")).to_have_count(200)
    expect(page.locator("#conversation-list label").first).to_contain_text("Topic 202")
    expect(page.locator("#conversation-more")).to_contain_text(
        "The newest 200 of 203 conversations: search finds the others."
    )
    page.locator("#conversation-search input").fill("Topic 000")
    expect(page.locator("#conversation-list label").first).to_contain_text("Topic 000")
    expect(page.locator("#conversation-more")).to_have_text("")


def test_export_json_then_import_it_back(page, app, tmp_path):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=6)
    question = f"Export me {unique('x')}"
    send(page, question)
    wait_for_answer(page)
    with page.expect_download() as download:
        page.locator("#export-json").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.suffix == ".json" and question in saved.read_text()
    with page.expect_download() as markdown:
        page.locator("#export-markdown").click()
    assert markdown.value.suggested_filename.endswith(".md")
    with page.expect_file_chooser() as chooser:
        page.locator("#import-json").click()
    chooser.value.set_files(str(saved))
    expect(page.locator("#conversation-list label", has_text=question)).to_have_count(2)
    imported = open_conversation_id(page)
    expect(page.locator("#chatbot [data-testid=user]").last).to_contain_text(question)
    assert [m["content"] for m in stored_messages(app, imported)][0] == question


def test_a_server_restart_keeps_the_sign_in_and_the_conversation(
    page, engine_url, model_dir, tmp_path
):
    from tests.harness import free_port, start_app

    key = "test-admin-" + secrets.token_hex(8)
    env = app_env(tmp_path / "data", engine_url, model_dir, key)
    port = free_port()  # the same origin after the restart, so the browser's storage applies
    proc, url = start_app(env, tmp_path / "logs", port=port)
    try:
        sign_in(page, url, key)
        new_conversation(page, max_tokens=8)
        question = f"Remember {unique('me')}"
        send(page, question)
        wait_for_answer(page)
        before = answer_text(page)
    finally:
        proc.stop()
    proc, url = start_app(env, tmp_path / "logs", port=port)
    try:
        page.reload()
        expect(page.locator("#chatbot [data-testid=user]").last).to_contain_text(question)
        expect(last_answer(page)).to_contain_text(before)
        expect(page.locator("#conversation-list label.selected")).to_contain_text(question)
    finally:
        proc.stop()


def _answer_rows(db_path) -> list[dict]:
    with Store(db_path) as store:
        return list(
            store.db.query(
                "SELECT id, content, status, error FROM messages WHERE role = 'assistant'"
            )
        )


def test_an_answer_cut_by_a_server_crash_keeps_its_text(page, engine_url, model_dir, tmp_path):
    from tests.harness import free_port, start_app

    key = "test-admin-" + secrets.token_hex(8)
    env = app_env(tmp_path / "data", engine_url, model_dir, key)
    db_path = tmp_path / "data" / "workbench.db"
    port = free_port()
    proc, url = start_app(env, tmp_path / "logs", port=port)
    try:
        sign_in(page, url, key)
        new_conversation(page, max_tokens=1500)
        send(page, "Tell a very long story about a lighthouse keeper and the sea.")
        expect(last_answer(page)).to_contain_text("▍", timeout=STREAM_TIMEOUT)
        # The row is added at the first token and saved again every few seconds.
        seen = []  # the streaming answer's texts, as saved

        def checkpointed() -> bool:
            rows = _answer_rows(db_path)
            if rows and rows[-1]["status"] == "streaming":
                seen.append(rows[-1]["content"])
            return len(set(seen)) > 1

        wait_until(
            checkpointed, timeout=60, interval=0.3, message="no checkpoint of the streaming answer"
        )
        os.killpg(proc.pid, signal.SIGKILL)  # no shutdown, no final save
        proc.stop()
    finally:
        proc.stop()
    [kept] = _answer_rows(db_path)
    assert kept["status"] == "streaming" and len(kept["content"]) > len(seen[0])

    proc, url = start_app(env, tmp_path / "logs", port=port)
    try:
        [after] = _answer_rows(db_path)
        assert (after["status"], after["content"]) == ("error", kept["content"])
        assert after["error"].startswith("The server stopped while this answer was being written")
        page.reload()
        expect(last_answer(page).locator(".wb-error")).to_contain_text(
            "The server stopped while this answer was being written"
        )
        words = re.findall(r"[A-Za-z]{5,}", kept["content"])  # plain words: Markdown renders
        expect(last_answer(page)).to_contain_text(words[0])
        expect(last_answer(page)).to_contain_text(words[-1])
    finally:
        proc.stop()
