"""Shared fixtures: one real vLLM CPU engine per test session, apps started against it.

Tests are marked by what their fixtures need, so the fast inner loop can leave them out:
`engine` (the vLLM CPU engine's install: the engine itself or the model it converts) and
`browser` (Debian's Chromium through Playwright). `./launch.sh test -m "not engine and not
browser"` runs the rest without installing either.
"""

import os
import secrets
from pathlib import Path

import httpx
import pytest

from storage import Store
from tests.harness import ENGINE_PYTHON, free_port, log_tail, start_app, start_engine
from tests.helpers import MODEL_DIR, App, app_env

ENGINE_FIXTURES = {"engine_url", "model_dir", "engine_python"}
BROWSER_FIXTURES = {"browser", "page"}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "engine: needs the vLLM CPU engine's install (set from the fixtures used)"
    )
    config.addinivalue_line(
        "markers", "browser: drives Debian's Chromium (set from the fixtures used)"
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these marks
def pytest_collection_modifyitems(items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & ENGINE_FIXTURES:
            item.add_marker(pytest.mark.engine)
        if used & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The converted embedded model (made by `./launch.sh test` before pytest runs)."""
    if not (MODEL_DIR / "tokenizer.json").is_file():
        pytest.fail(f"embedded model missing at {MODEL_DIR}: run ./launch.sh test")
    return MODEL_DIR


@pytest.fixture(scope="session")
def engine_python() -> str:
    """The engine virtualenv's python (vLLM's own code, for checks of its command line)."""
    if not Path(ENGINE_PYTHON).is_file():
        pytest.fail(f"engine virtualenv missing at {ENGINE_PYTHON}: run ./launch.sh test")
    return ENGINE_PYTHON


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


@pytest.fixture(scope="session")
def app(engine_url, model_dir, tmp_path_factory) -> App:
    """One app for the session: `python -m ui` (as launch.sh starts it) in front of the real
    engine."""
    data_dir = tmp_path_factory.mktemp("app-data")
    key = "test-admin-" + secrets.token_hex(8)
    proc, url = start_app(app_env(data_dir, engine_url, model_dir, key), data_dir / "logs")
    yield App(url=url, api_key=key, data_dir=data_dir, engine_url=engine_url)
    proc.stop()


@pytest.fixture(scope="session")
def v1_http(app):
    """An HTTP client of the session's app: base URL `/v1`, the admin key as Bearer."""
    with httpx.Client(
        base_url=app.v1, timeout=60, headers={"Authorization": f"Bearer {app.api_key}"}
    ) as client:
        yield client


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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server for the session, started as the many-process host starts it."""
    from server.processes.redis_server import start_redis

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = start_redis(port, workdir, workdir / "redis.log")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request):
    """KeyLimiter factory, once in memory (one process) and once over Redis (many)."""
    import redis

    from server.gateway.limits import KeyLimiter
    from server.gateway.limits_memory import MemoryBackend
    from server.gateway.limits_redis import RedisBackend

    made = []
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_server")
        redis.Redis.from_url(url).flushdb()

    def _make(rpm: int, tpm: int, max_concurrent: int) -> KeyLimiter:
        backend = RedisBackend(url) if url else MemoryBackend()
        limiter = KeyLimiter(rpm, tpm, max_concurrent, backend)
        made.append(limiter)
        return limiter

    yield _make
    for limiter in made:
        await limiter.aclose()


@pytest.fixture(scope="module")
def fault_upstream():
    """A stand-in vLLM for the faults the real engine cannot produce on demand (one per module)."""
    from tests.fault_upstream import FaultUpstream

    with FaultUpstream() as upstream:
        yield upstream


@pytest.fixture
def db(tmp_path):
    """A fresh, migrated SQLite database file under tmp_path."""
    with Store(tmp_path / "workbench.db") as store:
        yield store.db


# One browser per test module; each test gets its own context (fresh localStorage).
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from tests.ui_helpers import CHROMIUM, CHROMIUM_ARGS

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
