"""Two real CPU engine replicas behind the real vllm-router, and the app in front, all started
as launch.sh starts them (the engine plan with a secret, `router_argv`, `python -m ui`), and
what the replica tests ask them (tests/test_replicas.py).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlite_utils

from server.engine.router import metrics_port, router_argv, router_binary
from server.settings import Settings
from tests.harness import ManagedProcess, base_env, free_port, start_app, start_engine
from tests.helpers import App, app_env, wait_until

SECRET = "engine-secret-" + secrets.token_hex(8)
# Over affinity.PREFIX_CHARS, so the document alone keys the route (18,295 characters), and
# 4,138 tokens: it fits the smaller replica's 6,144.
DOCUMENT = "\n\n".join(
    f"[page {n}]\nIn section {n} the maintenance manual explains how the pump housing is "
    "inspected for corrosion, how the bearings are lubricated, and where the inspector records "
    "the readings."
    for n in range(1, 100)
)


@dataclass
class Cluster:
    app: App
    engines: dict[str, ManagedProcess]  # by URL
    router_url: str


@contextmanager
def running_cluster(model_dir: Path, tmp_path_factory) -> Iterator[Cluster]:
    """Two replicas (contexts 8,192 and 6,144: the enforced one must be the smaller) with the
    secret, the router in front and the app (`python -m ui`) in front of it; all stopped after."""
    logs = tmp_path_factory.mktemp("replica-logs")
    engines = start_replicas(model_dir, logs, (8192, 6144))
    port = free_port()
    metrics = metrics_port(Settings(router_port=port))  # where the app looks for it
    router = ManagedProcess(
        router_argv(router_binary(sys.executable), list(engines), port, metrics),
        base_env(),
        logs / "router.log",
    )
    router_url = f"http://127.0.0.1:{port}"
    apps = []
    try:
        router.wait_http(router_url + "/readiness", timeout=60)
        data_dir = tmp_path_factory.mktemp("replica-app")
        key = "test-admin-" + secrets.token_hex(8)
        env = app_env(
            data_dir,
            router_url,
            model_dir,
            key,
            WORKBENCH_UPSTREAM_URLS=",".join(engines),
            WORKBENCH_ROUTER_PORT=port,
            WORKBENCH_ENGINE_KEY=SECRET,
        )
        env.pop("WORKBENCH_UPSTREAM_URL")
        proc, url = start_app(env, data_dir / "logs")
        apps.append(proc)
        yield Cluster(App(url, key, data_dir, router_url), engines, router_url)
    finally:
        for proc in apps:
            proc.stop()
        router.stop()
        stop_all(engines.values())


def start_replicas(model_dir, logs, contexts) -> dict[str, ManagedProcess]:
    """Engines with the secret, started side by side; none left running if one fails."""
    with ThreadPoolExecutor(len(contexts)) as pool:
        futures = [
            pool.submit(start_engine, model_dir, logs, max_context=ctx, engine_key=SECRET)
            for ctx in contexts
        ]
    started, failures = {}, []
    for future in futures:
        try:
            proc, url = future.result()
            started[url] = proc
        except Exception as exc:  # noqa: BLE001 - re-raised below, after cleaning up
            failures.append(exc)
    if failures:
        stop_all(started.values())
        raise failures[0]
    return started


def stop_all(engines) -> None:
    for proc in engines:
        proc.stop()
        try:  # vLLM's helpers (its resource tracker) outlive the server they served
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def usage_rows(app: App) -> list[dict]:
    db = sqlite_utils.Database(app.data_dir / "workbench.db")
    try:
        return list(
            db.query(
                "SELECT status_code, error_code, prompt_tokens, completion_tokens "
                "FROM usage_log ORDER BY id"
            )
        )
    finally:
        db.close()


def rows(app: App, count: int) -> list[dict]:
    """The app's usage rows, once there are `count` (they are written asynchronously)."""
    return wait_until(
        lambda: found if len(found := usage_rows(app)) >= count else None,
        timeout=10,
        message=f"fewer than {count} usage rows",
    )


def auth(app: App) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.api_key}"}


def ask(app: App, question: str, **extra) -> tuple[str, dict, str]:
    """A streamed question on DOCUMENT: (text, usage, the replica that answered)."""
    body = {
        "model": "qwen3",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 8,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": DOCUMENT},
            {"role": "user", "content": question},
        ],
        **extra,
    }
    text, usage = "", None
    with httpx.stream(
        "POST", app.v1 + "/chat/completions", json=body, headers=auth(app), timeout=300
    ) as response:
        assert response.status_code == 200, response.read()
        replica = response.headers["x-workbench-replica"]
        for line in response.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                assert "error" not in event, event
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices", []):
                    text += choice["delta"].get("content") or ""
    return text, usage, replica


def generated(engine: str) -> int:
    """The replica's count of tokens generated so far (its own Prometheus counter)."""
    text = httpx.get(engine + "/metrics", timeout=10).text
    return int(
        sum(
            float(v)
            for v in re.findall(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)", text, re.MULTILINE)
        )
    )
