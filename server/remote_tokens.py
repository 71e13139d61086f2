"""Token counting through a running vLLM's `/tokenize`, for the `external` profile (no
tokenizer files on this host). Implements `server.counter.Counter`, as `server.tokens.TokenCounter`
does locally.

It calls the engine with aiohttp, the gateway's one HTTP client (`gateway/upstream.py` says why).
The blocking methods, for worker threads (PDF ingestion), run the call on the event loop that
the async methods use; before that loop is known, or when called on it, a short-lived loop in
a thread of its own makes the call.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import orjson


class TokenizeRefused(Exception):
    """The engine answered /tokenize with an error status."""

    def __init__(self, status: int, content: bytes):
        super().__init__(f"/tokenize answered {status}")
        self.status = status
        self.content = content


# What a count can raise: refused by the engine, or the engine not reachable in time.
TOKENIZE_ERRORS = (TokenizeRefused, aiohttp.ClientError, asyncio.TimeoutError)


def _messages_body(messages: list[dict], add_generation_prompt: bool,
                   tools: list[dict] | None) -> dict:
    """A vLLM /tokenize request that applies the chat template."""
    body = {"messages": messages, "add_generation_prompt": add_generation_prompt}
    if tools:
        body["tools"] = tools
    return body


class RemoteTokenCounter:
    """Counts through a running vLLM's `POST /tokenize` (no tokenizer files needed).

    The async methods are for the event loop. The blocking ones (`count_text`,
    `count_texts`, `count_messages`) are for worker threads such as PDF ingestion.
    """

    local = False

    def __init__(self, upstream: str, *, model: str, api_key: str | None = None,
                 timeout: float = 60.0):
        self.url = upstream.rstrip("/").removesuffix("/v1") + "/tokenize"
        self.model = model
        self.name = f"remote:{model}"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _call(self, session: aiohttp.ClientSession, body: dict) -> dict:
        payload = orjson.dumps({"model": self.model, **body})
        async with session.post(self.url, data=payload, headers=self._headers) as response:
            content = await response.read()
        if response.status >= 400:
            raise TokenizeRefused(response.status, content)
        return orjson.loads(content)

    async def _tokenize(self, body: dict) -> dict:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._loop = asyncio.get_running_loop()
        return await self._call(self._session, body)

    async def _tokenize_once(self, body: dict) -> dict:
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            return await self._call(session, body)

    def _tokenize_blocking(self, body: dict) -> dict:
        loop = self._loop
        if loop is not None and loop.is_running() and not _running_on(loop):
            future = asyncio.run_coroutine_threadsafe(self._tokenize(body), loop)
            return future.result()
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._tokenize_once(body)).result()

    async def acount_text(self, text: str) -> int:
        """Tokens in `text` without special-token additions (same meaning as TokenCounter)."""
        result = await self._tokenize({"prompt": text, "add_special_tokens": False})
        return result["count"]

    async def acount_messages(self, messages: list[dict], *, tools: list[dict] | None = None,
                              add_generation_prompt: bool = True) -> int:
        """Prompt size with the engine's own chat template applied."""
        body = _messages_body(messages, add_generation_prompt, tools)
        return (await self._tokenize(body))["count"]

    async def amax_model_len(self) -> int:
        """The engine's context length, as /tokenize reports it."""
        return (await self._tokenize({"prompt": "", "add_special_tokens": False}))["max_model_len"]

    def count_text(self, text: str) -> int:
        """Blocking form of `acount_text` (never call it on the event loop)."""
        return self._tokenize_blocking({"prompt": text, "add_special_tokens": False})["count"]

    def count_texts(self, texts: list[str], *, threads: int = 2) -> list[int]:
        """Blocking counts of many texts, one /tokenize call each, `threads` at a time."""
        if len(texts) < 2 or threads < 2:
            return [self.count_text(text) for text in texts]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.count_text, texts))

    def count_messages(self, messages: list[dict], *, tools: list[dict] | None = None,
                       add_generation_prompt: bool = True) -> int:
        """Blocking form of `acount_messages`."""
        body = _messages_body(messages, add_generation_prompt, tools)
        return self._tokenize_blocking(body)["count"]

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RemoteTokenCounter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
