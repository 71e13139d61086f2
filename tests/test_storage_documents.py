"""Documents: pages streaming in, finishing, discarding failures, one per file, attachments,
and how exports refer to them."""

import pytest

from server.workbench.markdown import export_markdown
from storage import DocumentExistsError, ImportFormatError, NotFoundError, Store
from storage import documents as docs
from storage.conversations import (
    create_conversation,
    delete_conversation,
    export_json,
    import_json,
    unattached_documents,
)
from storage.documents import (
    add_pages,
    attach_document,
    conversation_documents,
    create_document,
    detach_document,
    discard_document,
    find_document,
    finish_document,
    get_document,
    get_pages,
    list_documents,
)


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setattr(docs.time, "time", lambda: 5_000.0)
    with Store(tmp_path / "workbench.db") as store:
        yield store.db


def ingest(db, owner="alice", sha="ab" * 32, pages=(("one", 1), ("", 0), ("three", 3))) -> int:
    did = create_document(
        db,
        owner,
        filename="spec.pdf",
        sha256=sha,
        page_count=len(pages),
        tokenizer="qwen3-tiktoken",
    )
    add_pages(db, did, [(1, pages[0][0], pages[0][1])])
    add_pages(db, did, [(n, text, tokens) for n, (text, tokens) in enumerate(pages[1:], start=2)])
    finish_document(
        db,
        did,
        total_tokens=sum(t for _, t in pages),
        empty_pages=[n for n, (text, _) in enumerate(pages, 1) if not text],
    )
    return did


def test_finished_document_has_exactly_these_fields_and_pages_in_order(db):
    did = ingest(db)
    assert get_document(db, "alice", did) == {
        "id": did,
        "owner": "alice",
        "filename": "spec.pdf",
        "sha256": "ab" * 32,
        "page_count": 3,
        "total_tokens": 4,
        "tokenizer": "qwen3-tiktoken",
        "empty_pages": [2],
        "status": "ready",
        "created_at": 5_000.0,
        "pages_done": 3,
    }
    assert get_pages(db, did) == [
        {"number": 1, "text": "one", "tokens": 1},
        {"number": 2, "text": "", "tokens": 0},
        {"number": 3, "text": "three", "tokens": 3},
    ]
    assert [p["number"] for p in get_pages(db, did, first=2)] == [2, 3]
    assert [p["number"] for p in get_pages(db, did, first=2, last=2)] == [2]
    assert [p["number"] for p in get_pages(db, did, last=1)] == [1]


def test_ingesting_document_reports_progress_and_is_not_found_by_sha(db):
    did = create_document(
        db, "alice", filename="big.pdf", sha256="cd" * 32, page_count=10, tokenizer="t"
    )
    add_pages(db, did, [(1, "a", 1), (2, "b", 1)])
    got = get_document(db, "alice", did)
    assert (got["status"], got["pages_done"], got["total_tokens"]) == ("ingesting", 2, None)
    assert find_document(db, "alice", "cd" * 32) is None


def test_same_file_for_the_same_owner_is_one_document(db):
    did = ingest(db)
    assert find_document(db, "alice", "ab" * 32)["id"] == did
    assert find_document(db, "bob", "ab" * 32) is None
    with pytest.raises(DocumentExistsError):
        create_document(
            db, "alice", filename="copy.pdf", sha256="ab" * 32, page_count=3, tokenizer="t"
        )
    other = ingest(db, owner="bob")  # another owner gets their own copy
    assert other != did


def test_discarded_ingestion_leaves_nothing_behind(db):
    did = create_document(
        db, "alice", filename="bad.pdf", sha256="ee" * 32, page_count=3, tokenizer="t"
    )
    add_pages(db, did, [(1, "partial", 2)])
    discard_document(db, did)
    assert get_document(db, "alice", did) is None
    assert db["document_pages"].count == 0
    assert db["documents"].count == 0


def test_unfinished_ingestion_of_the_same_file_is_replaced_by_a_new_one(db):
    crashed = create_document(
        db, "alice", filename="a.pdf", sha256="ff" * 32, page_count=2, tokenizer="t"
    )
    add_pages(db, crashed, [(1, "x", 1)])
    fresh = create_document(
        db, "alice", filename="a.pdf", sha256="ff" * 32, page_count=2, tokenizer="t"
    )
    assert get_document(db, "alice", crashed) is None
    assert get_document(db, "alice", fresh)["pages_done"] == 0
    with pytest.raises(NotFoundError):
        add_pages(db, crashed, [(2, "y", 1)])


def test_pages_cannot_be_added_after_finishing(db):
    did = ingest(db)
    with pytest.raises(ValueError, match="is ready"):
        add_pages(db, did, [(4, "late", 1)])


def test_documents_are_owner_scoped(db):
    did = ingest(db)
    assert get_document(db, "bob", did) is None
    assert list_documents(db, "bob") == []
    assert [d["id"] for d in list_documents(db, "alice")] == [did]
    assert docs.delete_document(db, "bob", did) is False


def test_attach_and_detach_documents_to_conversations(db):
    did = ingest(db)
    cid = create_conversation(db, "alice")
    attach_document(db, "alice", cid, did)
    attach_document(db, "alice", cid, did)  # again: no-op
    assert [d["id"] for d in conversation_documents(db, "alice", cid)] == [did]
    assert conversation_documents(db, "bob", cid) == []
    bobs = create_conversation(db, "bob")
    with pytest.raises(NotFoundError):
        attach_document(db, "bob", bobs, did)  # not bob's document
    with pytest.raises(NotFoundError):
        attach_document(db, "bob", cid, did)  # not bob's conversation
    detach_document(db, "alice", cid, did)
    assert conversation_documents(db, "alice", cid) == []


def test_deleting_a_document_removes_pages_and_attachments(db):
    did = ingest(db)
    cid = create_conversation(db, "alice")
    attach_document(db, "alice", cid, did)
    assert docs.delete_document(db, "alice", did) is True
    assert (
        db["documents"].count,
        db["document_pages"].count,
        db["conversation_documents"].count,
    ) == (0, 0, 0)
    assert delete_conversation(db, "alice", cid) is True


def test_export_names_attached_documents_and_import_reattaches_the_importers_copy(db):
    cid = create_conversation(db, "alice")
    attach_document(db, "alice", cid, ingest(db, "alice", sha="ab" * 32))
    data = export_json(db, "alice", cid)
    assert data["documents"] == [
        {"filename": "spec.pdf", "sha256": "ab" * 32, "page_count": 3, "total_tokens": 4},
    ]
    assert "## Documents\n\n- spec.pdf: 3 pages, 4 tokens\n" in export_markdown(db, "alice", cid)

    # Bob has the same PDF: his copy is attached. Carol does not: the file is named as missing.
    bob_doc = ingest(db, "bob", sha="ab" * 32)
    bob_cid = import_json(db, "bob", data)
    assert [d["id"] for d in conversation_documents(db, "bob", bob_cid)] == [bob_doc]
    assert unattached_documents(db, "bob", bob_cid, data) == []
    carol_cid = import_json(db, "carol", data)
    assert conversation_documents(db, "carol", carol_cid) == []
    assert unattached_documents(db, "carol", carol_cid, data) == ["spec.pdf"]


@pytest.mark.parametrize(
    "documents, message",
    [
        ("spec.pdf", "documents must be a list"),
        ([{"filename": "a.pdf", "sha256": "xyz"}], r"documents\[0\].sha256 must be 64"),
        ([{"sha256": "ab" * 32}], r"documents\[0\].filename must be a string"),
    ],
)
def test_import_rejects_malformed_document_references(db, documents, message):
    data = {
        "format": "qwen-workbench.conversation",
        "version": 1,
        "messages": [],
        "documents": documents,
    }
    with pytest.raises(ImportFormatError, match=message):
        import_json(db, "alice", data)
    assert db["conversations"].count == 0
