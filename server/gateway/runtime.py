"""The gateway's running parts, built from what the app opened and drained when it stops."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio.to_thread

from server.counter import Counter
from server.gateway.accounting import UsageRecorder, replay_journals
from server.gateway.auth import Authenticator
from server.gateway.completions import CompletionService
from server.gateway.documents import DocumentExpander
from server.gateway.limits import KeyLimiter
from server.gateway.limits_memory import MemoryBackend
from server.gateway.limits_redis import RedisBackend
from server.gateway.metrics import GatewayMetrics
from server.gateway.sizing import PromptCounter
from server.gateway.upstream import Engine
from server.settings import Settings
from storage import Store

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Everything a /v1 request needs; lives in `app.state.gateway` while the app runs."""

    settings: Settings
    store: Store
    engine: Engine
    counter: Counter
    auth: Authenticator
    limiter: KeyLimiter
    recorder: UsageRecorder
    metrics: GatewayMetrics
    completions: CompletionService


@asynccontextmanager
async def open_gateway(
    settings: Settings, store: Store, engine: Engine, counter: Counter, metrics: GatewayMetrics
) -> AsyncIterator[Gateway]:
    """The gateway over an open store, engine client and counter; usage rows still queued
    are written before it closes (the app closes the store after it)."""
    metrics.engine_up.set(1 if await engine.check_health() else 0)
    limiter = KeyLimiter(
        settings.rpm,
        settings.tpm,
        settings.max_concurrent,
        RedisBackend(settings.redis_url) if settings.redis_url else MemoryBackend(),
    )
    recorder = UsageRecorder(store, metrics)
    replayed = await anyio.to_thread.run_sync(replay_journals, store, recorder.journal.directory)
    if replayed:
        log.warning("%d usage row(s) of a process that stopped abruptly were written now", replayed)
    completions = CompletionService(
        engine,
        PromptCounter(counter),
        limiter,
        recorder,
        metrics,
        DocumentExpander(settings.max_pdf_bytes),
        store,
    )
    try:
        yield Gateway(
            settings,
            store,
            engine,
            counter,
            Authenticator(store),
            limiter,
            recorder,
            metrics,
            completions,
        )
    finally:
        await recorder.drain()
        await limiter.aclose()
