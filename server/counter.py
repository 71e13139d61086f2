"""The served model's token counter: one protocol, two implementations, chosen at start-up.

`server.tokens.TokenCounter` counts in this process with the model's own tokenizer files;
`server.remote_tokens.RemoteTokenCounter` asks a running vLLM's `/tokenize` (the `external`
profile without local tokenizer files). Both have the same methods with the same arguments
and meanings; `local` says which kind of work a count is.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from server.engine.profiles import detect_profile, embedded_model_dir
from server.remote_tokens import RemoteTokenCounter
from server.settings import SERVED_MODEL_NAME, Settings
from server.tokens import TokenCounter, qwen3_tokenizer_dir

__all__ = ["Counter", "load_counter"]


@runtime_checkable
class Counter(Protocol):
    """Exact token counts with the served model's tokenizer and chat template.

    The blocking methods may take long (CPU work, or an HTTP round trip each): call them
    from worker threads. The `a...` methods are for the event loop.
    """

    name: str
    # True: counting is CPU work in this process (big counts belong on a worker thread);
    # False: each count is a request to the engine (await the async methods).
    local: bool

    def count_text(self, text: str) -> int:
        """Tokens in `text` without chat framing."""
        ...

    def count_texts(self, texts: list[str], *, threads: int = 2) -> list[int]:
        """`count_text` of each text, on up to `threads` threads."""
        ...

    def count_messages(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = True,
    ) -> int:
        """Prompt size of a chat request, chat template (and generation prompt) included."""
        ...

    async def acount_text(self, text: str) -> int: ...

    async def acount_messages(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = True,
    ) -> int: ...

    async def aclose(self) -> None:
        """Release what the counter holds (HTTP clients)."""
        ...


def load_counter(settings: Settings) -> Counter:
    """The served model's tokenizer: WORKBENCH_TOKENIZER_PATH, else the profile's own files,
    else (external engine, no local files) the engine's /tokenize."""
    if settings.tokenizer_path:
        return TokenCounter.from_dir(settings.tokenizer_path)
    profile = settings.profile if settings.profile != "auto" else detect_profile()
    if profile == "cpu":
        return TokenCounter.from_dir(embedded_model_dir(settings))
    if profile == "h200x4":
        return TokenCounter.from_dir(qwen3_tokenizer_dir())
    return RemoteTokenCounter(
        settings.upstream, model=SERVED_MODEL_NAME, api_key=settings.engine_key
    )
