"""The official `openai` client, unmodified, against the gateway in front of the real engine."""

import openai
import pytest

HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def client(app):
    with openai.OpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(app):
    async with openai.AsyncOpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as c:
        yield c


def test_sync_chat_completion(client):
    response = client.chat.completions.create(model="qwen3", messages=HI, max_tokens=4)
    assert response.object == "chat.completion"
    assert response.model == "qwen3"
    assert response.id.startswith("chatcmpl-")
    [choice] = response.choices
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.completion_tokens <= 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_reference_defaults_are_filled_and_the_raw_headers_carry_limits(client):
    raw = client.chat.completions.with_raw_response.create(model="qwen3", messages=HI, max_tokens=2)
    assert raw.headers["x-ratelimit-limit-requests"] == "60"
    assert raw.headers["X-RateLimit-Limit"] == "60"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 100_000
    assert raw.parse().usage.completion_tokens <= 2


async def test_async_chat_completion(aclient):
    response = await aclient.chat.completions.create(
        model="qwen3", messages=HI, max_tokens=3, temperature=0.0, user="alice"
    )
    assert response.choices[0].message.content
    assert response.usage.completion_tokens <= 3


def test_streaming_first_chunk_has_the_role_and_usage_only_when_asked(client):
    chunks = list(
        client.chat.completions.create(model="qwen3", messages=HI, max_tokens=5, stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.model == "qwen3" for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text

    chunks = list(
        client.chat.completions.create(
            model="qwen3",
            messages=HI,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens <= 5 and last.usage.prompt_tokens > 0


async def test_async_streaming(aclient):
    stream = await aclient.chat.completions.create(
        model="qwen3", messages=HI, max_tokens=5, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert "".join(pieces)


def test_legacy_completions_and_models(client):
    response = client.completions.create(model="qwen3", prompt="Once upon a time", max_tokens=4)
    assert response.object == "text_completion"
    assert response.choices[0].text
    assert response.usage.completion_tokens <= 4
    models = client.models.list()
    assert [m.id for m in models.data] == ["qwen3"]
    model = models.data[0]
    assert (model.object, model.owned_by) == ("model", "vllm")
    assert model.model_extra["root"] == "qwen3" and model.model_extra["parent"] is None
    assert model.model_extra["permission"] == []
    assert model.model_extra["max_model_len"] == 8192


def test_models_retrieve_finds_qwen3_and_refuses_other_names(client):
    model = client.models.retrieve("qwen3")
    assert (model.id, model.object, model.owned_by) == ("qwen3", "model", "vllm")
    assert model == client.models.list().data[0]
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o")
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


def test_max_tokens_is_fitted_into_what_the_context_leaves(make_app):
    small = make_app(WORKBENCH_MAX_CONTEXT=64)
    with openai.OpenAI(base_url=small.v1, api_key=small.api_key, max_retries=0) as client:
        assert client.models.list().data[0].model_extra["max_model_len"] == 64
        # ~45 prompt tokens (the template adds a system prompt) with the default max_tokens
        # (2048): fitted to what is left.
        prompt = [{"role": "user", "content": "one two three " * 3}]
        response = client.chat.completions.create(model="qwen3", messages=prompt)
        usage = response.usage
        assert usage.prompt_tokens < 64
        assert usage.prompt_tokens + usage.completion_tokens <= 64
        assert response.choices[0].finish_reason in ("stop", "length")
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="qwen3", messages=[{"role": "user", "content": "word " * 60}], max_tokens=1
            )
        assert refused.value.code == "context_length_exceeded"
        assert refused.value.body["message"] == (
            "Request exceeds maximum context length of 64 tokens"
        )


def test_sdk_exceptions_map_to_the_right_classes(app, client):
    with openai.OpenAI(base_url=app.v1, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as auth:
            bad.models.list()
    assert auth.value.status_code == 401
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad_request:
        client.chat.completions.create(model="qwen3", messages=HI, temperature=5)
    assert bad_request.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model="qwen3", messages=[{"role": "user", "content": "word " * 9000}]
        )
    assert too_long.value.code == "context_length_exceeded"


def test_rate_limit_error_from_the_sdk(make_app):
    limited = make_app(WORKBENCH_RPM=1)
    with openai.OpenAI(base_url=limited.v1, api_key=limited.api_key, max_retries=0) as client:
        client.chat.completions.create(model="qwen3", messages=HI, max_tokens=1)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="qwen3", messages=HI, max_tokens=1)
    assert refused.value.status_code == 429
    assert refused.value.code == "rate_limit_exceeded"
    assert int(refused.value.response.headers["Retry-After"]) >= 1
