"""PDF content parts in /v1 requests, in each protocol's shape (see
server/documents/file_part.py): chat's `file`, the Responses API's `input_file`, Anthropic's
`document` (also inside a `tool_result`, where Claude Code puts the PDFs it reads).

vLLM knows nothing of PDFs, so before a request is counted and forwarded, every such part
becomes a text part with the document's page-marked text (server.documents does the reading).
A PDF that cannot be read is the client's problem: 400 `invalid_document`, naming the message
(`messages[0]: ...`, `input[0]: ...`), with the documents module's own message.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import anyio.to_thread

from server.gateway import errors

DOCUMENT_PARTS = frozenset({"file", "input_file", "document"})


def _parts(content: Any) -> list[dict[str, Any]]:
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


def _has_document(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        for part in _parts(message.get("content") if isinstance(message, dict) else None):
            kind = part.get("type")
            if kind in DOCUMENT_PARTS:
                return True
            if kind == "tool_result" and any(
                p.get("type") in DOCUMENT_PARTS for p in _parts(part.get("content"))
            ):
                return True
    return False


class DocumentExpander:
    """Replaces document parts by text parts; messages without any pass through untouched
    (the same list is returned).

    A script asking several questions about one PDF sends the same bytes every time: the text
    of recent PDFs is kept (by file name and sha256, up to `cache_chars` characters in all), so
    only the first request pays for reading it.
    """

    def __init__(self, max_pdf_bytes: int, *, cache_chars: int = 64_000_000):
        self.max_pdf_bytes = max_pdf_bytes
        self.cache_chars = cache_chars
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._cached_chars = 0
        self._lock = threading.Lock()
        self.extractions = 0  # PDFs actually read (the rest came from the cache)

    async def expand(
        self, messages: list[dict[str, Any]], text_type: str = "text", param: str = "messages"
    ) -> list[dict[str, Any]]:
        """`messages` (or Responses `input` items) with each document part turned into a
        `text_type` part (`input_text` for the Responses API); `param` names them in errors."""
        if not _has_document(messages):
            return messages
        # PDF reading is CPU-bound: off the event loop.
        return await anyio.to_thread.run_sync(self._expand_sync, messages, text_type, param)

    def _text(self, part: dict[str, Any]) -> str:
        from server.documents.file_part import (
            pdf_to_text,
            read_document_block,
            read_file_part,
            read_input_file,
        )

        kind = part["type"]
        if kind == "document":
            read = read_document_block(part, max_bytes=self.max_pdf_bytes)
            if isinstance(read, str):  # a plain-text document
                return read
            filename, data = read
        elif kind == "input_file":
            filename, data = read_input_file(part, max_bytes=self.max_pdf_bytes)
        else:
            filename, data = read_file_part(part, max_bytes=self.max_pdf_bytes)
        key = (filename, hashlib.sha256(data).hexdigest())
        with self._lock:
            if key in self._texts:
                self._texts.move_to_end(key)
                return self._texts[key]
        text = pdf_to_text(filename, data)
        with self._lock:
            self.extractions += 1
            if key not in self._texts and len(text) <= self.cache_chars:
                self._texts[key] = text
                self._cached_chars += len(text)
                while self._cached_chars > self.cache_chars:
                    _, dropped = self._texts.popitem(last=False)
                    self._cached_chars -= len(dropped)
        return text

    def _expand_parts(self, content: list[Any], text_type: str) -> list[Any]:
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in DOCUMENT_PARTS:
                part = {"type": text_type, "text": self._text(part)}
            elif kind == "tool_result" and isinstance(part.get("content"), list):
                part = {**part, "content": self._expand_parts(part["content"], text_type)}
            parts.append(part)
        return parts

    def _expand_sync(
        self, messages: list[dict[str, Any]], text_type: str, param: str
    ) -> list[dict[str, Any]]:
        from server.documents.errors import DocumentError

        expanded = []
        for index, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, list):
                expanded.append(message)
                continue
            try:
                parts = self._expand_parts(content, text_type)
            except DocumentError as exc:
                raise errors.invalid_document(f"{param}[{index}]: {exc}", param) from None
            expanded.append({**message, "content": parts})
        return expanded
