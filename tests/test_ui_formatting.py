"""What the UI writes for people: stats lines, errors, gauge, headroom (no browser needed)."""

from __future__ import annotations

import httpx2
import openai
import pytest

from server.workbench.answer import api_params, describe_error
from ui import formatting

REQUEST = httpx2.Request("POST", "http://127.0.0.1:8000/v1/chat/completions")


def status_error(cls, status: int, error: dict, headers: dict | None = None):
    response = httpx2.Response(status, headers=headers or {}, request=REQUEST)
    return cls(error["message"], response=response, body=error)


def test_stats_line_lists_the_measured_numbers_in_reading_order():
    answer = {
        "status": "complete",
        "ttft_ms": 1234.4,
        "decode_tps": 22.96,
        "prompt_tokens": 1500,
        "cached_tokens": 1024,
        "completion_tokens": 64,
        "total_ms": 4000.0,
        "finish_reason": "stop",
    }
    assert formatting.stats_items(answer) == [
        "TTFT 1,234 ms",
        "decode 23.0 tok/s",
        "prompt 1,500",
        "cached 1,024",
        "completion 64",
        "total 4,000 ms",
        "finish stop",
    ]
    assert formatting.stats_items({"status": "stopped", "completion_tokens": 3}) == [
        "completion 3",
        "stopped by you",
    ]
    assert formatting.stats_items({"status": "error"}) == ["failed"]
    # Behind vllm-router: which replica answered, last.
    assert formatting.stats_items({**answer, "replica": "http://gpu2:8001"})[-2:] == [
        "finish stop",
        "replica gpu2:8001",
    ]


def test_a_stopped_answer_closes_its_code_block_before_the_stats():
    shown = formatting.answer_markdown(
        {
            "status": "stopped",
            "content": "Here:\n```python\ndef f():\n    return",
            "completion_tokens": 9,
        }
    )
    body, stats = shown.split('<div class="wb-stats">')
    assert body == "Here:\n```python\ndef f():\n    return\n```\n\n\n"
    assert "stopped by you" in stats


def test_an_error_is_escaped_text_never_markup():
    shown = formatting.answer_markdown(
        {"status": "error", "content": "", "error": "<b>bad</b> & worse"}
    )
    assert '<div class="wb-error">⚠ &lt;b&gt;bad&lt;/b&gt; &amp; worse</div>' in shown


def test_chat_messages_keep_code_indentation_and_tabs():
    stored = [
        {"id": 1, "role": "user", "content": "    indented\n\ttabbed", "status": "complete"},
        {"id": 2, "role": "assistant", "content": "ok", "status": "complete"},
    ]
    shown = formatting.chat_messages(stored)
    assert shown[0] == {
        "role": "user",
        "content": {"type": "text", "text": "    indented\n\ttabbed"},
    }
    assert shown[1]["content"]["text"].startswith("ok")
    assert formatting.shown_message_ids(stored) == [1, 2]


@pytest.mark.parametrize(
    "used,reserve,level", [(100, 0, "ok"), (7000, 0, "high"), (7000, 2048, "over")]
)
def test_gauge_warns_when_prompt_and_answer_do_not_fit(used, reserve, level):
    html = formatting.gauge_html(used, 8192, reserve=reserve)
    assert f"wb-gauge-{level}" in html
    assert f"Context {used:,} / 8,192 tokens" in html


def test_headroom_reads_both_header_spellings():
    html = formatting.headroom_html(
        {
            "x-ratelimit-remaining-requests": "57",
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-reset-requests": "12s",
            "x-ratelimit-remaining-tokens": "99000",
            "x-ratelimit-limit-tokens": "100000",
        }
    )
    assert "Requests: 57 of 60 left, resets in 12s" in html
    assert "Tokens: 99,000 of 100,000 left" in html
    assert "Requests: 3 of 5 left" in formatting.headroom_html(
        {"X-RateLimit-Remaining": "3", "X-RateLimit-Limit": "5"}
    )
    assert "retry after 30 s" in formatting.headroom_html({"Retry-After": "30"})
    assert "send a message" in formatting.headroom_html(None)


def test_search_results_show_where_the_words_were_found():
    hits = [
        {
            "conversation_id": 4,
            "title": "Walruses",
            "snippet": "the **walrus** sleeps",
            "updated_at": 1.0,
        }
    ]
    assert formatting.search_choices(hits) == [("Walruses — the walrus sleeps", 4)]
    assert formatting.conversation_choices([{"id": 2, "title": None}]) == [
        ("Untitled conversation", 2)
    ]


def test_api_params_send_no_empty_stop_list():
    params = {
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 16,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop": [],
    }
    assert "stop" not in api_params(params)
    assert api_params({**params, "stop": ["END"]})["stop"] == ["END"]


def test_errors_from_v1_read_as_sentences():
    limited = status_error(
        openai.RateLimitError,
        429,
        {
            "message": "Rate limit exceeded: 2 requests per minute per key.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        },
        {"retry-after": "42"},
    )
    assert describe_error(limited) == (
        "Rate limit reached (Rate limit exceeded: 2 requests per minute per key). "
        "Try again in 42 s."
    )
    too_long = status_error(
        openai.BadRequestError,
        400,
        {
            "message": "Request exceeds maximum context length of 8192 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    )
    assert describe_error(too_long).startswith(
        "Too long for the model's context: Request exceeds maximum context length of 8192 tokens."
    )
    down = status_error(
        openai.InternalServerError,
        503,
        {
            "message": "The engine is not available; retry later.",
            "type": "service_unavailable",
            "param": None,
            "code": "service_unavailable",
        },
    )
    assert describe_error(down) == (
        "The model engine is not available right now (503): "
        "The engine is not available; retry later."
    )
    bad_key = status_error(
        openai.AuthenticationError,
        401,
        {
            "message": "Incorrect API key provided",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        },
    )
    assert "Sign out and sign in with a valid key" in describe_error(bad_key)
    unreachable = openai.APIConnectionError(request=REQUEST)
    assert describe_error(unreachable).startswith("Could not reach the workbench API at 127.0.0.1")
    mid_stream = openai.APIError(
        "The engine stopped in the middle of the answer.",
        REQUEST,
        body={"message": "The engine stopped in the middle of the answer."},
    )
    assert describe_error(mid_stream) == (
        "The engine stopped with an error: The engine stopped in the middle of the answer."
    )
    assert describe_error(ValueError("odd")) == "Unexpected error (ValueError): odd"


# Glyphs beyond ASCII that button labels may use: DejaVu Sans has them, and Debian's Chromium
# comes with it. Fullwidth forms and emoji need fonts a server's browser often lacks (an empty
# box is drawn instead).
LABEL_GLYPHS = set("⇩")


def test_button_labels_need_no_extra_fonts():
    import ast

    from tests.harness import REPO

    labels = []
    for path in sorted((REPO / "ui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr.endswith("Button")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                labels.append((path.name, node.args[0].value))
    assert ("sidebar.py", "+ New conversation") in labels
    odd = [
        (name, label)
        for name, label in labels
        if any(not ch.isascii() and ch not in LABEL_GLYPHS for ch in label)
    ]
    assert not odd, odd
