"""PDFs sent as OpenAI `file` content parts through /v1 (real PDFs, real engine)."""

import asyncio
import base64
from pathlib import Path

import httpx
import pytest

from server.gateway.documents import DocumentExpander
from tests.helpers import assert_error, scanned_pages_only

PDFS = Path(__file__).parent / "pdfs"


def file_part(data: bytes, filename: str = "doc.pdf") -> dict:
    encoded = base64.b64encode(data).decode()
    return {
        "type": "file",
        "file": {"filename": filename, "file_data": f"data:application/pdf;base64,{encoded}"},
    }


def ask(app, parts: list[dict]) -> httpx.Response:
    content = [{"type": "text", "text": "What is this document about?"}, *parts]
    return httpx.post(
        app.v1 + "/chat/completions",
        timeout=120,
        headers={"Authorization": f"Bearer {app.api_key}"},
        json={
            "model": "qwen3",
            "max_tokens": 2,
            "messages": [{"role": "user", "content": content}],
        },
    )


def test_a_pdf_part_is_read_and_its_text_reaches_the_engine(app):
    plain = ask(app, [])
    with_pdf = ask(app, [file_part((PDFS / "minimal-document.pdf").read_bytes())])
    assert plain.status_code == with_pdf.status_code == 200, with_pdf.text
    # The engine saw the page-marked text: hundreds of prompt tokens more than the question.
    added = with_pdf.json()["usage"]["prompt_tokens"] - plain.json()["usage"]["prompt_tokens"]
    assert added > 100


@pytest.mark.parametrize(
    "data,message",
    [
        (
            (PDFS / "libreoffice-writer-password.pdf").read_bytes(),
            "messages[0]: This PDF is password-protected: enter its password to open it.",
        ),
        (
            b"hello, not a pdf",
            "messages[0]: This file is not a PDF (it has no PDF header): upload a .pdf file.",
        ),
        (
            scanned_pages_only(),
            "messages[0]: No page of this PDF has text (all 2 are images or scans): run OCR on it,"
            " then send it again.",
        ),
    ],
)
def test_an_unreadable_pdf_is_400_with_the_documents_message(app, data, message):
    response = ask(app, [file_part(data)])
    assert_error(response, 400, "invalid_request_error", "invalid_document", "messages", message)


def expand(expander, part: dict) -> str:
    messages = [{"role": "user", "content": [{"type": "text", "text": "Q"}, part]}]
    (message,) = asyncio.run(expander.expand(messages))
    return message["content"][1]["text"]


def test_the_same_pdf_again_is_not_read_again():
    expander = DocumentExpander(10_000_000)
    data = (PDFS / "pdflatex-outline.pdf").read_bytes()
    first = expand(expander, file_part(data, "outline.pdf"))
    assert first.startswith('<document filename="outline.pdf">\n[page 1]\n')
    assert expand(expander, file_part(data, "outline.pdf")) == first
    assert expander.extractions == 1
    # The file name is part of the text, so another name is another entry.
    assert expand(expander, file_part(data, "renamed.pdf")).startswith(
        '<document filename="renamed.pdf">'
    )
    assert expander.extractions == 2


def test_remembered_pdf_texts_stay_within_their_budget():
    outline = (PDFS / "pdflatex-outline.pdf").read_bytes()
    minimal = (PDFS / "minimal-document.pdf").read_bytes()
    size = len(expand(DocumentExpander(10_000_000), file_part(outline)))
    expander = DocumentExpander(10_000_000, cache_chars=size + 10)
    expand(expander, file_part(outline))
    expand(expander, file_part(minimal))  # pushes the outline out of the budget
    expand(expander, file_part(outline))
    assert expander.extractions == 3
    assert expander._cached_chars <= size + 10
