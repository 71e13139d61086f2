"""OpenAI's Responses API (`/v1/responses`) through the gateway: the official `openai` SDK,
unmodified, against the real engine; a stand-in engine only for a failure mid-stream."""

import httpx
import openai
import pytest

from server.gateway.responses import chat_messages, normalise
from server.tokens import qwen3_counter
from storage import Store
from storage.keys import create_key
from storage.responses import load_response
from tests.fault_upstream import FaultUpstream
from tests.helpers import assert_error, assert_rate_headers, usage_rows, wait_until

# What Codex sends (trimmed): instructions, developer messages before and inside the
# conversation, a function tool, store false and no max_output_tokens.
CODEX_INPUT = [
    {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": "<permissions>workspace-write</permissions>"}],
    },
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "<environment_context>/repo</environment_context>"}
        ],
    },
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hi."}]},
    {"type": "message", "role": "system", "content": "Answer in one word."},
]
CODEX_TOOLS = [
    {
        "type": "function",
        "name": "shell",
        "description": "Run a command",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "array", "items": {"type": "string"}}},
            "required": ["command"],
        },
    }
]


@pytest.fixture(scope="module")
def client(app):
    with openai.OpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as c:
        yield c


def _rows(app):
    return [r for r in usage_rows(app) if r["endpoint"] == "/v1/responses"]


def test_create_with_usage_headers_and_a_usage_row(make_app):
    app = make_app()
    with openai.OpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as client:
        raw = client.responses.with_raw_response.create(
            model="qwen3", input="Say hello.", max_output_tokens=6
        )
    response = raw.parse()
    assert response.object == "response" and response.output_text
    assert 0 < response.usage.output_tokens <= 6
    assert_rate_headers(raw.http_response)
    row = wait_until(lambda: _rows(app))[-1]
    assert (row["key_name"], row["model"], row["status_code"]) == ("admin", "qwen3", 200)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        response.usage.input_tokens,
        response.usage.output_tokens,
    )
    metrics = httpx.get(app.url + "/metrics", headers={"Authorization": f"Bearer {app.api_key}"})
    assert 'workbench_requests_total{endpoint="/v1/responses",status="200"} 1.0' in metrics.text
    assert (
        f'workbench_tokens_total{{endpoint="/v1/responses",kind="prompt"}} '
        f"{float(response.usage.input_tokens)}"
    ) in metrics.text


def test_stream_passes_events_through_and_a_row_has_ttft(make_app):
    app = make_app()
    with (
        openai.OpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as client,
        client.responses.stream(model="qwen3", input="Say hello.", max_output_tokens=8) as stream,
    ):
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert final.output_text and 0 < final.usage.output_tokens <= 8
    row = wait_until(lambda: _rows(app))[-1]
    assert row["status_code"] == 200 and row["error_code"] is None
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )
    assert 0 < row["ttft_ms"] <= row["latency_ms"]


def test_codex_shaped_request_is_normalised_and_served(client):
    response = client.responses.create(
        model="qwen3",
        instructions="You are Codex.",
        input=CODEX_INPUT,
        tools=CODEX_TOOLS,
        store=False,
        stream=False,
    )
    assert response.status in ("completed", "incomplete")
    # The developer message before the conversation joined the instructions; the reference's
    # 2,048 generated tokens applied as no max_output_tokens was sent.
    assert response.instructions == "You are Codex.\n\n<permissions>workspace-write</permissions>"
    assert response.max_output_tokens == 2048


def test_normalised_messages_are_all_rendered_by_qwens_template():
    # Qwen3's template silently drops a `developer` message: normalised, every text is in the
    # prompt (the one system message first, the late system message as a user turn).
    counter = qwen3_counter()
    body = normalise({"instructions": "You are Codex.", "input": CODEX_INPUT})
    assert [item["role"] for item in body["input"]] == ["user", "user", "user"]
    prompt = counter.render_messages(chat_messages(body))
    assert prompt.startswith("<|im_start|>system\nYou are Codex.\n\n<permissions>")
    for text in ("environment_context", "Say hi.", "Answer in one word."):
        assert text in prompt
    # As sent, the template loses it.
    assert "permissions" not in counter.render_messages(
        [
            {"role": "system", "content": "You are Codex."},
            {"role": "developer", "content": "<permissions>workspace-write</permissions>"},
            {"role": "user", "content": "Say hi."},
        ]
    )


def test_errors_in_the_sdk(client):
    with pytest.raises(openai.BadRequestError) as chained:
        client.responses.create(model="qwen3", input="Hi", previous_response_id="resp_123")
    assert chained.value.code == "invalid_value"
    assert chained.value.body["param"] == "previous_response_id"
    assert "resp_123" in chained.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="gpt-5-codex", input="Hi")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.responses.create(model="qwen3", input="word " * 9000)
    assert too_long.value.code == "context_length_exceeded"
    assert too_long.value.body["param"] == "input"
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="qwen3", input="Hi", max_output_tokens=0)
    assert bad.value.body["param"] == "max_output_tokens"


def test_rate_limit_error_from_the_sdk(make_app):
    limited = make_app(WORKBENCH_RPM=1)
    with openai.OpenAI(base_url=limited.v1, api_key=limited.api_key, max_retries=0) as client:
        client.responses.create(model="qwen3", input="Hi", max_output_tokens=1)
        with pytest.raises(openai.RateLimitError) as refused:
            client.responses.create(model="qwen3", input="Hi", max_output_tokens=1)
    assert refused.value.code == "rate_limit_exceeded"
    assert int(refused.value.response.headers["Retry-After"]) >= 1


def test_engine_dying_mid_stream_ends_with_the_responses_error_event(make_app):
    with FaultUpstream() as upstream:
        app = make_app(upstream=upstream.url("die"))
        with openai.OpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as client:
            events = list(client.responses.create(model="qwen3", input="Hi", stream=True))
        assert events[0].type == "response.created"
        assert [e.delta for e in events[1:-1]] == ["Hello", " there"]
        error = events[-1]
        assert isinstance(error, openai.types.responses.ResponseErrorEvent)
        assert (error.code, error.message, error.param, error.sequence_number) == (
            "engine_error",
            "The engine stopped in the middle of the response.",
            None,
            3,
        )
        row = wait_until(lambda: _rows(app))[-1]
        assert (row["status_code"], row["error_code"]) == (200, "engine_error")
        # A refusal before the stream starts is a plain JSON error, as on chat completions.
        response = httpx.post(
            app.v1 + "/responses",
            json={"model": "qwen3", "input": 5},
            headers={"Authorization": f"Bearer {app.api_key}"},
        )
        assert_error(response, 400, "invalid_request_error", "invalid_type", "input")


def test_client_leaving_a_stream_aborts_the_engine_request(make_app):
    with FaultUpstream() as upstream:
        app = make_app(upstream=upstream.url("hang"))
        body = {"model": "qwen3", "input": "Hi", "stream": True}
        with httpx.stream(
            "POST",
            app.v1 + "/responses",
            json=body,
            timeout=60,
            headers={"Authorization": f"Bearer {app.api_key}"},
        ) as response:
            assert b"event: response.created" in next(response.iter_raw())
        assert upstream.closed["hang"].wait(10)
        row = wait_until(lambda: [r for r in _rows(app) if r["status_code"] == 499])[-1]
        assert row["error_code"] == "client_disconnected"


def test_stored_responses_continue_by_previous_response_id(make_app):
    app = make_app()
    question = "Remember the word: tangerine."
    with openai.OpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as client:
        first = client.responses.create(model="qwen3", input=question, max_output_tokens=4)
        alone = client.responses.create(
            model="qwen3", input="Which word?", max_output_tokens=1, store=False
        )
        # Streamed, continuing the first: the engine gets the first turn's input and output.
        with client.responses.stream(
            model="qwen3", input="Which word?", max_output_tokens=4, previous_response_id=first.id
        ) as stream:
            second = stream.get_final_response()
        third = client.responses.create(
            model="qwen3", input="And again?", max_output_tokens=1, previous_response_id=second.id
        )
        with pytest.raises(openai.BadRequestError) as unstored:
            client.responses.create(model="qwen3", input="Hi", previous_response_id=alone.id)
    assert unstored.value.code == "invalid_value"
    # The question (7 tokens) and the first answer came before the same last turn.
    assert second.usage.input_tokens >= (alone.usage.input_tokens + 7 + first.usage.output_tokens)
    assert third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens
    with Store(app.data_dir / "workbench.db") as store:
        kept = load_response(store.db, "admin", second.id)
    assert kept["input"][0]["content"] == question
    assert kept["input"][-1]["content"] == "Which word?"
    assert kept["output"][0]["content"][0]["text"] == second.output_text
    # Another key cannot continue it.
    with Store(app.data_dir / "workbench.db") as store:
        other = create_key(store.db, "bob")
    with (
        openai.OpenAI(base_url=app.v1, api_key=other, max_retries=0) as bob,
        pytest.raises(openai.BadRequestError),
    ):
        bob.responses.create(model="qwen3", input="Hi", previous_response_id=first.id)
