"""A request that waits inside vLLM is seen as waiting: the engine's `vllm:num_requests_waiting`,
read by the services the UI calls.

The real CPU engine runs one sequence at a time here (`--max-num-seqs 1`), as four H200s run
one 700k-token request at a time: a long generation occupies it and the next request queues.
"""

import asyncio
import threading

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from server.app import create_app
from server.engine.profiles import cpu_plan
from server.sampling import DEFAULT_PARAMS
from server.settings import Settings
from server.workbench import Workbench
from server.workbench.answer import AnswerStream, Queued, with_queue_notices
from tests.harness import ManagedProcess, base_env, free_port, start_app
from tests.helpers import app_env, wait_until
from tests.ui_helpers import last_answer, new_conversation, send, sign_in, wait_for_answer
from ui.formatting import queued_message


@pytest.fixture(scope="module")
def one_seat_engine(model_dir, engine_python, tmp_path_factory):
    settings = Settings(data_dir=model_dir.parents[1], engine_port=free_port(), profile="cpu")
    plan = cpu_plan(settings, engine_python)
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
    body = {
        "model": "qwen3",
        "prompt": "Count on and on:",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=600) as response:
        for _ in response.iter_bytes():
            if done.is_set():
                return


def test_a_queued_answer_shows_as_queued_until_its_first_token(
    one_seat_engine, tmp_path, model_dir
):
    """The workbench service reads the engine's queue; the UI's stream turns it into `Queued`
    notices while its answer waits, then streams the answer once the engine has room."""
    settings = Settings(
        data_dir=tmp_path / "data",
        profile="external",
        upstream_url=one_seat_engine,
        vllm_api_key="boot-secret",
        tokenizer_path=model_dir,
    )
    app = create_app(settings)
    done = threading.Event()
    with TestClient(app) as client:
        workbench = Workbench(app.state.services)

        def waiting() -> int | None:
            return client.portal.call(workbench.engine_queue)

        assert waiting() == 0
        long = threading.Thread(target=generate, args=(one_seat_engine, 4000, done))
        long.start()
        wait_until(lambda: running(one_seat_engine), timeout=120, interval=0.5)

        async def answer_while_queued() -> list:
            engine = openai.AsyncOpenAI(base_url=one_seat_engine + "/v1", api_key="unused")
            answer = AnswerStream(
                engine,
                model="qwen3",
                messages=[{"role": "user", "content": "Say hi"}],
                params={**DEFAULT_PARAMS, "max_tokens": 4},
            )
            seen: list = []
            try:
                async for item in with_queue_notices(
                    answer.chunks(), lambda: asyncio.to_thread(waiting), every=0.5
                ):
                    seen.append(item)
                    if isinstance(item, Queued) and len(seen) == 3:
                        done.set()  # the long request ends: the queued answer gets its turn
            finally:
                await answer.close()
                await engine.close()
            return seen

        try:
            seen = asyncio.run(answer_while_queued())
        finally:
            done.set()
            long.join(60)
        notices = [item for item in seen if isinstance(item, Queued)]
        texts = [item for item in seen if isinstance(item, str)]
        assert len(notices) >= 3 and all(n.waiting == 1 for n in notices)
        assert texts and seen.index(texts[0]) > seen.index(notices[-1])
        wait_until(lambda: waiting() == 0, timeout=120, interval=0.5)
    # What the chat shows for each notice.
    assert queued_message(1)["content"]["text"].startswith("*Queued: the engine is busy")


def running(url: str) -> bool:
    """The engine reports one request running (its `vllm:num_requests_running`)."""
    metrics = httpx.get(url + "/metrics", timeout=5).text
    return any(
        line.startswith("vllm:num_requests_running") and line.endswith(" 1.0")
        for line in metrics.splitlines()
    )


def test_the_chat_shows_a_queued_answer_then_streams_it(one_seat_engine, page, tmp_path, model_dir):
    """In the browser: while a long request holds the engine, the answer reads as queued; when
    the long request ends, the same answer streams in and ends with its stats."""
    key = "queue-admin-key"
    proc, url = start_app(app_env(tmp_path, one_seat_engine, model_dir, key), tmp_path / "logs")
    done = threading.Event()
    long = threading.Thread(target=generate, args=(one_seat_engine, 4000, done))
    try:
        long.start()
        wait_until(lambda: running(one_seat_engine), timeout=120, interval=0.5)
        sign_in(page, url, key)
        new_conversation(page)
        send(page, "Say hi")
        expect(last_answer(page)).to_contain_text("Queued: the engine is busy", timeout=60_000)
        done.set()
        wait_for_answer(page)
        expect(last_answer(page)).not_to_contain_text("Queued")
    finally:
        done.set()
        long.join(60)
        proc.stop()
