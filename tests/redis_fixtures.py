"""Redis for the limits tests, started by the same code as `python -m server` starts it."""

from __future__ import annotations

import pytest
import redis

from server.gateway.limits import KeyLimiter
from server.gateway.limits_redis import RedisBackend
from server.processes.redis_server import start_redis
from tests.harness import free_port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server for the session: its URL."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = start_redis(port, workdir, workdir / "redis.log")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request):
    """KeyLimiter factory, once in memory (one process) and once over Redis (many)."""
    made: list[KeyLimiter] = []
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_server")
        redis.Redis.from_url(url).flushdb()

    def _make(rpm: int, tpm: int, max_concurrent: int) -> KeyLimiter:
        backend = RedisBackend(url) if url else None
        limiter = KeyLimiter(rpm, tpm, max_concurrent, backend)
        made.append(limiter)
        return limiter

    yield _make
    for limiter in made:
        await limiter.aclose()
