"""Key authentication for /v1 and the operator endpoints.

A key comes as `Authorization: Bearer <key>` (OpenAI's clients) or `x-api-key: <key>`
(Anthropic's); Claude Code may send both, so either one that authenticates is accepted.

Keys live hashed in storage (`storage.keys.authenticate`, constant-time compare); the lookup
is blocking SQLite, so it runs in a worker thread. A missing, unknown or revoked key is the
same 401 with the reference's exact body.

A key that authenticated is remembered for CACHE_SECONDS, so a busy client does not cost a
thread hop and a query per request; a revoked key therefore stops working within that second.
Failures are never remembered.
"""

from __future__ import annotations

import time
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request

from server.gateway import errors
from storage import Store
from storage.keys import Key, authenticate, hash_secret

__all__ = [
    "AdminKey",
    "ApiKey",
    "Authenticator",
    "bearer_secret",
    "offered_secrets",
    "require_admin",
    "require_key",
]


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an `Authorization: Bearer <secret>` header, else None."""
    if not authorization:
        return None
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return secret.strip() or None


CACHE_SECONDS = 1.0
CACHE_MAX_KEYS = 10_000


class Authenticator:
    """Turns a secret into the active Key it belongs to."""

    def __init__(self, store: Store, cache_seconds: float = CACHE_SECONDS):
        self.store = store
        self.cache_seconds = cache_seconds
        # sha256 of the secret → (valid until, key); the secret itself is not kept.
        self._recent: dict[str, tuple[float, Key]] = {}

    async def authenticate(self, secret: str | None) -> Key | None:
        if not secret:
            return None
        digest = hash_secret(secret)
        now = time.monotonic()
        recent = self._recent.get(digest)
        if recent is not None and recent[0] > now:
            return recent[1]
        key = await anyio.to_thread.run_sync(self._lookup, secret)
        if key is None:
            self._recent.pop(digest, None)
        else:
            if len(self._recent) >= CACHE_MAX_KEYS:
                self._recent.clear()
            self._recent[digest] = (now + self.cache_seconds, key)
        return key

    def _lookup(self, secret: str) -> Key | None:
        return authenticate(self.store.db, secret)


def offered_secrets(headers) -> list[str]:
    """The secrets a request offers, `x-api-key` first (Anthropic's clients), then Bearer."""
    offered = [headers.get("x-api-key", "").strip(), bearer_secret(headers.get("authorization"))]
    return list(dict.fromkeys(s for s in offered if s))


async def require_key(request: Request) -> Key:
    """Dependency: the caller's key, or 401. Remembered on request.state for error headers."""
    auth = request.app.state.gateway.auth
    key = None
    for secret in offered_secrets(request.headers):
        if (key := await auth.authenticate(secret)) is not None:
            break
    if key is None:
        raise errors.invalid_api_key()
    request.state.key = key
    return key


ApiKey = Annotated[Key, Depends(require_key)]


async def require_admin(key: ApiKey) -> Key:
    """Dependency: an admin key, or 403 for a valid key without the right."""
    if not key.admin:
        raise errors.permission_denied("This endpoint needs an admin key.")
    return key


AdminKey = Annotated[Key, Depends(require_admin)]
