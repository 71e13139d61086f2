"""API keys: the identities that own conversations, documents and usage.

Only a sha256 of each secret is stored; the secret is shown once, at creation.
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlite_utils

from storage.errors import KeyExistsError
from storage.transactions import write

SECRET_PREFIX = "wb-"
# last_used_at is written at most this often per key, so hot paths do not write per request.
LAST_USED_RESOLUTION_SECONDS = 5.0


@dataclass(frozen=True)
class Key:
    """An authenticated API key: its name is the owner of everything it creates."""

    id: int
    name: str
    admin: bool


def hash_secret(secret: str) -> str:
    """The stored form of a secret (hex sha256)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _active(db: sqlite_utils.Database, column: str, value: str) -> dict | None:
    rows = list(
        db.query(f"SELECT * FROM api_keys WHERE {column} = ? AND revoked_at IS NULL", [value])
    )
    return rows[0] if rows else None


def create_key(db: sqlite_utils.Database, name: str, *, admin: bool = False) -> str:
    """Create a key and return its secret (the only time it is available)."""
    if not name or not name.strip():
        raise ValueError("key name must not be empty")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with write(db):
        if _active(db, "name", name):
            raise KeyExistsError(f"an active key named {name!r} already exists")
        db["api_keys"].insert(
            {
                "name": name,
                "key_hash": hash_secret(secret),
                "admin": int(admin),
                "created_at": time.time(),
            }
        )
    return secret


def ensure_key(db: sqlite_utils.Database, name: str, secret: str, *, admin: bool = True) -> None:
    """Record a known secret under `name` (the VLLM_API_KEY bootstrap); idempotent.

    If the name exists with another secret, the stored hash is replaced: the environment wins.
    """
    key_hash = hash_secret(secret)
    with write(db):
        holder = _active(db, "key_hash", key_hash)
        if holder and holder["name"] != name:
            raise KeyExistsError(f"that secret already belongs to the key {holder['name']!r}")
        row = _active(db, "name", name)
        if row is None:
            db["api_keys"].insert(
                {"name": name, "key_hash": key_hash, "admin": int(admin), "created_at": time.time()}
            )
        elif row["key_hash"] != key_hash or bool(row["admin"]) != admin:
            db["api_keys"].update(row["id"], {"key_hash": key_hash, "admin": int(admin)})


def authenticate(db: sqlite_utils.Database, secret: str) -> Key | None:
    """The active key with this secret, or None; records when it was last used."""
    if not secret:
        return None
    key_hash = hash_secret(secret)
    row = _active(db, "key_hash", key_hash)
    # The lookup is by hash, which leaks nothing useful; the final check is constant-time anyway.
    if row is None or not hmac.compare_digest(row["key_hash"], key_hash):
        return None
    now = time.time()
    last = row["last_used_at"]
    if last is None or now - last >= LAST_USED_RESOLUTION_SECONDS:
        with write(db):
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [now, row["id"]])
    return Key(id=row["id"], name=row["name"], admin=bool(row["admin"]))


def list_keys(db: sqlite_utils.Database) -> list[dict]:
    """Every key, revoked ones included, oldest first; never the hash."""
    return [
        {**row, "admin": bool(row["admin"])}
        for row in db.query(
            "SELECT name, admin, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id"
        )
    ]


def revoke_key(db: sqlite_utils.Database, name: str) -> bool:
    """Revoke the active key with this name; False if there is none."""
    with write(db):
        cursor = db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            [time.time(), name],
        )
    return cursor.rowcount > 0
