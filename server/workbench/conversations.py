"""The owner's conversations and their messages, as the person changes them.

`Conversations` is the storage half of the facade `server.workbench.Workbench`: list, open,
rename, delete, settings; questions and answers (an answer is stored as it streams); what an
edit of a question does (in place, or in a branch so no later answer is lost); search, export
and import. Every method takes the owner, and another owner's conversation behaves exactly
like a missing one. Methods are blocking (SQLite): call them from worker threads.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from server.sampling import DEFAULT_PARAMS, normalize_params
from server.services import Services
from server.workbench.markdown import export_markdown
from storage import ImportFormatError, Store, search
from storage import conversations as conv
from storage import messages as msgs


@dataclass(frozen=True)
class Resend:
    """Where an edited question is resent: its own conversation, or a new one (a branch)."""

    cid: int
    branched: bool
    title: str | None  # the branch's title


def _slug(title: str | None) -> str:
    slug = re.sub(r"[^\w]+", "-", (title or "conversation").lower()).strip("-")
    return slug[:60] or "conversation"


def last_question(messages: list[dict]) -> str | None:
    """The conversation's last user message if nothing answered it yet."""
    if messages and messages[-1]["role"] == "user":
        return messages[-1]["content"]
    return None


class Conversations:
    """Owner-scoped conversations and messages over the app's store."""

    def __init__(self, services: Services):
        self._services = services

    @property
    def store(self) -> Store:
        store = self._services.store
        if store is None:
            raise RuntimeError("the app is not running: its store is closed")
        return store

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

    def create_conversation(
        self, owner: str, *, system_prompt: str = "", params: dict | None = None
    ) -> int:
        """A new untitled conversation (its first user message will title it)."""
        return conv.create_conversation(
            self.store.db, owner, system_prompt=system_prompt, params=normalize_params(params)
        )

    def open_conversation(
        self,
        owner: str,
        cid: int | None,
        *,
        system_prompt: str,
        params: dict,
        keep_settings: bool = False,
    ) -> tuple[int, bool]:
        """The conversation a question or a document goes to: `cid` with these settings saved,
        or, when it is None or not the owner's, a new one with them; (its id, created).

        `keep_settings`: an existing conversation keeps its own (a document attached at the
        end of a long upload must not write back the settings the panel had at its start).
        """
        if (
            cid is not None
            and self.get_conversation(owner, cid) is not None
            and (
                keep_settings
                or self.save_settings(owner, cid, system_prompt=system_prompt, params=params)
            )
        ):
            return cid, False
        return self.create_conversation(owner, system_prompt=system_prompt, params=params), True

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
        if (
            current["system_prompt"] == system_prompt
            and {**extra, **normalize_params(current["params"])} == params
        ):
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

    def question_to_answer(self, owner: str, cid: int, draft: str | None) -> bool:
        """Store the draft as the question to answer next; without one, whether a question is
        left unanswered. False: there is no question to answer."""
        draft = (draft or "").strip()
        if draft:
            self.add_user_message(owner, cid, draft)
            return True
        return last_question(self.messages(owner, cid)) is not None

    def begin_answer(self, owner: str, cid: int, content: str, *, model: str | None) -> int:
        """Store an answer that has begun streaming (status "streaming"); returns its id.

        Checkpointed with `checkpoint_answer` as it grows, so a server that stops mid-answer
        keeps the text up to the last checkpoint (marked failed at the next start-up).
        """
        return msgs.add_message(
            self.store.db, owner, cid, "assistant", content, model=model, status=msgs.STREAMING
        )

    def checkpoint_answer(self, owner: str, message_id: int, content: str) -> None:
        """Save the text so far of an answer begun with `begin_answer`."""
        msgs.update_message(self.store.db, owner, message_id, content=content)

    def save_answer(
        self,
        owner: str,
        cid: int,
        content: str,
        *,
        model: str | None,
        stats: dict | None,
        status: str = "complete",
        error: str | None = None,
        message_id: int | None = None,
    ) -> int:
        """Store an answer as it ended: complete, stopped (partial kept) or failed.

        With `message_id` (from `begin_answer`) that answer is finished; else one is added.
        """
        stats = {k: v for k, v in (stats or {}).items() if v is not None}
        if message_id is not None and msgs.update_message(
            self.store.db,
            owner,
            message_id,
            content=content,
            stats=stats,
            status=status,
            error=error,
        ):
            return message_id
        return msgs.add_message(
            self.store.db,
            owner,
            cid,
            "assistant",
            content,
            model=model,
            stats=stats,
            status=status,
            error=error,
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
        return Resend(
            branch,
            branched=True,
            title=conv.get_conversation(self.store.db, owner, branch)["title"],
        )

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
        data.update(
            title=title if title.endswith(" (edited)") else f"{title} (edited)",
            created_at=None,
            messages=[*data["messages"][:index], edited],
        )
        return conv.import_json(self.store.db, owner, data)

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
