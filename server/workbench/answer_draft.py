"""An answer's stored row while it streams, so a server that stops mid-answer keeps its text.

The row is added at the first token (status "streaming") and its text saved every
CHECKPOINT_SECONDS; `ui.turn.store_answer` then finishes it with its stats and how it ended.
Writes run in worker threads, one at a time, without the stream waiting for them, and they
outlive the stream's cancellation (Stop): `settled()` waits for the last one, so the final
write always comes after every checkpoint. A row a crashed server left "streaming" is marked
failed at the next start-up (`storage.messages.finish_interrupted_answers`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

import anyio

from server.workbench import Workbench

CHECKPOINT_SECONDS = 2.0

log = logging.getLogger(__name__)


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
