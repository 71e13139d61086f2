"""The owner's documents in the workbench: upload, attach to conversations, choose pages.

`DocumentLibrary` is the documents half of `server.workbench.Workbench` (reached as
`wb.documents`): every method takes the owner, and another owner's document or conversation
behaves as a missing one. The page ranges chosen for a document are per conversation, kept
in the conversation's params under `PAGES_KEY` (`{"<document id>": "1-3, 7"}`), so they
survive reloads and restarts with its other settings.

Methods are blocking (SQLite, PDF reading, token counting): call them from worker threads.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.documents.errors import PdfTooLargeError
from server.documents.prompt import (
    document_text,
    format_ranges,
    parse_page_ranges,
)
from server.services import Services
from server.workbench.ingest import ingest_pdf
from storage import conversations as conv
from storage import documents as docs

__all__ = ["PAGES_KEY", "Attached", "DocumentLibrary"]

PAGES_KEY = "document_pages"
# Selections (pages and their text) kept in memory, so the gauge does not re-read a long
# document from SQLite at every keystroke. Documents never change once stored.
CACHED_SELECTIONS = 8


@dataclass(frozen=True)
class Attached:
    """A document attached to a conversation, with the pages chosen for it."""

    id: int
    filename: str
    page_count: int
    total_tokens: int
    empty_pages: list[int]
    spec: str  # the page ranges chosen ("1-3, 7"); "" for every page
    pages: list[dict]  # the chosen pages: {number, text, tokens}
    text: str  # the document as the model sees it (header, [page N] markers)

    @property
    def tokens(self) -> int:
        """Tokens of the chosen pages' text (as counted at upload, markers not included)."""
        return sum(p["tokens"] for p in self.pages)


class DocumentLibrary:
    """Owner-scoped documents: ingestion, attachments, page ranges, the documents block."""

    def __init__(self, services: Services):
        self._services = services
        self._cache: OrderedDict[tuple[int, str], tuple[list[dict], str]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def _db(self):
        store = self._services.store
        if store is None:
            raise RuntimeError("the app is not running: its store is closed")
        return store.db

    # Upload --------------------------------------------------------------------------------

    def upload(
        self,
        owner: str,
        path: str | Path,
        *,
        filename: str | None = None,
        password: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict:
        """Ingest the PDF at `path` for `owner` (the stored one if the same bytes exist).

        Returns storage's document dict plus `reused`. Raises a DocumentError subclass with
        the message for the person, with nothing stored. `progress(done, total)` reports pages.
        """
        limit = self._services.settings.max_pdf_bytes
        size = os.path.getsize(path)
        if size > limit:  # refused before reading a huge file into memory
            raise PdfTooLargeError(size, limit)
        data = Path(path).read_bytes()
        return ingest_pdf(
            self._services.store,
            owner,
            filename or Path(path).name,
            data,
            self._services.counter,
            password=password,
            max_bytes=limit,
            progress=progress,
        )

    def list_documents(self, owner: str) -> list[dict]:
        """The owner's finished documents, newest first."""
        return [d for d in docs.list_documents(self._db, owner) if d["status"] == "ready"]

    def get(self, owner: str, document_id: int) -> dict | None:
        """One of the owner's documents, or None."""
        return docs.get_document(self._db, owner, document_id)

    def delete(self, owner: str, document_id: int) -> bool:
        """Delete a document everywhere it is attached; False if it is not the owner's."""
        return docs.delete_document(self._db, owner, document_id)

    # Attachments and pages -----------------------------------------------------------------

    def _specs(self, owner: str, cid: int) -> dict[str, str]:
        found = conv.get_conversation(self._db, owner, cid)
        specs = (found or {}).get("params", {}).get(PAGES_KEY)
        return dict(specs) if isinstance(specs, dict) else {}

    def _save_specs(self, owner: str, cid: int, specs: dict[str, str]) -> None:
        found = conv.get_conversation(self._db, owner, cid)
        if found is None:
            return
        params = {k: v for k, v in found["params"].items() if k != PAGES_KEY}
        if specs:
            params[PAGES_KEY] = specs
        if params != found["params"]:
            conv.update_conversation_settings(self._db, owner, cid, params=params)

    def set_attached(self, owner: str, cid: int, document_ids: list[int]) -> None:
        """Attach exactly these documents (new ones after those already attached).

        Raises NotFoundError if the conversation or a document is not the owner's.
        """
        wanted = set(document_ids)
        current = [d["id"] for d in docs.conversation_documents(self._db, owner, cid)]
        for document_id in current:
            if document_id not in wanted:
                docs.detach_document(self._db, owner, cid, document_id)
        for document_id in document_ids:
            if document_id not in current:
                docs.attach_document(self._db, owner, cid, document_id)
        specs = self._specs(owner, cid)
        kept = {k: v for k, v in specs.items() if int(k) in wanted}
        if kept != specs:
            self._save_specs(owner, cid, kept)

    def attach(self, owner: str, cid: int, document_id: int) -> None:
        """Attach one more document (already attached: no change)."""
        docs.attach_document(self._db, owner, cid, document_id)

    def set_pages(self, owner: str, cid: int, document_id: int, spec: str) -> str:
        """Choose the pages of an attached document for this conversation; "" means all.

        Returns the ranges as stored ("1-3, 7"); ValueError says what is wrong with `spec`.
        """
        attached = {d["id"]: d for d in docs.conversation_documents(self._db, owner, cid)}
        if document_id not in attached:
            raise ValueError("attach the document to this conversation first")
        spec = (spec or "").strip()
        canonical = ""
        if spec:
            canonical = format_ranges(parse_page_ranges(spec, attached[document_id]["page_count"]))
        specs = self._specs(owner, cid)
        if canonical:
            specs[str(document_id)] = canonical
        else:
            specs.pop(str(document_id), None)
        self._save_specs(owner, cid, specs)
        return canonical

    def _selection(self, document: dict, spec: str) -> tuple[list[dict], str]:
        key = (document["id"], spec)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if spec:
            wanted = parse_page_ranges(spec, document["page_count"])
            numbers = {n for first, last in wanted for n in range(first, last + 1)}
            pages = [p for p in docs.get_pages(self._db, document["id"]) if p["number"] in numbers]
        else:
            pages = docs.get_pages(self._db, document["id"])
        selection = (pages, document_text(document["filename"], pages))
        with self._lock:
            self._cache[key] = selection
            while len(self._cache) > CACHED_SELECTIONS:
                self._cache.popitem(last=False)
        return selection

    def attached(self, owner: str, cid: int | None) -> list[Attached]:
        """The conversation's documents in attachment order, with their chosen pages."""
        if cid is None:
            return []
        specs = self._specs(owner, cid)
        out = []
        for d in docs.conversation_documents(self._db, owner, cid):
            if d["status"] != "ready":
                continue
            spec = specs.get(str(d["id"]), "")
            try:
                pages, text = self._selection(d, spec)
            except ValueError:  # a stored range that no longer parses: every page
                spec = ""
                pages, text = self._selection(d, spec)
            out.append(
                Attached(
                    id=d["id"],
                    filename=d["filename"],
                    page_count=d["page_count"],
                    total_tokens=d["total_tokens"] or 0,
                    empty_pages=d["empty_pages"],
                    spec=spec,
                    pages=pages,
                    text=text,
                )
            )
        return out

    def context(self, owner: str, cid: int | None) -> str:
        """The documents block of a conversation ("" without documents): byte-identical
        for the same documents and pages, which is what the engine's prefix cache needs."""
        return "\n\n".join(a.text for a in self.attached(owner, cid))
