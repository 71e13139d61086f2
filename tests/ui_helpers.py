"""What the browser tests share: Chromium's settings and the steps a person takes."""

from __future__ import annotations

import secrets

from playwright.sync_api import Page, expect

from storage import Store
from storage.keys import authenticate
from storage.messages import list_messages

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# The tiny CPU model writes ~20 tokens/s: keep answers short unless a test needs a long one.
SHORT = 24
STREAM_TIMEOUT = 90_000


def sign_in(page: Page, url: str, key: str) -> None:
    """Open the workbench and sign in; returns once the chat is on screen."""
    page.goto(url)
    page.locator("#signin-key input").fill(key)
    page.locator("#signin-button").click()
    expect(page.locator("#chatbot")).to_be_visible()


def new_conversation(page: Page, max_tokens: int = SHORT) -> None:
    """Start an empty conversation with a small answer budget."""
    page.locator("#new-conversation").click()
    # A new conversation is selected nowhere in the list until its first message.
    expect(page.locator("#conversation-list label.selected")).to_have_count(0)
    expect(page.locator("#chatbot [data-testid=user]")).to_have_count(0)
    page.locator("#max-tokens input").fill(str(max_tokens))
    page.locator("#max-tokens input").press("Tab")


def send(page: Page, text: str, *, enter: bool = False) -> None:
    """Type a message and send it (with the Send button, or the Enter key)."""
    page.locator("#draft textarea").fill(text)
    if enter:
        page.locator("#draft textarea").press("Enter")
    else:
        page.locator("#send-button").click()


def last_answer(page: Page):
    """The last assistant message in the chat."""
    return page.locator("#chatbot [data-testid=bot]").last


def wait_for_answer(page: Page) -> None:
    """Until the last answer has ended (its stats line is shown)."""
    expect(last_answer(page).locator(".wb-stats")).to_be_visible(timeout=STREAM_TIMEOUT)


def answer_text(page: Page) -> str:
    """The last answer as shown, without its stats line."""
    return last_answer(page).evaluate(
        "el => { const c = el.cloneNode(true); c.querySelectorAll('.wb-stats, .wb-error')"
        ".forEach(n => n.remove()); return c.innerText.trim(); }"
    )


def open_conversation_id(page: Page) -> int:
    """Id of the conversation selected in the sidebar."""
    selected = page.locator("#conversation-list label.selected input")
    expect(selected).to_have_count(1)
    return int(selected.get_attribute("value"))


def owner_of(app) -> str:
    with Store(app.data_dir / "workbench.db") as store:
        return authenticate(store.db, app.api_key).name


def stored_messages(app, cid: int) -> list[dict]:
    with Store(app.data_dir / "workbench.db") as store:
        return list_messages(store.db, owner_of(app), cid)


def unique(word: str) -> str:
    return f"{word}-{secrets.token_hex(3)}"
