"""Many processes behind one port: what `python -m ui` runs when WORKBENCH_API_WORKERS > 1.

    redis-server (unless WORKBENCH_REDIS_URL names one)   the limits every process shares
    python -m ui      (loopback)                           Gradio's queue and sessions: one process
    python -m server  × N (loopback)                       /v1, /health, /metrics (API only)
    nginx (WORKBENCH_HOST:WORKBENCH_PORT, TLS if set)      routes between them, unbuffered

All run in the foreground as children of this process, which launch.sh supervises as "the app".
A worker that dies is started again on its port (nginx sends its requests to the others
meanwhile); if the UI process or nginx dies, everything stops and this process exits 1. Redis
started here is started again too (its limits restart empty; requests meanwhile get 503).
Where each child listens and its pid: `DATA_DIR/run/processes.json`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from server.processes.proxy import nginx_argv, render_config, write_config
from server.processes.redis_server import start_redis
from server.settings import Settings

log = logging.getLogger("server.processes")

POLL_SECONDS = 0.5
START_TIMEOUT_SECONDS = 300
# A worker crashing faster than this is broken, not unlucky: stop rather than spin.
MAX_RESTARTS, RESTART_WINDOW_SECONDS = 5, 60.0
# Our own settings, which must not reach the children as they are.
PARENT_ONLY = (
    "WORKBENCH_API_WORKERS",
    "WORKBENCH_TLS_CERT",
    "WORKBENCH_TLS_KEY",
    "WORKBENCH_HOST",
    "WORKBENCH_PORT",
)


def free_ports(count: int) -> list[int]:
    """Loopback ports nothing listens on, below the kernel's ephemeral range (a port handed out
    by bind(0) may be taken again by any outgoing connection before our child binds it)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000 if low > 21000 else 1024, low - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in chosen:
            chosen.append(port)
    return chosen


@dataclass
class Child:
    name: str
    argv: list[str]
    port: int | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL)
        log.warning(
            "started %s (pid %d%s)",
            self.name,
            self.proc.pid,
            f", port {self.port}" if self.port else "",
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Starts the children, restarts dead workers, stops everything on SIGTERM/SIGINT."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.run_dir = settings.data_dir.resolve() / "run"
        self.children: list[Child] = []
        self.redis: subprocess.Popen | None = None
        self.redis_port: int | None = None
        self.stopping = False

    def _child_env(self, port: int, redis_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PARENT_ONLY}
        env.update(
            WORKBENCH_HOST="127.0.0.1",
            WORKBENCH_PORT=str(port),
            WORKBENCH_REDIS_URL=redis_url,
            PYTHONUNBUFFERED="1",
        )
        return env

    def _start_redis(self) -> None:
        self.redis = start_redis(
            self.redis_port, self.run_dir / "redis", self.run_dir / "redis.log"
        )
        log.warning("started redis-server (pid %d, port %d)", self.redis.pid, self.redis_port)

    def start(self) -> None:
        s = self.settings
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(s.api_workers + 2)
        ui_port, api_ports, self.redis_port = ports[0], ports[1:-1], ports[-1]
        redis_url = s.redis_url
        if not redis_url:
            self._start_redis()
            redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        # Started by module name: server/ never imports ui/.
        self.children.append(
            Child("ui", [sys.executable, "-m", "ui"], ui_port, self._child_env(ui_port, redis_url))
        )
        for i, port in enumerate(api_ports, 1):
            self.children.append(
                Child(
                    f"api-{i}",
                    [sys.executable, "-m", "server"],
                    port,
                    self._child_env(port, redis_url),
                )
            )
        for child in self.children:
            child.start()
        for child in self.children:
            self._wait_up(child)
        config = write_config(
            self.run_dir / "nginx.conf",
            render_config(s.host, s.port, ui_port, api_ports, self.run_dir, s.tls_cert, s.tls_key),
        )
        nginx = Child("nginx", nginx_argv(config), s.port)
        nginx.start()
        self.children.append(nginx)
        self._write_state()

    def _wait_up(self, child: Child) -> None:
        """Until the child answers /health at all (503 while the engine is down is an answer)."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self.stopping:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited while starting")
            try:
                httpx.get(f"http://127.0.0.1:{child.port}/health", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.25)
        raise RuntimeError(f"{child.name} did not answer on port {child.port}")

    def _write_state(self) -> None:
        state = {
            c.name: {"pid": c.proc.pid if c.proc else None, "port": c.port} for c in self.children
        }
        if self.redis is not None:
            state["redis"] = {"pid": self.redis.pid, "port": self.redis_port}
        path = self.run_dir / "processes.json"
        path.with_suffix(".tmp").write_text(json.dumps(state, indent=2))
        path.with_suffix(".tmp").replace(path)

    def watch(self) -> int:
        """Until told to stop (0) or a child that cannot be replaced dies (1)."""
        while not self.stopping:
            time.sleep(POLL_SECONDS)
            if self.redis is not None and self.redis.poll() is not None and not self.stopping:
                log.error("redis-server exited (%s); starting it again", self.redis.returncode)
                self._start_redis()
                self._write_state()
            for child in self.children:
                if child.alive() or self.stopping:
                    continue
                code = child.proc.returncode
                if not child.name.startswith("api-"):
                    log.error("%s exited (%s): stopping", child.name, code)
                    return 1
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_SECONDS]
                if len(child.restarts) >= MAX_RESTARTS:
                    log.error(
                        "%s exited (%s) %d times in %.0f s: stopping",
                        child.name,
                        code,
                        MAX_RESTARTS + 1,
                        RESTART_WINDOW_SECONDS,
                    )
                    return 1
                log.error("%s exited (%s); starting it again", child.name, code)
                child.restarts.append(now)
                child.start()
                self._write_state()
        return 0

    def stop(self) -> None:
        """terminate → wait → kill: nginx first (no new requests), then workers, then Redis."""
        self.stopping = True
        procs = [c.proc for c in reversed(self.children) if c.proc is not None]
        procs += [self.redis] if self.redis is not None else []
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run(settings: Settings) -> int:
    """Run the many-process host until SIGTERM/SIGINT; the exit code says how it ended."""
    logging.basicConfig(level=logging.INFO, format="[supervisor] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every health poll
    supervisor = Supervisor(settings)

    def _stop(signum, frame):
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        supervisor.start()
        return supervisor.watch()
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    finally:
        supervisor.stop()
