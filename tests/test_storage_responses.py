"""Stored Responses API responses: kept per key, read back whole, never across keys."""

from storage.responses import load_response, save_response

ITEMS = [{"type": "message", "role": "user", "content": "Hi ✓"}]
OUTPUT = [
    {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
    }
]


def test_a_response_is_read_back_by_its_key_only(db):
    save_response(db, key_name="alice", response_id="resp_1", input=ITEMS, output=OUTPUT)
    assert load_response(db, "alice", "resp_1") == {"input": ITEMS, "output": OUTPUT}
    assert load_response(db, "bob", "resp_1") is None
    assert load_response(db, "alice", "resp_2") is None
    row = db["responses"].get("resp_1")
    assert row["key_name"] == "alice" and row["created_at"] > 0
