"""Per-key rate limits: requests per minute, tokens per minute, concurrent requests.

The windows come from the `limits` library, in its async memory storage (one process) or its
Redis storage (WORKBENCH_REDIS_URL: every process of the host shares them, see
server/gateway/limits_redis.py):

- requests: its moving window, exact: a request is admitted while fewer than RPM requests of
  the key were admitted in the last 60 s, whatever the clock's minute boundaries;
- tokens: its sliding-window counter (the current minute's count plus the previous minute's
  weighted by how much of it is still inside the last 60 s), because a charge must be able to
  go past the limit and be refunded, which a moving window of single entries cannot express.
  A request is charged its prompt + max_tokens (× n) when admitted and settled with its real
  usage when it ends, the refund going back into the window that was charged.

Admission rule for tokens: a request is admitted while the key's token window is below its
TPM, and its whole reservation is charged even past the limit. A single request larger than
the per-minute budget (a 700k-token document) therefore runs, and the key is in debt: later
requests get 429 until enough of the charge has decayed out of the window.

Concurrency: each admitted request holds a lease on its key until it settles (its stream ends or
its client leaves); with Redis a lease also expires when the process holding it is killed.

Admission is atomic per key (one lock: an asyncio lock, or a lock in Redis across processes),
so concurrent requests cannot slip past.

Header semantics (`*-reset-*`): when a limit is exhausted, the moment the next request can be
admitted; otherwise the moment the oldest usage leaves the window.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from limits import RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

WINDOW_SECONDS = 60

log = logging.getLogger(__name__)


def limit_id(key) -> str:
    """The limits' identity of an API key (its id: names can be reused after a revoke)."""
    return f"key-{key.id}"


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: `0s`, `1.5s`, `6m0s`."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass(frozen=True)
class LimitState:
    """A key's limits as the headers report them (remaining never below 0)."""

    requests_limit: int
    requests_remaining: int
    requests_reset: float  # unix time
    tokens_limit: int
    tokens_remaining: int
    tokens_reset: float  # unix time

    def headers(self, now: float | None = None, anthropic: bool = False) -> dict[str, str]:
        """Ours and OpenAI's; with `anthropic`, Anthropic's `anthropic-ratelimit-*` too."""
        now = time.time() if now is None else now
        extra = self.anthropic_headers() if anthropic else {}
        return {
            **extra,
            "X-RateLimit-Limit": str(self.requests_limit),
            "X-RateLimit-Remaining": str(self.requests_remaining),
            "X-RateLimit-Reset": str(math.ceil(self.requests_reset)),
            "x-ratelimit-limit-requests": str(self.requests_limit),
            "x-ratelimit-remaining-requests": str(self.requests_remaining),
            "x-ratelimit-reset-requests": format_duration(self.requests_reset - now),
            "x-ratelimit-limit-tokens": str(self.tokens_limit),
            "x-ratelimit-remaining-tokens": str(self.tokens_remaining),
            "x-ratelimit-reset-tokens": format_duration(self.tokens_reset - now),
        }

    def anthropic_headers(self) -> dict[str, str]:
        """Anthropic's names for the same limits (resets as RFC 3339 times)."""
        return {
            "anthropic-ratelimit-requests-limit": str(self.requests_limit),
            "anthropic-ratelimit-requests-remaining": str(self.requests_remaining),
            "anthropic-ratelimit-requests-reset": _rfc3339(self.requests_reset),
            "anthropic-ratelimit-tokens-limit": str(self.tokens_limit),
            "anthropic-ratelimit-tokens-remaining": str(self.tokens_remaining),
            "anthropic-ratelimit-tokens-reset": _rfc3339(self.tokens_reset),
        }


def _rfc3339(unix: float) -> str:
    moment = datetime.fromtimestamp(math.ceil(unix), tz=UTC)
    return moment.isoformat().replace("+00:00", "Z")


class RateLimitExceeded(Exception):
    """A request was refused by one of the key's limits."""

    def __init__(self, limit: str, message: str, retry_after: float, state: LimitState):
        super().__init__(message)
        self.limit = limit  # "requests", "tokens" or "concurrency"
        self.message = message
        self.retry_after = max(1, math.ceil(retry_after))
        self.state = state

    def headers(self, anthropic: bool = False) -> dict[str, str]:
        return {**self.state.headers(anthropic=anthropic), "Retry-After": str(self.retry_after)}


class LimitsUnavailable(Exception):
    """The shared limits store (Redis) cannot be reached: nothing is admitted (fail closed)."""


class Backend(Protocol):
    """Where the windows, the admission lock and the concurrency leases live."""

    storage: Storage
    parallel_reads: bool  # reads are round trips: run them concurrently

    def lock(self, ident: str) -> Any: ...  # an async context manager
    async def active(self, ident: str) -> int: ...
    async def acquire(self, ident: str) -> str: ...
    async def release(self, ident: str, lease_id: str) -> None: ...
    async def charge(self, key: str, tokens: int, now: float) -> Any: ...
    async def refund(self, key: str, charged: Any, tokens: int) -> None: ...
    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class _Requests:
    """One key's moving window of admitted requests."""

    remaining: int
    reset_in: float  # seconds until the oldest request in the window leaves it


@dataclass
class _Window:
    """One key's sliding-window token counter, as read from the storage."""

    limit: int
    previous: int
    current: int
    left_in_window: float  # seconds until the current window becomes the previous one

    @property
    def used(self) -> float:
        return self.previous * self.left_in_window / WINDOW_SECONDS + self.current

    @property
    def remaining(self) -> int:
        return self.limit - math.floor(self.used)

    def seconds_until_admissible(self) -> float:
        """How long until usage falls below the limit (the window debt is waited out)."""
        if self.used < self.limit:
            return 0.0
        if self.current < self.limit:  # the previous window's share decays to make room
            room = self.limit - self.current
            return self.left_in_window - room * WINDOW_SECONDS / self.previous
        return self.left_in_window + WINDOW_SECONDS * (1 - self.limit / self.current)

    def seconds_until_oldest_leaves(self) -> float:
        if self.previous:
            return self.left_in_window
        if self.current:
            return self.left_in_window + WINDOW_SECONDS
        return 0.0


class Lease:
    """An admitted request's hold on its key: settle it exactly once when the request ends."""

    def __init__(self, limiter: KeyLimiter, ident: str, reserved: int, charged: Any, lease_id: str):
        self._limiter = limiter
        self.ident = ident
        self.reserved = reserved
        self.lease_id = lease_id
        self._charged = charged
        self.settled = False

    async def settle(self, used_tokens: int) -> None:
        """Replace the reservation by the real usage and free the concurrency slot."""
        if self.settled:
            return
        self.settled = True
        await self._limiter._settle(self, used_tokens, self._charged)


class KeyLimiter:
    """RPM, TPM and concurrency limits for every key, in `backend` (`limits_memory` for one
    process, `limits_redis` for several)."""

    def __init__(self, rpm: int, tpm: int, max_concurrent: int, backend: Backend):
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrent = max_concurrent
        self._backend = backend
        self._storage = self._backend.storage
        self._requests = MovingWindowRateLimiter(self._storage)
        # Distinct namespaces: with RPM == TPM the two windows would otherwise share a key.
        self._request_item = RateLimitItemPerMinute(rpm, namespace="requests")
        self._token_item = RateLimitItemPerMinute(tpm, namespace="tokens")

    async def _window(self, item: RateLimitItemPerMinute, ident: str) -> _Window:
        previous, _, current, current_ttl = await self._storage.get_sliding_window(
            item.key_for(ident), WINDOW_SECONDS
        )
        return _Window(item.amount, previous, current, current_ttl - WINDOW_SECONDS)

    async def _requests_window(self, ident: str, now: float) -> _Requests:
        stats = await self._requests.get_window_stats(self._request_item, ident)
        if stats.remaining >= self.rpm:  # empty window (the reset then names an expired entry)
            return _Requests(self.rpm, 0.0)
        return _Requests(stats.remaining, max(0.0, stats.reset_time - now))

    async def _state(self, ident: str, now: float) -> tuple[LimitState, _Requests, _Window]:
        if self._backend.parallel_reads:  # two round trips to Redis at once
            requests, tokens = await asyncio.gather(
                self._requests_window(ident, now), self._window(self._token_item, ident)
            )
        else:
            requests = await self._requests_window(ident, now)
            tokens = await self._window(self._token_item, ident)
        state = LimitState(
            requests_limit=self.rpm,
            requests_remaining=max(0, requests.remaining),
            requests_reset=now + requests.reset_in,
            tokens_limit=self.tpm,
            tokens_remaining=max(0, tokens.remaining),
            tokens_reset=now + _reset_in(tokens),
        )
        return state, requests, tokens

    async def snapshot(self, ident: str) -> LimitState:
        """The key's current state, without consuming anything."""
        try:
            state, _, _ = await self._state(ident, time.time())
        except StorageError as exc:
            raise LimitsUnavailable(str(exc)) from exc
        return state

    async def admit(self, ident: str, tokens: int) -> tuple[Lease, LimitState]:
        """Admit one request reserving `tokens`, or raise RateLimitExceeded naming the limit
        (LimitsUnavailable when the shared store cannot be reached)."""
        try:
            return await self._admit(ident, tokens)
        except StorageError as exc:
            raise LimitsUnavailable(str(exc)) from exc

    async def _admit(self, ident: str, tokens: int) -> tuple[Lease, LimitState]:
        async with self._backend.lock(ident):
            now = time.time()
            if self._backend.parallel_reads:
                (state, requests, token_window), active = await asyncio.gather(
                    self._state(ident, now), self._backend.active(ident)
                )
            else:
                state, requests, token_window = await self._state(ident, now)
                active = await self._backend.active(ident)
            if active >= self.max_concurrent:
                raise RateLimitExceeded(
                    "concurrency",
                    f"Rate limit exceeded: {self.max_concurrent} concurrent requests per key; "
                    "wait for one of your requests to finish.",
                    1,
                    state,
                )
            if requests.remaining <= 0:
                raise self._requests_refused(requests, state)
            if token_window.used >= self.tpm:
                raise RateLimitExceeded(
                    "tokens",
                    f"Rate limit exceeded: {self.tpm} tokens per minute per key "
                    "(prompt + max_tokens are reserved when a request starts).",
                    token_window.seconds_until_admissible(),
                    state,
                )
            if not await self._requests.hit(self._request_item, ident):
                # Only the key's lock holder hits, so the window cannot have filled since.
                raise self._requests_refused(requests, state)
            charged = await self._charge(ident, tokens, now)
            lease_id = await self._backend.acquire(ident)
            state, _, _ = await self._state(ident, now)
        return Lease(self, ident, tokens, charged, lease_id), state

    def _requests_refused(self, requests: _Requests, state: LimitState) -> RateLimitExceeded:
        # Admissible again when the oldest request in the window leaves it.
        return RateLimitExceeded(
            "requests",
            f"Rate limit exceeded: {self.rpm} requests per minute per key.",
            requests.reset_in,
            state,
        )

    async def _charge(self, ident: str, tokens: int, now: float) -> Any:
        if tokens <= 0:
            return None
        return await self._backend.charge(self._token_item.key_for(ident), tokens, now)

    async def _settle(self, lease: Lease, used_tokens: int, charged: Any) -> None:
        try:
            async with self._backend.lock(lease.ident):
                await self._backend.release(lease.ident, lease.lease_id)
                delta = used_tokens - lease.reserved
                if delta < 0 and charged is not None:
                    await self._backend.refund(
                        self._token_item.key_for(lease.ident), charged, -delta
                    )
                elif delta > 0:
                    await self._charge(lease.ident, delta, time.time())
        except StorageError as exc:
            # The store went away mid-request: the lease expires on its own, the refund is
            # lost (the key is charged its reservation); the usage row is still written.
            log.warning("could not settle a request's limits (%s); its lease will expire", exc)

    async def active(self, ident: str) -> int:
        """Requests of this key in flight right now (in every process sharing the store)."""
        return await self._backend.active(ident)

    async def aclose(self) -> None:
        """Stop the backend's background work and close its connections."""
        await self._backend.aclose()


def _reset_in(window: _Window) -> float:
    return window.seconds_until_admissible() or window.seconds_until_oldest_leaves()
