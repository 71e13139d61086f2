"""KeyLimiter's backend for one process: the `limits` library's memory storage, asyncio locks
and a count of leases (several processes share theirs through Redis: `limits_redis.py`)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from contextlib import asynccontextmanager

from limits.aio.storage import MemoryStorage

from server.gateway.limits import WINDOW_SECONDS

# The memory storage's housekeeping (dropping expired entries; reads skip them anyway) runs at
# most this often.
HOUSEKEEPING_SECONDS = 5.0


class QuietMemoryStorage(MemoryStorage):
    """The library's memory storage with its housekeeping every HOUSEKEEPING_SECONDS.

    The library starts its expiry pass after every write, and the pass makes one worker-thread
    hop per key: with 3 writes per request that was the limiter's whole cost (a tenth of the
    gateway's CPU per request, py-spy). Its private scheduler is overridden by name, which the
    pinned version (limits 5.8.0) is tested for in tests/test_gateway_limits.py.
    """

    def __init__(self) -> None:
        super().__init__()
        self._next_housekeeping = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_SECONDS
            await super()._MemoryStorage__schedule_expiry()


class MemoryBackend:
    """One process: the library's memory storage, asyncio locks, a counter of leases."""

    # Reads are plain dict lookups: awaiting them one by one is cheaper than a gather's tasks.
    parallel_reads = False

    def __init__(self) -> None:
        self.storage = QuietMemoryStorage()
        self._active: dict[str, int] = defaultdict(int)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._ids = itertools.count()

    @asynccontextmanager
    async def lock(self, ident: str):
        async with self._locks[ident]:
            yield

    async def active(self, ident: str) -> int:
        return self._active[ident]

    async def acquire(self, ident: str) -> str:
        self._active[ident] += 1
        return str(next(self._ids))

    async def release(self, ident: str, lease_id: str) -> None:
        self._active[ident] = max(0, self._active[ident] - 1)

    async def charge(self, key: str, tokens: int, now: float) -> str:
        # The window counter the library's sliding-window strategy reads; charged directly
        # so a reservation larger than what is left still goes through (the debt rule).
        _, current = self.storage.sliding_window_keys(key, WINDOW_SECONDS, now)
        await self.storage.incr(current, 2 * WINDOW_SECONDS, amount=tokens)
        return current

    async def refund(self, key: str, charged: str, tokens: int) -> None:
        await self.storage.decr(charged, tokens)  # into the window that was charged

    async def aclose(self) -> None:
        pass
