"""The gateway's running parts, built from what the app opened and drained when it stops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from server.counter import Counter
from server.gateway.accounting import UsageRecorder
from server.gateway.auth import Authenticator
from server.gateway.completions import CompletionService
from server.gateway.documents import DocumentExpander
from server.gateway.limits import KeyLimiter
from server.gateway.limits_redis import RedisBackend
from server.gateway.metrics import GatewayMetrics
from server.gateway.sizing import PromptCounter
from server.gateway.upstream import Engine
from server.settings import Settings
from storage import Store


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
async def open_gateway(settings: Settings, store: Store, engine: Engine, counter: Counter,
                       metrics: GatewayMetrics) -> AsyncIterator[Gateway]:
    """The gateway over an open store, engine client and counter; usage rows still queued
    are written before it closes (the app closes the store after it)."""
    metrics.engine_up.set(1 if await engine.check_health() else 0)
    limiter = KeyLimiter(settings.rpm, settings.tpm, settings.max_concurrent,
                         RedisBackend(settings.redis_url) if settings.redis_url else None)
    recorder = UsageRecorder(store, metrics)
    completions = CompletionService(
        engine, PromptCounter(counter), limiter, recorder, metrics,
        DocumentExpander(settings.max_pdf_bytes), store)
    try:
        yield Gateway(settings, store, engine, counter, Authenticator(store), limiter,
                      recorder, metrics, completions)
    finally:
        await recorder.drain()
        await limiter.aclose()
