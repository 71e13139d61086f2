"""End to end: `./launch.sh` brings up the real CPU engine and the app, and takes both down."""

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import openai
import pytest

from tests.harness import REPO, base_env, free_port, log_tail
from tests.helpers import wait_until


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but the process table.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    try:
        return wait_until(lambda: not pid_alive(pid), timeout=timeout, interval=0.2)
    except AssertionError:
        return False


class Launch:
    """`./launch.sh --profile cpu` on free ports with its own data dir (sharing the model)."""

    def __init__(self, tmp_path: Path, model_dir: Path):
        self.data_dir = tmp_path / "data"
        (self.data_dir / "models").mkdir(parents=True)
        (self.data_dir / "models" / model_dir.name).symlink_to(model_dir)
        self.port, self.engine_port = free_port(), free_port()
        self.key = "launch-test-key"
        self.out = tmp_path / "launch.out"
        env = base_env(
            VLLM_API_KEY=self.key,
            WORKBENCH_DATA_DIR=str(self.data_dir),
            WORKBENCH_PORT=str(self.port),
            WORKBENCH_ENGINE_PORT=str(self.engine_port),
        )
        self.proc = subprocess.Popen(
            [str(REPO / "launch.sh"), "--profile", "cpu"],
            cwd=REPO,
            env=env,
            stdout=open(self.out, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 400) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"launch.sh exited {self.proc.returncode}:\n{log_tail(self.out)}")
            try:
                return httpx.get(self.url + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(
            healthy,
            timeout=timeout,
            interval=1,
            message="launch.sh not ready:\n" + log_tail(self.out),
        )

    def pids(self) -> tuple[int, int]:
        logs = self.data_dir / "logs"
        return int((logs / "engine.pid").read_text()), int((logs / "app.pid").read_text())

    def kill(self) -> None:
        """Leave nothing behind, even when launch.sh itself failed to stop its children."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for name in ("engine.pid", "app.pid"):
            try:
                os.killpg(int((self.data_dir / "logs" / name).read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


@pytest.fixture
def launch(tmp_path, model_dir):
    started = Launch(tmp_path, model_dir)
    yield started
    started.kill()


def test_launch_serves_streamed_chat_and_sigterm_stops_both(launch):
    launch.wait_ready()
    engine_pid, app_pid = launch.pids()
    assert pid_alive(engine_pid) and pid_alive(app_pid)

    client = openai.OpenAI(base_url=launch.url + "/v1", api_key=launch.key)
    stream = client.chat.completions.create(
        model="qwen3",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=16,
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 1 and "".join(pieces).strip()

    launch.proc.send_signal(signal.SIGTERM)
    assert launch.proc.wait(timeout=90) == 143
    assert wait_gone(engine_pid, 10) and wait_gone(app_pid, 10)
    assert "stopping app" in launch.out.read_text()


def test_launch_stops_the_app_and_says_so_when_the_engine_dies(launch):
    launch.wait_ready()
    engine_pid, app_pid = launch.pids()
    os.killpg(engine_pid, signal.SIGKILL)
    assert launch.proc.wait(timeout=90) == 3
    assert wait_gone(app_pid, 10)
    assert "the engine exited" in launch.out.read_text()


def test_launch_refuses_an_impossible_context_before_starting_anything(tmp_path):
    env = base_env(WORKBENCH_DATA_DIR=str(tmp_path), WORKBENCH_MAX_CONTEXT="2000000")
    result = subprocess.run(
        [str(REPO / "launch.sh"), "--profile", "h200x4"],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "does not fit on 4×H200" in result.stderr
    assert not (tmp_path / "logs" / "engine.pid").exists()


@pytest.mark.parametrize("which", ["WORKBENCH_PORT", "WORKBENCH_ENGINE_PORT"])
def test_launch_refuses_a_port_in_use_before_starting_anything(tmp_path, which):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"WORKBENCH_PORT": str(free_port()), "WORKBENCH_ENGINE_PORT": str(free_port())}
        ports[which] = str(port)
        env = base_env(WORKBENCH_DATA_DIR=str(tmp_path), **ports)
        result = subprocess.run(
            [str(REPO / "launch.sh"), "--profile", "cpu"],
            cwd=REPO,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 2, result.stderr
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert f"set {which}" in result.stderr
    assert not (tmp_path / "logs" / "engine.pid").exists()
