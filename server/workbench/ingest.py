"""PDF bytes → a stored document: pages of text with their token counts, streamed to storage.

The file is opened (and so checked: size, header, password, damage) before anything is
stored. Pages are written in batches as the extraction workers finish them, and counted
with the served model's tokenizer meanwhile; any failure discards the half-stored document,
so storage only ever holds finished documents and the one ingestion in flight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from server.counter import Counter
from server.documents.extract import CHUNK_PAGES, PdfText, check_pdf
from storage import documents
from storage.errors import DocumentExistsError

Progress = Callable[[int, int], None]


def sha256_of(data: bytes) -> str:
    """The identity of an upload: same owner + same bytes = same document."""
    return hashlib.sha256(data).hexdigest()


def ingest_pdf(
    store,
    owner: str,
    filename: str,
    data: bytes,
    counter: Counter,
    *,
    password: str | None = None,
    max_bytes: int,
    progress: Progress | None = None,
    workers: int | None = None,
    chunk_pages: int = CHUNK_PAGES,
) -> dict:
    """Store a PDF for `owner` and return its document (storage's dict, plus `reused`).

    The same bytes uploaded again by the same owner return the stored document without
    reading the file (`reused: True`). `progress(done, total)` is called with page counts as
    pages are stored, every `chunk_pages` pages (an exception from it cancels the
    ingestion); `workers` extraction processes read them (default: see PdfText.chunks).
    Raises a DocumentError subclass (PdfTooLargeError, NotAPdfError, EncryptedPdfError,
    WrongPasswordError, CorruptPdfError) with nothing stored. Blocking: call it from a
    worker thread.
    """
    check_pdf(data, max_bytes=max_bytes)
    sha256 = sha256_of(data)
    db = store.db
    found = documents.find_document(db, owner, sha256)
    if found is not None:
        return {**found, "reused": True}
    with PdfText(data, password=password) as pdf:
        total = pdf.page_count
        try:
            document_id = documents.create_document(
                db,
                owner,
                filename=filename,
                sha256=sha256,
                page_count=total,
                tokenizer=counter.name,
            )
        except DocumentExistsError:  # the same file finished in a concurrent upload
            return {**documents.find_document(db, owner, sha256), "reused": True}
        try:
            chunks = pdf.chunks(workers=workers, chunk_pages=chunk_pages)
            _store_pages(db, document_id, total, chunks, counter, progress)
        except BaseException:
            documents.discard_document(db, document_id)
            raise
    return {**documents.get_document(db, owner, document_id), "reused": False}


def _store_pages(
    db, document_id: int, total: int, chunks, counter: Counter, progress: Progress | None
) -> None:
    done, total_tokens, empty_pages = 0, 0, []
    if progress:
        progress(0, total)
    for chunk in chunks:
        counts = counter.count_texts([page.text for page in chunk])
        documents.add_pages(
            db, document_id, [(p.number, p.text, n) for p, n in zip(chunk, counts, strict=True)]
        )
        total_tokens += sum(counts)
        # No text layer (scanned or image-only): the person is told which pages need OCR.
        empty_pages += [p.number for p in chunk if not p.text.strip()]
        done += len(chunk)
        if progress:
            progress(done, total)
    documents.finish_document(db, document_id, total_tokens=total_tokens, empty_pages=empty_pages)
