"""Process harness for tests: start servers on free ports, wait for health, stop them for sure.

Modelled on vLLM's RemoteOpenAIServer: poll /health, fail fast with the log tail if the process
died, and stop terminate → wait → kill by process group.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
APP_PYTHON = sys.executable
ENGINE_PYTHON = str(REPO / ".venv" / "engine" / "bin" / "python")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    A port the kernel hands out for `bind(0)` goes back into the pool the moment it is released,
    and anything that binds or connects in the meantime (the engine's internal sockets, a health
    poll's source port) may take it before our server binds it. Ports below the ephemeral range
    are only ever taken on purpose.
    """
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    high = min(_ephemeral_low(), 65536) - 1
    low = 20000 if high > 21000 else 1024
    for _ in range(200):
        port = rng.randint(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ManagedProcess:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path = REPO):
        self.argv = argv
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_http(self, url: str, timeout: float, expect: int = 200) -> None:
        """Poll url until it answers `expect`; raise with the log tail if the process dies."""
        from tests.helpers import wait_until

        def answered() -> bool:
            if not self.alive():
                raise RuntimeError(
                    f"{self.argv[:3]} exited with {self.proc.returncode} while starting:\n"
                    + log_tail(self.log_path)
                )
            try:
                return httpx.get(url, timeout=2).status_code == expect
            except httpx.HTTPError:
                return False

        try:
            wait_until(answered, timeout=timeout, interval=0.5)
        except AssertionError:
            raise TimeoutError(
                f"{url} not ready after {timeout}s:\n" + log_tail(self.log_path)
            ) from None

    def stop(self, grace: float = 15.0) -> int | None:
        """terminate → wait → kill, for the whole process group."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


def base_env(**overrides: str) -> dict[str, str]:
    """The environment for a child: this one, minus our own settings, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.pop("VLLM_API_KEY", None)
    env.update(
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def start_engine(
    model_dir: Path, log_dir: Path, max_context: int | None = None, engine_key: str | None = None
) -> tuple[ManagedProcess, str]:
    """Start the real vLLM CPU engine with the embedded model, exactly as launch.sh does
    (with the `cpu` profile's context unless told otherwise; requiring `engine_key`, the
    engine secret, when given)."""
    from server.engine.profiles import cpu_plan
    from server.settings import Settings

    port = free_port()
    settings = Settings(
        data_dir=model_dir.parents[1],
        engine_port=port,
        max_context=max_context,
        profile="cpu",
        engine_key=engine_key,
    )
    plan = cpu_plan(settings, ENGINE_PYTHON)
    proc = ManagedProcess(plan.argv, base_env(**plan.env), log_dir / f"engine-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(url + "/health", timeout=300)
    except Exception:
        proc.stop()
        raise
    return proc, url


def start_app(
    env: dict[str, str],
    log_dir: Path,
    port: int | None = None,
    wait_for: str = "/health",
    expect: int = 200,
    module: str = "ui",
) -> tuple[ManagedProcess, str]:
    """Start the app as launch.sh does (`python -m ui`: the workbench and /v1; `module="server"`
    for the API alone) with the given WORKBENCH_* environment on a free port."""
    port = port or free_port()
    full = base_env(WORKBENCH_PORT=str(port), WORKBENCH_HOST="127.0.0.1", **env)
    proc = ManagedProcess([APP_PYTHON, "-m", module], full, log_dir / f"app-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(url + wait_for, timeout=120, expect=expect)
    except Exception:
        proc.stop()
        raise
    return proc, url
