"""Content parts carrying a PDF, in each protocol's shape, turned into page-marked text.

- chat completions: `{"type": "file", "file": {"filename", "file_data"}}`;
- the Responses API: `{"type": "input_file", "filename", "file_data"}`, `file_data` being
  `data:application/pdf;base64,...` in both;
- Anthropic's Messages API: `{"type": "document", "title", "source": {"type": "base64",
  "media_type": "application/pdf", "data"}}`, or a plain-text document (`source.type` `text` or
  `content`), which is text already.

Everything in a part is untrusted: the shape, the data URL, the base64 and the PDF each fail
with their own DocumentError and a message that says what to fix. A part that points at a file
elsewhere (`file_id`, a URL) is refused: this server keeps no files and fetches nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from server.documents.errors import (
    DocumentError,
    NotAPdfError,
    NoTextLayerError,
    PdfTooLargeError,
)
from server.documents.extract import PdfText, check_pdf
from server.documents.render import document_text, wrapped_document

_DATA_URL = re.compile(r"data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*),", re.ASCII)
_PDF_TYPES = {"application/pdf", "application/x-pdf"}


class InvalidFilePartError(DocumentError):
    'The file part is malformed: send {"type": "file", "file": {"filename", "file_data"}}.'


def decode_file_data(file_data: Any, *, max_bytes: int, field: str = "file.file_data") -> bytes:
    """The PDF bytes of a `file_data` value (`field` names it in errors): a base64 data URL
    (or bare base64)."""
    if not isinstance(file_data, str) or not file_data:
        raise InvalidFilePartError(f"{field} must be a non-empty string.")
    payload = file_data
    match = _DATA_URL.match(file_data)
    if match:
        media_type = match["type"].strip().lower()
        if media_type not in _PDF_TYPES:
            raise NotAPdfError(
                f"Only PDF files are supported (the data URL says {media_type or 'nothing'!r})."
            )
        if ";base64" not in match["params"].lower():
            raise InvalidFilePartError(f"{field} must be base64 (data:application/pdf;base64,...).")
        payload = file_data[match.end() :]
    elif file_data.startswith("data:"):
        raise InvalidFilePartError(f"{field} is not a valid data URL.")
    # Refuse oversized input before decoding it (base64 is 4 characters per 3 bytes).
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise PdfTooLargeError(len(payload) // 4 * 3, max_bytes)
    try:
        data = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFilePartError(f"{field} is not valid base64.") from None
    check_pdf(data, max_bytes=max_bytes)
    return data


def read_file_part(part: dict, *, max_bytes: int) -> tuple[str, bytes]:
    """(file name, PDF bytes) of an OpenAI `file` content part, checked but not yet read.

    Raises InvalidFilePartError (shape, base64), NotAPdfError or PdfTooLargeError.
    """
    if not isinstance(part, dict) or part.get("type") != "file":
        raise InvalidFilePartError()
    file = part.get("file")
    if not isinstance(file, dict):
        raise InvalidFilePartError()
    if "file_data" not in file and file.get("file_id"):
        raise InvalidFilePartError(
            "file.file_id is not supported here: send the PDF itself as file.file_data."
        )
    data = decode_file_data(file.get("file_data"), max_bytes=max_bytes)
    return _name(file.get("filename"), "document.pdf"), data


def read_input_file(part: dict, *, max_bytes: int) -> tuple[str, bytes]:
    """(file name, PDF bytes) of a Responses API `input_file` part, checked but not yet read."""
    if "file_data" not in part:
        for field in ("file_id", "file_url"):
            if part.get(field):
                raise InvalidFilePartError(
                    f"input_file.{field} is not supported here: send the PDF itself as "
                    "input_file.file_data (data:application/pdf;base64,...)."
                )
    data = decode_file_data(
        part.get("file_data"), max_bytes=max_bytes, field="input_file.file_data"
    )
    return _name(part.get("filename"), "document.pdf"), data


def read_document_block(block: dict, *, max_bytes: int) -> tuple[str, bytes] | str:
    """An Anthropic `document` block: (title, PDF bytes) for a base64 PDF, checked but not yet
    read; for a plain-text document, its text as the model sees documents."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    title = _name(block.get("title"), "document.pdf" if kind == "base64" else "document.txt")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in _PDF_TYPES:
            raise NotAPdfError(
                f"Only PDF documents are supported as base64 (source.media_type is {media_type!r})."
            )
        return title, decode_file_data(source.get("data"), max_bytes=max_bytes, field="source.data")
    if kind == "text" and isinstance(source.get("data"), str):
        return wrapped_document(title, source["data"])
    if kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            return wrapped_document(title, content)
        if isinstance(content, list):
            texts = [b.get("text") for b in content if isinstance(b, dict)]
            if all(isinstance(t, str) for t in texts):
                return wrapped_document(title, "\n\n".join(texts))
    if kind in ("url", "file"):
        raise InvalidFilePartError(
            f"A document's source of type {kind!r} is not supported here: send the PDF itself "
            "(source.type 'base64', media_type 'application/pdf')."
        )
    raise InvalidFilePartError(
        'The document block is malformed: send {"type": "document", "source": '
        '{"type": "base64", "media_type": "application/pdf", "data"}}, or a text source.'
    )


def _name(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value.strip() else default


def pdf_to_text(
    filename: str, data: bytes, *, password: str | None = None, workers: int | None = None
) -> str:
    """The page-marked text of a PDF sent through /v1 (as `render.document_text`).

    Raises EncryptedPdfError, WrongPasswordError, CorruptPdfError, or NoTextLayerError when no
    page has text.
    """
    with PdfText(data, password=password) as pdf:
        pages = list(pdf.pages(workers=workers))
    # Unlike the workbench (which shows the person which pages need OCR), an API caller would
    # only get an answer made up without the document.
    if not any(page.text.strip() for page in pages):
        raise NoTextLayerError(len(pages))
    return document_text(filename, pages)


def file_part_to_text(
    part: dict, *, max_bytes: int, password: str | None = None, workers: int | None = None
) -> str:
    """The page-marked text of a PDF sent as an OpenAI `file` content part.

    Same format as documents attached in the workbench (`render.document_text`). Raises
    DocumentError subclasses: InvalidFilePartError (shape, base64), NotAPdfError,
    PdfTooLargeError, EncryptedPdfError, WrongPasswordError, CorruptPdfError,
    NoTextLayerError (no page has text).
    """
    filename, data = read_file_part(part, max_bytes=max_bytes)
    return pdf_to_text(filename, data, password=password, workers=workers)
