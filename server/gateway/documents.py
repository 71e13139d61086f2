"""PDF content parts in /v1 requests: `{"type": "file", "file": {"filename", "file_data"}}`.

vLLM knows nothing of PDFs, so before a chat request is counted and forwarded, every file part
becomes a text part with the document's page-marked text (server.documents does the reading).
A PDF that cannot be read is the client's problem: 400 `invalid_document`, param `messages`,
with the documents module's own message.
"""

from __future__ import annotations

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
    """Replaces file parts by text parts; messages without files pass through untouched."""

    def __init__(self, max_pdf_bytes: int):
        self.max_pdf_bytes = max_pdf_bytes

    async def expand(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not _has_file_part(messages):
            return messages
        # PDF reading is CPU-bound: off the event loop.
        return await anyio.to_thread.run_sync(self._expand_sync, messages)

    def _expand_sync(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from server.documents.errors import DocumentError
        from server.documents.prompt import file_part_to_text

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
                        text = file_part_to_text(part, max_bytes=self.max_pdf_bytes)
                    except DocumentError as exc:
                        raise errors.invalid_request(
                            f"messages[{index}]: {exc}", "messages", "invalid_document"
                        ) from None
                    parts.append({"type": "text", "text": text})
                else:
                    parts.append(part)
            expanded.append({**message, "content": parts})
        return expanded
