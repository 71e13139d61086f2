"""One Counter protocol: the local and the remote counter have the same methods, with the same
arguments, so nothing that counts needs to know which one it holds."""

import asyncio
import inspect

import pytest

from server.counter import Counter
from server.remote_tokens import RemoteTokenCounter
from server.tokens import TokenCounter

MEMBERS = sorted(name for name in vars(Counter) if not name.startswith("_"))


def test_the_protocol_names_what_counting_needs():
    assert {
        "count_text",
        "count_texts",
        "count_messages",
        "acount_text",
        "acount_messages",
        "aclose",
    } <= set(MEMBERS)
    assert set(Counter.__annotations__) >= {"name", "local"}


@pytest.mark.parametrize("name", MEMBERS)
@pytest.mark.parametrize("cls", [TokenCounter, RemoteTokenCounter])
def test_both_counters_implement_each_method_with_the_protocols_arguments(cls, name):
    expected = inspect.signature(getattr(Counter, name))
    assert inspect.signature(getattr(cls, name)).parameters.keys() == expected.parameters.keys()
    for param, spec in expected.parameters.items():
        actual = inspect.signature(getattr(cls, name)).parameters[param]
        assert (actual.kind, actual.default) == (spec.kind, spec.default), (cls, name, param)
    assert inspect.iscoroutinefunction(getattr(cls, name)) == inspect.iscoroutinefunction(
        getattr(Counter, name)
    )


def test_local_says_where_the_counting_happens():
    assert TokenCounter.local is True and RemoteTokenCounter.local is False
    remote = RemoteTokenCounter("http://127.0.0.1:9", model="qwen3")
    assert isinstance(remote, Counter)
    asyncio.run(remote.aclose())
