"""Documents through the workbench facade: attach, page ranges, the prompt, the fit.

Real SQLite, real PDFs, the served model's real tokenizer; no engine needed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from server.documents.errors import EncryptedPdfError, PdfTooLargeError
from server.documents.prompt import DOCUMENTS_INSTRUCTION, format_ranges
from server.sampling import normalize_params
from server.tokens import TokenCounter
from server.workbench import NotFoundError, Workbench
from server.workbench.fit import MIN_ROOM
from server.workbench.library import PAGES_KEY
from storage import Store

PDFS = Path(__file__).parent / "pdfs"


@pytest.fixture(scope="module")
def counter(model_dir) -> TokenCounter:
    return TokenCounter.from_dir(model_dir)


@pytest.fixture
def wb(tmp_path, counter):
    with Store(tmp_path / "workbench.db") as store:
        services = SimpleNamespace(
            store=store,
            counter=counter,
            engine=SimpleNamespace(max_context=8192),
            settings=SimpleNamespace(data_dir=tmp_path, max_pdf_bytes=10_000_000),
        )
        yield Workbench(services)


def upload(wb: Workbench, owner: str, name: str) -> dict:
    return wb.documents.upload(owner, PDFS / name)


def test_prompt_puts_documents_first_then_the_system_prompt_then_the_conversation(wb):
    outline = upload(wb, "alice", "pdflatex-outline.pdf")
    minimal = upload(wb, "alice", "minimal-document.pdf")
    cid = wb.create_conversation("alice", system_prompt="Answer briefly.")
    wb.documents.set_attached("alice", cid, [outline["id"], minimal["id"]])
    wb.add_user_message("alice", cid, "What is it about?")
    system, question = wb.prompt("alice", cid, system_prompt="Answer briefly.")
    assert question == {"role": "user", "content": "What is it about?"}
    text = system["content"]
    assert text.startswith(
        DOCUMENTS_INSTRUCTION + '\n\n<document filename="pdflatex-outline.pdf">\n[page 1]\n'
    )
    assert text.endswith("</document>\n\nAnswer briefly.")
    assert text.index("[page 4]") < text.index('<document filename="minimal-document.pdf">')
    assert [text.count(f"[page {n}]") for n in (1, 2, 3, 4)] == [2, 1, 1, 1]


def test_the_prefix_stays_byte_identical_from_one_question_to_the_next(wb):
    document = upload(wb, "alice", "minimal-document.pdf")
    cid = wb.create_conversation("alice")
    wb.documents.attach("alice", cid, document["id"])
    wb.add_user_message("alice", cid, "First question?")
    first = wb.prompt("alice", cid, system_prompt="")
    wb.save_answer("alice", cid, "First answer.", model="qwen3", stats={})
    second = wb.prompt("alice", cid, system_prompt="", draft="Second question?")
    assert second[: len(first)] == first
    assert second[len(first) :] == [
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Second question?"},
    ]


def test_page_ranges_are_per_conversation_and_survive_settings_changes(wb):
    document = upload(wb, "alice", "pdflatex-outline.pdf")
    cid = wb.create_conversation("alice")
    other = wb.create_conversation("alice")
    for conversation in (cid, other):
        wb.documents.attach("alice", conversation, document["id"])
    assert wb.documents.set_pages("alice", cid, document["id"], " 3, 1-2 ") == "1-3"
    wb.save_settings("alice", cid, system_prompt="Be terse.", params={"temperature": 0.2})
    (attached,) = wb.documents.attached("alice", cid)
    assert (attached.spec, [p["number"] for p in attached.pages]) == ("1-3", [1, 2, 3])
    assert attached.tokens == sum(p["tokens"] for p in attached.pages)
    text = wb.prompt("alice", cid, system_prompt="Be terse.")[0]["content"]
    assert "[page 3]" in text and "[page 4]" not in text
    # Only this conversation: the other still has every page.
    assert wb.documents.attached("alice", other)[0].spec == ""
    # The sampling settings are the panel's; the ranges stay out of them.
    assert PAGES_KEY not in wb.get_conversation("alice", cid)["params"]
    with pytest.raises(ValueError, match="outside 1-4"):
        wb.documents.set_pages("alice", cid, document["id"], "2-9")
    assert wb.documents.set_pages("alice", cid, document["id"], "") == ""
    assert len(wb.documents.attached("alice", cid)[0].pages) == 4


def test_detaching_forgets_the_ranges_and_attachment_order_is_kept(wb):
    outline = upload(wb, "alice", "pdflatex-outline.pdf")
    minimal = upload(wb, "alice", "minimal-document.pdf")
    cid = wb.create_conversation("alice")
    wb.documents.set_attached("alice", cid, [minimal["id"]])
    wb.documents.set_attached("alice", cid, [outline["id"], minimal["id"]])
    assert [a.filename for a in wb.documents.attached("alice", cid)] == [
        "minimal-document.pdf",
        "pdflatex-outline.pdf",
    ]
    wb.documents.set_pages("alice", cid, outline["id"], "2")
    wb.documents.set_attached("alice", cid, [minimal["id"]])
    wb.documents.set_attached("alice", cid, [minimal["id"], outline["id"]])
    assert [a.spec for a in wb.documents.attached("alice", cid)] == ["", ""]


def test_fit_counts_the_documents_exactly_and_wants_room_for_the_answer(wb, counter):
    document = upload(wb, "alice", "multicolumn.pdf")
    cid = wb.create_conversation("alice")
    wb.documents.attach("alice", cid, document["id"])
    fit = wb.fit("alice", cid, system_prompt="", draft="Summarise it.", max_tokens=100)
    prompt = wb.prompt("alice", cid, system_prompt="", draft="Summarise it.")
    assert (fit.used, fit.documents, fit.attached) == (
        counter.count_messages(prompt),
        document["total_tokens"],
        1,
    )
    assert fit.fits and fit.room == 8192 - fit.used
    assert not wb.fit("alice", cid, system_prompt="", max_tokens=8192 - fit.used + 50).fits
    wb.documents.set_pages("alice", cid, document["id"], "3")
    assert wb.fit("alice", cid, system_prompt="").documents < document["total_tokens"] // 5


def test_overflow_is_only_for_attached_documents_that_do_not_fit(wb):
    document = upload(wb, "alice", "multicolumn.pdf")
    cid = wb.create_conversation("alice")
    assert wb.overflow("alice", cid, system_prompt="", max_tokens=10**6) is None  # no documents
    wb.documents.attach("alice", cid, document["id"])
    assert wb.overflow("alice", cid, system_prompt="", max_tokens=100) is None
    fit = wb.overflow("alice", cid, system_prompt="", max_tokens=8192, draft="Summarise it.")
    assert fit is not None and not fit.fits
    assert fit == wb.fit("alice", cid, system_prompt="", max_tokens=8192, draft="Summarise it.")
    assert wb.overflow("alice", None, system_prompt="", max_tokens=10**6) is None


def test_an_answer_in_the_room_left_gets_exactly_that_room_when_it_is_worth_one(wb):
    document = upload(wb, "alice", "multicolumn.pdf")
    cid = wb.create_conversation("alice")
    wb.documents.attach("alice", cid, document["id"])
    params = normalize_params({"max_tokens": 8192})
    room = wb.fit("alice", cid, system_prompt="", draft="Summarise it.").room
    assert room >= MIN_ROOM
    assert wb.in_room_left(
        "alice", cid, system_prompt="", params=params, draft="Summarise it."
    ) == {**params, "max_tokens": room}
    # Every word is at least one token: this system prompt leaves less than MIN_ROOM.
    filler = "word " * (room - MIN_ROOM + 1)
    assert not wb.fit("alice", cid, system_prompt=filler, draft="Summarise it.").room_for_answer
    assert (
        wb.in_room_left("alice", cid, system_prompt=filler, params=params, draft="Summarise it.")
        is None
    )


def test_another_owner_cannot_attach_or_read_someone_elses_documents(wb):
    document = upload(wb, "alice", "minimal-document.pdf")
    alice = wb.create_conversation("alice")
    wb.documents.attach("alice", alice, document["id"])
    bob = wb.create_conversation("bob")
    with pytest.raises(NotFoundError):
        wb.documents.set_attached("bob", bob, [document["id"]])
    assert wb.documents.attached("bob", alice) == []
    assert wb.documents.list_documents("bob") == []
    assert wb.prompt("bob", alice, system_prompt="") == []
    assert wb.documents.delete("bob", document["id"]) is False


def test_uploads_fail_with_their_message_and_the_same_bytes_are_reused(wb):
    first = upload(wb, "alice", "minimal-document.pdf")
    again = upload(wb, "alice", "minimal-document.pdf")
    assert (first["reused"], again["reused"], again["id"]) == (False, True, first["id"])
    with pytest.raises(EncryptedPdfError):
        upload(wb, "alice", "libreoffice-writer-password.pdf")
    wb._services.settings.max_pdf_bytes = 20_000
    with pytest.raises(PdfTooLargeError, match="over the .* MB upload limit"):
        upload(wb, "alice", "pdflatex-outline.pdf")
    assert [d["filename"] for d in wb.documents.list_documents("alice")] == ["minimal-document.pdf"]


def test_chunked_analysis_reads_the_chosen_pages(wb):
    document = upload(wb, "alice", "pdflatex-outline.pdf")
    cid = wb.create_conversation("alice", params={"max_tokens": 300})
    wb.documents.attach("alice", cid, document["id"])
    wb.documents.set_pages("alice", cid, document["id"], "2-3")
    job = wb.chunked_analysis("alice", cid, client=None, question="Sections?")
    ((filename, pages),) = job.documents
    assert (filename, [p["number"] for p in pages]) == ("pdflatex-outline.pdf", [2, 3])
    assert (job.summary_tokens, job.answer_tokens) == (300, 300)
    assert job.history == []


def test_chunked_analysis_answers_in_the_context_of_the_earlier_turns(wb):
    document = upload(wb, "alice", "pdflatex-outline.pdf")
    cid = wb.create_conversation("alice")
    wb.documents.attach("alice", cid, document["id"])
    wb.add_user_message("alice", cid, "What is section 1 about?")
    wb.save_answer("alice", cid, "It introduces the outline.", model="qwen3", stats=None)
    wb.add_user_message("alice", cid, "And section 2?")
    job = wb.chunked_analysis("alice", cid, client=None, question="And section 2?")
    assert job.history == [
        {"role": "user", "content": "What is section 1 about?"},
        {"role": "assistant", "content": "It introduces the outline."},
    ]


def test_ranges_are_stored_sorted_with_overlaps_merged():
    assert format_ranges([(7, 7), (1, 3), (2, 4), (5, 5)]) == "1-5, 7"


def test_editing_an_earlier_question_goes_on_in_a_copy_and_keeps_the_original(wb):
    outline = upload(wb, "alice", "pdflatex-outline.pdf")
    cid = wb.create_conversation(
        "alice", system_prompt="Cite pages.", params={"temperature": 0.2, "max_tokens": 64}
    )
    wb.rename("alice", cid, "Outline questions")
    wb.documents.attach("alice", cid, outline["id"])
    wb.documents.set_pages("alice", cid, outline["id"], "2-3")
    for question, answer in (("q1", "a1"), ("q2", "a2"), ("q3", "a3")):
        wb.add_user_message("alice", cid, question)
        wb.save_answer(
            "alice", cid, answer, model="qwen3", stats={"completion_tokens": 7, "ttft_ms": 12.5}
        )
    before = wb.messages("alice", cid)
    q2 = before[2]["id"]

    branch = wb.branch_from("alice", cid, q2, "  q2, asked better  ")
    assert branch is not None and branch != cid
    assert wb.messages("alice", cid) == before  # the original, later answers included
    copied = wb.messages("alice", branch)
    assert [(m["role"], m["content"]) for m in copied] == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2, asked better"),
    ]
    assert (copied[1]["completion_tokens"], copied[1]["ttft_ms"]) == (7, 12.5)
    new, old = wb.get_conversation("alice", branch), wb.get_conversation("alice", cid)
    assert new["title"] == "Outline questions (edited)"
    assert (new["system_prompt"], new["params"]) == (old["system_prompt"], old["params"])
    assert [(a.id, a.spec) for a in wb.documents.attached("alice", branch)] == [
        (outline["id"], "2-3")
    ]
    # Newest first: the branch tops the sidebar.
    assert wb.list_conversations("alice")[0]["id"] == branch

    # Not a user message, not the owner's, empty text: nothing is made.
    count = len(wb.list_conversations("alice"))
    assert wb.branch_from("alice", cid, before[1]["id"], "x") is None
    assert wb.branch_from("bob", cid, q2, "x") is None
    assert wb.branch_from("alice", cid, q2, "   ") is None
    assert wb.branch_from("alice", branch, q2, "x") is None  # q2 is not in the branch
    assert len(wb.list_conversations("alice")) == count
