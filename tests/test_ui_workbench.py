"""The browser workbench, end to end: Chromium → Gradio UI → our /v1 → the real vLLM engine.

Assertions are on what the person sees, with Playwright's retrying expectations; the SQLite
file is read directly only to check what was stored (a stopped answer's status, the usage
log). One browser per module; each test opens its own context (fresh localStorage).
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from storage import Store
from tests.helpers import ARTIFACTS, wait_until
from tests.ui_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    STREAM_TIMEOUT,
    answer_text,
    last_answer,
    new_conversation,
    open_conversation_id,
    owner_of,
    send,
    sign_in,
    stored_messages,
    unique,
    wait_for_answer,
)
from ui import clipboard, formatting
from ui.formatting import close_fences


def test_sign_in_refuses_a_wrong_key_then_accepts_the_real_one(page, app):
    page.goto(app.url)
    page.locator("#signin-key input").fill("wb-not-a-key")
    page.locator("#signin-button").click()
    expect(page.locator("#signin-message")).to_contain_text("not accepted")
    expect(page.locator("#chatbot")).to_be_hidden()
    page.locator("#signin-key input").fill(app.api_key)
    page.locator("#signin-button").click()
    expect(page.locator("#whoami")).to_contain_text(f"Signed in as {owner_of(app)}")
    expect(page.locator("#chatbot")).to_be_visible()


def test_answer_streams_growing_then_shows_its_stats(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=48)
    send(page, "Tell me a short story about a lighthouse keeper.")
    answer = last_answer(page)
    # While streaming, the answer carries a cursor; catch it part-way.
    expect(answer).to_contain_text("▍", timeout=STREAM_TIMEOUT)
    partial = answer.inner_text().replace("▍", "").strip()
    wait_for_answer(page)
    final = answer_text(page)
    assert final.startswith(partial[:10]) and len(final) > len(partial), (partial, final)
    stats = answer.locator(".wb-stats")
    expect(stats).to_contain_text(re.compile(r"TTFT [\d,]+ ms"))
    expect(stats).to_contain_text(re.compile(r"decode [\d,.]+ tok/s"))
    expect(stats).to_contain_text(re.compile(r"prompt [1-9][\d,]*"))
    expect(stats).to_contain_text(re.compile(r"cached \d+"))
    expect(stats).to_contain_text(re.compile(r"completion [1-9][\d,]*"))
    expect(stats).to_contain_text(re.compile(r"finish (stop|length)"))
    # The gauge counts the history now: more than the question alone.
    expect(page.locator("#context-gauge")).to_contain_text(re.compile(r"Context [\d,]+ / 8,192"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "workbench-main.png"))


def test_stop_aborts_the_answer_and_keeps_the_partial(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=1500)
    # Greedy decoding makes this prompt run for hundreds of tokens with the test model.
    page.locator("#temperature input[type=number]").fill("0")
    page.locator("#temperature input[type=number]").press("Tab")
    sent_at = time.time()
    send(page, "Write a very long essay about the history of the Roman Empire.")
    expect(last_answer(page)).to_contain_text(re.compile(r"\w.*▍"), timeout=STREAM_TIMEOUT)
    page.locator("#stop-button").click()
    stats = last_answer(page).locator(".wb-stats")
    expect(stats).to_contain_text("stopped by you")
    expect(page.locator("#send-button")).to_be_visible()
    shown = answer_text(page)
    assert shown
    cid = open_conversation_id(page)
    answer = stored_messages(app, cid)[-1]
    assert (answer["role"], answer["status"]) == ("assistant", "stopped")
    assert 0 < answer["completion_tokens"] < 1500
    # The gateway saw the client go away (it aborts the engine's request then).
    with Store(app.data_dir / "workbench.db") as store:
        wait_until(
            lambda: list(
                store.db.query(
                    "SELECT * FROM usage_log WHERE error_code = 'client_disconnected'"
                    " AND created_at >= ?",
                    [sent_at],
                )
            ),
            interval=0.2,
            message="the stream was not closed when Stop was clicked",
        )
    # And after a reload the partial answer is still there, marked as stopped.
    page.reload()
    expect(last_answer(page).locator(".wb-stats")).to_contain_text("stopped by you")


def test_the_chats_trash_icon_while_an_answer_streams_keeps_the_chat(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=1500)
    page.locator("#temperature input[type=number]").fill("0")
    page.locator("#temperature input[type=number]").press("Tab")
    question = f"Write a very long essay about the history of Rome. ({unique('trash')})"
    send(page, question)
    expect(last_answer(page)).to_contain_text(re.compile(r"\w.*▍"), timeout=STREAM_TIMEOUT)
    cid = open_conversation_id(page)
    # The icon empties the chat in the browser at once; the server puts it back.
    page.locator("#chatbot button[aria-label='Clear']").click()
    expect(page.locator(".toast-body")).to_contain_text("An answer is streaming")
    expect(page.locator("#chatbot [data-testid=user]")).to_contain_text(question)
    expect(last_answer(page)).to_contain_text(re.compile(r"\w.*▍"))
    expect(page.locator(f"#conversation-list input[value='{cid}']")).to_be_checked()
    page.locator("#stop-button").click()
    expect(last_answer(page).locator(".wb-stats")).to_contain_text("stopped by you")
    assert [m["role"] for m in stored_messages(app, cid)] == ["user", "assistant"]


def _clipboard_once_it_changes(reader: Page, before: str) -> str:
    return wait_until(
        lambda: (text := reader.evaluate("navigator.clipboard.readText()")) != before and text,
        message="the clipboard did not change",
        sleep=lambda seconds: reader.wait_for_timeout(seconds * 1000),
    )


@pytest.mark.parametrize("origin", ["http://127.0.0.1:9", "http://workbench.test"])
def test_the_copy_script_keeps_the_answer_exactly_and_drops_only_the_notes(browser, origin):
    """The page script alone (no app): on a secure origin (Clipboard API) and on plain http
    from another host (the script's own writeText); a button click, as Gradio's are."""
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page_html = (
        '<button id="copy" onclick="navigator.clipboard.writeText(window.shown)">copy</button>'
    )
    context.route(
        re.compile(r"http://(127\.0\.0\.1:9|workbench\.test)/.*"),
        lambda route: route.fulfill(body=page_html, content_type="text/html"),
    )
    page, reader = context.new_page(), context.new_page()
    try:
        page.goto(origin + "/")
        reader.goto("http://127.0.0.1:9/")
        assert page.evaluate("window.isSecureContext") == ("127.0.0.1" in origin)
        page.evaluate(clipboard.COPY_JS)
        answer = "Here:\n```py\n    x = 1\n```\n"  # a code block closed by close_fences
        shown = (
            answer
            + formatting.error_block("engine died")
            + formatting.stats_footer({"ttft_ms": 12.0, "completion_tokens": 5, "status": "error"})
        )
        for text, expected in ((shown, answer), ("a <div>kept</div>", "a <div>kept</div>")):
            reader.evaluate("navigator.clipboard.writeText('(before)')")
            page.evaluate("text => { window.shown = text; }", text)
            page.locator("#copy").click()
            assert _clipboard_once_it_changes(reader, "(before)") == expected
    finally:
        context.close()


@pytest.mark.parametrize("origin", ["localhost", "plain http from another host"])
def test_copy_buttons_copy_the_answer_without_its_stats_line(browser, app, origin):
    url, other = app.url, None
    if origin != "localhost":  # no Clipboard API there: Gradio's own buttons had no way to copy
        other = browser.browser_type.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP workbench.test 127.0.0.1"],
        )
        url = app.url.replace("127.0.0.1", "workbench.test")
    context = (other or browser).new_context(
        viewport={"width": 1440, "height": 900}, permissions=["clipboard-read", "clipboard-write"]
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    reader = context.new_page()  # reads the clipboard from a secure origin
    reader.goto(app.url + "/health")
    try:
        sign_in(page, url, app.api_key)
        assert page.evaluate("window.isSecureContext") == (origin == "localhost")
        new_conversation(page, max_tokens=24)
        question = f"Write one line of Python. ({unique('copy')})"
        send(page, question)
        wait_for_answer(page)
        question_msg, stored = stored_messages(app, open_conversation_id(page))[-2:]
        assert stored["role"] == "assistant" and stored["content"].strip(), stored
        # What the message shows as its text (a code block cut by max_tokens is closed).
        answer = close_fences(stored["content"])
        reader.evaluate("navigator.clipboard.writeText('')")
        last_answer(page).hover()
        page.locator("#chatbot button[aria-label='Copy message']").last.click()
        assert _clipboard_once_it_changes(reader, "") == answer
        page.locator("#chatbot button[aria-label='Copy conversation']").click()
        copied = _clipboard_once_it_changes(reader, answer)
        assert copied == f"user: {question_msg['content']}\n\nassistant: {answer}", copied
    finally:
        context.close()
        if other is not None:
            other.close()


def gauge_tokens(page: Page) -> int:
    """The number of prompt tokens the context gauge shows."""
    gauge = page.locator("#context-gauge .wb-gauge")
    expect(gauge).to_have_attribute("data-used", re.compile(r"\d+"))
    return int(gauge.get_attribute("data-used"))


def test_context_gauge_counts_the_draft_before_it_is_sent(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page)
    expect(page.locator("#context-gauge")).to_contain_text("/ 8,192 tokens")
    empty = gauge_tokens(page)
    page.locator("#draft textarea").fill("word " * 200)
    expect(page.locator("#context-gauge .wb-gauge")).not_to_have_attribute("data-used", str(empty))
    assert gauge_tokens(page) >= empty + 200
    with_draft = gauge_tokens(page)
    page.locator("#system-prompt textarea").fill("You are a pirate. " * 20)
    expect(page.locator("#context-gauge .wb-gauge")).not_to_have_attribute(
        "data-used", str(with_draft)
    )
    assert gauge_tokens(page) >= with_draft + 80


def test_regenerate_replaces_the_last_answer(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=12)
    send(page, "Name a fruit.")
    wait_for_answer(page)
    cid = open_conversation_id(page)
    first_id = stored_messages(app, cid)[-1]["id"]
    page.locator("#regenerate-button").click()
    expect(last_answer(page)).to_contain_text("▍", timeout=STREAM_TIMEOUT)
    wait_for_answer(page)
    messages = stored_messages(app, cid)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[-1]["id"] != first_id
    expect(page.locator("#chatbot [data-testid=bot]")).to_have_count(1)


def test_edit_the_last_message_and_resend(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=12)
    send(page, "Name a colour.")
    wait_for_answer(page)
    cid = open_conversation_id(page)
    page.locator("#chatbot button[aria-label='Edit']").last.click()
    page.locator("#chatbot textarea").fill("Name an animal.")
    page.locator("#chatbot button[aria-label='Submit']").click()
    expect(page.locator("#chatbot [data-testid=user]").last).to_contain_text("Name an animal.")
    expect(last_answer(page)).to_contain_text("▍", timeout=STREAM_TIMEOUT)
    wait_for_answer(page)
    messages = stored_messages(app, cid)
    assert [(m["role"], m["content"]) for m in messages][0] == ("user", "Name an animal.")
    assert [m["role"] for m in messages] == ["user", "assistant"]


def test_editing_an_earlier_question_goes_on_in_a_new_conversation(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=8)
    first = f"Name a colour. ({unique('edit')})"
    send(page, first)
    wait_for_answer(page)
    send(page, "Name another one.")
    expect(page.locator("#chatbot [data-testid=bot]")).to_have_count(2)
    wait_for_answer(page)
    original = open_conversation_id(page)
    before = stored_messages(app, original)
    page.locator("#chatbot [data-testid=user]").first.hover()
    page.locator("#chatbot button[aria-label='Edit']").first.click()
    page.locator("#chatbot textarea").fill("Name a fish.")
    page.locator("#chatbot button[aria-label='Submit']").click()
    expect(page.locator(".toast-body")).to_contain_text("goes on in a new conversation")
    expect(page.locator("#conversation-title input")).to_have_value(f"{first} (edited)")
    expect(page.locator("#chatbot [data-testid=user]")).to_have_count(1)
    expect(page.locator("#chatbot [data-testid=user]")).to_contain_text("Name a fish.")
    wait_for_answer(page)
    branch = open_conversation_id(page)
    assert branch != original
    assert [(m["role"], m["status"]) for m in stored_messages(app, branch)] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert stored_messages(app, original) == before  # nothing of the original is lost
    expect(page.locator(f"#conversation-list input[value='{original}']")).to_have_count(1)


def test_settings_are_remembered_per_conversation(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=6)
    page.locator("#system-prompt textarea").fill("Answer like a sailor.")
    send(page, f"Ahoy {unique('a')}")
    wait_for_answer(page)
    first = open_conversation_id(page)
    # A change made after the first message is stored at once.
    page.locator("#max-tokens input").fill("7")
    page.locator("#max-tokens input").press("Tab")
    new_conversation(page, max_tokens=9)
    page.locator("#system-prompt textarea").fill("Answer like a poet.")
    send(page, f"Hello {unique('b')}")
    wait_for_answer(page)
    page.locator(f"#conversation-list input[value='{first}']").locator("..").click()
    expect(page.locator("#system-prompt textarea")).to_have_value("Answer like a sailor.")
    expect(page.locator("#max-tokens input")).to_have_value("7")
    page.reload()
    expect(page.locator("#system-prompt textarea")).to_have_value("Answer like a sailor.")
    with Store(app.data_dir / "workbench.db") as store:
        from storage.conversations import get_conversation

        stored = get_conversation(store.db, owner_of(app), first)
    assert (stored["system_prompt"], stored["params"]["max_tokens"]) == ("Answer like a sailor.", 7)


def test_usage_tab_plots_the_keys_requests(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page, max_tokens=4)
    send(page, "Hi!")
    wait_for_answer(page)
    # An agent's request under the same key shows in its own row of the per-endpoint table.
    httpx.post(
        app.v1 + "/messages",
        headers={"x-api-key": app.api_key},
        timeout=60,
        json={"model": "qwen3", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]},
    )
    page.get_by_role("tab", name="Usage").click()
    expect(page.locator("#usage-totals")).to_contain_text(re.compile(r"[1-9][\d,]* requests"))
    totals = page.locator("#usage-totals table")
    expect(totals).to_contain_text("/v1/chat/completions")
    expect(totals).to_contain_text("/v1/messages")
    expect(page.locator("#rate-limit-headroom")).to_contain_text(
        re.compile(r"Requests: [\d,]+ of 60 left")
    )
    expect(page.locator("#usage-requests canvas, #usage-requests svg").first).to_be_visible()
    page.locator("#usage-range label", has_text="24 h").click()
    expect(page.locator("#usage-totals")).to_contain_text("last 24 hours")


def test_sign_out_forgets_the_remembered_key(page, app):
    sign_in(page, app.url, app.api_key)
    page.reload()
    expect(page.locator("#whoami")).to_contain_text("Signed in as")
    page.locator("#signout-button").click()
    expect(page.locator("#signin-key")).to_be_visible()
    expect(page.locator("#chatbot")).to_be_hidden()
    page.reload()
    expect(page.locator("#signin-key")).to_be_visible()
    expect(page.locator("#chatbot")).to_be_hidden()
