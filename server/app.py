"""The API app: `/v1` gateway, `/health` and `/metrics` — everything but the UI.

`create_app(settings)` connects to nothing: the lifespan does the app-wide start-up (opens
the store, marks the answers the last run left half-written as failed, records the admin
key, opens the engine client and the token counter), hands the gateway what it needs, and
closes it all when the server stops. `ui.app` mounts the workbench on this app; an API-only
process (`python -m server`) serves it as it is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from server.counter import load_counter
from server.gateway import front
from server.gateway.handlers import install_error_handlers
from server.gateway.metrics import GatewayMetrics, MetricsMiddleware
from server.gateway.routes import ops, v1
from server.gateway.runtime import open_gateway
from server.gateway.upstream import Engine
from server.services import Services
from server.settings import Settings, get_settings
from storage import Store
from storage.keys import ensure_key
from storage.messages import finish_interrupted_answers

BOOTSTRAP_KEY_NAME = "admin"

log = logging.getLogger(__name__)


class WorkbenchApp(FastAPI):
    """FastAPI, but the generating endpoints (`front.handles`) are served before its stack,
    through the metrics middleware alone: FastAPI's layers around a route cost ≈0.1 ms of the
    ≈0.9 ms a proxied request costs the gateway (py-spy: 9 % of the app's samples)."""

    def __init__(self, metrics: GatewayMetrics, **options):
        super().__init__(**options)
        self._front = MetricsMiddleware(front.GenerationFront(), metrics=metrics)

    async def __call__(self, scope, receive, send) -> None:
        if front.handles(scope):
            scope["app"] = self  # what Starlette sets: `request.app.state` is the gateway's
            await self._front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, writes_answers: bool = False) -> FastAPI:
    """Build the API app for these settings (default: the environment's); `writes_answers`
    for the process that also serves the UI (the only one that writes answers)."""
    settings = settings or get_settings()
    services = Services(settings=settings, engine=Engine(settings))
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(services, writes_answers):
            async with open_gateway(
                settings, services.store, services.engine, services.counter, metrics
            ) as gateway:
                app.state.gateway = gateway
                yield

    app = WorkbenchApp(
        metrics,
        title="Qwen Workbench",
        lifespan=lifespan,
        # The UI owns `/`; an OpenAPI page would only shadow its paths.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # The gateway has its own metrics (/metrics); FastAPI's OpenTelemetry hooks looked up
        # the global providers on every request: 4 % of the CPU of a /v1 request (py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Order matters: /v1, /health and /metrics must match before a catch-all mount at `/`.
    app.include_router(ops)
    app.include_router(v1)
    return app


@asynccontextmanager
async def open_services(services: Services, writes_answers: bool = True) -> AsyncIterator[Services]:
    """App-wide start-up: fill in `services` (store, counter, open engine); undo it on exit.

    The process that writes answers (the UI's) marks the answers the last run left
    half-written as failed: only it writes answers, so none of them can still be streaming.
    API-only processes leave them alone (the UI process may be writing them right now).
    """
    settings = services.settings
    store = await anyio.to_thread.run_sync(Store, settings.db_path)
    counter = None
    try:
        if writes_answers:
            interrupted = await anyio.to_thread.run_sync(finish_interrupted_answers, store.db)
            if interrupted:
                log.warning(
                    "%d answer(s) were being written when the server last stopped: "
                    "kept as far as they got, marked failed",
                    interrupted,
                )
        if settings.vllm_api_key:
            await anyio.to_thread.run_sync(
                lambda: ensure_key(store.db, BOOTSTRAP_KEY_NAME, settings.vllm_api_key, admin=True)
            )
        await services.engine.open()
        counter = await anyio.to_thread.run_sync(load_counter, settings)
        services.store, services.counter = store, counter
        yield services
    finally:
        services.store = services.counter = None
        if counter is not None:
            await counter.aclose()
        await services.engine.aclose()
        store.close()


# How long an idle client connection stays open: longer than the idle pools of the clients
# that call us (httpx and the OpenAI SDK 5 s, aiohttp 15 s, nginx's upstream pool 60 s), so
# none sends a request on a connection we are closing that instant. At uvicorn's default of
# 5 s, 6 in 1,000 OpenAI SDK calls sent at 5 s idle failed with a connection error.
KEEP_ALIVE_SECONDS = 75


def serve(app: FastAPI, settings: Settings) -> None:
    """Run `app` with uvicorn where the settings say (HTTPS with WORKBENCH_TLS_CERT/KEY),
    until SIGINT/SIGTERM."""
    import uvicorn

    tls = {}
    if settings.tls:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # Every /v1 request already gets a usage row; the access log costs ≈0.25 ms a request.
        access_log=False,
        **tls,
    )
