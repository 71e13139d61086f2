"""Responses API responses kept for their key: the conversation up to them, to continue it.

A stored response holds the input items its request had (the previous responses' included)
and the output items it produced; `previous_response_id` continues from both.
"""

import json
import time

import sqlite_utils

from storage.transactions import write


def save_response(
    db: sqlite_utils.Database, *, key_name: str, response_id: str, input: list, output: list
) -> None:
    """Keep one response for `key_name` (a response id is stored once)."""
    with write(db):
        db["responses"].insert(
            {
                "id": response_id,
                "key_name": key_name,
                "created_at": time.time(),
                "input": json.dumps(input),
                "output": json.dumps(output),
            },
            replace=True,
        )


def load_response(db: sqlite_utils.Database, key_name: str, response_id: str) -> dict | None:
    """{"input": [...], "output": [...]} of the key's response, or None (another key's too)."""
    rows = list(
        db.query(
            "SELECT input, output FROM responses WHERE id = ? AND key_name = ?",
            [response_id, key_name],
        )
    )
    if not rows:
        return None
    return {"input": json.loads(rows[0]["input"]), "output": json.loads(rows[0]["output"])}
