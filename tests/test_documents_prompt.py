"""Prompt assembly: page-marked documents first, stable bytes, chunk plans, OpenAI file parts."""

import base64
from pathlib import Path

import pytest

from server.documents.errors import (
    CorruptPdfError,
    EncryptedPdfError,
    NotAPdfError,
    NoTextLayerError,
    PdfTooLargeError,
)
from server.documents.extract import PageText, extract_pages
from server.documents.file_part import InvalidFilePartError
from server.documents.prompt import (
    DOCUMENTS_INSTRUCTION,
    Chunk,
    chunk_messages,
    document_context,
    document_text,
    documents_first,
    file_part_to_text,
    parse_page_ranges,
    plan_chunks,
    summaries_context,
)
from tests.helpers import scanned_pages_only

PDFS = Path(__file__).parent / "pdfs"
LIMIT = 10_000_000


def pdf_part(data: bytes, filename: str = "report.pdf", media_type: str = "application/pdf"):
    encoded = base64.b64encode(data).decode()
    return {
        "type": "file",
        "file": {"filename": filename, "file_data": f"data:{media_type};base64,{encoded}"},
    }


def test_documents_block_marks_every_page_under_its_file_name():
    context = document_context(
        [
            (
                "a.pdf",
                [
                    {"number": 1, "text": "Intro\n    indented()", "tokens": 5},
                    {"number": 2, "text": "", "tokens": 0},
                ],
            ),
            ('b"<x>.pdf', [PageText(7, "Seven\n")]),
        ]
    )
    assert context == (
        '<document filename="a.pdf">\n'
        "[page 1]\nIntro\n    indented()\n\n"
        "[page 2]\n(no text on this page: it is an image or a scan)\n"
        "</document>\n\n"
        '<document filename="b__x_.pdf">\n'
        "[page 7]\nSeven\n"
        "</document>"
    )


def test_same_documents_give_identical_bytes_from_storage_or_extraction():
    pages = list(extract_pages((PDFS / "multicolumn.pdf").read_bytes()))
    stored = [{"number": p.number, "text": p.text, "tokens": 1} for p in pages]
    first = document_context([("m.pdf", pages)]).encode()
    assert first == document_context([("m.pdf", stored)]).encode()
    assert first == document_context([("m.pdf", pages)]).encode()


def test_documents_go_first_then_the_system_prompt_then_the_conversation():
    conversation = [{"role": "user", "content": "What is on page 2?"}]
    assert documents_first("DOCS", "Be brief.", conversation) == [
        {"role": "system", "content": f"{DOCUMENTS_INSTRUCTION}\n\nDOCS\n\nBe brief."},
        {"role": "user", "content": "What is on page 2?"},
    ]
    assert documents_first("", "Be brief.", conversation) == [
        {"role": "system", "content": "Be brief."},
        *conversation,
    ]
    assert documents_first("", " ", conversation) == conversation


def test_second_question_shares_the_whole_documents_prefix():
    from server.tokens import qwen3_counter

    counter = qwen3_counter()
    docs = document_context([("a.pdf", [PageText(1, "alpha"), PageText(2, "beta")])])
    first = counter.render_messages(documents_first(docs, "", [{"role": "user", "content": "Q1?"}]))
    second = counter.render_messages(
        documents_first(
            docs,
            "",
            [
                {"role": "user", "content": "Q1?"},
                {"role": "assistant", "content": "A1."},
                {"role": "user", "content": "Q2?"},
            ],
        )
    )
    prefix = first.split("Q1?")[0]
    assert docs in prefix and second.startswith(prefix)


def pages_of(tokens: list[int]) -> list[dict]:
    return [{"number": n, "text": f"page {n} " * t, "tokens": t} for n, t in enumerate(tokens, 1)]


def test_chunks_keep_page_order_and_fit_the_budget():
    # Without a counter a page marker [page N] with one digit is taken to cost 7 tokens.
    chunks = plan_chunks(pages_of([31, 51, 21, 91, 11, 11, 61]), 100)
    assert [[p["number"] for p in c.pages] for c in chunks] == [[1, 2], [3], [4], [5, 6], [7]]
    assert [c.tokens for c in chunks] == [96, 28, 98, 36, 68]


def test_chunk_token_totals_include_page_markers():
    chunks = plan_chunks(pages_of([31, 51, 21]), 100)
    assert [(c.first, c.last, c.tokens) for c in chunks] == [(1, 2, 96), (3, 3, 28)]


def test_page_larger_than_the_budget_is_split_not_dropped():
    text = "".join(f"line {i:03d} of the big page\n" for i in range(200))
    big = {"number": 4, "text": text, "tokens": 1000}
    chunks = plan_chunks([big], 300)
    parts = [p for c in chunks for p in c.pages]
    assert len(parts) > 3
    assert {p["number"] for p in parts} == {4}
    assert "".join(p["text"] for p in parts) == text
    assert all(c.tokens <= 300 for c in chunks)


def test_budget_too_small_for_any_page_is_refused():
    with pytest.raises(ValueError, match="cannot hold a single page"):
        plan_chunks(pages_of([1]), 7)


def test_chunk_token_totals_bound_the_exact_count_of_their_text():
    from server.documents.render import page_block
    from server.tokens import qwen3_counter

    counter = qwen3_counter()
    extracted = extract_pages((PDFS / "chromium-code-cjk.pdf").read_bytes())
    pages = [
        {"number": p.number + 1000, "text": p.text, "tokens": counter.count_text(p.text)}
        for p in extracted
    ]
    pages.append({"number": 1011, "text": "", "tokens": 0})  # an image-only page
    chunks = plan_chunks(pages, 3000, counter=counter)
    assert [p["number"] for c in chunks for p in c.pages] == [p["number"] for p in pages]
    for chunk in chunks:
        text = "\n\n".join(page_block(p["number"], p["text"]) for p in chunk.pages)
        assert counter.count_text(text) <= chunk.tokens <= 3000


def test_chunk_summary_and_answer_prompts_cite_pages():
    (chunk,) = plan_chunks(pages_of([3, 4]), 100)
    messages = chunk_messages("r.pdf", chunk, "What changed?")
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith("Below are pages 1-2 of r.pdf.")
    assert messages[0]["content"].endswith(document_text("r.pdf", chunk.pages))
    assert messages[1] == {"role": "user", "content": "Question: What changed?"}
    assert summaries_context([("r.pdf", chunk, " It changed [page 2]. ")]) == (
        '<summary filename="r.pdf" pages="1-2">\nIt changed [page 2].\n</summary>'
    )
    assert isinstance(chunk, Chunk)


def test_page_ranges_parse_or_say_what_is_wrong():
    assert parse_page_ranges("1-5, 8,10 - 12", 20) == [(1, 5), (8, 8), (10, 12)]
    with pytest.raises(ValueError, match="'x' is not a page or a range like 3-7"):
        parse_page_ranges("1, x", 20)
    with pytest.raises(ValueError, match="pages 15-25 are outside 1-20"):
        parse_page_ranges("15-25", 20)
    with pytest.raises(ValueError, match="no pages given"):
        parse_page_ranges(" , ", 20)


def test_file_part_becomes_the_same_text_as_an_attached_document():
    data = (PDFS / "chromium-code-cjk.pdf").read_bytes()
    pages = list(extract_pages(data))
    assert file_part_to_text(pdf_part(data, "code.pdf"), max_bytes=LIMIT) == document_text(
        "code.pdf", pages
    )


def test_file_part_with_bare_base64_and_no_filename():
    data = (PDFS / "pdflatex-outline.pdf").read_bytes()
    part = {"type": "file", "file": {"file_data": base64.b64encode(data).decode()}}
    text = file_part_to_text(part, max_bytes=LIMIT)
    assert text.startswith('<document filename="document.pdf">\n[page 1]\nContents\n1 Foo 2\n')


@pytest.mark.parametrize(
    ("part", "error", "message"),
    [
        (
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,%%%"}},
            InvalidFilePartError,
            "file.file_data is not valid base64.",
        ),
        (
            pdf_part(b"hello", "a.png", "image/png"),
            NotAPdfError,
            "Only PDF files are supported (the data URL says 'image/png').",
        ),
        (
            pdf_part(b"just text, no header"),
            NotAPdfError,
            "This file is not a PDF (it has no PDF header): upload a .pdf file.",
        ),
        (
            {"type": "file", "file": {"file_data": "data:application/pdf,%25PDF"}},
            InvalidFilePartError,
            "file.file_data must be base64 (data:application/pdf;base64,...).",
        ),
        (
            {"type": "file", "file": {"file_id": "file-abc123"}},
            InvalidFilePartError,
            "file.file_id is not supported here: send the PDF itself as file.file_data.",
        ),
        (
            {"type": "file", "file": "a.pdf"},
            InvalidFilePartError,
            'The file part is malformed: send {"type": "file", "file": {"filename", "file_data"}}.',
        ),
        (
            {"type": "file", "file": {"file_data": ""}},
            InvalidFilePartError,
            "file.file_data must be a non-empty string.",
        ),
        (
            pdf_part((PDFS / "libreoffice-writer-password.pdf").read_bytes()),
            EncryptedPdfError,
            "This PDF is password-protected: enter its password to open it.",
        ),
        (
            pdf_part((PDFS / "unreadablemetadata.pdf").read_bytes()),
            CorruptPdfError,
            "This PDF is damaged or truncated and cannot be read: export or download it again.",
        ),
    ],
)
def test_hostile_file_parts_fail_with_their_own_message(part, error, message):
    with pytest.raises(error) as caught:
        file_part_to_text(part, max_bytes=LIMIT)
    assert str(caught.value) == message


def test_file_part_over_the_limit_is_refused_before_decoding():
    data = (PDFS / "multicolumn.pdf").read_bytes()
    with pytest.raises(PdfTooLargeError) as caught:
        file_part_to_text(pdf_part(data), max_bytes=10_000)
    assert caught.value.limit == 10_000


def test_a_file_part_without_any_text_is_refused_and_says_ocr_is_needed():
    with pytest.raises(NoTextLayerError) as caught:
        file_part_to_text(pdf_part(scanned_pages_only()), max_bytes=LIMIT)
    assert str(caught.value) == (
        "No page of this PDF has text (all 2 are images or scans): run OCR on it, then send it"
        " again."
    )


def test_a_file_part_with_some_scanned_pages_marks_them():
    text = file_part_to_text(
        pdf_part((PDFS / "imagemagick-images.pdf").read_bytes()), max_bytes=LIMIT
    )
    assert "[page 4]\n(no text on this page: it is an image or a scan)" in text
    assert "[page 6]\nBackground" in text
