"""PDFs sent through /v1 in each protocol's shape (real PDFs, real engine, the official SDKs):
chat's `file` parts, the Responses API's `input_file`, Anthropic's `document` blocks."""

import asyncio
import base64
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from server.gateway.documents import DocumentExpander
from tests.helpers import assert_anthropic_error, assert_error, scanned_pages_only

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


def document_block(data: bytes, title: str | None = None) -> dict:
    source = {"type": "base64", "media_type": "application/pdf"}
    block = {"type": "document", "source": {**source, "data": base64.b64encode(data).decode()}}
    return {**block, "title": title} if title else block


def input_file(data: bytes, filename: str = "doc.pdf") -> dict:
    encoded = base64.b64encode(data).decode()
    return {
        "type": "input_file",
        "filename": filename,
        "file_data": f"data:application/pdf;base64,{encoded}",
    }


QUESTION = "What is this document about?"
MINIMAL = (PDFS / "minimal-document.pdf").read_bytes()


def prompt_tokens(usage) -> int:
    """All of an Anthropic answer's prompt (its `input_tokens` leave out the cached part)."""
    cached = (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    return usage.input_tokens + cached


@pytest.fixture(scope="module")
def claude(app):
    with anthropic.Anthropic(base_url=app.url, api_key=app.api_key, max_retries=0) as client:
        yield client


def test_anthropic_document_blocks_reach_the_engine_as_their_text(claude):
    def ask(*blocks: dict) -> int:
        content = [*blocks, {"type": "text", "text": QUESTION}]
        answer = claude.messages.create(
            model="qwen3", max_tokens=2, messages=[{"role": "user", "content": content}]
        )
        return prompt_tokens(answer.usage)

    plain = ask()
    assert ask(document_block(MINIMAL, title="minimal.pdf")) - plain > 100
    text_source = {"type": "text", "media_type": "text/plain", "data": "The word is pelican."}
    assert ask({"type": "document", "source": text_source, "title": "notes"}) - plain > 5
    counted = claude.messages.count_tokens(
        model="qwen3",
        messages=[
            {
                "role": "user",
                "content": [document_block(MINIMAL), {"type": "text", "text": QUESTION}],
            }
        ],
    )
    assert counted.input_tokens - plain > 100


def test_a_pdf_that_claude_code_read_arrives_in_a_tool_result(claude):
    """Claude Code's Read tool returns a PDF as a document block inside the tool_result."""

    def ask(result: list[dict]) -> int:
        messages = [
            {"role": "user", "content": "Read doc.pdf"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "Read", "input": {"path": "doc.pdf"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": result}],
            },
        ]
        answer = claude.messages.create(model="qwen3", max_tokens=2, messages=messages)
        return prompt_tokens(answer.usage)

    assert ask([document_block(MINIMAL)]) - ask([{"type": "text", "text": "(empty)"}]) > 100


@pytest.mark.parametrize(
    "block,message",
    [
        (
            document_block((PDFS / "libreoffice-writer-password.pdf").read_bytes()),
            "messages[0]: This PDF is password-protected: enter its password to open it.",
        ),
        (
            {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
            "messages[0]: A document's source of type 'url' is not supported here: send the PDF "
            "itself (source.type 'base64', media_type 'application/pdf').",
        ),
        (
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "!!"},
            },
            "messages[0]: source.data is not valid base64.",
        ),
    ],
)
def test_an_unreadable_document_block_is_400_in_anthropics_shape(claude, block, message):
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model="qwen3",
            max_tokens=2,
            messages=[{"role": "user", "content": [block, {"type": "text", "text": QUESTION}]}],
        )
    assert assert_anthropic_error(refused.value.body, "invalid_request_error") == message


def test_responses_input_file_is_read_and_kept_for_the_next_turn(app):
    with openai.OpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as client:

        def ask(*parts: dict):
            content = [*parts, {"type": "input_text", "text": QUESTION}]
            return client.responses.create(
                model="qwen3", max_output_tokens=16, input=[{"role": "user", "content": content}]
            )

        plain, first = ask(), ask(input_file(MINIMAL))
        added = first.usage.input_tokens - plain.usage.input_tokens
        assert added > 100
        # The stored conversation holds the document's text: the next turn needs no PDF.
        follow = client.responses.create(
            model="qwen3",
            max_output_tokens=16,
            previous_response_id=first.id,
            input="And its title?",
        )
        assert follow.usage.input_tokens > plain.usage.input_tokens + added

        with pytest.raises(openai.BadRequestError) as refused:
            ask({"type": "input_file", "file_id": "file-abc"})
    error = refused.value.body
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_document",
        "input",
    )
    assert error["message"] == (
        "input[0]: input_file.file_id is not supported here: send the PDF itself as "
        "input_file.file_data (data:application/pdf;base64,...)."
    )


@pytest.mark.parametrize(
    "source,text",
    [
        ({"type": "text", "media_type": "text/plain", "data": "A"}, "A"),
        ({"type": "content", "content": "A"}, "A"),
        (
            {
                "type": "content",
                "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            },
            "A\n\nB",
        ),
    ],
)
def test_plain_text_documents_become_text_blocks_as_they_are(source, text):
    block = {"type": "document", "source": source, "title": "notes"}
    expected = {"type": "text", "text": f'<document filename="notes">\n{text}\n</document>'}
    assert expand(DocumentExpander(10_000_000), block) == expected["text"]
    # Inside a tool_result too, and a message without documents is passed on as it is.
    messages = [{"role": "user", "content": [{"type": "tool_result", "content": [block]}]}]
    (message,) = asyncio.run(DocumentExpander(10_000_000).expand(messages))
    assert message["content"][0]["content"] == [expected]
    plain = [{"role": "user", "content": [{"type": "text", "text": "Q"}]}]
    assert asyncio.run(DocumentExpander(10_000_000).expand(plain)) is plain
