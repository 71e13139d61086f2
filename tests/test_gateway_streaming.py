"""The streaming proxy: SSE framing, headers before the body, pass-through without buffering,
engine failure mid-stream, and a client that leaves aborting the engine's request."""

import json
import time

import httpx
import openai
import pytest

from tests.helpers import RATE_HEADERS, usage_rows, wait_until

HI = [{"role": "user", "content": "Count from one to twenty."}]
ENGINE_STOPPED = {
    "error": {
        "message": "The engine stopped in the middle of the response.",
        "type": "internal_server_error",
        "param": None,
        "code": "engine_error",
    }
}


def _stream(app, timeout=60, **body):
    payload = {"model": "qwen3", "messages": HI, "stream": True, **body}
    return httpx.stream(
        "POST",
        app.v1 + "/chat/completions",
        json=payload,
        timeout=timeout,
        headers={"Authorization": f"Bearer {app.api_key}"},
    )


def _events(response) -> list[tuple[float, str]]:
    """(arrival time, data) of every SSE event, checking the framing on the way."""
    events, buffer = [], b""
    for chunk in response.iter_raw():
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            assert event.startswith(b"data: "), event
            events.append((time.perf_counter(), event[6:].decode()))
    assert buffer == b""
    return events


def test_stream_framing_headers_and_done(app):
    with _stream(app, max_tokens=6) as response:
        # Headers arrive before any of the body has been read.
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for header in RATE_HEADERS:
            assert header in response.headers, header
        events = _events(response)
    data = [d for _, d in events]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)  # not asked for: the usage chunk is dropped
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_stream_usage_chunk_when_asked_and_a_usage_row_with_ttft(make_app):
    app = make_app()
    with _stream(app, max_tokens=4, stream_options={"include_usage": True}) as response:
        data = [d for _, d in _events(response)]
    usage_chunk = json.loads(data[-2])
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] <= 4
    row = wait_until(lambda: usage_rows(app), message="no usage row")[-1]
    assert (row["key_name"], row["endpoint"], row["model"], row["status_code"]) == (
        "admin",
        "/v1/chat/completions",
        "qwen3",
        200,
    )
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert 0 < row["ttft_ms"] <= row["latency_ms"]
    assert row["error_code"] is None


def test_chunks_are_passed_on_as_they_arrive(app):
    started = time.perf_counter()
    with _stream(app, max_tokens=24, temperature=0.0, ignore_eos=True) as response:
        events = _events(response)
    content = [t for t, d in events if d != "[DONE]"]
    assert len(content) >= 20
    # At ~20 tokens/s the answer takes over a second; a buffering proxy would deliver every
    # event in one burst at the end. Here they are spread over most of the stream's lifetime.
    total = events[-1][0] - started
    spread = content[-1] - content[0]
    assert spread > 0.5 * (total - (content[0] - started)), (spread, total)


def test_legacy_completions_stream(app):
    payload = {"model": "qwen3", "prompt": "Once upon a time", "max_tokens": 4, "stream": True}
    with httpx.stream(
        "POST",
        app.v1 + "/completions",
        json=payload,
        timeout=60,
        headers={"Authorization": f"Bearer {app.api_key}"},
    ) as response:
        assert "x-ratelimit-remaining-requests" in response.headers
        data = [d for _, d in _events(response)]
    assert data[-1] == "[DONE]"
    assert all(json.loads(d)["object"] == "text_completion" for d in data[:-1])


def test_engine_dying_mid_stream_is_an_error_event_then_done(make_app, fault_upstream):
    app = make_app(upstream=fault_upstream.url("die"))
    with _stream(app) as response:
        assert response.status_code == 200
        data = [d for _, d in _events(response)]
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2]) == ENGINE_STOPPED
    contents = [json.loads(d)["choices"][0]["delta"].get("content") for d in data[1:-2]]
    assert contents == ["Hello", " there"]
    row = wait_until(lambda: usage_rows(app), message="no usage row")[-1]
    assert (row["status_code"], row["error_code"]) == (200, "engine_error")
    assert row["completion_tokens"] == 3  # estimated: one per relayed event
    # The official client turns the error event into an exception.
    with openai.OpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as client:
        stream = client.chat.completions.create(model="qwen3", messages=HI, stream=True)
        with pytest.raises(openai.APIError, match="stopped in the middle"):
            for _ in stream:
                pass


def test_client_leaving_a_stream_aborts_the_engine_request(make_app, fault_upstream):
    app = make_app(upstream=fault_upstream.url("hang"), WORKBENCH_MAX_CONCURRENT=1)
    fault_upstream.reset()
    with _stream(app) as response:
        first = next(response.iter_raw())
        assert b'"role": "assistant"' in first
    # The gateway noticed the client left and closed its connection to the engine.
    assert fault_upstream.closed["hang"].wait(10)
    row = wait_until(
        lambda: [r for r in usage_rows(app) if r["status_code"] == 499], message="no 499 row"
    )[-1]
    assert row["error_code"] == "client_disconnected"
    # ... and gave the key its concurrency slot back.
    fault_upstream.reset()
    with _stream(app) as response:
        assert response.status_code == 200
    assert fault_upstream.closed["hang"].wait(10)


def test_client_leaving_a_complete_request_aborts_the_engine_request(make_app, fault_upstream):
    app = make_app(upstream=fault_upstream.url("hang"))
    fault_upstream.reset()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            app.v1 + "/chat/completions",
            timeout=2,
            headers={"Authorization": f"Bearer {app.api_key}"},
            json={"model": "qwen3", "messages": HI},
        )
    assert fault_upstream.closed["hang"].wait(10)
    row = wait_until(
        lambda: [r for r in usage_rows(app) if r["status_code"] == 499], message="no 499 row"
    )[-1]
    assert row["error_code"] == "client_disconnected"


def test_a_client_closing_after_the_terminal_event_has_been_answered(make_app):
    # Codex closes its connection as soon as `response.completed` arrives.
    app = make_app()
    body = {"model": "qwen3", "input": "Say hello.", "max_output_tokens": 5, "stream": True}
    with httpx.stream(
        "POST",
        app.v1 + "/responses",
        json=body,
        timeout=120,
        headers={"Authorization": f"Bearer {app.api_key}"},
    ) as response:
        for line in response.iter_lines():
            if line == "event: response.completed":
                break
    [row] = wait_until(lambda: usage_rows(app, "/v1/responses"), message="no usage row")
    assert (row["status_code"], row["error_code"]) == (200, None)
    assert row["completion_tokens"] > 0
