"""The FastAPI app: `/v1` gateway, `/health`, `/metrics`, and the Gradio UI mounted at `/`.

`create_app(settings)` connects to nothing: the lifespan opens the store, the engine client
and the token counter when the server starts, and closes them when it stops.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from server.gateway.handlers import install_error_handlers
from server.gateway.metrics import GatewayMetrics, MetricsMiddleware
from server.gateway.routes import ops, v1
from server.gateway.runtime import open_gateway
from server.gateway.upstream import Engine
from server.services import Services
from server.settings import Settings, get_settings


def create_app(settings: Settings | None = None, ui: bool = True) -> FastAPI:
    """Build the app for these settings (default: the environment's); `ui=False` builds an
    API-only worker (`/v1`, `/health`, `/metrics`: what the proxy sends to the workers)."""
    settings = settings or get_settings()
    engine = Engine(settings)
    metrics = GatewayMetrics()
    services = Services(settings=settings, engine=engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_gateway(settings, engine, metrics, writes_answers=ui) as gateway:
            app.state.gateway = gateway
            services.store, services.counter = gateway.store, gateway.counter
            try:
                yield
            finally:
                services.store = services.counter = None

    app = FastAPI(
        title="Qwen Workbench", lifespan=lifespan,
        # The UI owns `/`; an OpenAPI page would only shadow its paths.
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Order matters: /v1, /health and /metrics must match before the UI's catch-all mount.
    app.include_router(ops)
    app.include_router(v1)
    if ui:
        _mount_ui(app, services)
    return app


def _mount_ui(app: FastAPI, services: Services) -> None:
    # Gradio phones home unless told not to, and reads these at import time.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import gradio as gr

    from ui import build_ui

    # Gradio's upload route takes files before any sign-in, so it gets a cap. It sits above the
    # PDF limit so that a PDF just over it still reaches the Documents tab and its own message.
    gr.mount_gradio_app(app, build_ui(services), path="/",
                        max_file_size=2 * services.settings.max_pdf_bytes)
