"""Two API workers, the UI process, nginx and Redis, started by `python -m ui` as launch.sh
starts it (WORKBENCH_API_WORKERS=2), in front of the real CPU engine.

Requests meant to meet on different workers go to each worker's own loopback port (from
`run/processes.json`), so "across processes" is certain rather than left to the balancer;
everything else goes through nginx on the public port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import time

import httpx
import openai
import pytest
from playwright.sync_api import expect

from server.gateway.limits_redis import LEASE_SECONDS
from server.processes.redis_server import start_redis
from server.workbench.answer import trust_only
from tests.harness import free_port
from tests.helpers import assert_error
from tests.process_stack import (
    HI,
    Stack,
    admitted_within,
    body,
    burst,
    make_ca_and_cert,
    open_stream,
    start_stack,
)
from tests.ui_helpers import (
    STREAM_TIMEOUT,
    answer_text,
    last_answer,
    new_conversation,
    open_conversation_id,
    send,
    sign_in,
    stored_messages,
    wait_for_answer,
)


@pytest.fixture
def stack_factory(engine_url, model_dir, tmp_path):
    started: list[Stack] = []

    def _make(**settings) -> Stack:
        stack = start_stack(tmp_path / f"s{len(started)}", engine_url, model_dir, **settings)
        started.append(stack)
        return stack

    yield _make
    for stack in started:
        stack.proc.stop()


async def test_rpm_and_concurrency_hold_across_two_workers(stack_factory):
    stack = stack_factory(WORKBENCH_RPM=5, WORKBENCH_MAX_CONCURRENT=1000)
    responses = await burst(stack, 20)
    assert sorted(r.status_code for r in responses) == [200] * 5 + [429] * 15
    refused = next(r for r in responses if r.status_code == 429)
    assert_error(
        refused,
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        None,
        "Rate limit exceeded: 5 requests per minute per key.",
    )
    # Both processes wrote their rows into the one SQLite file at once: none is missing.
    rows = stack.usage(at_least=20)
    assert sorted(status for status, _ in rows) == [200] * 5 + [429] * 15

    stack2 = stack_factory(WORKBENCH_MAX_CONCURRENT=2)
    responses = await burst(stack2, 20, max_tokens=48, stream=True, ignore_eos=True)
    assert sorted(r.status_code for r in responses) == [200] * 2 + [429] * 18
    assert (
        "2 concurrent requests per key"
        in next(r for r in responses if r.status_code == 429).json()["error"]["message"]
    )


async def test_a_client_leaving_frees_its_slot_for_the_other_worker(stack_factory):
    stack = stack_factory(WORKBENCH_MAX_CONCURRENT=2)
    a, b = stack.worker(1), stack.worker(2)
    async with (
        httpx.AsyncClient(headers=stack.headers, timeout=300) as leaving,
        httpx.AsyncClient(headers=stack.headers, timeout=300) as staying,
    ):
        first = await open_stream(leaving, a)
        second = await open_stream(staying, b)
        refused = await staying.post(b + "/v1/chat/completions", json=body())
        assert refused.status_code == 429
        await first.response.aclose()  # the client on worker 1 goes away mid-answer
        assert await admitted_within(staying, b, 10) < 10
        await second.response.aclose()
    assert (499, "client_disconnected") in stack.usage(at_least=2)


async def test_a_killed_worker_gives_its_slots_back_and_loses_nothing(stack_factory):
    stack = stack_factory(WORKBENCH_MAX_CONCURRENT=2)
    a, b = stack.worker(1), stack.worker(2)
    victim = stack.processes["api-1"]["pid"]
    async with httpx.AsyncClient(headers=stack.headers, timeout=300) as client:
        done = await client.post(a + "/v1/chat/completions", json=body())
        assert done.status_code == 200
        before = stack.usage(at_least=1)
        stream = await open_stream(client, a)
        second = await open_stream(client, b)
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):
            async for _ in stream.lines:
                pass
        # The other worker keeps serving, through nginx too; the dead one's slot is still
        # held (2 of 2) until its lease expires.
        assert (await client.post(b + "/v1/chat/completions", json=body())).status_code == 429
        killed_at = time.monotonic()
        waited = await admitted_within(client, stack.url, LEASE_SECONDS + 10)
        assert time.monotonic() - killed_at <= LEASE_SECONDS + 10, waited
        await second.response.aclose()
    assert stack.usage()[: len(before)] == before
    # The supervisor started the worker again on its port.
    deadline = time.monotonic() + 60
    while stack.processes["api-1"]["pid"] == victim and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert stack.processes["api-1"]["pid"] != victim
    assert stack.proc.alive()


@pytest.fixture
def own_redis(tmp_path):
    port = free_port()
    proc = start_redis(port, tmp_path / "redis", tmp_path / "redis.log")
    handle = {"port": port, "proc": proc}
    yield handle
    handle["proc"].kill()
    handle["proc"].wait()


async def test_without_redis_requests_get_503_and_their_rows(stack_factory, own_redis, tmp_path):
    stack = stack_factory(WORKBENCH_REDIS_URL=f"redis://127.0.0.1:{own_redis['port']}/0")
    async with httpx.AsyncClient(headers=stack.headers, timeout=60) as client:
        assert (
            await client.post(stack.url + "/v1/chat/completions", json=body())
        ).status_code == 200
        own_redis["proc"].kill()
        own_redis["proc"].wait()
        for base in (stack.worker(1), stack.worker(2)):
            response = await client.post(base + "/v1/chat/completions", json=body())
            assert_error(
                response,
                503,
                "service_unavailable",
                "service_unavailable",
                None,
                "Rate limits cannot be checked right now (the limits store is "
                "unreachable); retry later.",
            )
            metrics = (await client.get(base + "/metrics")).text
            assert "workbench_limits_store_up 0.0" in metrics
        # Back on its port, Redis is used again without a restart of anything.
        own_redis["proc"] = start_redis(
            own_redis["port"], tmp_path / "redis", tmp_path / "redis.log"
        )
        response = await client.post(stack.url + "/v1/chat/completions", json=body())
        assert response.status_code == 200, response.text
    assert [s for s, _ in stack.usage(at_least=4)] == [200, 503, 503, 200]


@pytest.mark.parametrize("workers", [2, 1])  # nginx terminates TLS; uvicorn does
def test_openai_sdk_over_https_with_the_tests_own_ca(stack_factory, tmp_path, workers):
    ca, cert, key = make_ca_and_cert(tmp_path)
    trust = ssl.create_default_context(cafile=str(ca))
    stack = stack_factory(
        workers=workers,
        scheme="https",
        verify=trust,
        WORKBENCH_TLS_CERT=cert,
        WORKBENCH_TLS_KEY=key,
    )
    client = openai.OpenAI(
        base_url=stack.url + "/v1",
        api_key=stack.key,
        http_client=openai.DefaultHttpxClient(verify=trust),
    )
    answer = client.chat.completions.create(model="qwen3", messages=HI, max_tokens=4)
    assert answer.choices[0].message.content
    chunks = list(
        client.chat.completions.create(model="qwen3", messages=HI, max_tokens=4, stream=True)
    )
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    # The UI is served over HTTPS too; plain HTTP gets no page there (nginx: a 400).
    assert httpx.get(stack.url + "/", verify=trust).status_code == 200
    try:
        plain = httpx.get(stack.url.replace("https", "http") + "/health").status_code
    except httpx.HTTPError:
        plain = None
    assert plain in (None, 400)
    # The UI process's own /v1 client trusts exactly the server's certificate (no CA needed).
    assert httpx.get(stack.url + "/health", verify=trust_only(cert)).status_code == 200
    # Without the CA the certificate is refused.
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.key, max_retries=0).models.list()


def test_the_ui_streams_through_the_proxy_and_says_when_limits_are_down(
    stack_factory, own_redis, tmp_path, page
):
    stack = stack_factory(WORKBENCH_REDIS_URL=f"redis://127.0.0.1:{own_redis['port']}/0")
    sign_in(page, stack.url, stack.key)
    new_conversation(page, max_tokens=64)
    send(page, "Tell me a short story about a lighthouse keeper.")
    answer = last_answer(page)
    # Unbuffered: the answer shows part-way (with its cursor) before it has ended.
    expect(answer).to_contain_text("▍", timeout=STREAM_TIMEOUT)
    partial = answer.inner_text().replace("▍", "").strip()
    assert partial
    wait_for_answer(page)
    final = answer_text(page)
    assert final.startswith(partial[:10]) and len(final) > len(partial), (partial, final)
    # Its conversation was written by the UI process while the workers wrote usage rows.
    assert [m["role"] for m in stored_messages(stack, open_conversation_id(page))] == [
        "user",
        "assistant",
    ]
    own_redis["proc"].kill()
    own_redis["proc"].wait()
    send(page, "And another one.")
    expect(last_answer(page).locator(".wb-error")).to_contain_text(
        "Rate limits cannot be checked right now", timeout=STREAM_TIMEOUT
    )
