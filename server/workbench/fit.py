"""Whether a conversation's next request fits the context, and the messages it would send.

Pure decisions (no storage): the facade (`server.workbench.Workbench.fit`) counts, these decide.
"""

from __future__ import annotations

from dataclasses import dataclass

# An answer in the room a prompt leaves is offered only from this many tokens: fewer make no
# answer worth reading.
MIN_ROOM = 32


@dataclass(frozen=True)
class Fit:
    """Whether a conversation's next request fits the context: prompt and answer budget."""

    used: int  # exact prompt tokens (documents, system prompt, history, draft)
    reserve: int  # max_tokens: the room the answer asks for
    max_context: int
    documents: int  # tokens of the attached documents' chosen pages
    attached: int  # how many documents are attached

    @property
    def fits(self) -> bool:
        return self.used + self.reserve <= self.max_context

    @property
    def room(self) -> int:
        """Tokens left for the answer."""
        return max(0, self.max_context - self.used)

    @property
    def room_for_answer(self) -> bool:
        """Whether the room left is worth an answer (MIN_ROOM)."""
        return self.room >= MIN_ROOM


def prompt_messages(
    system_prompt: str, messages: list[dict], draft: str | None = None
) -> list[dict]:
    """The chat messages sent to /v1 for a conversation (and the gauge counts the same).

    Failed answers are left out (the model never said them); a stopped answer's partial text
    stays, as the person saw it.
    """
    out = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    for m in messages:
        if m["role"] == "assistant" and (m["status"] == "error" or not m["content"]):
            continue
        out.append({"role": m["role"], "content": m["content"]})
    if draft:
        out.append({"role": "user", "content": draft})
    return out
