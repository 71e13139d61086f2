"""Ingestion into real storage: streamed pages, exact token totals, dedup, nothing half-stored."""

from pathlib import Path

import pytest

from server.documents.errors import (
    CorruptPdfError,
    EncryptedPdfError,
    NotAPdfError,
    PdfTooLargeError,
    WrongPasswordError,
)
from server.documents.extract import extract_pages
from server.tokens import qwen3_counter
from server.workbench import ingest as ingest_module
from server.workbench.ingest import ingest_pdf, sha256_of
from storage import Store
from storage.documents import get_document, get_pages, list_documents

PDFS = Path(__file__).parent / "pdfs"
GENERATED = (PDFS / "chromium-code-cjk.pdf").read_bytes()
LIMIT = 10_000_000


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "workbench.db")
    yield store
    store.close()


@pytest.fixture(scope="module")
def counter():
    return qwen3_counter()


def stored_rows(store) -> tuple[int, int]:
    db = store.db
    return (
        db.execute("SELECT count(*) FROM documents").fetchone()[0],
        db.execute("SELECT count(*) FROM document_pages").fetchone()[0],
    )


def test_token_total_equals_counting_the_extracted_text_directly(store, counter):
    document = ingest_pdf(store, "alice", "long.pdf", GENERATED, counter, max_bytes=LIMIT)
    extracted = list(extract_pages(GENERATED, workers=1))
    expected = [counter.count_text(page.text) for page in extracted]
    assert document["total_tokens"] == sum(expected)
    pages = get_pages(store.db, document["id"])
    assert [(p["number"], p["text"], p["tokens"]) for p in pages] == [
        (page.number, page.text, tokens) for page, tokens in zip(extracted, expected, strict=True)
    ]


def test_finished_document_describes_the_upload(store, counter):
    document = ingest_pdf(store, "alice", "long.pdf", GENERATED, counter, max_bytes=LIMIT)
    assert {
        k: document[k]
        for k in (
            "owner",
            "filename",
            "sha256",
            "page_count",
            "tokenizer",
            "empty_pages",
            "status",
            "pages_done",
            "reused",
        )
    } == {
        "owner": "alice",
        "filename": "long.pdf",
        "sha256": sha256_of(GENERATED),
        "page_count": 10,
        "tokenizer": "Qwen3",
        "empty_pages": [],
        "status": "ready",
        "pages_done": 10,
        "reused": False,
    }


def test_pages_are_stored_as_they_are_read_with_progress(store, counter):
    seen = []

    def progress(done, total):
        # What storage holds at each report: exactly the pages reported done so far.
        (document,) = list_documents(store.db, "alice")
        seen.append((done, total, document["pages_done"], document["status"]))

    ingest_pdf(
        store,
        "alice",
        "long.pdf",
        GENERATED,
        counter,
        max_bytes=LIMIT,
        progress=progress,
        workers=1,
        chunk_pages=4,
    )
    assert seen == [
        (0, 10, 0, "ingesting"),
        (4, 10, 4, "ingesting"),
        (8, 10, 8, "ingesting"),
        (10, 10, 10, "ingesting"),
    ]


def test_two_workers_store_the_same_pages(store, counter, tmp_path):
    one = ingest_pdf(store, "alice", "long.pdf", GENERATED, counter, max_bytes=LIMIT, workers=1)
    other = Store(tmp_path / "other.db")
    try:
        two = ingest_pdf(other, "alice", "long.pdf", GENERATED, counter, max_bytes=LIMIT, workers=2)
        assert get_pages(other.db, two["id"]) == get_pages(store.db, one["id"])
    finally:
        other.close()


def test_same_file_again_returns_the_stored_document_without_reading_it(
    store, counter, monkeypatch
):
    first = ingest_pdf(store, "alice", "long.pdf", GENERATED, counter, max_bytes=LIMIT)

    def must_not_read(*args, **kwargs):
        raise AssertionError("the PDF was read again")

    monkeypatch.setattr(ingest_module, "PdfText", must_not_read)
    again = ingest_pdf(store, "alice", "renamed.pdf", GENERATED, counter, max_bytes=LIMIT)
    assert again == {**first, "reused": True}
    assert stored_rows(store) == (1, 10)


def test_same_file_from_another_owner_is_their_own_document(store, counter):
    alice = ingest_pdf(store, "alice", "long.pdf", GENERATED, counter, max_bytes=LIMIT)
    bob = ingest_pdf(store, "bob", "long.pdf", GENERATED, counter, max_bytes=LIMIT)
    assert (bob["reused"], bob["owner"]) == (False, "bob")
    assert bob["id"] != alice["id"]
    assert stored_rows(store) == (2, 20)


def test_failure_midway_discards_everything_stored(store, counter):
    def cancel_after_first_batch(done, total):
        if done >= 4:
            raise KeyboardInterrupt  # e.g. the upload was cancelled

    with pytest.raises(KeyboardInterrupt):
        ingest_pdf(
            store,
            "alice",
            "long.pdf",
            GENERATED,
            counter,
            max_bytes=LIMIT,
            progress=cancel_after_first_batch,
            workers=1,
            chunk_pages=4,
        )
    assert stored_rows(store) == (0, 0)
    # And the same file can then be ingested normally.
    document = ingest_pdf(store, "alice", "long.pdf", GENERATED, counter, max_bytes=LIMIT)
    assert document["status"] == "ready"


def test_page_damaged_after_opening_discards_the_document(store, counter, monkeypatch):
    from server.documents import extract

    real_read = extract._Reader.read

    def read_then_fail(self, first, last):
        if first >= 4:
            raise CorruptPdfError()
        return real_read(self, first, last)

    monkeypatch.setattr(extract._Reader, "read", read_then_fail)
    with pytest.raises(CorruptPdfError):
        ingest_pdf(
            store,
            "alice",
            "long.pdf",
            GENERATED,
            counter,
            max_bytes=LIMIT,
            workers=1,
            chunk_pages=4,
        )
    assert stored_rows(store) == (0, 0)


def test_image_only_pages_are_listed(store, counter):
    data = (PDFS / "imagemagick-images.pdf").read_bytes()
    document = ingest_pdf(store, "alice", "scan.pdf", data, counter, max_bytes=LIMIT)
    assert (document["page_count"], document["empty_pages"]) == (6, [4, 5])
    assert [p["tokens"] for p in get_pages(store.db, document["id"])] == [1, 1, 1, 0, 0, 1]


@pytest.mark.parametrize(
    ("name", "data", "password", "error"),
    [
        (
            "locked.pdf",
            (PDFS / "libreoffice-writer-password.pdf").read_bytes(),
            None,
            EncryptedPdfError,
        ),
        (
            "locked.pdf",
            (PDFS / "libreoffice-writer-password.pdf").read_bytes(),
            "guess",
            WrongPasswordError,
        ),
        ("broken.pdf", (PDFS / "unreadablemetadata.pdf").read_bytes(), None, CorruptPdfError),
        ("cut.pdf", GENERATED[: len(GENERATED) // 2], None, CorruptPdfError),
        ("notes.txt", b"just some notes\n" * 100, None, NotAPdfError),
    ],
)
def test_unreadable_upload_raises_its_error_and_stores_nothing(
    store, counter, name, data, password, error
):
    with pytest.raises(error):
        ingest_pdf(store, "alice", name, data, counter, password=password, max_bytes=LIMIT)
    assert stored_rows(store) == (0, 0)


def test_upload_over_the_limit_stores_nothing(store, counter):
    with pytest.raises(PdfTooLargeError):
        ingest_pdf(store, "alice", "long.pdf", GENERATED, counter, max_bytes=len(GENERATED) - 1)
    assert stored_rows(store) == (0, 0)


def test_encrypted_upload_with_its_password_is_stored(store, counter):
    data = (PDFS / "libreoffice-writer-password.pdf").read_bytes()
    document = ingest_pdf(
        store, "alice", "locked.pdf", data, counter, password="openpassword", max_bytes=LIMIT
    )
    assert get_document(store.db, "alice", document["id"])["page_count"] == 1
    (page,) = get_pages(store.db, document["id"])
    assert page["text"].startswith("Lorem ipsum dolor sit amet")
    assert page["tokens"] == counter.count_text(page["text"])
