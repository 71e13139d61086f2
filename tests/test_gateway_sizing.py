"""Prompt sizing without a local tokenizer: a count is asked of the engine only when it can
change the answer (real tokenizers for the bound; a real engine behind an app that counts
through its /tokenize)."""

from __future__ import annotations

import httpx
import pytest

from server.gateway.sizing import token_bound
from server.tokens import TokenCounter, qwen3_tokenizer_dir
from tests.helpers import APP_CONTEXT, assert_error, usage_rows, wait_until

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city, now.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
HOSTILE_TEXTS = [
    "",
    "a",
    "1",
    " ",
    "\n" * 500,
    " " * 999,
    "1234567890" * 200,
    "😀" * 300,
    "👩‍👩‍👧‍👦" * 50,
    "漢字かなカナ한국어" * 200,
    "ﷺ" * 100,
    "\u200b" * 400,
    '\\"\x01' * 300,
    "def f(x):\n\treturn x ** 2  # squared\n" * 60,
    "<|im_start|>system\n" * 80,
    bytes(range(32, 127)).decode() * 20,
    "".join(chr(c) for c in range(0x2500, 0x2600)) * 4,
]


@pytest.fixture(scope="module", params=["embedded", "qwen3"])
def counter(request, model_dir) -> TokenCounter:
    path = model_dir if request.param == "embedded" else qwen3_tokenizer_dir()
    return TokenCounter.from_dir(path)


@pytest.mark.parametrize("tools", [None, TOOLS])
@pytest.mark.parametrize("text", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
def test_the_bound_is_never_below_the_real_count(counter, text, tools):
    for messages in (
        [{"role": "user", "content": text}],
        [
            {"role": "system", "content": text},
            {"role": "user", "content": text},
            {"role": "assistant", "content": text},
            {"role": "user", "content": "?"},
        ],
        [{"role": "user", "content": [{"type": "text", "text": text}] * 3}],
    ):
        exact = counter.count_messages(messages, tools=tools)
        assert token_bound(messages, tools)[0] >= exact
    # A legacy prompt's bound (sizing.PromptCounter.texts): 2 a byte, plus 16.
    assert counter.count_text(text) <= 2 * len(text.encode()) + 16


@pytest.fixture
def remote(make_app):
    """An app that counts through the engine's /tokenize (no tokenizer files given)."""
    return make_app(WORKBENCH_TOKENIZER_PATH=None, WORKBENCH_TPM=1_000_000)


def _chat(app, **body) -> httpx.Response:
    return httpx.post(
        app.v1 + "/chat/completions",
        timeout=120,
        headers={"Authorization": f"Bearer {app.api_key}"},
        json={"model": "qwen3", "temperature": 0, **body},
    )


def test_a_small_prompt_is_served_and_settled_with_the_engines_own_count(remote):
    response = _chat(remote, messages=[{"role": "user", "content": "Say hi."}], max_tokens=2)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    rows = wait_until(lambda: usage_rows(remote, "/v1/chat/completions"))
    assert (rows[-1]["prompt_tokens"], rows[-1]["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    response = httpx.post(
        remote.v1 + "/completions",
        timeout=120,
        headers={"Authorization": f"Bearer {remote.api_key}"},
        json={"model": "qwen3", "prompt": "Say hi.", "max_tokens": 2},
    )
    assert response.status_code == 200, response.text
    rows = wait_until(lambda: usage_rows(remote, "/v1/completions"))
    assert rows[-1]["prompt_tokens"] == response.json()["usage"]["prompt_tokens"] > 0


def test_near_the_edge_the_count_is_exact_and_the_errors_are_the_same(remote, app):
    too_long = [{"role": "user", "content": "hello " * 9000}]
    for served in (remote, app):  # counted remotely, and by the local tokenizer
        response = httpx.post(
            served.v1 + "/completions",
            timeout=120,
            headers={"Authorization": f"Bearer {served.api_key}"},
            json={"model": "qwen3", "prompt": "hello " * 9000},
        )
        assert_error(
            response,
            400,
            "invalid_request_error",
            "context_length_exceeded",
            "prompt",
            f"Request exceeds maximum context length of {APP_CONTEXT} tokens",
        )
        assert_error(
            _chat(served, messages=too_long),
            400,
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
            f"Request exceeds maximum context length of {APP_CONTEXT} tokens",
        )
    # A small prompt asking for the whole context: max_tokens is lowered to what the exact
    # count leaves, so the reservation is exactly the context.
    response = _chat(
        remote,
        messages=[{"role": "user", "content": "Reply with one word."}],
        max_tokens=APP_CONTEXT,
        stop=["\n", "."],
    )
    assert response.status_code == 200, response.text
    assert int(response.headers["x-ratelimit-remaining-tokens"]) == 1_000_000 - APP_CONTEXT
