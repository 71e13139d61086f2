"""Documents (PDFs as pages of text with token counts) and their attachment to conversations.

A document is stored while it is ingested (status "ingesting", pages streaming in) and
becomes "ready" when finished; a failed ingestion is discarded completely.
"""

import json
import time

import sqlite_utils

from storage.errors import DocumentExistsError, NotFoundError
from storage.ownership import require_conversation
from storage.transactions import write

_DOCUMENT_SQL = """
SELECT documents.id, owner, filename, sha256, page_count, total_tokens, tokenizer, empty_pages,
       status, created_at,
       (SELECT count(*) FROM document_pages WHERE document_id = documents.id) AS pages_done
FROM documents
"""


def _document(row: dict) -> dict:
    return {**row, "empty_pages": json.loads(row["empty_pages"])}


def _documents(db: sqlite_utils.Database, where: str, params: list) -> list[dict]:
    return [_document(row) for row in db.query(f"{_DOCUMENT_SQL} WHERE {where}", params)]


def find_document(db: sqlite_utils.Database, owner: str, sha256: str) -> dict | None:
    """The owner's finished document with these bytes, if any (to skip ingesting it again)."""
    found = _documents(db, "owner = ? AND sha256 = ? AND status = 'ready'", [owner, sha256])
    return found[0] if found else None


def create_document(
    db: sqlite_utils.Database,
    owner: str,
    *,
    filename: str,
    sha256: str,
    page_count: int,
    tokenizer: str,
) -> int:
    """Start storing a document (status "ingesting"); returns its id.

    Raises DocumentExistsError if the owner already has it finished (use find_document first).
    An unfinished row for the same bytes is replaced: it is a crashed ingestion, or a
    concurrent upload of the same file, and either way must not block this one forever.
    """
    with write(db):
        for existing in _documents(db, "owner = ? AND sha256 = ?", [owner, sha256]):
            if existing["status"] == "ready":
                raise DocumentExistsError(f"document {existing['id']} already has these bytes")
            _delete(db, existing["id"])
        table = db["documents"].insert(
            {
                "owner": owner,
                "filename": filename,
                "sha256": sha256,
                "page_count": page_count,
                "tokenizer": tokenizer,
                "status": "ingesting",
                "created_at": time.time(),
            }
        )
    return table.last_pk


def _require_ingesting(db: sqlite_utils.Database, document_id: int) -> None:
    row = db.execute("SELECT status FROM documents WHERE id = ?", [document_id]).fetchone()
    if row is None:
        raise NotFoundError(f"document {document_id} not found")
    if row[0] != "ingesting":
        raise ValueError(f"document {document_id} is {row[0]}, not ingesting")


def add_pages(
    db: sqlite_utils.Database, document_id: int, pages: list[tuple[int, str, int]]
) -> None:
    """Store pages as they stream in: (number from 1, text, token count).

    A page sent twice replaces the first, so retries are harmless.
    """
    with write(db):
        _require_ingesting(db, document_id)
        db["document_pages"].insert_all(
            (
                {"document_id": document_id, "number": number, "text": text, "tokens": tokens}
                for number, text, tokens in pages
            ),
            replace=True,
        )


def finish_document(
    db: sqlite_utils.Database, document_id: int, *, total_tokens: int, empty_pages: list[int]
) -> None:
    """Mark an ingestion complete (status "ready")."""
    with write(db):
        _require_ingesting(db, document_id)
        db["documents"].update(
            document_id,
            {
                "status": "ready",
                "total_tokens": total_tokens,
                "empty_pages": json.dumps(empty_pages),
            },
        )


def _delete(db: sqlite_utils.Database, document_id: int) -> None:
    db.execute("DELETE FROM conversation_documents WHERE document_id = ?", [document_id])
    db.execute("DELETE FROM document_pages WHERE document_id = ?", [document_id])
    db.execute("DELETE FROM documents WHERE id = ?", [document_id])


def discard_document(db: sqlite_utils.Database, document_id: int) -> None:
    """Remove a failed ingestion and every page it stored; no-op if already gone."""
    with write(db):
        _delete(db, document_id)


def delete_document(db: sqlite_utils.Database, owner: str, document_id: int) -> bool:
    """Delete the owner's document, its pages and its attachments; False if not found."""
    with write(db):
        if not _documents(db, "documents.id = ? AND owner = ?", [document_id, owner]):
            return False
        _delete(db, document_id)
    return True


def get_document(db: sqlite_utils.Database, owner: str, document_id: int) -> dict | None:
    """{id, owner, filename, sha256, page_count, total_tokens, tokenizer, empty_pages, status,
    created_at, pages_done}, or None."""
    found = _documents(db, "documents.id = ? AND owner = ?", [document_id, owner])
    return found[0] if found else None


def list_documents(db: sqlite_utils.Database, owner: str) -> list[dict]:
    """The owner's documents, newest first (ingesting ones included, see `status`)."""
    return _documents(db, "owner = ? ORDER BY created_at DESC, documents.id DESC", [owner])


def get_pages(
    db: sqlite_utils.Database,
    document_id: int,
    *,
    first: int | None = None,
    last: int | None = None,
) -> list[dict]:
    """Pages {number, text, tokens} in order, optionally only first..last (inclusive)."""
    return list(
        db.query(
            "SELECT number, text, tokens FROM document_pages WHERE document_id = ?"
            " AND number >= ? AND number <= ? ORDER BY number",
            [document_id, first or 1, last if last is not None else 2**62],
        )
    )


def _require_document(db: sqlite_utils.Database, owner: str, document_id: int) -> None:
    if get_document(db, owner, document_id) is None:
        raise NotFoundError(f"document {document_id} not found")


def attach_document(db: sqlite_utils.Database, owner: str, cid: int, document_id: int) -> None:
    """Attach the owner's document to the owner's conversation (again is a no-op).

    Raises NotFoundError if either is missing or belongs to someone else.
    """
    with write(db):
        require_conversation(db, owner, cid)
        _require_document(db, owner, document_id)
        db["conversation_documents"].insert(
            {"conversation_id": cid, "document_id": document_id, "attached_at": time.time()},
            ignore=True,
        )


def detach_document(db: sqlite_utils.Database, owner: str, cid: int, document_id: int) -> None:
    """Detach a document from a conversation (not attached is a no-op).

    Raises NotFoundError if the conversation is missing or belongs to someone else.
    """
    with write(db):
        require_conversation(db, owner, cid)
        db.execute(
            "DELETE FROM conversation_documents WHERE conversation_id = ? AND document_id = ?",
            [cid, document_id],
        )


def conversation_documents(db: sqlite_utils.Database, owner: str, cid: int) -> list[dict]:
    """Documents attached to the owner's conversation, in attachment order ([] if not found)."""
    return _documents(
        db,
        "owner = ? AND documents.id IN"
        " (SELECT document_id FROM conversation_documents WHERE conversation_id = ?)"
        " ORDER BY (SELECT attached_at FROM conversation_documents"
        "  WHERE conversation_id = ? AND document_id = documents.id)",
        [owner, cid, cid],
    )
