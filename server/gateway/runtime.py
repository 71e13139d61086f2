"""The gateway's running parts, opened and closed together by the app's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from server.engine.profiles import detect_profile, embedded_model_dir
from server.gateway.auth import Authenticator
from server.gateway.completions import CompletionService
from server.gateway.documents import DocumentExpander
from server.gateway.limits import KeyLimiter
from server.gateway.limits_redis import RedisBackend
from server.gateway.metrics import GatewayMetrics
from server.gateway.prompts import PromptCounter
from server.gateway.upstream import Engine
from server.gateway.usage import UsageRecorder
from server.remote_tokens import RemoteTokenCounter
from server.settings import SERVED_MODEL_NAME, Settings
from server.tokens import TokenCounter, qwen3_tokenizer_dir
from storage import Store
from storage.keys import ensure_key
from storage.messages import finish_interrupted_answers

BOOTSTRAP_KEY_NAME = "admin"

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Everything a /v1 request needs; lives in `app.state.gateway` while the app runs."""

    settings: Settings
    store: Store
    engine: Engine
    counter: Any
    auth: Authenticator
    limiter: KeyLimiter
    recorder: UsageRecorder
    metrics: GatewayMetrics
    completions: CompletionService


def load_counter(settings: Settings) -> TokenCounter | RemoteTokenCounter:
    """The served model's tokenizer: WORKBENCH_TOKENIZER_PATH, else the profile's own files,
    else (external engine, no local files) the engine's /tokenize."""
    if settings.tokenizer_path:
        return TokenCounter.from_dir(settings.tokenizer_path)
    profile = settings.profile if settings.profile != "auto" else detect_profile()
    if profile == "cpu":
        return TokenCounter.from_dir(embedded_model_dir(settings))
    if profile == "h200x4":
        return TokenCounter.from_dir(qwen3_tokenizer_dir())
    return RemoteTokenCounter(settings.upstream, model=SERVED_MODEL_NAME)


@asynccontextmanager
async def open_gateway(settings: Settings, engine: Engine, metrics: GatewayMetrics,
                       writes_answers: bool = True) -> AsyncIterator[Gateway]:
    """Open the store, the engine client and the token counter; close them all on exit.

    The process that writes answers (the one with the UI) marks the answers the last run left
    half-written as failed: only it writes answers, so none of them can still be streaming.
    API-only workers leave them alone (the UI process may be streaming them right now).
    """
    store = await anyio.to_thread.run_sync(Store, settings.db_path)
    recorder = None
    counter = None
    limiter = None
    try:
        if writes_answers:
            interrupted = await anyio.to_thread.run_sync(finish_interrupted_answers, store.db)
            if interrupted:
                log.warning("%d answer(s) were being written when the server last stopped: "
                            "kept as far as they got, marked failed", interrupted)
        if settings.vllm_api_key:
            await anyio.to_thread.run_sync(
                lambda: ensure_key(store.db, BOOTSTRAP_KEY_NAME, settings.vllm_api_key, admin=True))
        await engine.open()
        counter = await anyio.to_thread.run_sync(load_counter, settings)
        metrics.engine_up.set(1 if await engine.check_health() else 0)
        limiter = KeyLimiter(settings.rpm, settings.tpm, settings.max_concurrent,
                             RedisBackend(settings.redis_url) if settings.redis_url else None)
        recorder = UsageRecorder(store, metrics)
        completions = CompletionService(
            engine, PromptCounter(counter), limiter, recorder, metrics,
            DocumentExpander(settings.max_pdf_bytes))
        yield Gateway(settings, store, engine, counter, Authenticator(store), limiter,
                      recorder, metrics, completions)
    finally:
        if recorder is not None:
            await recorder.drain()
        if limiter is not None:
            await limiter.aclose()
        if isinstance(counter, RemoteTokenCounter):
            await counter.aclose()
        await engine.aclose()
        store.close()
