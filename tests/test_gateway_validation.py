"""Request bodies the gateway refuses before the engine sees them: 400s naming the parameter,
with exact bodies (against the real engine)."""

import pytest

from tests.helpers import assert_error, assert_rate_headers

HI = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{not json", "(unexpected character"),
        (b"", "(the body is empty)"),
        (b"[1, 2]", "(found an array)"),
        (b'"text"', "(found a string)"),
        (b"null", "(found null)"),
        (b'{"model": "qwen3", "temperature": NaN}', "(unexpected character"),
        (b'{"model": "q\xffwen3"}', "not valid UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "(depth limit exceeded"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_invalid_json(v1_http, content, reason):
    response = v1_http.post(
        "/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_request_error", "invalid_json")
    assert reason in response.json()["error"]["message"]
    assert_rate_headers(response)


@pytest.mark.parametrize(
    "body,param,code,message",
    [
        (
            {"messages": HI},
            "model",
            "missing_required_parameter",
            "Missing required parameter: 'model'.",
        ),
        (
            {"model": "qwen3"},
            "messages",
            "missing_required_parameter",
            "Missing required parameter: 'messages'.",
        ),
        ({"model": "qwen3", "messages": []}, "messages", "invalid_value", None),
        (
            {"model": "qwen3", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "invalid_type",
            None,
        ),
        (
            {"model": "qwen3", "messages": HI, "max_tokens": "10"},
            "max_tokens",
            "invalid_type",
            None,
        ),
        ({"model": "qwen3", "messages": HI, "max_tokens": 0}, "max_tokens", "invalid_value", None),
        (
            {"model": "qwen3", "messages": HI, "temperature": 2.5},
            "temperature",
            "invalid_value",
            "Invalid value for 'temperature': Input should be less than or equal to 2.",
        ),
        (
            {"model": "qwen3", "messages": HI, "temperature": -0.1},
            "temperature",
            "invalid_value",
            None,
        ),
        ({"model": "qwen3", "messages": HI, "top_p": 0}, "top_p", "invalid_value", None),
        ({"model": "qwen3", "messages": HI, "n": 0}, "n", "invalid_value", None),
        (
            {"model": "qwen3", "messages": HI, "presence_penalty": -2.5},
            "presence_penalty",
            "invalid_value",
            None,
        ),
        (
            {"model": "qwen3", "messages": HI, "frequency_penalty": 3},
            "frequency_penalty",
            "invalid_value",
            None,
        ),
        ({"model": "qwen3", "messages": HI, "stream": "yes"}, "stream", "invalid_type", None),
        ({"model": "qwen3", "messages": HI, "stop": 7}, "stop", "invalid_type", None),
        ({"model": "qwen3", "messages": HI, "user": 42}, "user", "invalid_type", None),
        (
            {"model": "qwen3", "messages": HI, "stop": ["a", "b", "c", "d", "e"]},
            "stop",
            "invalid_value",
            "Invalid value for 'stop': List should have at most 4 items after validation, not 5.",
        ),
        (
            {"model": "qwen3", "messages": [*HI, {"role": "user"}]},
            "messages[1].content",
            "missing_required_parameter",
            "Missing required parameter: 'messages[1].content'.",
        ),
        (
            {"model": "qwen3", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content",
            "invalid_value",
            "Invalid value for 'messages[0].content': part 0 has type 'video'; the types are "
            "text, image_url, input_audio, file, refusal.",
        ),
        (
            {"model": "qwen3", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content",
            "invalid_value",
            "Invalid value for 'messages[0].content': text part 0 has no string 'text'.",
        ),
    ],
)
def test_invalid_parameters_are_400_naming_the_param(v1_http, body, param, code, message):
    response = v1_http.post("/chat/completions", json=body)
    assert_error(response, 400, "invalid_request_error", code, param, message)
    assert_rate_headers(response)


def test_legacy_completions_validate_the_prompt(v1_http):
    response = v1_http.post("/completions", json={"model": "qwen3", "prompt": 3})
    assert_error(response, 400, "invalid_request_error", "invalid_type", "prompt")
