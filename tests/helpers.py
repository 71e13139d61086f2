"""What several test modules share: the apps they talk to, error checks, waiting, test PDFs.

Test modules import from here (and from `harness`, `ui_helpers`), never from one another.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import sqlite_utils
from pypdf import PdfReader, PdfWriter

from tests.harness import REPO

MODEL_DIR = Path(
    os.environ.get("WORKBENCH_TEST_MODEL_DIR", REPO / "data" / "models" / "SmolLM2-135M-Instruct")
)
ARTIFACTS = REPO / "tests" / "artifacts"
PDFS = REPO / "tests" / "pdfs"
RATE_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)

T = TypeVar("T")


@dataclass
class App:
    """A running app: where it listens, its admin key, where it keeps its data."""

    url: str
    api_key: str
    data_dir: Path
    engine_url: str

    @property
    def v1(self) -> str:
        return self.url + "/v1"


# The session's engine serves the `cpu` profile's 32,768 tokens (a coding agent's first request
# needs them); apps enforce less unless a test asks, so a prompt over the context is a quick
# count, not a 32k-token prefill on two cores.
APP_CONTEXT = 8192


def app_env(data_dir: Path, engine_url: str, model_dir: Path, api_key: str, **extra) -> dict:
    """The environment of an app that points at the session's engine."""
    env = {
        "VLLM_API_KEY": api_key,
        "WORKBENCH_DATA_DIR": str(data_dir),
        "WORKBENCH_PROFILE": "external",
        "WORKBENCH_UPSTREAM_URL": engine_url,
        "WORKBENCH_TOKENIZER_PATH": str(model_dir),
        "WORKBENCH_MAX_CONTEXT": str(APP_CONTEXT),
    }
    for name, value in extra.items():  # None takes a setting out (its default applies)
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.1,
    message: str = "condition not met",
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call `condition` until it returns something truthy, and return that.

    After `timeout` seconds: AssertionError with `message` and the last value. `sleep` waits
    between calls (a Playwright page passes its own, which keeps the page's events flowing).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} after {timeout:g}s (last: {value!r})")
        sleep(interval)


def assert_error(
    response: httpx.Response,
    status: int,
    type: str,
    code: str | None,
    param: str | None = None,
    message: str | None = None,
) -> dict:
    """The response is `status` with exactly {"error": {message, type, param, code}}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert list(error) == ["message", "type", "param", "code"], error
    assert (error["type"], error["code"], error["param"]) == (type, code, param), error
    assert isinstance(error["message"], str) and error["message"], error
    if message is not None:
        assert error["message"] == message
    return error


def assert_anthropic_error(body: dict, type: str) -> str:
    """Exactly Anthropic's shape: {"type": "error", "error": {"type", "message"}}."""
    assert list(body) == ["type", "error"] and body["type"] == "error", body
    assert list(body["error"]) == ["type", "message"], body
    assert body["error"]["type"] == type, body
    return body["error"]["message"]


def assert_rate_headers(response: httpx.Response) -> None:
    missing = [h for h in RATE_HEADERS if h not in response.headers]
    assert not missing, f"missing {missing} in {dict(response.headers)}"


def scanned_pages_only() -> bytes:
    """The two image-only pages of imagemagick-images.pdf as a PDF of their own."""
    reader, writer = PdfReader(PDFS / "imagemagick-images.pdf"), PdfWriter()
    for index in (3, 4):
        writer.add_page(reader.pages[index])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def usage_rows(app, endpoint: str | None = None) -> list[dict]:
    """The app's usage rows in order (only `endpoint`'s when given)."""
    db = sqlite_utils.Database(app.data_dir / "workbench.db")
    try:
        rows = list(db.query("SELECT * FROM usage_log ORDER BY id"))
    finally:
        db.close()
    return [r for r in rows if endpoint is None or r["endpoint"] == endpoint]
