"""Debian's redis-server for the limits of a many-process host: loopback, in memory only.

The same start code serves the supervisor (server.processes.supervisor) and the tests.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = "redis-server"


def redis_argv(port: int, workdir: Path) -> list[str]:
    """redis-server on 127.0.0.1:port, nothing written to disk: the limits are one minute
    deep, so a restart losing them costs at most a minute's worth of accuracy."""
    binary = shutil.which(REDIS_SERVER) or f"/usr/bin/{REDIS_SERVER}"
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--dir",
        str(workdir),
        "--loglevel",
        "warning",
    ]


def ping(port: int, timeout: float = 1.0) -> bool:
    """True when a Redis answers PING on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(
    port: int, workdir: Path, log_path: Path, timeout: float = 10.0
) -> subprocess.Popen:
    """Start redis-server and wait until it answers; raises with its log if it does not."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "ab")
    proc = subprocess.Popen(
        redis_argv(port, workdir),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log_file.close()
    deadline = time.monotonic() + timeout
    while not ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server did not start on port {port}:\n{tail}")
        time.sleep(0.05)
    return proc
