"""The whole product on one port: the API app (`server.app`) with the workbench mounted at `/`.

The one place where `server` and `ui` meet: `server` never imports `ui`. `python -m ui` serves
this app (what `./launch.sh` starts); `python -m server` serves the API alone.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from server.app import create_app as create_api_app
from server.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app for these settings (default: the environment's) with the UI at `/`."""
    app = create_api_app(settings or get_settings(), writes_answers=True)
    services = app.state.services
    # Gradio phones home unless told not to, and reads these at import time.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import gradio as gr

    from ui import build_ui

    # Mounted after the API's routes, so /v1, /health and /metrics match before this catch-all.
    # Gradio's upload route takes files before any sign-in, so it gets a cap. It sits above the
    # PDF limit so that a PDF just over it still reaches the Documents tab and its own message.
    gr.mount_gradio_app(
        app, build_ui(services), path="/", max_file_size=2 * services.settings.max_pdf_bytes
    )
    return app
