"""Prompt sizing: token counts of a request, and the max_tokens the context leaves.

Decision (documented in the README's API section): when prompt + max_tokens is over the
enforced context but the prompt itself fits, max_tokens is lowered to what is left (the
answer then ends with finish_reason "length" at the context's edge); when the prompt alone
does not fit, the request is refused with 400 `context_length_exceeded`.

With the tokenizer on this host every prompt is counted exactly. Without it (the `external`
profile's default) a count is a round trip to the engine's `/tokenize`, which was a fifth of
the gateway's cost per request; so it is asked only when the answer could depend on it. A
prompt's JSON text bounds its tokens (see `token_bound`): while that bound plus max_tokens fits
the context, neither the refusal nor the lowering can happen, and the limits reserve an
estimate that the answer's real usage settles.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import jinja2
import orjson

from server.counter import Counter
from server.gateway import errors
from server.gateway.upstream import upstream_message
from server.remote_tokens import TOKENIZE_ERRORS, TokenizeRefused

# Above this many characters a local count runs in a worker thread (tiktoken releases the
# GIL), so one huge document does not stall every other request on the event loop.
INLINE_COUNT_CHARS = 50_000
# What a chat template may add beyond the messages' own text: ChatML's markers are ≈5 tokens a
# message, Qwen3's tool preamble ≈250 tokens, default system prompts ≈30.
TEMPLATE_TOKENS = 1024
# English and code run ≈4 bytes of JSON a token; the reservation needs no more than a guess.
BYTES_PER_TOKEN = 4


def token_bound(messages: list[dict[str, Any]], tools: list | None) -> tuple[int, int]:
    """(at most, about) how many tokens these messages and tools make once templated.

    A byte-level BPE token spans at least one byte of text, and a JSON text has at least the
    bytes of the strings in it; 2× covers tokenizers that add a word-start piece before a byte
    (SentencePiece's "▁") and templates that print JSON with spaces."""
    size = len(orjson.dumps(messages)) + (len(orjson.dumps(tools)) if tools else 0)
    return 2 * size + TEMPLATE_TOKENS, size // BYTES_PER_TOKEN + 8 * len(messages)


def _chars(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return total


class PromptCounter:
    """Counts prompts with the served model's tokenizer (local) or the engine's /tokenize."""

    def __init__(self, counter: Counter):
        self.counter = counter
        self.local = counter.local

    async def messages(self, messages: list[dict[str, Any]], tools: list | None = None) -> int:
        """Exact prompt size of a chat request, chat template and generation prompt included."""
        kwargs = {"tools": tools} if tools else {}
        try:
            if self.local and _chars(messages) > INLINE_COUNT_CHARS:
                return await anyio.to_thread.run_sync(
                    lambda: self.counter.count_messages(messages, **kwargs)
                )
            return await self.counter.acount_messages(messages, **kwargs)
        except jinja2.TemplateError as exc:
            # The model's chat template refused these messages; vLLM would refuse them too.
            raise errors.invalid_request(f"Invalid messages: {exc}", "messages") from None
        except TOKENIZE_ERRORS as exc:
            raise _remote_error(exc, "messages") from None

    async def fit(
        self,
        messages: list[dict[str, Any]],
        tools: list | None,
        requested: int | None,
        default: int,
        max_context: int,
        param: str,
    ) -> tuple[int, int]:
        """(prompt tokens, max_tokens to send) of a chat-shaped request, or 400
        `context_length_exceeded`; the prompt tokens are exact unless counting is remote and
        the prompt is far enough from the context's edge for a count to change nothing."""
        wanted = requested or default
        if not self.local:
            bound, estimate = token_bound(messages, tools)
            if bound + wanted <= max_context:
                return estimate, wanted
        prompt_tokens = await self.messages(messages, tools)
        return prompt_tokens, max_tokens_for(requested, default, prompt_tokens, max_context, param)

    async def texts(self, texts: list[str], wanted: int, max_context: int) -> list[int]:
        """Token counts of legacy-completion prompts (no chat framing), each to be followed by
        up to `wanted` tokens; estimates when counting is remote and each prompt's bound leaves
        that room (the count could then change nothing, as in `fit`)."""
        if not self.local:
            sizes = [len(text.encode()) for text in texts]
            # A text's tokens: at most 2 a byte (see token_bound), plus BOS/EOS-like specials.
            if all(2 * size + 16 + wanted <= max_context for size in sizes):
                return [size // BYTES_PER_TOKEN + 1 for size in sizes]
        try:
            if self.local and sum(map(len, texts)) > INLINE_COUNT_CHARS:
                return await anyio.to_thread.run_sync(lambda: self.counter.count_texts(texts))
            return [await self.counter.acount_text(t) for t in texts]
        except TOKENIZE_ERRORS as exc:
            raise _remote_error(exc, "prompt") from None


def _remote_error(exc: Exception, param: str) -> errors.ApiError:
    """A failed /tokenize call: the engine refused the input (400) or is not there (503)."""
    if isinstance(exc, TokenizeRefused) and exc.status < 500:
        message, _ = upstream_message(exc.content)
        return errors.invalid_request(message, param)
    return errors.service_unavailable()


def completion_prompts(prompt: Any) -> tuple[list[str], list[int]]:
    """Split a legacy prompt into texts to count and already-known token counts."""
    if isinstance(prompt, str):
        return [prompt], []
    if prompt and all(isinstance(p, int) for p in prompt):
        return [], [len(prompt)]
    if all(isinstance(p, str) for p in prompt):
        return list(prompt), []
    return [], [len(p) for p in prompt]


def max_tokens_for(
    requested: int | None, default: int, prompt_tokens: int, max_context: int, param: str
) -> int:
    """The max_tokens to send: the request's (or the default), capped by what the context
    leaves; 400 `context_length_exceeded` if the prompt leaves no room at all."""
    room = max_context - prompt_tokens
    if room < 1:
        raise errors.context_length_exceeded(max_context, param)
    return min(requested or default, room)
