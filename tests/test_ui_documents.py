"""Documents in the browser: upload with progress, hostile PDFs, attach, ask, page ranges,
chunked analysis. Chromium → Gradio UI → our /v1 → the real vLLM engine, real SQLite.

Each test signs in with a key of its own, so its documents are its own (the same file
uploaded by another test is another owner's document). The over-context tests run an app
whose enforced context is 1,024 tokens, so a 4-page PDF does not fit and the engine's work
stays small.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import Page, expect

from server.tokens import TokenCounter
from server.workbench import Workbench
from server.workbench.fit import Fit
from server.workbench.library import Attached
from storage import Store
from storage.documents import list_documents
from storage.keys import create_key
from storage.messages import list_messages
from tests.harness import start_app
from tests.helpers import ARTIFACTS, app_env
from tests.ui_helpers import (
    STREAM_TIMEOUT,
    answer_text,
    last_answer,
    new_conversation,
    open_conversation_id,
    send,
    sign_in,
    wait_for_answer,
)
from ui.formatting import document_html, fit_html, no_text_note, page_list

PDFS = Path(__file__).parent / "pdfs"
SMALL_CONTEXT = 1024
# The small app refuses PDFs over this (chromium-code-cjk.pdf is 106 kB, pdflatex-outline 49 kB).
SMALL_PDF_LIMIT = 100_000


@pytest.fixture(scope="module")
def small_app(engine_url, model_dir, tmp_path_factory):
    """An app that enforces a 1,024-token context and a 100 kB upload limit."""
    data_dir = tmp_path_factory.mktemp("small-context")
    key = "test-admin-" + secrets.token_hex(8)
    env = app_env(
        data_dir,
        engine_url,
        model_dir,
        key,
        WORKBENCH_MAX_CONTEXT=SMALL_CONTEXT,
        WORKBENCH_MAX_PDF_BYTES=SMALL_PDF_LIMIT,
    )
    proc, url = start_app(env, data_dir / "logs")
    yield SimpleNamespace(url=url, api_key=key, data_dir=data_dir)
    proc.stop()


@pytest.fixture(scope="module")
def counter(model_dir) -> TokenCounter:
    return TokenCounter.from_dir(model_dir)


def person(app) -> tuple[str, str]:
    """(owner, key) of a new key on `app`: a person with no documents yet."""
    owner = f"reader-{secrets.token_hex(4)}"
    with Store(app.data_dir / "workbench.db") as store:
        return owner, create_key(store.db, owner)


def owned_documents(app, owner: str) -> list[dict]:
    with Store(app.data_dir / "workbench.db") as store:
        return list_documents(store.db, owner)


def upload(page: Page, name: str | Path) -> None:
    """Open the documents tab and upload a file."""
    page.get_by_role("tab", name="Documents").click()
    page.locator("#document-upload input[type=file]").set_input_files(str(PDFS / name))


def gauge_tokens(page: Page) -> int:
    gauge = page.locator("#context-gauge .wb-gauge")
    expect(gauge).to_have_attribute("data-used", re.compile(r"\d+"))
    return int(gauge.get_attribute("data-used"))


def facade(app, counter) -> Workbench:
    """The workbench facade over the app's database (to see exactly what was sent)."""
    store = Store(app.data_dir / "workbench.db")
    services = SimpleNamespace(
        store=store,
        counter=counter,
        engine=SimpleNamespace(max_context=8192),
        settings=SimpleNamespace(data_dir=app.data_dir),
    )
    return Workbench(services)


# --- what the person reads, without a browser ------------------------------------------------


def test_pages_without_text_are_named_in_runs():
    assert page_list([9, 3, 4, 5, 4]) == "3–5, 9"
    assert no_text_note([], 4) == ""
    assert no_text_note([2], 4) == "Page 2 has no text: OCR needed."
    assert no_text_note([3, 4, 5, 9], 12) == "Pages 3–5, 9 have no text: OCR needed."
    assert no_text_note([1, 2], 2) == "No page has text (all 2 are images or scans): OCR needed."


def test_an_upload_reads_as_pages_tokens_and_share_of_the_context():
    document = {
        "id": 7,
        "filename": "<b>report</b>.pdf",
        "page_count": 1499,
        "total_tokens": 1_026_366,
        "empty_pages": [],
        "reused": True,
    }
    shown = document_html(document, 8192)
    assert "1,499 pages · 1,026,366 tokens · 125.3× the 8,192-token context" in shown
    assert "&lt;b&gt;report&lt;/b&gt;.pdf" in shown and "<b>report" not in shown
    assert "Already in your documents" in shown
    small = document_html({**document, "total_tokens": 2048, "reused": False}, 8192)
    assert "25.0% of the 8,192-token context" in small and "Already" not in small


def test_the_fit_summary_lists_the_chosen_pages_and_says_whether_it_fits():
    attached = [
        Attached(
            id=1,
            filename="a.pdf",
            page_count=40,
            total_tokens=9000,
            empty_pages=[],
            spec="1-3, 7",
            pages=[{"number": 1, "text": "", "tokens": 900}],
            text="",
        )
    ]
    over = fit_html(
        Fit(used=9100, reserve=100, max_context=8192, documents=900, attached=1), attached
    )
    assert "<b>a.pdf</b>: pages 1-3, 7 of 40, 900 tokens" in over
    assert "Does not fit: 9,100 prompt tokens + max tokens 100 = 9,200 of 8,192" in over
    fits = fit_html(
        Fit(used=1000, reserve=100, max_context=8192, documents=900, attached=1), attached
    )
    assert "Fits: 1,000 prompt tokens + max tokens 100 = 1,100 of 8,192." in fits
    assert "No document attached" in fit_html(None, [])


# --- in the browser -------------------------------------------------------------------------


def test_upload_shows_progress_then_totals_attaches_and_reuses_the_same_file(page, app):
    owner, key = person(app)
    sign_in(page, app.url, key)
    new_conversation(page)
    before = gauge_tokens(page)
    upload(page, "multicolumn.pdf")
    progress = page.locator("#document-progress .wb-progress")
    expect(progress).to_have_attribute("data-done", "3")
    expect(progress).to_have_attribute("data-total", "3")
    expect(progress).to_contain_text("3 / 3 pages")
    status = page.locator("#document-status")
    expect(status).to_contain_text("multicolumn.pdf")
    expect(status).to_contain_text("3 pages · 2,721 tokens · 33.2% of the 8,192-token context")
    # Attached to a new conversation at once, and counted by the gauge.
    checked = page.locator("#document-list input[type=checkbox]:checked")
    expect(checked).to_have_count(1)
    expect(page.locator("#context-gauge")).to_contain_text("documents 2,721")
    assert gauge_tokens(page) >= before + 2721
    expect(page.locator("#document-fit")).to_contain_text("multicolumn.pdf: all 3 pages")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "workbench-documents.png"))
    # The same file again: the stored document, without reading it again.
    upload(page, "multicolumn.pdf")
    expect(status).to_contain_text("Already in your documents")
    assert len(owned_documents(app, owner)) == 1
    # Detach: the gauge drops back; the choice survives a reload.
    checked.first.uncheck()
    expect(page.locator("#document-fit")).to_contain_text("No document attached")
    expect(page.locator("#context-gauge")).not_to_contain_text("documents")
    page.reload()
    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#document-list input[type=checkbox]")).to_have_count(1)
    expect(checked).to_have_count(0)
    page.locator("#document-list input[type=checkbox]").first.check()
    expect(page.locator("#context-gauge")).to_contain_text("documents 2,721")
    # Delete: gone from the list, from the conversation and from storage.
    page.locator("#document-delete").click()
    expect(page.locator("#document-pages-message")).to_contain_text("Deleted multicolumn.pdf")
    expect(page.locator("#document-list input[type=checkbox]")).to_have_count(0)
    expect(page.locator("#context-gauge")).not_to_contain_text("documents")
    assert owned_documents(app, owner) == []


def test_ask_about_a_document_then_ask_again_from_the_prefix_cache(page, app, counter):
    owner, key = person(app)
    sign_in(page, app.url, key)
    new_conversation(page, max_tokens=16)
    upload(page, "minimal-document.pdf")
    expect(page.locator("#document-status")).to_contain_text("1 page · 223 tokens")
    send(page, "What is this document about?")
    expect(last_answer(page)).to_contain_text("▍", timeout=STREAM_TIMEOUT)  # it streams
    wait_for_answer(page)
    assert answer_text(page)
    cid = open_conversation_id(page)
    send(page, "Which page says that?")
    expect(page.locator("#chatbot [data-testid=bot]")).to_have_count(2)
    wait_for_answer(page)
    stats = last_answer(page).locator(".wb-stats")
    expect(stats).to_contain_text(re.compile(r"cached [1-9]\d\d"))
    wb = facade(app, counter)
    try:
        first, second = [m for m in wb.messages(owner, cid) if m["role"] == "assistant"]
        prompt = wb.prompt(owner, cid, system_prompt="")
    finally:
        wb.store.close()
    # What was sent: the document first, its page marked, under its file name.
    head = prompt[0]["content"]
    assert prompt[0]["role"] == "system"
    assert '<document filename="minimal-document.pdf">\n[page 1]\n' in head
    assert [m["role"] for m in prompt[1:]] == ["user", "assistant", "user", "assistant"]
    assert counter.count_messages(prompt[:2]) == first["prompt_tokens"]
    assert counter.count_messages(prompt[:4]) == second["prompt_tokens"]
    # The second question reuses the document's prefix from the engine's cache.
    assert second["cached_tokens"] >= 200, second
    print(
        f"\nTTFT first {first['ttft_ms']:.0f} ms (cached {first['cached_tokens']}), "
        f"second {second['ttft_ms']:.0f} ms (cached {second['cached_tokens']})"
    )


def test_encrypted_pdf_asks_for_the_password_and_a_wrong_one_says_so(page, app):
    owner, key = person(app)
    sign_in(page, app.url, key)
    new_conversation(page)
    upload(page, "libreoffice-writer-password.pdf")
    status = page.locator("#document-status")
    expect(status).to_contain_text("password-protected: enter its password")
    password = page.locator("#document-password input")
    expect(password).to_be_visible()
    password.fill("not-the-password")
    page.locator("#document-password-submit").click()
    expect(status).to_contain_text("The password is wrong for this PDF")
    expect(password).to_be_visible()
    assert owned_documents(app, owner) == []  # nothing half-stored
    password.fill("openpassword")
    password.press("Enter")
    expect(status).to_contain_text("libreoffice-writer-password.pdf")
    expect(status).to_contain_text(re.compile(r"1 page · [\d,]+ tokens"))
    expect(password).to_be_hidden()
    assert [d["status"] for d in owned_documents(app, owner)] == ["ready"]


def test_hostile_files_each_say_what_is_wrong_and_store_nothing(page, app, tmp_path):
    owner, key = person(app)
    sign_in(page, app.url, key)
    new_conversation(page)
    upload(page, "imagemagick-images.pdf")
    status = page.locator("#document-status")
    expect(status).to_contain_text("6 pages")
    expect(status.locator(".wb-doc-warning")).to_have_text("Pages 4–5 have no text: OCR needed.")
    upload(page, "unreadablemetadata.pdf")
    expect(status).to_contain_text("This PDF is damaged or truncated")
    junk = tmp_path / "notes.pdf"
    junk.write_bytes(secrets.token_bytes(4096))
    page.locator("#document-upload input[type=file]").set_input_files(str(junk))
    expect(status).to_contain_text("This file is not a PDF")
    assert [d["filename"] for d in owned_documents(app, owner)] == ["imagemagick-images.pdf"]


def test_over_context_document_offers_page_ranges_and_the_gauge_follows(page, small_app):
    owner, key = person(small_app)
    sign_in(page, small_app.url, key)
    new_conversation(page, max_tokens=16)
    upload(page, "chromium-code-cjk.pdf")  # this app's upload limit is 100 kB
    expect(page.locator("#document-status")).to_contain_text("over the 0.1 MB upload limit")
    upload(page, "pdflatex-outline.pdf")
    expect(page.locator("#document-status")).to_contain_text("4 pages · 1,827 tokens")
    expect(page.locator("#document-fit .wb-fit-over")).to_contain_text("Does not fit")
    expect(page.locator("#analyse-chunks")).to_be_visible()
    send(page, "What is the first section about?")
    # Not sent: an offer instead of the engine's error, and the question is kept.
    offer = page.locator("#fit-offer")
    expect(offer).to_contain_text("do not fit the context")
    expect(page.locator("#chatbot [data-testid=user]")).to_have_count(0)
    expect(page.locator("#draft textarea")).to_have_value("What is the first section about?")
    page.locator("#offer-pages").click()
    expect(page.locator("#document-pages input")).to_be_visible()
    over = gauge_tokens(page)
    page.locator("#document-pages input").fill("2, 1")
    page.locator("#document-pages-apply").click()
    expect(page.locator("#document-pages-message")).to_contain_text(
        "Using pages 1-2 of pdflatex-outline.pdf: 743 tokens"
    )
    expect(page.locator("#document-fit .wb-fit-ok")).to_contain_text("Fits")
    expect(page.locator("#context-gauge .wb-gauge")).not_to_have_attribute("data-used", str(over))
    assert gauge_tokens(page) < SMALL_CONTEXT - 16
    expect(page.locator("#analyse-chunks")).to_be_hidden()
    # A range outside the document says so and changes nothing.
    page.locator("#document-pages input").fill("3-9")
    page.locator("#document-pages-apply").click()
    expect(page.locator("#document-pages-message")).to_contain_text("outside 1-4")
    page.reload()  # the ranges are stored with the conversation
    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#document-pages input")).to_have_value("1-2")
    expect(page.locator("#document-fit")).to_contain_text("pages 1-2 of 4")
    send(page, "What is the first section about?")
    wait_for_answer(page)
    expect(last_answer(page).locator(".wb-error")).to_have_count(0)
    # A long answer budget no longer fits: the offer proposes the room that is left.
    page.get_by_role("tab", name="Settings").click()
    page.locator("#max-tokens input").fill("600")
    page.locator("#max-tokens input").press("Tab")
    send(page, "And the second?")
    shorter = page.locator("#offer-shorter")
    expect(shorter).to_contain_text(re.compile(r"Answer in the \d+ tokens left"))
    room = int(re.search(r"(\d+) tokens", shorter.inner_text())[1])
    shorter.click()
    expect(page.locator("#chatbot [data-testid=bot]")).to_have_count(2)
    wait_for_answer(page)
    expect(last_answer(page).locator(".wb-error")).to_have_count(0)
    expect(page.locator("#max-tokens input")).to_have_value(str(room))


def test_chunked_analysis_shows_its_progress_and_saves_the_answer(page, small_app):
    owner, key = person(small_app)
    sign_in(page, small_app.url, key)
    new_conversation(page, max_tokens=16)
    upload(page, "pdflatex-outline.pdf")
    expect(page.locator("#document-status")).to_contain_text("4 pages")
    send(page, "What are the section titles?")
    expect(page.locator("#fit-offer")).to_contain_text("do not fit the context")
    page.locator("#offer-chunks").click()
    expect(page.locator("#chatbot [data-testid=user]").last).to_contain_text("section titles")
    progress = last_answer(page).locator(".wb-chunks")
    expect(progress).to_contain_text(
        re.compile(r"Summarising chunk 2 of \d"), timeout=STREAM_TIMEOUT
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "workbench-chunked-analysis.png"))
    wait_for_answer(page)
    expect(last_answer(page)).to_contain_text(re.compile(r"Answered from summaries of \d+ chunks"))
    expect(last_answer(page).locator(".wb-stats")).to_contain_text(re.compile(r"prompt [1-9]"))
    cid = open_conversation_id(page)
    with Store(small_app.data_dir / "workbench.db") as store:
        answer = list_messages(store.db, owner, cid)[-1]
    assert (answer["role"], answer["status"]) == ("assistant", "complete")
    assert "Answered from summaries of" in answer["content"]
    assert answer["prompt_tokens"] < SMALL_CONTEXT
    page.reload()
    expect(last_answer(page)).to_contain_text("Answered from summaries of")
