"""Rate limits: the limiter on its own (exact, fast; in memory and in Redis), then through the
app under concurrency. Limits shared by several processes: tests/test_many_processes.py."""

import asyncio
import time

import httpx
import pytest
import redis
from limits.aio.storage import MemoryStorage

from server.gateway import limits_redis
from server.gateway.limits import (
    KeyLimiter,
    LimitsUnavailable,
    RateLimitExceeded,
    format_duration,
)
from server.gateway.limits_memory import QuietMemoryStorage
from server.gateway.limits_redis import RedisBackend
from tests.harness import free_port
from tests.helpers import assert_error, assert_rate_headers

HI = [{"role": "user", "content": "Hi"}]


async def _admit_all(limiter: KeyLimiter, count: int, tokens: int = 10):
    results = await asyncio.gather(
        *(limiter.admit("k", tokens) for _ in range(count)), return_exceptions=True
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, RateLimitExceeded)]
    assert len(admitted) + len(refused) == count, results
    return admitted, refused


async def test_concurrency_limit_admits_exactly_max_concurrent_at_once(make_limiter):
    limiter = make_limiter(rpm=1000, tpm=10**9, max_concurrent=5)
    admitted, refused = await _admit_all(limiter, 50)
    assert len(admitted) == 5
    assert {r.limit for r in refused} == {"concurrency"}
    assert refused[0].retry_after == 1
    assert await limiter.active("k") == 5
    await admitted[0][0].settle(10)
    await admitted[0][0].settle(10)  # settling twice frees one slot, once
    assert await limiter.active("k") == 4
    lease, _ = await limiter.admit("k", 10)
    assert await limiter.active("k") == 5


async def test_requests_per_minute_never_slip_under_concurrency(make_limiter):
    limiter = make_limiter(rpm=7, tpm=10**9, max_concurrent=1000)
    admitted, refused = await _admit_all(limiter, 40)
    assert len(admitted) == 7
    assert {r.limit for r in refused} == {"requests"}
    error = refused[0]
    assert error.message == "Rate limit exceeded: 7 requests per minute per key."
    # Full in the current minute: admissible again once that minute is over.
    assert 1 <= error.retry_after <= 60
    assert error.headers()["Retry-After"] == str(error.retry_after)
    assert error.state.requests_remaining == 0
    # Another key has its own window.
    await limiter.admit("other", 1)


async def test_requests_per_minute_are_exact_across_a_minute_boundary(make_limiter, monkeypatch):
    clock = [60 * 29_000_000 + 55.0]  # 5 s before a minute boundary
    monkeypatch.setattr(time, "time", lambda: clock[0])
    limiter = make_limiter(rpm=5, tpm=10**9, max_concurrent=1000)
    for _ in range(3):
        await limiter.admit("k", 1)
    clock[0] += 10  # 5 s into the next minute: the three are still in the last 60 s
    for _ in range(2):
        await limiter.admit("k", 1)
    with pytest.raises(RateLimitExceeded) as refused:
        await limiter.admit("k", 1)
    assert refused.value.limit == "requests"
    assert refused.value.retry_after == 50  # when the first of the five leaves the window
    assert refused.value.state.requests_reset == clock[0] + 50
    clock[0] += 49.9
    with pytest.raises(RateLimitExceeded):
        await limiter.admit("k", 1)
    clock[0] += 0.2
    _, state = await limiter.admit("k", 1)
    assert state.requests_remaining == 2  # the first three left together; three are inside
    clock[0] += 61
    assert (await limiter.snapshot("k")).requests_remaining == 5


async def test_tokens_are_reserved_on_admission_so_concurrent_requests_cannot_overspend(
    make_limiter,
):
    limiter = make_limiter(rpm=1000, tpm=100, max_concurrent=1000)
    admitted, refused = await _admit_all(limiter, 20, tokens=30)
    # 0, 30, 60, 90 are below 100 when checked: four are admitted, the fourth into debt.
    assert len(admitted) == 4
    assert {r.limit for r in refused} == {"tokens"}
    assert "100 tokens per minute" in refused[0].message


async def test_settling_refunds_what_a_request_did_not_use(make_limiter):
    limiter = make_limiter(rpm=1000, tpm=1000, max_concurrent=10)
    lease, state = await limiter.admit("k", 600)
    # RPM == TPM here: the two windows must still be separate.
    assert (state.tokens_remaining, state.requests_remaining) == (400, 999)
    await lease.settle(150)
    assert (await limiter.snapshot("k")).tokens_remaining == 850
    lease, _ = await limiter.admit("k", 100)
    await lease.settle(300)  # more than reserved (n > 1, a miscount): charged too
    assert (await limiter.snapshot("k")).tokens_remaining == 550


async def test_one_request_bigger_than_the_budget_runs_then_the_key_waits_out_its_debt(
    make_limiter,
):
    limiter = make_limiter(rpm=1000, tpm=100_000, max_concurrent=10)
    lease, state = await limiter.admit("k", 700_000)  # a whole 700k-token document
    assert state.tokens_remaining == 0
    await lease.settle(700_000)
    with pytest.raises(RateLimitExceeded) as refused:
        await limiter.admit("k", 10)
    assert refused.value.limit == "tokens"
    # 700k in a 100k/min window: usage falls under the limit only after the current window
    # rolls over and 6/7 of the next one has passed, i.e. between 51 and 111.4 seconds (Redis
    # starts a window at its first charge: the full 111.4 s, rounded up).
    assert 51 <= refused.value.retry_after <= 112


async def test_snapshot_headers_carry_reference_and_openai_names(make_limiter):
    limiter = make_limiter(rpm=60, tpm=1000, max_concurrent=10)
    _, state = await limiter.admit("k", 100)
    headers = state.headers(now=time.time())
    assert headers["X-RateLimit-Limit"] == "60"
    assert headers["X-RateLimit-Remaining"] == "59"
    # Not exhausted: the reset is when this minute's usage has left the window (≤ 120 s).
    assert time.time() <= int(headers["X-RateLimit-Reset"]) <= time.time() + 121
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "900"
    assert headers["x-ratelimit-reset-requests"].endswith("s")


async def test_memory_housekeeping_is_occasional_and_still_drops_expired_counters():
    storage = QuietMemoryStorage()
    assert hasattr(MemoryStorage, "_MemoryStorage__schedule_expiry")  # what the override names
    await storage.incr("a", expiry=0.01)  # the first write starts a pass
    first = storage.timer
    await asyncio.sleep(0.05)
    for name in "bcdefgh":
        await storage.incr(name, expiry=0.01)
    assert storage.timer is first  # seven writes, no new pass, no thread hop
    await asyncio.sleep(0.05)
    storage._next_housekeeping = 0.0  # as if HOUSEKEEPING_SECONDS had passed
    await storage.incr("z", expiry=60)
    await storage.timer
    assert dict(storage.storage) == {"z": 1}  # the expired counters are gone


def test_durations_use_openai_format():
    assert [format_duration(s) for s in (0, 0.25, 1, 59.5, 60, 361)] == [
        "0s",
        "0.25s",
        "1s",
        "59.5s",
        "1m0s",
        "6m1s",
    ]


# --- through the app, with the real engine ------------------------------------------------


async def _burst(app, count: int, **body) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {app.api_key}"}
    payload = {"model": "qwen3", "messages": HI, "max_tokens": 1, **body}
    async with httpx.AsyncClient(base_url=app.v1, headers=headers, timeout=120) as client:
        return await asyncio.gather(
            *(client.post("/chat/completions", json=payload) for _ in range(count))
        )


def _split(responses):
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(limited) == len(responses), [r.text for r in responses]
    return ok, limited


async def test_rpm_through_the_app_refuses_the_excess_with_retry_after(make_app):
    app = make_app(WORKBENCH_RPM=3)
    ok, limited = _split(await _burst(app, 10))
    assert len(ok) == 3 and len(limited) == 7
    for response in limited:
        assert_error(
            response,
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
            None,
            "Rate limit exceeded: 3 requests per minute per key.",
        )
        assert_rate_headers(response)
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.headers["X-RateLimit-Remaining"] == "0"
    for response in ok:
        assert_rate_headers(response)
    assert sorted(r.headers["X-RateLimit-Remaining"] for r in ok) == ["0", "1", "2"]


async def test_concurrency_through_the_app_with_many_at_once(make_app):
    app = make_app(WORKBENCH_MAX_CONCURRENT=2)
    # Long enough answers that the first two still run when the others arrive.
    ok, limited = _split(await _burst(app, 8, max_tokens=24))
    assert len(ok) == 2 and len(limited) == 6
    assert_error(
        limited[0],
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        None,
        "Rate limit exceeded: 2 concurrent requests per key; "
        "wait for one of your requests to finish.",
    )
    # The slots are free again once the answers are complete.
    ok, limited = _split(await _burst(app, 2))
    assert len(ok) == 2


async def test_tpm_through_the_app_admits_a_big_request_then_makes_the_key_wait(make_app):
    app = make_app(WORKBENCH_TPM=50)
    # A prompt of ~70 tokens alone is over the 50-token budget: admitted (budget untouched),
    # and its real usage leaves the key in debt.
    long_hi = [{"role": "user", "content": "Hi " * 40}]
    [first] = await _burst(app, 1, messages=long_hi, max_tokens=5)
    assert first.status_code == 200, first.text
    assert first.json()["usage"]["prompt_tokens"] > 50
    [second] = await _burst(app, 1)
    assert_error(
        second,
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        None,
        "Rate limit exceeded: 50 tokens per minute per key "
        "(prompt + max_tokens are reserved when a request starts).",
    )
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(second.headers["Retry-After"]) >= 1


# --- the Redis backend's own parts: two processes' limiters, leases, the refund script ----


def _two_processes(redis_url: str, **limits) -> tuple[KeyLimiter, KeyLimiter]:
    """Two limiters with their own connections: what two gateway processes hold."""
    return (
        KeyLimiter(backend=RedisBackend(redis_url), **limits),
        KeyLimiter(backend=RedisBackend(redis_url), **limits),
    )


@pytest.fixture
def redis_url(redis_server):
    redis.Redis.from_url(redis_server).flushdb()
    return redis_server


async def test_two_processes_share_every_limit_exactly(redis_url):
    a, b = _two_processes(redis_url, rpm=7, tpm=10**9, max_concurrent=3)
    results = await asyncio.gather(
        *(limiter.admit("k", 1) for limiter in [a, b] * 10), return_exceptions=True
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    assert len(admitted) == 3, results
    assert {r.limit for r in results if isinstance(r, RateLimitExceeded)} == {"concurrency"}
    assert await a.active("k") == await b.active("k") == 3
    for lease, _ in admitted:
        await lease.settle(1)
    assert await b.active("k") == 0
    # 3 of the 7 requests are spent; the other 4 are admitted across both, then no more.
    results = []
    for limiter in [a, b] * 5:
        try:
            lease, _ = await limiter.admit("k", 1)
            await lease.settle(1)
            results.append("ok")
        except RateLimitExceeded as exc:
            results.append(exc.limit)
    assert results == ["ok"] * 4 + ["requests"] * 6
    await a.aclose()
    await b.aclose()


async def test_a_killed_processes_slots_come_back_when_its_leases_expire(redis_url, monkeypatch):
    monkeypatch.setattr(limits_redis, "LEASE_SECONDS", 1.5)
    a, b = _two_processes(redis_url, rpm=1000, tpm=10**9, max_concurrent=2)
    held = [await a.admit("k", 1) for _ in range(2)]
    await asyncio.sleep(2)  # a refreshes its live leases: they outlive LEASE_SECONDS
    with pytest.raises(RateLimitExceeded):
        await b.admit("k", 1)
    await a.aclose()  # a "dies": no more refreshes, no settle
    await asyncio.sleep(1.6)
    lease, _ = await b.admit("k", 1)
    assert await b.active("k") == 1
    await lease.settle(1)
    assert held  # never settled
    await b.aclose()


async def test_refund_script_goes_back_into_the_window_that_was_charged(redis_url):
    """The charge/refund Lua with a 1 s window, so rolling over can be watched."""
    backend = RedisBackend(redis_url)
    client = redis.Redis.from_url(redis_url)
    previous, current = backend._windows("tokens/k")
    charge = lambda amount: backend._charge(keys=[previous, current], args=[1, amount])  # noqa: E731
    refund = lambda amount, w: backend._refund(keys=[previous, current], args=[1, amount, w])  # noqa: E731
    first = await charge(100)
    assert await charge(50) == first  # same window
    await refund(30, first)
    assert int(client.get(current)) == 120
    await asyncio.sleep(1.05)  # the window rolls over: the charge now sits in the previous one
    second = await charge(10)
    assert second == first + 1000
    await refund(20, first)
    assert (int(client.get(previous)), int(client.get(current))) == (100, 10)
    await refund(500, second)  # never below zero
    assert int(client.get(current)) == 0
    await asyncio.sleep(2.1)  # both gone: a late refund changes nothing and creates nothing
    await refund(5, first)
    assert client.get(previous) is None
    await backend.aclose()


async def test_without_redis_nothing_is_admitted_and_settling_does_not_raise(redis_url):
    dead = KeyLimiter(
        rpm=10,
        tpm=1000,
        max_concurrent=2,
        backend=RedisBackend(f"redis://127.0.0.1:{free_port()}/0"),
    )
    with pytest.raises(LimitsUnavailable):
        await dead.admit("k", 1)
    with pytest.raises(LimitsUnavailable):
        await dead.snapshot("k")
    live = KeyLimiter(rpm=10, tpm=1000, max_concurrent=2, backend=RedisBackend(redis_url))
    lease, _ = await live.admit("k", 10)
    await live._backend._redis.connection_pool.disconnect()
    live._backend._redis.connection_pool.connection_kwargs["port"] = free_port()
    await lease.settle(5)  # logged, not raised: the lease expires on its own
    await dead.aclose()
    await live.aclose()
