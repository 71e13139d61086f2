"""Token counting through a running vLLM's `/tokenize`, for the `external` profile (no
tokenizer files on this host). Implements `server.counter.Counter`, as `server.tokens.TokenCounter`
does locally."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx


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

    def __init__(
        self,
        upstream: str,
        *,
        model: str,
        api_key: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
    ):
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.model = model
        self.name = f"remote:{model}"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout
        self._sync_client: httpx.Client | None = None
        self._sync_lock = threading.Lock()  # count_texts makes it from several threads

    async def _tokenize(self, body: dict) -> dict:
        response = await self._client.post(
            f"{self.upstream}/tokenize", json={"model": self.model, **body}, headers=self._headers
        )
        response.raise_for_status()
        return response.json()

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

    def _tokenize_blocking(self, body: dict) -> dict:
        with self._sync_lock:
            if self._sync_client is None:
                self._sync_client = httpx.Client(timeout=self._timeout)
        response = self._sync_client.post(
            f"{self.upstream}/tokenize", json={"model": self.model, **body}, headers=self._headers
        )
        response.raise_for_status()
        return response.json()

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
        """Close the HTTP clients this counter created."""
        if self._owns_client:
            await self._client.aclose()
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None

    async def __aenter__(self) -> RemoteTokenCounter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
