"""Tool calls through /v1/chat/completions: the official `openai` client against the gateway in
front of the real engine (the `cpu` profile's hermes tool parser)."""

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from server.tokens import TokenCounter
from tests.helpers import assert_error, usage_rows, wait_until

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# Greedy decoding keeps the tiny model's constrained JSON short (at 0.7 it may pad it with
# whitespace until max_tokens).
GREEDY = {"temperature": 0.0, "max_tokens": 200}


class GetWeather(BaseModel):
    """The current weather of a city."""

    city: str


@pytest.fixture(scope="module")
def client(app):
    with openai.OpenAI(base_url=app.v1, api_key=app.api_key, max_retries=0) as c:
        yield c


def test_a_named_tool_choice_returns_a_call_of_that_tool_with_valid_arguments(client):
    response = client.chat.completions.create(
        model="qwen3",
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        **GREEDY,
    )
    [call] = response.choices[0].message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_time"
    assert isinstance(json.loads(call.function.arguments), dict)


def test_required_tool_choice_returns_valid_calls_and_finish_reason_tool_calls(client):
    response = client.chat.completions.create(
        model="qwen3",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        **GREEDY,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_streamed_tool_call_arguments_are_assembled_by_the_sdk_helper(client):
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    with client.chat.completions.stream(
        model="qwen3", messages=ASK, tools=[tool], tool_choice="required", **GREEDY
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    deltas = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    calls = final.choices[0].message.tool_calls
    assert done and len(done) == len(calls)
    assert len(deltas) > len(done)  # the arguments really arrived in pieces
    for event, call in zip(done, calls, strict=True):
        pieces = "".join(d.arguments_delta for d in deltas if d.index == event.index)
        assert pieces == event.arguments == call.function.arguments
        assert isinstance(event.parsed_arguments, GetWeather)
        assert call.function.parsed_arguments == event.parsed_arguments
    assert final.choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_answers_in_text(client):
    response = client.chat.completions.create(
        model="qwen3", messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=5
    )
    message = response.choices[0].message
    assert message.content and not message.tool_calls


def history(arguments):
    return [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 °C."},
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        '{"city": "Paris"}',  # OpenAI's shape: a JSON string
        {"city": "Paris"},  # a mapping, as some clients replay it (vLLM itself refuses it)
        '{"city": "Par',  # a call the model cut short: the history must still be answerable
    ],
)
def test_a_history_with_tool_calls_and_tool_results_is_answered(app, client, arguments):
    body = {"model": "qwen3", "messages": history(arguments), "tools": [WEATHER], "max_tokens": 5}
    response = httpx.post(
        app.v1 + "/chat/completions",
        json=body,
        timeout=120,
        headers={"Authorization": f"Bearer {app.api_key}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


def test_prompt_tokens_with_tools_and_tool_history_equal_the_engine_count(app, client, model_dir):
    # The gateway's count (what it checks the context and reserves the token budget with)
    # is the prompt the engine reports having seen, tools and tool history included.
    messages = history('{"city": "Paris"}')
    response = client.chat.completions.create(
        model="qwen3", messages=messages, tools=[WEATHER, TIME], max_tokens=1
    )
    gateway_count = TokenCounter.from_dir(model_dir).count_messages(messages, tools=[WEATHER, TIME])
    assert response.usage.prompt_tokens == gateway_count
    rows = wait_until(
        lambda: [
            r
            for r in usage_rows(app, "/v1/chat/completions")
            if r["prompt_tokens"] == gateway_count
            and r["completion_tokens"] == response.usage.completion_tokens
        ],
        message="no usage row with the gateway's count",
    )
    assert rows[-1]["status_code"] == 200


@pytest.mark.parametrize(
    "tools, tool_choice, param, code",
    [
        (
            [{"type": "function", "function": {"parameters": {"type": "object"}}}],
            None,
            "tools[0].function.name",
            "missing_required_parameter",
        ),
        (
            [{"type": "function", "function": {"name": "get weather"}}],
            None,
            "tools[0].function.name",
            "invalid_value",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": "city"}}],
            None,
            "tools[0].function.parameters",
            "invalid_type",
        ),
        ([{"function": {"name": "f"}}], None, "tools[0].type", "missing_required_parameter"),
        ([], None, "tools", "invalid_value"),
        (
            [WEATHER],
            {"type": "function", "function": {"name": "get_time"}},
            "tool_choice",
            "invalid_value",
        ),
        (None, "required", "tool_choice", "invalid_value"),
    ],
)
def test_a_malformed_tool_is_a_400_naming_the_field(app, client, tools, tool_choice, param, code):
    body = {"model": "qwen3", "messages": ASK, "tools": tools}
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    response = httpx.post(
        app.v1 + "/chat/completions",
        json=body,
        timeout=60,
        headers={"Authorization": f"Bearer {app.api_key}"},
    )
    assert_error(response, 400, "invalid_request_error", code, param)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**body)
    assert caught.value.param == param


def test_a_tool_result_without_its_call_id_is_a_400(client):
    messages = [*history('{"city": "Paris"}')[:2], {"role": "tool", "content": "Sunny."}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="qwen3", messages=messages, max_tokens=1)
    assert caught.value.param == "messages[2].tool_call_id"
