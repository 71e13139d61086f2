"""A request that waits inside vLLM is seen as waiting: the engine's `vllm:num_requests_waiting`,
read by the services the UI calls.

The real CPU engine runs one sequence at a time here (`--max-num-seqs 1`), as four H200s run
one 700k-token request at a time: a long generation occupies it and the next request queues.
"""

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.engine.profiles import cpu_plan
from server.settings import Settings
from tests.harness import ENGINE_PYTHON, ManagedProcess, base_env, free_port


@pytest.fixture(scope="module")
def one_seat_engine(model_dir, tmp_path_factory):
    settings = Settings(data_dir=model_dir.parents[1], engine_port=free_port(), profile="cpu")
    plan = cpu_plan(settings, ENGINE_PYTHON)
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    proc = ManagedProcess([*plan.argv, "--max-num-seqs", "1"], base_env(**plan.env), log)
    url = f"http://127.0.0.1:{settings.engine_port}"
    try:
        proc.wait_http(url + "/health", timeout=600)
        yield url
    finally:
        proc.stop()


def generate(url: str, max_tokens: int, done: threading.Event) -> None:
    """A streamed completion that runs until `max_tokens` (or until `done` is set)."""
    body = {"model": "qwen3", "prompt": "Count on and on:", "max_tokens": max_tokens,
            "ignore_eos": True, "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=600) as response:
        for _ in response.iter_bytes():
            if done.is_set():
                return


def wait_for(check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail("condition not met in time")


def test_a_queued_request_is_seen_through_the_services(one_seat_engine, tmp_path, model_dir):
    settings = Settings(data_dir=tmp_path / "data", profile="external",
                        upstream_url=one_seat_engine, vllm_api_key="boot-secret",
                        tokenizer_path=model_dir)
    app = create_app(settings)
    done = threading.Event()
    with TestClient(app) as client:
        engine = app.state.services.engine

        def waiting() -> int | None:
            return client.portal.call(engine.requests_waiting)

        assert waiting() == 0
        long = threading.Thread(target=generate, args=(one_seat_engine, 4000, done))
        short = threading.Thread(target=generate, args=(one_seat_engine, 4, done))
        long.start()
        time.sleep(2)
        short.start()
        try:
            assert wait_for(waiting) == 1
        finally:
            done.set()
            long.join(60)
            short.join(60)
        # Once the long one is gone the short one runs, and nothing waits.
        assert wait_for(lambda: waiting() == 0)
