"""Usage rows survive a killed process: journaled at once, replayed by the next start, never
counted twice (real SQLite files, real journal files, a real app killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx

from server.gateway.accounting import UsageRecorder, UsageRow, replay_journals
from server.gateway.metrics import GatewayMetrics
from storage import Store
from tests.harness import start_app
from tests.helpers import App, app_env, usage_rows


def _rows(store: Store) -> list[tuple]:
    return [
        (r["key_name"], r["completion_tokens"])
        for r in store.db.query("SELECT * FROM usage_log ORDER BY completion_tokens")
    ]


def test_rows_of_a_process_that_died_are_replayed_once(tmp_path):
    store = Store(tmp_path / "workbench.db")
    recorder = UsageRecorder(store, GatewayMetrics())

    async def record_and_die() -> None:
        for tokens in (1, 2, 3):
            recorder.record(UsageRow("alice", "/v1/chat/completions", "qwen3", 200, 5, tokens))
        # The process dies here: its writer never ran.

    asyncio.run(record_and_die())
    directory = recorder.journal.directory
    assert replay_journals(store, directory) == 0  # its owner still holds it
    assert _rows(store) == []
    os.close(recorder.journal.seal()[0])  # what the kernel does when the process is killed
    journal = next(directory.glob("usage-*.jsonl"))
    kept = journal.read_bytes()
    assert replay_journals(store, directory) == 3
    assert _rows(store) == [("alice", 1), ("alice", 2), ("alice", 3)]
    assert list(directory.iterdir()) == []
    # A crash between the commit and the delete: the same journal comes back; nothing doubles.
    journal.write_bytes(kept + b'12\n["short", 1.0]\n["torn", 1.0, "al')
    assert replay_journals(store, directory) == 3
    assert _rows(store) == [("alice", 1), ("alice", 2), ("alice", 3)]
    store.close()


def test_written_rows_leave_no_journal_behind(tmp_path):
    store = Store(tmp_path / "workbench.db")
    recorder = UsageRecorder(store, GatewayMetrics())

    async def serve() -> None:
        for tokens in range(50):
            recorder.record(UsageRow("bob", "/v1/completions", "qwen3", 200, 1, tokens))
            if tokens == 25:
                await asyncio.sleep(0.1)  # one batch is written meanwhile
        await recorder.drain()

    asyncio.run(serve())
    assert len(_rows(store)) == 50
    assert list(recorder.journal.directory.iterdir()) == []
    store.close()


def test_a_killed_app_loses_no_usage_row(engine_url, model_dir, tmp_path):
    data_dir = tmp_path / "data"
    key = "test-admin-" + secrets.token_hex(8)
    env = app_env(data_dir, engine_url, model_dir, key)
    proc, url = start_app(env, data_dir / "logs")
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}

    def ask(_: int) -> int:
        return httpx.post(
            url + "/v1/chat/completions",
            json=body,
            timeout=120,
            headers={"Authorization": f"Bearer {key}"},
        ).status_code

    try:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(ask, range(12)))
        os.killpg(proc.pid, signal.SIGKILL)  # right after the last answer: no shutdown at all
        proc.proc.wait(timeout=30)
    finally:
        proc.stop()
    assert statuses == [200] * 12
    proc, url = start_app(env, data_dir / "logs")
    try:
        rows = usage_rows(App(url, key, data_dir, engine_url), "/v1/chat/completions")
        assert [r["status_code"] for r in rows] == [200] * 12
        assert len({r["request_id"] for r in rows}) == 12
        assert all(r["completion_tokens"] == 1 for r in rows)
    finally:
        proc.stop()
