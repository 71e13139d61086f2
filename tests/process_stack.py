"""The many-process host as launch.sh starts it (`python -m ui` with WORKBENCH_API_WORKERS):
starting it, and what tests/test_many_processes.py sends to its workers."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness import APP_PYTHON, ManagedProcess, base_env, free_port
from tests.helpers import app_env

HI = [{"role": "user", "content": "Hi"}]
LONG = [{"role": "user", "content": "Write a very long essay about the history of Rome."}]


@dataclass
class Stack:
    url: str
    key: str
    data_dir: Path
    proc: ManagedProcess
    verify: ssl.SSLContext | bool = True

    @property
    def api_key(self) -> str:
        return self.key

    @property
    def processes(self) -> dict:
        return json.loads((self.data_dir / "run" / "processes.json").read_text())

    def worker(self, n: int) -> str:
        return f"http://127.0.0.1:{self.processes[f'api-{n}']['port']}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def usage(self, at_least: int = 0) -> list[tuple]:
        """(status, error code) of every usage row, once there are `at_least` (rows are
        written in batches a moment after their response)."""
        deadline = time.monotonic() + 10
        while True:
            with sqlite3.connect(self.data_dir / "workbench.db") as db:
                rows = db.execute(
                    "SELECT status_code, error_code FROM usage_log ORDER BY id"
                ).fetchall()
            if len(rows) >= at_least or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


def start_stack(
    tmp_path: Path,
    engine_url: str,
    model_dir: Path,
    workers: int = 2,
    scheme: str = "http",
    verify: ssl.SSLContext | bool = True,
    **settings,
) -> Stack:
    """`python -m ui` with these settings on a free public port; waits for /health."""
    data_dir = tmp_path / "data"
    key = "test-admin-" + secrets.token_hex(8)
    port = free_port()
    env = base_env(
        **app_env(
            data_dir,
            engine_url,
            model_dir,
            key,
            WORKBENCH_PORT=port,
            WORKBENCH_HOST="127.0.0.1",
            WORKBENCH_API_WORKERS=workers,
            **settings,
        )
    )
    proc = ManagedProcess([APP_PYTHON, "-m", "ui"], env, data_dir / "logs" / "app.log")
    url = f"{scheme}://127.0.0.1:{port}"
    # Four processes starting at once take minutes on a busy 2-core host.
    deadline = time.monotonic() + 400
    while True:
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(
                "the stack did not start:\n" + (data_dir / "logs" / "app.log").read_text()[-3000:]
            )
        try:
            if httpx.get(url + "/health", verify=verify, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return Stack(url, key, data_dir, proc, verify)


def body(**extra) -> dict:
    return {"model": "qwen3", "messages": HI, "max_tokens": 1, **extra}


async def burst(stack: Stack, count: int, **extra) -> list[httpx.Response]:
    """`count` requests at once, alternating between the two workers' own ports."""
    async with httpx.AsyncClient(headers=stack.headers, timeout=300) as client:
        bases = [stack.worker(1), stack.worker(2)]
        return await asyncio.gather(
            *(
                client.post(bases[i % 2] + "/v1/chat/completions", json=body(**extra))
                for i in range(count)
            )
        )


@dataclass
class OpenStream:
    response: httpx.Response
    lines: object  # kept referenced: collecting the line iterator would close the response


async def open_stream(client: httpx.AsyncClient, base: str) -> OpenStream:
    """A long stream, open once its first event has arrived."""
    request = client.build_request(
        "POST",
        base + "/v1/chat/completions",
        json=body(messages=LONG, max_tokens=4000, stream=True, ignore_eos=True),
    )
    response = await client.send(request, stream=True)
    assert response.status_code == 200, await response.aread()
    lines = response.aiter_lines()
    while not (await anext(lines)).startswith("data: "):
        pass
    return OpenStream(response, lines)


async def admitted_within(client: httpx.AsyncClient, base: str, seconds: float) -> float:
    """Seconds until a request on `base` is admitted (fails the test after `seconds`)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        response = await client.post(base + "/v1/chat/completions", json=body())
        if response.status_code == 200:
            return time.monotonic() - started
        assert response.status_code == 429, response.text
        await asyncio.sleep(0.25)
    pytest.fail(f"no slot came back within {seconds} s")


def make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signed for 127.0.0.1 (openssl, as the README shows)."""
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    run = lambda *argv: subprocess.run(argv, check=True, capture_output=True)  # noqa: E731
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "2",
        "-subj",
        "/CN=Workbench test CA",
    )
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        "/CN=127.0.0.1",
    )
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        ext,
    )
    return ca, cert, key
