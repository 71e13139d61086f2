"""Two real CPU engine replicas behind the real vllm-router, and the app in front
(tests/replica_cluster.py starts them as launch.sh does); the plans and the affinity key.

The module shares one set of processes; the last test kills a replica.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import httpx
import pytest

from server.gateway.affinity import PREFIX_CHARS, affinity_key
from tests.harness import REPO
from tests.replica_cluster import (
    DOCUMENT,
    SECRET,
    ask,
    auth,
    generated,
    rows,
    running_cluster,
    usage_rows,
)


@pytest.fixture(scope="module")
def cluster(model_dir, tmp_path_factory):
    with running_cluster(model_dir, tmp_path_factory) as started:
        yield started


def test_an_engine_with_a_secret_refuses_requests_without_it(cluster):
    engine = next(iter(cluster.engines))
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    assert httpx.post(engine + "/v1/chat/completions", json=body, timeout=60).status_code == 401
    wrong = {"Authorization": "Bearer not-the-secret"}
    assert (
        httpx.post(
            engine + "/v1/chat/completions", json=body, headers=wrong, timeout=60
        ).status_code
        == 401
    )
    right = {"Authorization": f"Bearer {SECRET}"}
    assert (
        httpx.post(
            engine + "/v1/chat/completions", json=body, headers=right, timeout=60
        ).status_code
        == 200
    )
    # Through the router without the secret: refused by the engine too.
    assert (
        httpx.post(cluster.router_url + "/v1/chat/completions", json=body, timeout=60).status_code
        == 401
    )


def test_health_lists_every_replica_and_the_context_is_the_smallest(cluster):
    health = httpx.get(cluster.app.url + "/health", timeout=30).json()
    assert health["status"] == "ok"
    assert {r["url"]: r["status"] for r in health["replicas"]} == dict.fromkeys(
        cluster.engines, "up"
    )
    assert sorted(r["max_model_len"] for r in health["replicas"]) == [6144, 8192]
    models = httpx.get(cluster.app.v1 + "/models", headers=auth(cluster.app), timeout=30).json()
    assert models["data"][0]["max_model_len"] == 6144


def test_questions_on_one_document_stay_on_its_replica_and_hit_its_cache(cluster):
    _, first, replica = ask(cluster.app, "What does section 7 explain?")
    answers = [
        ask(cluster.app, q)
        for q in ("Where are the readings recorded?", "How are the bearings lubricated?")
    ]
    assert {r for _, _, r in answers} == {replica}
    assert replica in cluster.engines
    for _, usage, _ in answers:
        # The document's tokens come from the replica's prefix cache, as the engine counts them.
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        assert cached >= 0.9 * first["prompt_tokens"], (cached, first)
    # The usage rows hold the engine's own counts.
    recorded = rows(cluster.app, 3)[-3:]
    assert [r["prompt_tokens"] for r in recorded] == [first["prompt_tokens"]] + [
        u["prompt_tokens"] for _, u, _ in answers
    ]


def test_a_client_leaving_aborts_the_replicas_request(cluster):
    body = {
        "model": "qwen3",
        "stream": True,
        "max_tokens": 3000,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "Count to ten thousand."}],
    }
    with httpx.stream(
        "POST",
        cluster.app.v1 + "/chat/completions",
        json=body,
        headers=auth(cluster.app),
        timeout=120,
    ) as response:
        replica = response.headers["x-workbench-replica"]
        before = generated(replica)
        for _ in zip(range(20), response.iter_lines(), strict=False):
            pass
    # 3,000 tokens take minutes here; the replica stops generating within seconds.
    deadline, last = time.monotonic() + 30, -1
    while (now := generated(replica)) != last and time.monotonic() < deadline:
        last = now
        time.sleep(2)
    assert now == last and now - before < 3000


def test_the_workbench_shows_which_replica_answered(cluster, page):
    # Browser tests only import Playwright (the fast subset runs without it).
    from playwright.sync_api import expect

    from tests.ui_helpers import last_answer, new_conversation, send, sign_in, wait_for_answer

    sign_in(page, cluster.app.url, cluster.app.api_key)
    new_conversation(page)
    send(page, "Say hello.")
    wait_for_answer(page)
    stats = last_answer(page).locator(".wb-stats")
    expect(stats).to_contain_text(re.compile(r"replica 127\.0\.0\.1:\d+"))
    shown = re.search(r"replica (\S+)", stats.inner_text()).group(1)
    assert f"http://{shown}" in cluster.engines
    # Kept with the answer: a reload shows it again.
    page.reload()
    expect(last_answer(page).locator(".wb-stats")).to_contain_text(f"replica {shown}")


def test_a_replica_dying_mid_answer(cluster):
    app = cluster.app
    body = {
        "model": "qwen3",
        "stream": True,
        "max_tokens": 3000,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "Write a very long story."}],
    }
    events, recorded = [], len(usage_rows(app))
    with httpx.stream(
        "POST", app.v1 + "/chat/completions", json=body, headers=auth(app), timeout=120
    ) as response:
        victim = response.headers["x-workbench-replica"]
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[6:])
            if len(events) == 5:
                os.killpg(cluster.engines[victim].pid, signal.SIGKILL)  # the host is gone
    # The text streamed before the replica died reached the client, then the error, then [DONE].
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "engine_error" and "stopped in the middle" in error["message"]
    text = "".join(
        c["delta"].get("content") or ""
        for e in events[:-2]
        for c in json.loads(e).get("choices", [])
    )
    assert len(events) >= 7 and text
    row = rows(app, recorded + 1)[-1]
    assert (row["status_code"], row["error_code"]) == (200, "engine_error")
    assert row["completion_tokens"] >= 5

    # New requests succeed on the other replica at once, the dead one's conversation too
    # (the router still routes it there: the refused connection is retried on the survivor).
    survivor = next(url for url in cluster.engines if url != victim)
    again = {**body, "stream": False, "max_tokens": 4}
    retried = httpx.post(app.v1 + "/chat/completions", json=again, headers=auth(app), timeout=120)
    assert retried.status_code == 200, retried.text
    assert retried.headers["x-workbench-replica"] == survivor
    for question in ("Where are the readings recorded?", "Anything else?"):
        _, usage, replica = ask(app, question)
        assert replica == survivor and usage["completion_tokens"] > 0
    health = httpx.get(app.url + "/health", timeout=30)
    assert health.status_code == 200
    state = {r["url"]: r["status"] for r in health.json()["replicas"]}
    assert health.json()["status"] == "degraded" and state == {victim: "down", survivor: "up"}
    metrics = httpx.get(app.url + "/metrics", headers=auth(app), timeout=30).text
    assert f'workbench_replica_up{{replica="{victim}"}} 0.0' in metrics
    assert f'workbench_replica_up{{replica="{survivor}"}} 1.0' in metrics
    assert f'vllm_router_processed_requests_total{{worker="{survivor}"}}' in metrics


def test_with_no_replica_left_the_host_is_down(cluster):
    app = cluster.app
    for proc in cluster.engines.values():
        if proc.alive():
            os.killpg(proc.pid, signal.SIGKILL)
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    refused = httpx.post(app.v1 + "/chat/completions", json=body, headers=auth(app), timeout=120)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "service_unavailable"
    assert "127.0.0.1" not in refused.text  # the replicas' addresses stay inside
    assert httpx.get(app.url + "/health", timeout=30).status_code == 503


# --- without processes: the plans and the affinity key ------------------------------------------


def plan(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    full.pop("VLLM_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "server.engine", "plan", *args],
        check=False,
        cwd=REPO,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_engine_listens_beyond_loopback_only_with_a_secret():
    refused = plan("--dry-run", WORKBENCH_PROFILE="cpu", WORKBENCH_ENGINE_HOST="0.0.0.0")
    assert refused.returncode == 2 and "WORKBENCH_ENGINE_KEY" in refused.stderr
    shown = plan(
        "--dry-run",
        WORKBENCH_PROFILE="cpu",
        WORKBENCH_ENGINE_HOST="0.0.0.0",
        WORKBENCH_ENGINE_KEY=SECRET,
        WORKBENCH_ENGINE_PORT="9001",
    )
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout and "VLLM_API_KEY=***" in shown.stdout
    assert "--host 0.0.0.0 --port 9001 --middleware server.engine.replica_header." in shown.stdout
    # launch.sh's own reading: the secret reaches the engine in its environment, not its argv.
    shell = plan("--shell", WORKBENCH_PROFILE="h200x4", WORKBENCH_ENGINE_KEY=SECRET)
    assert f"VLLM_API_KEY={SECRET}" in shell.stdout.split("ENGINE_ENV=")[1]
    assert SECRET not in shell.stdout.split("ENGINE_ENV=")[0]
    default = plan("--dry-run", WORKBENCH_PROFILE="cpu")
    assert "--host 127.0.0.1 --port 8001" in default.stdout and "VLLM_API_KEY" not in default.stdout


def test_upstream_urls_start_the_router_and_no_engine():
    result = plan("--dry-run", WORKBENCH_UPSTREAM_URLS="http://gpu1:8001, http://gpu2:8001/v1")
    assert result.returncode == 0, result.stderr
    assert "# engine:" not in result.stdout
    router = shlex.split(result.stdout.split("# router:\n")[1].splitlines()[0])
    assert router[0].endswith("/vllm-router")
    assert router[router.index("--worker-urls") + 1 :][:2] == [
        "http://gpu1:8001",
        "http://gpu2:8001",
    ]
    assert router[router.index("--policy") + 1] == "sticky_least_loaded"
    assert router[router.index("--host") + 1] == "127.0.0.1"
    assert router[router.index("--port") + 1] == "8002"
    local = plan("--dry-run", WORKBENCH_PROFILE="cpu", WORKBENCH_UPSTREAM_URLS="http://gpu1:8001")
    assert local.returncode == 2 and "./launch.sh engine" in local.stderr


def test_a_documents_questions_share_a_key_and_conversations_spread():
    def key(system: str, *turns: str) -> str:
        roles = ["user", "assistant"] * len(turns)
        return affinity_key(
            {
                "messages": [{"role": "system", "content": system}]
                + [
                    {"role": role, "content": text}
                    for role, text in zip(roles, turns, strict=False)
                ]
            }
        )

    assert len(DOCUMENT) > PREFIX_CHARS
    assert key(DOCUMENT, "First question?") == key(DOCUMENT, "Another one?")
    assert key(DOCUMENT, "Q") != key(DOCUMENT.replace("[page 1]", "[page 0]"), "Q")
    # A short system prompt: each conversation keys on its opening, kept over its turns.
    assert key("Be brief.", "Hello") != key("Be brief.", "Bonjour")
    assert key("Be brief.", "Hello") == key("Be brief.", "Hello", "Hi!", "And then?")
    assert affinity_key({"prompt": ["text one", "text two"]}) == affinity_key(
        {"prompt": "text one"}
    )
    assert affinity_key({"messages": []}) is None
    # The Messages and Responses shapes key on their documents the same way.
    assert affinity_key(
        {"system": DOCUMENT, "messages": [{"role": "user", "content": "A?"}]}
    ) == affinity_key({"system": DOCUMENT, "messages": [{"role": "user", "content": "B?"}]})
    assert affinity_key({"instructions": DOCUMENT, "input": "A?"}) == affinity_key(
        {"instructions": DOCUMENT, "input": [{"role": "user", "content": "B?"}]}
    )
