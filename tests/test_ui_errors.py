"""Errors from /v1 reach the person as readable messages in the chat, and nothing is lost.

Each case runs an app of its own: a low rate limit (real engine), no engine at all, and an
engine that dies mid-answer (the stand-in upstream, for the one fault vLLM cannot produce on
demand).
"""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import expect

from tests.fault_upstream import FaultUpstream
from tests.ui_helpers import (
    last_answer,
    new_conversation,
    send,
    sign_in,
)


def assert_readable_error(page, pattern: str) -> None:
    """The last answer shows `pattern` as an error, and no Python internals leak."""
    error = last_answer(page).locator(".wb-error")
    expect(error).to_contain_text(re.compile(pattern), timeout=60_000)
    expect(page.locator("#chatbot")).not_to_contain_text("Traceback")
    expect(page.locator("#chatbot")).not_to_contain_text("Exception")
    # The answer has ended: Send is back.
    expect(page.locator("#send-button")).to_be_visible()


def test_rate_limit_says_how_long_to_wait_and_shows_the_headroom(page, make_app):
    limited = make_app(WORKBENCH_RPM=2)
    sign_in(page, limited.url, limited.api_key)
    new_conversation(page, max_tokens=4)
    # Requests per minute are a moving window: any three within 60 s, the third is refused.
    for n in (1, 2):
        send(page, f"Say the number {n}.")
        expect(page.locator("#chatbot .wb-stats")).to_have_count(n, timeout=60_000)
    send(page, "And now the number 3.")
    assert_readable_error(page, r"Rate limit reached \(.*\)\. Try again in \d+ s\.")
    # The question was stored anyway, and the headroom shows the exhausted limit.
    expect(page.locator("#chatbot [data-testid=user]").last).to_contain_text("number 3")
    page.get_by_role("tab", name="Usage").click()
    headroom = page.locator("#rate-limit-headroom")
    expect(headroom).to_contain_text("Requests: 0 of 2 left")
    expect(headroom).to_contain_text(re.compile(r"retry after \d+ s"))
    # A reload shows the failed answer as it was.
    page.reload()
    assert_readable_error(page, r"Rate limit reached")


def test_engine_outage_is_a_readable_message_and_the_question_is_kept(page, app_without_engine):
    url, key = app_without_engine
    sign_in(page, url, key)
    new_conversation(page)
    send(page, "Is anybody there?")
    assert_readable_error(page, r"The model engine is not available right now \(503\)")
    page.reload()
    expect(page.locator("#chatbot [data-testid=user]").last).to_contain_text("Is anybody there?")


@pytest.fixture(scope="module")
def fault_upstream():
    with FaultUpstream() as upstream:
        yield upstream


def test_engine_dying_mid_answer_keeps_the_partial_answer_with_the_error(
    page, make_app, fault_upstream
):
    dying = make_app(upstream=fault_upstream.url("die"))
    sign_in(page, dying.url, dying.api_key)
    new_conversation(page)
    send(page, "Greet me.")
    assert_readable_error(page, r"stopped with an error|not available|failed")
    expect(last_answer(page)).to_contain_text("Hello there")
    expect(last_answer(page).locator(".wb-stats")).to_contain_text("failed")


def test_a_prompt_over_the_context_says_so_and_the_gauge_warned_first(page, app):
    sign_in(page, app.url, app.api_key)
    new_conversation(page)
    page.locator("#draft textarea").fill("lighthouse " * 9000)
    gauge = page.locator("#context-gauge .wb-gauge")
    expect(gauge).to_have_class(re.compile(r"wb-gauge-over"))
    expect(gauge).to_contain_text("the answer does not fit")
    page.locator("#send-button").click()
    assert_readable_error(page, r"Too long for the model's context: .*8192")


def test_a_key_revoked_while_signed_in_is_reported_as_rejected(page, app):
    from storage import Store
    from storage.keys import create_key, revoke_key

    name = "carol-" + secrets.token_hex(3)
    with Store(app.data_dir / "workbench.db") as store:
        secret = create_key(store.db, name)
    sign_in(page, app.url, secret)
    new_conversation(page)
    with Store(app.data_dir / "workbench.db") as store:
        revoke_key(store.db, name)
    send(page, "Still there?")
    assert_readable_error(page, r"The API key was rejected .*sign in with a valid key")
    page.reload()
    expect(page.locator("#signin-message")).to_contain_text("no longer valid")
