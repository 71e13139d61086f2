"""The workbench's services: everything the browser UI does, on behalf of one owner.

`Workbench` (here) is the facade the UI calls; `library` (documents: upload, attach, pages),
`ingest` (PDF bytes → a stored document) and `analysis` (chunked analysis through our own /v1)
are its parts.

UI callbacks call these methods and never touch SQLite or `storage` themselves. Every method
that reads or changes data takes the owner (the signed-in API key's name) and passes it to
storage, where another owner's conversation behaves exactly like a missing one.

Methods are synchronous (one SQLite connection per thread): Gradio runs sync callbacks in its
thread pool; async callbacks call them through `anyio.to_thread.run_sync`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import openai

from server.counter import Counter
from server.documents.prompt import documents_first
from server.sampling import DEFAULT_PARAMS, normalize_params
from server.services import Services
from server.settings import SERVED_MODEL_NAME
from server.workbench.analysis import ChunkedAnalysis, summary_tokens_for
from server.workbench.fit import Fit, prompt_messages
from server.workbench.library import DocumentLibrary
from server.workbench.markdown import export_markdown
from storage import ImportFormatError, NotFoundError, Store, keys, search, usage
from storage import conversations as conv
from storage import messages as msgs

# The storage names the UI needs, so that it reaches storage only through this package.
STREAMING = msgs.STREAMING  # the status of an answer still being written

__all__ = ["STREAMING", "Identity", "ImportFormatError", "NotFoundError", "Resend", "Workbench"]



@dataclass(frozen=True)
class Identity:
    """Who is signed in: the key's name owns conversations, documents and usage."""

    owner: str
    admin: bool


@dataclass(frozen=True)
class Resend:
    """Where an edited question is resent: its own conversation, or a new one (a branch)."""

    cid: int
    branched: bool
    title: str | None  # the branch's title


def _slug(title: str | None) -> str:
    slug = re.sub(r"[^\w]+", "-", (title or "conversation").lower()).strip("-")
    return slug[:60] or "conversation"


class Workbench:
    """Owner-scoped access to storage, token counting and usage, for the UI.

    Built from the app's services before the app starts: the store and the counter are
    opened by the lifespan later, so they are looked up on each call, as is the context limit
    (the gateway discovers the engine's).
    """

    def __init__(self, services: Services):
        self._services = services
        self.documents = DocumentLibrary(services)

    @property
    def store(self) -> Store:
        store = self._services.store
        if store is None:
            raise RuntimeError("the app is not running: its store is closed")
        return store

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

    # Conversations -------------------------------------------------------------------------

    def list_conversations(self, owner: str, *, limit: int = 200) -> list[dict]:
        """The owner's conversations, most recently updated first."""
        return conv.list_conversations(self.store.db, owner, limit=limit)

    def count_conversations(self, owner: str) -> int:
        """How many conversations the owner has."""
        return conv.count_conversations(self.store.db, owner)

    def get_conversation(self, owner: str, cid: int) -> dict | None:
        """One conversation with its params completed by the defaults, or None."""
        found = conv.get_conversation(self.store.db, owner, cid)
        if found:
            found["params"] = normalize_params(found["params"])
        return found

    def create_conversation(self, owner: str, *, system_prompt: str = "", params: dict | None = None) -> int:
        """A new untitled conversation (its first user message will title it)."""
        return conv.create_conversation(
            self.store.db, owner, system_prompt=system_prompt, params=normalize_params(params)
        )

    def rename(self, owner: str, cid: int, title: str) -> bool:
        """Set a conversation's title; False if it is not the owner's."""
        title = " ".join(title.split())
        if not title:
            raise ValueError("a title cannot be empty")
        return conv.rename_conversation(self.store.db, owner, cid, title)

    def delete(self, owner: str, cid: int) -> bool:
        """Delete a conversation and its messages; False if it is not the owner's."""
        return conv.delete_conversation(self.store.db, owner, cid)

    def save_settings(self, owner: str, cid: int, *, system_prompt: str, params: dict) -> bool:
        """Remember the system prompt and sampling parameters of a conversation."""
        current = conv.get_conversation(self.store.db, owner, cid)
        if current is None:
            return False
        # Keys the panel does not own (the documents' page ranges) are kept as stored.
        extra = {k: v for k, v in current["params"].items() if k not in DEFAULT_PARAMS}
        params = {**extra, **normalize_params(params)}
        # Unchanged settings are not written: a write would move the conversation to the top.
        if current["system_prompt"] == system_prompt and {
            **extra, **normalize_params(current["params"])
        } == params:
            return True
        return conv.update_conversation_settings(
            self.store.db, owner, cid, system_prompt=system_prompt, params=params
        )

    # Messages ------------------------------------------------------------------------------

    def messages(self, owner: str, cid: int) -> list[dict]:
        """The conversation's messages in order, with each answer's stats."""
        return msgs.list_messages(self.store.db, owner, cid)

    def add_user_message(self, owner: str, cid: int, content: str) -> int:
        """Store the person's message (before the model is asked, so it is never lost)."""
        return msgs.add_message(self.store.db, owner, cid, "user", content)

    def begin_answer(self, owner: str, cid: int, content: str, *, model: str | None) -> int:
        """Store an answer that has begun streaming (status "streaming"); returns its id.

        Checkpointed with `checkpoint_answer` as it grows, so a server that stops mid-answer
        keeps the text up to the last checkpoint (marked failed at the next start-up).
        """
        return msgs.add_message(self.store.db, owner, cid, "assistant", content, model=model,
                                status=msgs.STREAMING)

    def checkpoint_answer(self, owner: str, message_id: int, content: str) -> None:
        """Save the text so far of an answer begun with `begin_answer`."""
        msgs.update_message(self.store.db, owner, message_id, content=content)

    def save_answer(
        self, owner: str, cid: int, content: str, *, model: str | None, stats: dict | None,
        status: str = "complete", error: str | None = None, message_id: int | None = None,
    ) -> int:
        """Store an answer as it ended: complete, stopped (partial kept) or failed.

        With `message_id` (from `begin_answer`) that answer is finished; else one is added.
        """
        stats = {k: v for k, v in (stats or {}).items() if v is not None}
        if message_id is not None and msgs.update_message(
            self.store.db, owner, message_id, content=content, stats=stats, status=status,
            error=error,
        ):
            return message_id
        return msgs.add_message(
            self.store.db, owner, cid, "assistant", content,
            model=model, stats=stats, status=status, error=error,
        )

    def drop_last_answer(self, owner: str, cid: int) -> bool:
        """Delete the answers after the last user message (to regenerate); False if none left.

        Returns whether the conversation now ends with a user message to answer.
        """
        messages = self.messages(owner, cid)
        while messages and messages[-1]["role"] == "assistant":
            msgs.delete_message(self.store.db, owner, messages.pop()["id"])
        return bool(messages) and messages[-1]["role"] == "user"

    def edit_last_user_message(self, owner: str, cid: int, message_id: int, content: str) -> bool:
        """Replace the last user message and drop what came after it (then it is resent).

        False (and nothing changed) if `message_id` is not the conversation's last user message.
        """
        content = content.strip()
        messages = self.messages(owner, cid)
        users = [m for m in messages if m["role"] == "user"]
        if not content or not users or users[-1]["id"] != message_id:
            return False
        msgs.update_message(self.store.db, owner, message_id, content=content)
        for m in messages:
            if m["id"] > message_id:
                msgs.delete_message(self.store.db, owner, m["id"])
        return True

    def resend_edited(self, owner: str, cid: int, message_id: int, text: str) -> Resend | None:
        """Edit a question to resend it: the last one in place (what followed is dropped), an
        earlier one in a copy of the conversation up to it, so no later answer is lost.

        None (nothing changed) if `message_id` is not one of the owner's questions in `cid`,
        or the text is empty.
        """
        if self.edit_last_user_message(owner, cid, message_id, text):
            return Resend(cid, branched=False, title=None)
        branch = self.branch_from(owner, cid, message_id, text)
        if branch is None:
            return None
        return Resend(branch, branched=True,
                      title=conv.get_conversation(self.store.db, owner, branch)["title"])

    def branch_from(self, owner: str, cid: int, message_id: int, content: str) -> int | None:
        """A new conversation that goes on from an earlier user message, edited.

        It gets the messages before `message_id` (with their stats), the edited message, the
        settings, page choices and attached documents; the original conversation stays as it
        was, later answers included. None (nothing stored) if `message_id` is not one of the
        owner's user messages in `cid`, or the new text is empty.
        """
        content = content.strip()
        ids = [m["id"] for m in self.messages(owner, cid)]  # export_json's order; [] if not found
        if not content or message_id not in ids:
            return None
        data = conv.export_json(self.store.db, owner, cid)
        index = ids.index(message_id)
        if data["messages"][index]["role"] != "user":
            return None
        edited = {**data["messages"][index], "content": content, "created_at": time.time()}
        title = data["title"] or "Conversation"
        data.update(title=title if title.endswith(" (edited)") else f"{title} (edited)",
                    created_at=None,
                    messages=[*data["messages"][:index], edited])
        return conv.import_json(self.store.db, owner, data)

    # Prompt --------------------------------------------------------------------------------

    def prompt(self, owner: str, cid: int | None, *, system_prompt: str,
               draft: str | None = None) -> list[dict]:
        """The messages Send would send for conversation `cid` (None: a new one) and a draft.

        The one place a prompt is assembled, for the request and for the context gauge alike.
        Attached documents come first (each page marked `[page N]` under its file name), then
        the system prompt, then the conversation: a prefix that stays byte-identical from one
        question to the next, so the engine serves it from its prefix cache.
        """
        messages = self.messages(owner, cid) if cid is not None else []
        conversation = prompt_messages("", messages, draft)
        return documents_first(self.documents.context(owner, cid), system_prompt, conversation)

    def fit(self, owner: str, cid: int | None, *, system_prompt: str, draft: str | None = None,
            max_tokens: int = 0) -> Fit:
        """Does the next request fit the context? Exact counts (blocking: a worker thread)."""
        attached = self.documents.attached(owner, cid)
        prompt = self.prompt(owner, cid, system_prompt=system_prompt, draft=draft)
        return Fit(
            used=self.counter.count_messages(prompt), reserve=max(0, int(max_tokens or 0)),
            max_context=self.max_context, documents=sum(a.tokens for a in attached),
            attached=len(attached),
        )
    def overflow(self, owner: str, cid: int | None, *, system_prompt: str, max_tokens: int,
                 draft: str | None = None) -> Fit | None:
        """The fit of the next request when documents are attached and it does not fit (the
        person then chooses pages, the room left, or a chunked analysis); else None."""
        if cid is None or not self.documents.attached(owner, cid):
            return None
        fit = self.fit(owner, cid, system_prompt=system_prompt, draft=draft,
                       max_tokens=max_tokens)
        return None if fit.fits else fit

    def chunked_analysis(self, owner: str, cid: int, client: openai.AsyncOpenAI, *,
                         question: str) -> ChunkedAnalysis:
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
            client, model=SERVED_MODEL_NAME, counter=self.counter, max_context=self.max_context,
            question=question,
            documents=[(a.filename, a.pages) for a in self.documents.attached(owner, cid)],
            system_prompt=conversation["system_prompt"],
            summary_tokens=summary_tokens_for(params["max_tokens"], self.max_context),
            answer_tokens=params["max_tokens"], sampling=params, history=earlier,
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

    # Search, export, import ----------------------------------------------------------------

    def search(self, owner: str, query: str, *, limit: int = 30) -> list[dict]:
        """Full-text matches in titles and messages, best first (snippets mark hits in **bold**)."""
        return search.search_conversations(self.store.db, owner, query, limit=limit)

    def export_markdown(self, owner: str, cid: int) -> tuple[str, str]:
        """(file name, Markdown text) of a conversation."""
        title = (self.get_conversation(owner, cid) or {}).get("title")
        return f"{_slug(title)}.md", export_markdown(self.store.db, owner, cid)

    def export_json(self, owner: str, cid: int) -> tuple[str, str]:
        """(file name, JSON text) of a conversation, in the format import_json reads."""
        data = conv.export_json(self.store.db, owner, cid)
        return f"{_slug(data['title'])}.json", json.dumps(data, ensure_ascii=False, indent=2)

    def import_json(self, owner: str, raw: str | bytes) -> tuple[int, list[str]]:
        """A new conversation from an exported JSON file: (its id, documents not re-attached).

        A document is re-attached when the owner has uploaded the same PDF; the names of the
        others are returned so the person can upload them. ImportFormatError says what is wrong.
        """
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ImportFormatError(f"the file is not JSON ({exc})") from None
        cid = conv.import_json(self.store.db, owner, data)
        return cid, conv.unattached_documents(self.store.db, owner, cid, data)

    # Usage ---------------------------------------------------------------------------------

    def usage_series(self, owner: str, *, window_seconds: int, bucket_seconds: int) -> list[dict]:
        """Requests and tokens of the owner's key per time bucket over the last window."""
        return usage.usage_series(
            self.store.db, owner, since=time.time() - window_seconds, bucket_seconds=bucket_seconds
        )

    def usage_by_endpoint(self, owner: str, *, window_seconds: int) -> list[dict]:
        """Requests and tokens of the owner's key per /v1 endpoint over the last window."""
        return usage.usage_by_endpoint(self.store.db, owner, since=time.time() - window_seconds)
