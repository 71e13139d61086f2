"""Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) through the gateway:
the official `anthropic` SDK, unmodified, against the real engine; a stand-in engine only for a
failure mid-stream."""

import anthropic
import httpx
import pytest

from server.gateway.messages import CountTokensRequest, chat_messages
from tests.fault_upstream import FaultUpstream
from tests.helpers import (
    APP_CONTEXT,
    assert_anthropic_error,
    assert_rate_headers,
    usage_rows,
    wait_until,
)

HI = [{"role": "user", "content": "Say hello."}]
ANTHROPIC_HEADERS = tuple(
    f"anthropic-ratelimit-{kind}-{field}"
    for kind in ("requests", "tokens")
    for field in ("limit", "remaining", "reset")
)


@pytest.fixture(scope="module")
def client(app):
    # api_key= sends `x-api-key`, as Claude Code does with ANTHROPIC_API_KEY.
    with anthropic.Anthropic(base_url=app.url, api_key=app.api_key, max_retries=0) as c:
        yield c


def _rows(app, endpoint):
    return [r for r in usage_rows(app) if r["endpoint"] == endpoint]


def test_create_with_usage_headers_and_a_usage_row(make_app):
    app = make_app()
    with anthropic.Anthropic(base_url=app.url, api_key=app.api_key, max_retries=0) as client:
        raw = client.messages.with_raw_response.create(
            model="qwen3", max_tokens=6, messages=HI, system="Answer briefly."
        )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 6
    assert_rate_headers(raw.http_response)
    for header in ANTHROPIC_HEADERS:
        assert header in raw.headers, header
    assert (
        raw.headers["anthropic-ratelimit-requests-remaining"]
        == raw.headers["x-ratelimit-remaining-requests"]
    )
    row = wait_until(lambda: _rows(app, "/v1/messages"))[-1]
    assert (row["key_name"], row["model"], row["status_code"]) == ("admin", "qwen3", 200)
    usage = message.usage
    prompt = (
        usage.input_tokens
        + (usage.cache_read_input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
    )
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, usage.output_tokens)
    metrics = httpx.get(app.url + "/metrics", headers={"x-api-key": app.api_key}).text
    assert 'workbench_requests_total{endpoint="/v1/messages",status="200"} 1.0' in metrics
    assert (
        f'workbench_tokens_total{{endpoint="/v1/messages",kind="completion"}} '
        f"{float(usage.output_tokens)}"
    ) in metrics


def test_stream_helpers_assemble_the_message_and_a_row_has_ttft(make_app):
    app = make_app()
    with (
        anthropic.Anthropic(base_url=app.url, api_key=app.api_key, max_retries=0) as client,
        client.messages.stream(model="qwen3", max_tokens=8, messages=HI) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert 0 < final.usage.output_tokens <= 8
    row = wait_until(lambda: _rows(app, "/v1/messages"))[-1]
    assert row["status_code"] == 200 and row["error_code"] is None
    assert row["completion_tokens"] == final.usage.output_tokens
    assert 0 < row["ttft_ms"] <= row["latency_ms"]


def test_count_tokens_is_the_prompt_that_create_reports(client):
    counted = client.messages.count_tokens(model="qwen3", messages=HI, system="Be brief.")
    message = client.messages.create(model="qwen3", max_tokens=1, messages=HI, system="Be brief.")
    usage = message.usage
    assert counted.input_tokens == usage.input_tokens + (usage.cache_read_input_tokens or 0) + (
        usage.cache_creation_input_tokens or 0
    )


def test_an_inline_system_turn_is_served_and_counted(client):
    """Claude Code sends per-turn reminders as `role: "system"` turns inside `messages`."""
    turns = [
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": "Hello."},
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Again."},
    ]
    message = client.messages.create(
        model="qwen3", max_tokens=4, messages=turns, system="Be brief."
    )
    assert message.type == "message" and message.usage.output_tokens > 0
    counted = client.messages.count_tokens(model="qwen3", messages=turns, system="Be brief.")
    usage = message.usage
    assert counted.input_tokens == usage.input_tokens + (usage.cache_read_input_tokens or 0) + (
        usage.cache_creation_input_tokens or 0
    )


def test_inline_system_turns_are_counted_with_the_leading_system_prompt():
    request = CountTokensRequest.model_validate(
        {
            "model": "qwen3",
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": [{"type": "text", "text": "Reminder."}]},
                {"role": "user", "content": "Again"},
            ],
        }
    )
    assert chat_messages(request) == [
        {"role": "system", "content": "Be brief.\n\nReminder."},
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Again"},
    ]


def test_beta_path_and_anthropic_headers_are_accepted(client):
    # The beta namespace sends `?beta=true` and `anthropic-beta`, as Claude Code does.
    message = client.beta.messages.create(
        model="qwen3", max_tokens=2, messages=HI, betas=["interleaved-thinking-2025-05-14"]
    )
    assert message.content


def test_bearer_key_or_both_headers(app):
    # auth_token= sends `Authorization: Bearer` (Claude Code's ANTHROPIC_AUTH_TOKEN).
    with anthropic.Anthropic(base_url=app.url, auth_token=app.api_key, max_retries=0) as bearer:
        assert bearer.messages.count_tokens(model="qwen3", messages=HI).input_tokens > 0
    # Both headers, one of them stale (either one): the valid one is used.
    with anthropic.Anthropic(
        base_url=app.url,
        auth_token=app.api_key,
        max_retries=0,
        default_headers={"x-api-key": "stale"},
    ) as both:
        assert both.messages.count_tokens(model="qwen3", messages=HI).input_tokens > 0
    both = httpx.post(
        app.v1 + "/messages/count_tokens",
        json={"model": "qwen3", "messages": HI},
        headers={"x-api-key": app.api_key, "Authorization": "Bearer stale"},
    )
    assert both.status_code == 200 and both.json()["input_tokens"] > 0
    models = httpx.get(app.v1 + "/models", headers={"x-api-key": app.api_key})
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "qwen3"


def test_sdk_exceptions_on_our_errors(app, client):
    with (
        anthropic.Anthropic(base_url=app.url, api_key="wrong", max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError) as auth,
    ):
        bad.messages.create(model="qwen3", max_tokens=1, messages=HI)
    assert auth.value.status_code == 401
    assert assert_anthropic_error(auth.value.body, "authentication_error") == (
        "Incorrect API key provided"
    )
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=1, messages=HI)
    assert "'qwen3'" in assert_anthropic_error(missing.value.body, "not_found_error")
    with pytest.raises(anthropic.BadRequestError) as bad_request:
        client.messages.create(model="qwen3", max_tokens=0, messages=HI)
    assert "max_tokens" in assert_anthropic_error(bad_request.value.body, "invalid_request_error")
    with pytest.raises(anthropic.BadRequestError) as image_system:
        client.messages.create(
            model="qwen3",
            max_tokens=1,
            messages=HI,
            system=[{"type": "image"}],
        )
    assert assert_anthropic_error(image_system.value.body, "invalid_request_error") == (
        "Invalid value for 'system': block 0 is not a text block."
    )
    with pytest.raises(anthropic.BadRequestError) as too_long:
        client.messages.create(
            model="qwen3", max_tokens=1, messages=[{"role": "user", "content": "word " * 9000}]
        )
    assert assert_anthropic_error(too_long.value.body, "invalid_request_error") == (
        f"Request exceeds maximum context length of {APP_CONTEXT} tokens"
    )
    # Refusals are usage rows too (a request without a valid key has no key to bill).
    codes = wait_until(
        lambda: (
            {"model_not_found", "invalid_value", "context_length_exceeded"}
            <= {r["error_code"] for r in _rows(app, "/v1/messages")}
        )
    )
    assert codes


def test_the_engines_own_context_check_is_mapped_to_ours(app, client):
    # count_tokens is counted by the engine alone: its refusal of a prompt over its own context
    # (in its Anthropic shape, type "BadRequestError") reaches the client as ours, naming the
    # limit the gateway enforces.
    with pytest.raises(anthropic.BadRequestError) as too_long:
        client.messages.count_tokens(
            model="qwen3", messages=[{"role": "user", "content": "word " * 40_000}]
        )
    assert assert_anthropic_error(too_long.value.body, "invalid_request_error") == (
        f"Request exceeds maximum context length of {APP_CONTEXT} tokens"
    )
    row = wait_until(
        lambda: [r for r in _rows(app, "/v1/messages/count_tokens") if r["status_code"] == 400]
    )[-1]
    assert row["error_code"] == "context_length_exceeded"


def test_rate_limit_error_with_retry_after_and_anthropic_headers(make_app):
    limited = make_app(WORKBENCH_RPM=1)
    with anthropic.Anthropic(
        base_url=limited.url, api_key=limited.api_key, max_retries=0
    ) as client:
        client.messages.create(model="qwen3", max_tokens=1, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(model="qwen3", max_tokens=1, messages=HI)
    assert refused.value.status_code == 429
    assert_anthropic_error(refused.value.body, "rate_limit_error")
    headers = refused.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert_rate_headers(refused.value.response)


def test_engine_dying_mid_stream_ends_with_an_anthropic_error_event(make_app):
    with FaultUpstream() as upstream:
        app = make_app(upstream=upstream.url("die"))
        body = {"model": "qwen3", "max_tokens": 16, "messages": HI, "stream": True}
        with httpx.stream(
            "POST", app.v1 + "/messages", json=body, timeout=60, headers={"x-api-key": app.api_key}
        ) as response:
            assert response.status_code == 200
            raw = response.read().decode()
        events = [e for e in raw.split("\n\n") if e]
        assert events[0].startswith("event: message_start")
        assert events[-1] == (
            'event: error\ndata: {"type":"error","error":{"type":"api_error",'
            '"message":"The engine stopped in the middle of the response."}}'
        )
        row = wait_until(lambda: _rows(app, "/v1/messages"))[-1]
        assert (row["status_code"], row["error_code"]) == (200, "engine_error")
        assert row["prompt_tokens"] == 7  # message_start's usage, as the stand-in reported it
        # The official client raises on the error event.
        with (
            anthropic.Anthropic(base_url=app.url, api_key=app.api_key, max_retries=0) as client,
            pytest.raises(anthropic.APIStatusError, match="stopped in the middle"),
            client.messages.stream(model="qwen3", max_tokens=16, messages=HI) as stream,
        ):
            for _ in stream:
                pass


def test_client_leaving_a_stream_aborts_the_engine_request(make_app):
    with FaultUpstream() as upstream:
        app = make_app(upstream=upstream.url("hang"))
        body = {"model": "qwen3", "max_tokens": 16, "messages": HI, "stream": True}
        with httpx.stream(
            "POST", app.v1 + "/messages", json=body, timeout=60, headers={"x-api-key": app.api_key}
        ) as response:
            assert b"event: message_start" in next(response.iter_raw())
        assert upstream.closed["hang"].wait(10)
        row = wait_until(
            lambda: [r for r in _rows(app, "/v1/messages") if r["status_code"] == 499]
        )[-1]
        assert row["error_code"] == "client_disconnected"
