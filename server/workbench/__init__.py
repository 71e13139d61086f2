"""The workbench's services: everything the browser UI does, on behalf of one owner.

`Workbench` (here: sign-in, prompts and whether they fit, token counts, usage) is the facade
the UI calls; its parts are `conversations` (conversations and messages, the base class),
`library` (documents: upload, attach, pages; reached as `wb.documents`), `ingest` (PDF bytes →
a stored document), `analysis` (chunked analysis through our own /v1) and `answer` (one answer
streamed from /v1 and stored however it ends).

UI callbacks call these methods and never touch SQLite or `storage` themselves. Every method
that reads or changes data takes the owner (the signed-in API key's name) and passes it to
storage, where another owner's conversation behaves exactly like a missing one.

Methods are synchronous (one SQLite connection per thread): Gradio runs sync callbacks in its
thread pool; async callbacks call them through `anyio.to_thread.run_sync`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import openai

from server.counter import Counter
from server.documents.prompt import documents_first
from server.services import Services
from server.settings import SERVED_MODEL_NAME
from server.workbench.analysis import ChunkedAnalysis, summary_tokens_for
from server.workbench.conversations import Conversations, Resend
from server.workbench.fit import Fit, prompt_messages
from server.workbench.library import DocumentLibrary
from storage import ImportFormatError, NotFoundError, keys, usage
from storage import messages as msgs

# The storage names the UI needs, so that it reaches storage only through this package.
STREAMING = msgs.STREAMING  # the status of an answer still being written

__all__ = ["STREAMING", "Identity", "ImportFormatError", "NotFoundError", "Resend", "Workbench"]


@dataclass(frozen=True)
class Identity:
    """Who is signed in: the key's name owns conversations, documents and usage."""

    owner: str
    admin: bool


class Workbench(Conversations):
    """Owner-scoped access to storage, token counting and usage, for the UI.

    Built from the app's services before the app starts: the store and the counter are
    opened by the lifespan later, so they are looked up on each call, as is the context limit
    (the gateway discovers the engine's).
    """

    def __init__(self, services: Services):
        super().__init__(services)
        self.documents = DocumentLibrary(services)

    @property
    def counter(self) -> Counter:
        counter = self._services.counter
        if counter is None:
            raise RuntimeError("the app is not running: its token counter is closed")
        return counter

    @property
    def max_context(self) -> int:
        """The context limit the gateway enforces now."""
        return self._services.engine.max_context

    async def engine_queue(self) -> int | None:
        """Requests waiting inside the engine for room to start (a long document holds the
        whole KV cache), or None when the engine does not say."""
        return await self._services.engine.requests_waiting()

    # Sign-in -------------------------------------------------------------------------------

    def sign_in(self, secret: str | None) -> Identity | None:
        """The identity of an active API key, or None for an unknown or revoked one."""
        key = keys.authenticate(self.store.db, (secret or "").strip())
        return Identity(owner=key.name, admin=key.admin) if key else None

    def browser_secret(self) -> str:
        """The secret for the browser's encrypted local storage (the remembered sign-in).

        Gradio ships it to the browser with the page, so it only keeps the key from being
        readable at a glance; same-origin rules protect it. Derived from the data dir, it stays
        the same across restarts, so a remembered sign-in survives them.
        """
        data_dir = Path(self._services.settings.data_dir).resolve()
        return hashlib.sha256(f"qwen-workbench-browser:{data_dir}".encode()).hexdigest()[:32]

    # Prompt --------------------------------------------------------------------------------

    def prompt(
        self, owner: str, cid: int | None, *, system_prompt: str, draft: str | None = None
    ) -> list[dict]:
        """The messages Send would send for conversation `cid` (None: a new one) and a draft.

        The one place a prompt is assembled, for the request and for the context gauge alike.
        Attached documents come first (each page marked `[page N]` under its file name), then
        the system prompt, then the conversation: a prefix that stays byte-identical from one
        question to the next, so the engine serves it from its prefix cache.
        """
        messages = self.messages(owner, cid) if cid is not None else []
        conversation = prompt_messages("", messages, draft)
        return documents_first(self.documents.context(owner, cid), system_prompt, conversation)

    def fit(
        self,
        owner: str,
        cid: int | None,
        *,
        system_prompt: str,
        draft: str | None = None,
        max_tokens: int = 0,
    ) -> Fit:
        """Does the next request fit the context? Exact counts (blocking: a worker thread)."""
        attached = self.documents.attached(owner, cid)
        prompt = self.prompt(owner, cid, system_prompt=system_prompt, draft=draft)
        return Fit(
            used=self.counter.count_messages(prompt),
            reserve=max(0, int(max_tokens or 0)),
            max_context=self.max_context,
            documents=sum(a.tokens for a in attached),
            attached=len(attached),
        )

    def overflow(
        self,
        owner: str,
        cid: int | None,
        *,
        system_prompt: str,
        max_tokens: int,
        draft: str | None = None,
    ) -> Fit | None:
        """The fit of the next request when documents are attached and it does not fit (the
        person then chooses pages, the room left, or a chunked analysis); else None."""
        if cid is None or not self.documents.attached(owner, cid):
            return None
        fit = self.fit(owner, cid, system_prompt=system_prompt, draft=draft, max_tokens=max_tokens)
        return None if fit.fits else fit

    def in_room_left(
        self, owner: str, cid: int, *, system_prompt: str, params: dict, draft: str | None = None
    ) -> dict | None:
        """`params` with max tokens lowered to the room the prompt leaves (the offer's "Answer
        in the room left"), or None when that room is too small for an answer."""
        fit = self.fit(owner, cid, system_prompt=system_prompt, draft=draft)
        return {**params, "max_tokens": fit.room} if fit.room_for_answer else None

    def chunked_analysis(
        self, owner: str, cid: int, client: openai.AsyncOpenAI, *, question: str
    ) -> ChunkedAnalysis:
        """A chunked analysis of the conversation's documents (their chosen pages) for
        `question`, through `client` (our /v1 with the person's key). Raises NotFoundError
        for a conversation that is not the owner's, AnalysisError without a question."""
        conversation = self.get_conversation(owner, cid)
        if conversation is None:
            raise NotFoundError(f"conversation {cid} not found")
        params = conversation["params"]
        earlier = prompt_messages("", self.messages(owner, cid))
        if earlier and earlier[-1]["role"] == "user" and earlier[-1]["content"] == question:
            earlier = earlier[:-1]  # the question itself, already stored
        return ChunkedAnalysis(
            client,
            model=SERVED_MODEL_NAME,
            counter=self.counter,
            max_context=self.max_context,
            question=question,
            documents=[(a.filename, a.pages) for a in self.documents.attached(owner, cid)],
            system_prompt=conversation["system_prompt"],
            summary_tokens=summary_tokens_for(params["max_tokens"], self.max_context),
            answer_tokens=params["max_tokens"],
            sampling=params,
            history=earlier,
        )

    async def count_prompt(self, messages: list[dict]) -> int:
        """Exact prompt tokens of these chat messages, chat template included."""
        if self.counter.local:
            # The local tokenizer is CPU work: keep it off the event loop.
            return await anyio.to_thread.run_sync(self.counter.count_messages, messages)
        return await self.counter.acount_messages(messages)

    async def count_text(self, text: str) -> int:
        """Tokens in `text` without chat framing (a partial answer's length)."""
        if self.counter.local:
            return await anyio.to_thread.run_sync(self.counter.count_text, text)
        return await self.counter.acount_text(text)

    # Usage ---------------------------------------------------------------------------------

    def usage_series(self, owner: str, *, window_seconds: int, bucket_seconds: int) -> list[dict]:
        """Requests and tokens of the owner's key per time bucket over the last window."""
        return usage.usage_series(
            self.store.db, owner, since=time.time() - window_seconds, bucket_seconds=bucket_seconds
        )

    def usage_by_endpoint(self, owner: str, *, window_seconds: int) -> list[dict]:
        """Requests and tokens of the owner's key per /v1 endpoint over the last window."""
        return usage.usage_by_endpoint(self.store.db, owner, since=time.time() - window_seconds)
