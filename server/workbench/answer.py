"""One answer through our own /v1: streamed, measured, saved while it streams, stored as it ended.

`ApiClient` calls /v1 with the signed-in key, via the openai SDK: the browser gets the same auth,
rate limits, usage accounting and errors as any SDK user; `describe_error` turns the SDK's
exceptions into sentences a person can act on. `AnswerStream` is one streamed answer: the
growing text, the response headers, the measured stats. Timing is taken on this side of the
API, as the person experiences it: time to first token from sending the request, decode speed
from the first token to the last (not averaged over the wait for the first one).

While it streams, its row is added at the first token (status "streaming") and its text saved
every CHECKPOINT_SECONDS (`AnswerDraft`), so a server that stops mid-answer loses little;
`store_answer` then finishes it with its stats and how it ended (complete, stopped, failed). A
row a crashed server left "streaming" is marked failed at the next start-up
(`storage.messages.finish_interrupted_answers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import openai

from server.settings import SERVED_MODEL_NAME

if TYPE_CHECKING:  # the facade does not import this module: no cycle at run time
    from server.workbench import Workbench

log = logging.getLogger(__name__)

# Prefill of a very long document can take minutes before the first byte: the read timeout
# (the longest silence between two chunks) is generous; connecting must be quick.
TIMEOUT = openai.Timeout(900.0, connect=10.0)


class ApiClient:
    """One AsyncOpenAI client for the process; each request carries the caller's own key."""

    def __init__(self, base_url: str, tls_cert: Path | None = None):
        self.base_url = base_url
        self.tls_cert = tls_cert  # the certificate our own server presents, when on HTTPS
        self._client: openai.AsyncOpenAI | None = None

    def for_key(self, api_key: str) -> openai.AsyncOpenAI:
        """A client that authenticates as `api_key` (it shares the connection pool)."""
        if self._client is None:
            # Created lazily, inside the server's event loop; no retries: a 429 must reach the
            # person with its wait, not be retried silently behind a spinner.
            http_client = None
            if self.tls_cert is not None:
                http_client = openai.DefaultAsyncHttpxClient(
                    verify=trust_only(self.tls_cert), timeout=TIMEOUT
                )
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key="unset",
                max_retries=0,
                timeout=TIMEOUT,
                http_client=http_client,
            )
        return self._client.with_options(api_key=api_key)


def trust_only(cert: Path) -> ssl.SSLContext:
    """TLS to our own server on loopback: trust exactly the certificate it presents (a
    self-signed one too), whatever name it was issued for."""
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def _message(exc: openai.APIError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    text = body.get("message") or exc.message or type(exc).__name__
    return str(text).strip().rstrip(".")


def _retry_after(exc: openai.APIStatusError) -> str | None:
    value = exc.response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return value
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def describe_error(exc: BaseException) -> str:
    """A readable sentence for an error of a /v1 call (logged in full for the host)."""
    if isinstance(exc, openai.RateLimitError):
        wait = _retry_after(exc)
        when = f"Try again in {wait}." if wait else "Try again shortly."
        return f"Rate limit reached ({_message(exc)}). {when}"
    if isinstance(exc, openai.BadRequestError) and exc.code == "context_length_exceeded":
        return (
            f"Too long for the model's context: {_message(exc)}. Start a new conversation, "
            "remove some history, or lower max tokens."
        )
    if isinstance(exc, openai.AuthenticationError):
        return f"The API key was rejected ({_message(exc)}). Sign out and sign in with a valid key."
    if isinstance(exc, openai.PermissionDeniedError):
        return f"This key may not do that: {_message(exc)}."
    if isinstance(exc, openai.APIStatusError) and exc.status_code in (502, 503, 504):
        return f"The model engine is not available right now ({exc.status_code}): {_message(exc)}."
    if isinstance(exc, openai.APIStatusError):
        return f"The request failed ({exc.status_code}): {_message(exc)}."
    if isinstance(exc, openai.APITimeoutError):
        return "The model did not answer in time (timed out). Try again, or ask for less."
    if isinstance(exc, openai.APIConnectionError):
        return f"Could not reach the workbench API at {exc.request.url.host}: {exc.message}"
    if isinstance(exc, openai.APIError):
        # An error event inside the stream (the engine failed mid-answer).
        return f"The engine stopped with an error: {_message(exc)}."
    log.error("unexpected error while streaming an answer", exc_info=exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}"


def api_params(params: dict) -> dict:
    """Sampling parameters as /v1 takes them (no empty stop list)."""
    out = {
        k: params[k]
        for k in ("temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty")
    }
    if params.get("stop"):
        out["stop"] = list(params["stop"])
    return out


class AnswerStream:
    """Streams one chat completion and records what it measured on the way."""

    def __init__(
        self, client: openai.AsyncOpenAI, *, model: str, messages: list[dict], params: dict
    ):
        self.client = client
        self.model = model
        self.messages = messages
        self.params = params
        self.text = ""
        self.headers: dict[str, str] = {}
        self.usage = None
        self.finish_reason: str | None = None
        self.started: float | None = None
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self._stream = None

    async def chunks(self) -> AsyncIterator[str]:
        """Yield the answer so far after each piece of text; raises openai errors as they come."""
        self.started = time.monotonic()
        try:
            raw = await self.client.chat.completions.with_raw_response.create(
                model=self.model,
                messages=self.messages,
                stream=True,
                stream_options={"include_usage": True},
                **api_params(self.params),
            )
        except openai.APIStatusError as exc:
            # A 429's headers carry the wait and the headroom: keep them too.
            self.headers = dict(exc.response.headers)
            raise
        self.headers = dict(raw.headers)
        self._stream = raw.parse()
        async for chunk in self._stream:
            if chunk.usage is not None:
                self.usage = chunk.usage
            for choice in chunk.choices:
                if choice.finish_reason:
                    self.finish_reason = choice.finish_reason
                if choice.delta and choice.delta.content:
                    now = time.monotonic()
                    if self.first_token_at is None:
                        self.first_token_at = now
                    self.last_token_at = now
                    self.text += choice.delta.content
                    yield self.text

    async def close(self) -> None:
        """Close the HTTP stream: the gateway sees the disconnect and aborts the engine request."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.close()

    def stats(self, *, prompt_tokens: int | None, completion_tokens: int | None) -> dict:
        """The answer's stats; the engine's usage wins over the counts given as fallbacks.

        The fallbacks matter when the stream was cut (Stop, an error): no usage chunk came.
        """
        if self.usage is not None:
            prompt_tokens = self.usage.prompt_tokens
            completion_tokens = self.usage.completion_tokens
        details = getattr(self.usage, "prompt_tokens_details", None) if self.usage else None
        cached = getattr(details, "cached_tokens", None) if details else None
        end = self.last_token_at or time.monotonic()
        ttft_ms = decode_tps = None
        if self.first_token_at is not None and self.started is not None:
            ttft_ms = (self.first_token_at - self.started) * 1000
            span = (self.last_token_at or self.first_token_at) - self.first_token_at
            # Tokens after the first, over the time they took.
            if completion_tokens and completion_tokens > 1 and span > 0:
                decode_tps = (completion_tokens - 1) / span
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cached_tokens": cached,
            "ttft_ms": ttft_ms,
            "decode_tps": decode_tps,
            "total_ms": (end - self.started) * 1000 if self.started is not None else None,
            "finish_reason": self.finish_reason,
            # Behind vllm-router, the gateway names the replica that answered.
            "replica": next(
                (v for k, v in self.headers.items() if k.lower() == "x-workbench-replica"), None
            ),
        }


# How often the engine's queue is asked while an answer waits for its first token.
QUEUE_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Queued:
    """No token yet, and the engine holds `waiting` requests in its queue."""

    waiting: int


async def with_queue_notices(
    chunks: AsyncIterator[str],
    waiting: Callable[[], Awaitable[int | None]],
    every: float = QUEUE_POLL_SECONDS,
) -> AsyncIterator[str | Queued]:
    """The chunks; before the first one, a `Queued` whenever the engine says requests wait (one
    whole-context request takes all of the KV cache: the next one waits inside vLLM)."""
    first = asyncio.ensure_future(anext(chunks))
    try:
        while not (await asyncio.wait({first}, timeout=every))[0]:
            count = await waiting()
            if count:
                yield Queued(count)
        try:
            yield first.result()
        except StopAsyncIteration:
            return
        async for text in chunks:
            yield text
    finally:
        if not first.done():
            first.cancel()
            with contextlib.suppress(BaseException):
                await first
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


# How often a streaming answer's text is saved: at most 2 s of it is lost to a crash.
CHECKPOINT_SECONDS = 2.0


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("could not save a streaming answer", exc_info=future.exception())


class AnswerDraft:
    """The stored row of one answer while it streams."""

    def __init__(self, wb: Workbench, owner: str, cid: int, *, model: str):
        self._wb, self._owner, self._cid, self._model = wb, owner, cid, model
        self.message_id: int | None = None
        self._pending: asyncio.Future | None = None
        self._saved_at = 0.0

    def update(self, text: str) -> None:
        """The answer so far: begins the row, or checkpoints it when it is time."""
        if self._pending is not None and not self._pending.done():
            return  # a write is under way; a later update catches up
        if self.message_id is None:
            if self._pending is not None:
                return  # the row could not be added: the final save adds it
            write = partial(self._begin, text)
        elif time.monotonic() - self._saved_at >= CHECKPOINT_SECONDS:
            write = partial(self._wb.checkpoint_answer, self._owner, self.message_id, text)
        else:
            return
        self._saved_at = time.monotonic()
        self._pending = asyncio.ensure_future(anyio.to_thread.run_sync(write))
        self._pending.add_done_callback(_log_failure)

    def _begin(self, text: str) -> None:
        self.message_id = self._wb.begin_answer(self._owner, self._cid, text, model=self._model)

    async def settled(self) -> int | None:
        """Wait for the last write; the row's id (None: no row was added)."""
        if self._pending is not None:
            await asyncio.wait([self._pending])
        return self.message_id


async def store_answer(
    wb: Workbench,
    owner: str,
    cid: int,
    answer: AnswerStream,
    status: str,
    error: str | None,
    note: str = "",
    draft: AnswerDraft | None = None,
) -> None:
    """Store the answer as it ended; shielded, so a second cancel cannot lose it.

    `note` (how a chunked answer was made) ends the stored text, once the answer began.
    The row `draft` began while streaming is finished, else one is added.
    """

    async def store() -> None:
        message_id = await draft.settled() if draft is not None else None
        prompt_tokens = completion_tokens = None
        if answer.usage is None and answer.started is not None:
            # Cut short: no usage chunk arrived, so count what was sent and what came back.
            prompt_tokens = await wb.count_prompt(answer.messages)
            completion_tokens = await wb.count_text(answer.text) if answer.text else 0
        stats = answer.stats(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        if answer.started is None:  # never sent (stopped or failed while chunking)
            stats = {}
        text = answer.text
        if note and answer.started is not None:
            text = f"{text.rstrip()}\n\n*{note}*" if text else f"*{note}*"
        await anyio.to_thread.run_sync(
            partial(
                wb.save_answer,
                owner,
                cid,
                text,
                model=SERVED_MODEL_NAME,
                stats=stats,
                status=status,
                error=error,
                message_id=message_id,
            )
        )

    await asyncio.shield(asyncio.ensure_future(store()))
