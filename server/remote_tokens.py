"""Token counting through a running vLLM's `/tokenize`, for the `external` profile (no
tokenizer files on this host). Implements `server.counter.Counter`, as `server.tokens.TokenCounter`
does locally.

It calls the engine with aiohttp, the gateway's one HTTP client (`gateway/upstream.py` says why),
through the sessions of `server/engine_http.py`.
The blocking methods, for worker threads (PDF ingestion), hand their calls to an event loop of
their own in a thread of its own: never to the app's loop, which may be the very thread that
waits for them.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import orjson

from server import engine_http


class TokenizeRefused(Exception):
    """The engine answered /tokenize with an error status."""

    def __init__(self, status: int, content: bytes):
        super().__init__(f"/tokenize answered {status}")
        self.status = status
        self.content = content


# What a count can raise: refused by the engine, or the engine not reachable in time.
TOKENIZE_ERRORS = (TokenizeRefused, aiohttp.ClientError, asyncio.TimeoutError)


def _messages_body(
    messages: list[dict], add_generation_prompt: bool, tools: list[dict] | None
) -> dict:
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

    def __init__(
        self, upstream: str, *, model: str, api_key: str | None = None, timeout: float = 60.0
    ):
        self.url = upstream.rstrip("/").removesuffix("/v1") + "/tokenize"
        self.model = model
        self.name = f"remote:{model}"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None  # the async methods' (app's loop)
        # The blocking methods' loop, thread and session, made on their first call.
        self._bridge_lock = threading.Lock()
        self._bridge: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None
        self._bridge_session: aiohttp.ClientSession | None = None

    async def _call(self, session: aiohttp.ClientSession, body: dict) -> dict:
        payload = orjson.dumps({"model": self.model, **body})
        async with await engine_http.post(session, self.url, payload, self._headers) as response:
            content = await response.read()
        if response.status >= 400:
            raise TokenizeRefused(response.status, content)
        return orjson.loads(content)

    async def _tokenize(self, body: dict) -> dict:
        if self._session is None:
            self._session = engine_http.session(self._timeout)
        return await self._call(self._session, body)

    async def _bridge_call(self, body: dict) -> dict:
        if self._bridge_session is None:
            self._bridge_session = engine_http.session(self._timeout)
        return await self._call(self._bridge_session, body)

    def _tokenize_blocking(self, body: dict) -> dict:
        with self._bridge_lock:
            if self._bridge is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="tokenize", daemon=True)
                thread.start()
                self._bridge = (loop, thread)
        loop, _ = self._bridge
        return asyncio.run_coroutine_threadsafe(self._bridge_call(body), loop).result()

    async def acount_text(self, text: str) -> int:
        """Tokens in `text` without special-token additions (same meaning as TokenCounter)."""
        result = await self._tokenize({"prompt": text, "add_special_tokens": False})
        return result["count"]

    async def acount_messages(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = True,
    ) -> int:
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

    def count_messages(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = True,
    ) -> int:
        """Blocking form of `acount_messages`."""
        body = _messages_body(messages, add_generation_prompt, tools)
        return self._tokenize_blocking(body)["count"]

    async def aclose(self) -> None:
        """Close the HTTP sessions and stop the blocking methods' loop."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        with self._bridge_lock:
            bridge, self._bridge = self._bridge, None
        if bridge is not None:
            loop, thread = bridge
            if self._bridge_session is not None:
                closing = asyncio.run_coroutine_threadsafe(self._bridge_session.close(), loop)
                await asyncio.wrap_future(closing)
                self._bridge_session = None
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join)
            loop.close()

    async def __aenter__(self) -> RemoteTokenCounter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
