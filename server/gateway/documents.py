"""PDF content parts in /v1 requests: `{"type": "file", "file": {"filename", "file_data"}}`.

vLLM knows nothing of PDFs, so before a chat request is counted and forwarded, every file part
becomes a text part with the document's page-marked text (server.documents does the reading).
A PDF that cannot be read is the client's problem: 400 `invalid_document`, param `messages`,
with the documents module's own message.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import anyio.to_thread

from server.gateway import errors


def _has_file_part(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "file":
                    return True
    return False


class DocumentExpander:
    """Replaces file parts by text parts; messages without files pass through untouched.

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

    async def expand(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not _has_file_part(messages):
            return messages
        # PDF reading is CPU-bound: off the event loop.
        return await anyio.to_thread.run_sync(self._expand_sync, messages)

    def _text(self, part: dict[str, Any]) -> str:
        from server.documents.file_part import pdf_to_text, read_file_part

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

    def _expand_sync(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from server.documents.errors import DocumentError

        expanded = []
        for index, message in enumerate(messages):
            content = message.get("content")
            if not isinstance(content, list):
                expanded.append(message)
                continue
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "file":
                    try:
                        text = self._text(part)
                    except DocumentError as exc:
                        raise errors.invalid_document(f"messages[{index}]: {exc}") from None
                    parts.append({"type": "text", "text": text})
                else:
                    parts.append(part)
            expanded.append({**message, "content": parts})
        return expanded
