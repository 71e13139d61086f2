"""Shared fixtures: one real vLLM CPU engine per test session, apps started against it."""

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from storage import Store
from tests.harness import REPO, free_port, log_tail, start_app, start_engine
from tests.ui_helpers import CHROMIUM, CHROMIUM_ARGS

MODEL_DIR = Path(
    os.environ.get("WORKBENCH_TEST_MODEL_DIR", REPO / "data" / "models" / "SmolLM2-135M-Instruct")
)
ARTIFACTS = REPO / "tests" / "artifacts"


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


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The converted embedded model (made by `./launch.sh test` before pytest runs)."""
    if not (MODEL_DIR / "tokenizer.json").is_file():
        pytest.fail(f"embedded model missing at {MODEL_DIR}: run ./launch.sh test")
    return MODEL_DIR


@pytest.fixture(scope="session")
def engine_url(model_dir, tmp_path_factory) -> str:
    """The real vLLM CPU engine, started once for the session.

    WORKBENCH_TEST_ENGINE_URL reuses an engine that is already running (handy while developing).
    """
    reuse = os.environ.get("WORKBENCH_TEST_ENGINE_URL")
    if reuse:
        yield reuse.rstrip("/")
        return
    proc, url = start_engine(model_dir, tmp_path_factory.mktemp("engine-logs"))
    yield url
    proc.stop()


def app_env(data_dir: Path, engine_url: str, model_dir: Path, api_key: str, **extra) -> dict:
    """The environment of an app that points at the session's engine."""
    env = {
        "VLLM_API_KEY": api_key,
        "WORKBENCH_DATA_DIR": str(data_dir),
        "WORKBENCH_PROFILE": "external",
        "WORKBENCH_UPSTREAM_URL": engine_url,
        "WORKBENCH_TOKENIZER_PATH": str(model_dir),
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="session")
def app(engine_url, model_dir, tmp_path_factory) -> App:
    """One app for the session: `python -m ui` (as launch.sh starts it) in front of the real engine."""
    data_dir = tmp_path_factory.mktemp("app-data")
    key = "test-admin-" + secrets.token_hex(8)
    proc, url = start_app(app_env(data_dir, engine_url, model_dir, key), data_dir / "logs")
    yield App(url=url, api_key=key, data_dir=data_dir, engine_url=engine_url)
    proc.stop()


@pytest.fixture
def make_app(engine_url, model_dir, tmp_path):
    """Start extra apps with their own settings (low limits, a faulty upstream, ...)."""
    started = []

    def _make(upstream: str | None = None, **settings) -> App:
        data_dir = tmp_path / f"app-{len(started)}"
        key = "test-admin-" + secrets.token_hex(8)
        env = app_env(data_dir, upstream or engine_url, model_dir, key, **settings)
        proc, url = start_app(env, data_dir / "logs")
        started.append(proc)
        return App(url=url, api_key=key, data_dir=data_dir, engine_url=upstream or engine_url)

    yield _make
    for proc in started:
        proc.stop()


@pytest.fixture
def app_without_engine(tmp_path, model_dir):
    """An app whose upstream port has nothing listening (the engine is down): (url, key)."""
    key = "test-admin-" + secrets.token_hex(8)
    env = app_env(tmp_path, f"http://127.0.0.1:{free_port()}", model_dir, key)
    proc, url = start_app(env, tmp_path / "logs", expect=503)
    yield url, key
    proc.stop()


@pytest.fixture
def db(tmp_path):
    """A fresh, migrated SQLite database file under tmp_path."""
    with Store(tmp_path / "workbench.db") as store:
        yield store.db


# One browser per test module; each test gets its own context (fresh localStorage).
@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used an app shows the end of that app's log (CI keeps nothing else)."""
    report = yield
    if report.when == "call" and report.failed:
        for value in getattr(item, "funcargs", {}).values():
            data_dir = getattr(value, "data_dir", None)
            if isinstance(data_dir, Path):
                for log in sorted((data_dir / "logs").glob("*.log")):
                    report.sections.append((f"app log {log.name} (end)", log_tail(log, 40)))
    return report
