"""How documents appear to the model: a header with the file name, each page marked [page N]."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

EMPTY_PAGE_NOTE = "(no text on this page: it is an image or a scan)"
_UNSAFE_NAME = re.compile(r'[\x00-\x1f"<>]')


def _page(page: Any) -> tuple[int, str]:
    """(number, text) of a storage page dict or an extracted PageText."""
    if isinstance(page, Mapping):
        return page["number"], page["text"]
    return page.number, page.text


def safe_filename(filename: str) -> str:
    """The file name as shown in a header: one line, no quotes or angle brackets."""
    return _UNSAFE_NAME.sub("_", filename).strip() or "document.pdf"


def page_block(number: int, text: str) -> str:
    """One page as the model sees it."""
    body = text.strip("\n") if text.strip() else EMPTY_PAGE_NOTE
    return f"[page {number}]\n{body}"


def document_text(filename: str, pages: Iterable[Any]) -> str:
    """One document: a header with its file name, then its pages in order, each marked."""
    return wrapped_document(filename, "\n\n".join(page_block(*_page(page)) for page in pages))


def wrapped_document(filename: str, body: str) -> str:
    """A document's text between a header with its file name and its end."""
    return f'<document filename="{safe_filename(filename)}">\n{body}\n</document>'
