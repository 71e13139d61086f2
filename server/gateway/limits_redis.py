"""The limits shared by every process of the host, in Redis (WORKBENCH_REDIS_URL).

The windows are the `limits` library's own Redis storage (redis-py's asyncio client), read and
hit by KeyLimiter exactly as it uses the memory storage. What the library lacks lives here:

- the admission lock: one per key (`SET NX PX`), so the check-then-hit of KeyLimiter.admit
  stays atomic across processes; it expires after LOCK_MS should its holder be killed;
- concurrency leases: a sorted set per key, member → expiry time; a process refreshes the
  leases it holds every LEASE_SECONDS / 3, so a killed process's slots come back within
  LEASE_SECONDS;
- the token charge and refund (the library has no refund): two Lua scripts. A window of the
  library's sliding-window counter is named by its expiry time (PEXPIRETIME, kept by the
  rename that turns the current window into the previous one), so a refund goes back into the
  window that was charged, or nowhere once that window has left the last minute.

Any Redis failure is raised as the library's StorageError; KeyLimiter turns it into
LimitsUnavailable (a 503) on admission, and a warning on settlement.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import time
from contextlib import asynccontextmanager

import redis.exceptions
from limits.aio.storage import RedisStorage
from limits.errors import StorageError

from server.gateway.limits import WINDOW_SECONDS

LEASE_SECONDS = 15.0  # a killed process's slots are free again within this
LOCK_MS = 5000  # an admission holds the lock ≈1 ms; 5 s only matters if its holder died
LOCK_WAIT_SECONDS = 10.0
# Retries back off from 1 ms to 16 ms: with 4 processes polling every 2 ms on a loaded 2-core
# host, the polls themselves starved the lock's holder (bench: 16 requests/s at 128 clients).
LOCK_RETRY_SECONDS = (0.001, 0.016)

log = logging.getLogger(__name__)

# The current window becomes the previous one once less than a window is left of its 2× TTL
# (the library's sliding_window.lua in effect), then the script acts on the result.
_ROLL_OVER = """
local expiry = tonumber(ARGV[1]) * 1000
local ttl = redis.call('pttl', KEYS[2])
if ttl > 0 and ttl < expiry then
    -- PXAT from the old expiry, not PX from the TTL: the next window's id is then exactly one
    -- window later (PTTL rounds to the millisecond, so PX could land 1 ms off).
    local ends = redis.call('pexpiretime', KEYS[2])
    redis.call('rename', KEYS[2], KEYS[1])
    redis.call('set', KEYS[2], 0, 'PXAT', ends + expiry)
end
"""

CHARGE_LUA = (
    _ROLL_OVER
    + """
local amount = tonumber(ARGV[2])
if redis.call('exists', KEYS[2]) == 1 then
    redis.call('incrby', KEYS[2], amount)
else
    redis.call('set', KEYS[2], amount, 'PX', expiry * 2)
end
return redis.call('pexpiretime', KEYS[2])
"""
)

REFUND_LUA = (
    _ROLL_OVER
    + """
local amount = tonumber(ARGV[2])
local charged = tonumber(ARGV[3])
for _, key in ipairs({KEYS[2], KEYS[1]}) do
    if redis.call('pexpiretime', key) == charged then
        local value = tonumber(redis.call('get', key)) or 0
        redis.call('set', key, math.max(0, value - amount), 'KEEPTTL')
        return 1
    end
end
return 0
"""
)

UNLOCK_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_ERRORS = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)


def storage_uri(url: str) -> str:
    """The `limits` URI of a Redis URL (`redis://host:port/db` → `async+redis://...`)."""
    return url if url.startswith("async+") else "async+" + url


class RedisBackend:
    """KeyLimiter's backend shared through Redis; one per process."""

    parallel_reads = True

    def __init__(self, url: str):
        self.storage = RedisStorage(
            storage_uri(url),
            wrap_exceptions=True,
            implementation="redispy",
            socket_timeout=5,
            socket_connect_timeout=2,
        )
        bridge = self.storage.bridge
        self._prefixed = bridge.prefixed_key
        self._redis = bridge.get_connection()
        self._charge = self._redis.register_script(CHARGE_LUA)
        self._refund = self._redis.register_script(REFUND_LUA)
        self._unlock = self._redis.register_script(UNLOCK_LUA)
        self._locks: dict[str, asyncio.Lock] = {}
        # Lease members name their process, so a lease can be traced to who holds it.
        self._owner = f"{os.uname().nodename}:{os.getpid()}:"
        self._held: dict[str, str] = {}  # lease id → ident
        self._refresher: asyncio.Task | None = None

    def _windows(self, key: str) -> list[str]:
        return [
            self._prefixed(self.storage._previous_window_key(key)),
            self._prefixed(self.storage._current_window_key(key)),
        ]

    def _leases_key(self, ident: str) -> str:
        return self._prefixed(f"leases/{ident}")

    @asynccontextmanager
    async def lock(self, ident: str):
        # Coroutines of this process queue locally; only one of them contends in Redis.
        async with self._locks.setdefault(ident, asyncio.Lock()):
            key, token = self._prefixed(f"lock/{ident}"), secrets.token_hex(8)
            deadline = time.monotonic() + LOCK_WAIT_SECONDS
            pause, longest = LOCK_RETRY_SECONDS
            try:
                while not await self._redis.set(key, token, nx=True, px=LOCK_MS):
                    if time.monotonic() > deadline:
                        raise StorageError(TimeoutError(f"limits lock of {ident} not free"))
                    await asyncio.sleep(pause * random.uniform(0.5, 1.0))
                    pause = min(pause * 2, longest)
            except _ERRORS as exc:
                raise StorageError(exc) from exc
            try:
                yield
            finally:
                try:
                    await self._unlock(keys=[key], args=[token])
                except _ERRORS as exc:  # it expires after LOCK_MS
                    log.warning("could not release the limits lock of %s: %s", ident, exc)

    async def active(self, ident: str) -> int:
        key = self._leases_key(ident)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", time.time())
                pipe.zcard(key)
                _, count = await pipe.execute()
        except _ERRORS as exc:
            raise StorageError(exc) from exc
        return int(count)

    async def acquire(self, ident: str) -> str:
        lease_id = self._owner + secrets.token_hex(6)
        key = self._leases_key(ident)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {lease_id: time.time() + LEASE_SECONDS})
                pipe.expire(key, int(LEASE_SECONDS * 2))
                await pipe.execute()
        except _ERRORS as exc:
            raise StorageError(exc) from exc
        self._held[lease_id] = ident
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_leases())
        return lease_id

    async def release(self, ident: str, lease_id: str) -> None:
        self._held.pop(lease_id, None)
        try:
            await self._redis.zrem(self._leases_key(ident), lease_id)
        except _ERRORS as exc:
            raise StorageError(exc) from exc

    async def _refresh_leases(self) -> None:
        while self._held:
            await asyncio.sleep(LEASE_SECONDS / 3)
            held = dict(self._held)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for lease_id, ident in held.items():
                        key = self._leases_key(ident)
                        # xx: a lease released meanwhile is not brought back.
                        pipe.zadd(key, {lease_id: time.time() + LEASE_SECONDS}, xx=True)
                        pipe.expire(key, int(LEASE_SECONDS * 2))
                    await pipe.execute()
            except _ERRORS as exc:
                log.warning("could not refresh %d concurrency lease(s): %s", len(held), exc)

    async def charge(self, key: str, tokens: int, now: float) -> int:
        try:
            return int(await self._charge(keys=self._windows(key), args=[WINDOW_SECONDS, tokens]))
        except _ERRORS as exc:
            raise StorageError(exc) from exc

    async def refund(self, key: str, charged: int, tokens: int) -> None:
        try:
            await self._refund(keys=self._windows(key), args=[WINDOW_SECONDS, tokens, charged])
        except _ERRORS as exc:
            raise StorageError(exc) from exc

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        try:
            await self._redis.aclose()
        except _ERRORS:
            pass
