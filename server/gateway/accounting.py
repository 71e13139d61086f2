"""Usage accounting: one usage_log row per /v1 request, written off the request's path.

SQLite writes are blocking, so rows are written in a worker thread by one background task;
the response never waits for it. Rows are gathered for FLUSH_DELAY seconds and written
together, so a busy host makes one thread hop per batch, not per request. `drain()` (at
shutdown) waits until every row is written.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import anyio.to_thread

from server.gateway.metrics import GatewayMetrics
from storage import Store
from storage.usage import log_request

log = logging.getLogger(__name__)
FLUSH_DELAY = 0.05


@dataclass
class UsageRow:
    """The arguments of storage.usage.log_request for one request."""

    key_name: str
    endpoint: str
    model: str | None
    status_code: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    user: str | None = None
    error_code: str | None = None


class UsageRecorder:
    """Writes usage rows in the background and counts their tokens in the metrics."""

    def __init__(self, store: Store, metrics: GatewayMetrics):
        self.store = store
        self.metrics = metrics
        self._rows: list[UsageRow] = []
        self._writer: asyncio.Task | None = None

    def record(self, row: UsageRow) -> None:
        """Queue the row for writing (within FLUSH_DELAY seconds); returns at once."""
        self.metrics.count_tokens(row.endpoint, row.prompt_tokens, row.completion_tokens)
        self._rows.append(row)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())

    async def _write_queued(self) -> None:
        # A short wait gathers the rows of back-to-back requests into one thread hop.
        await asyncio.sleep(FLUSH_DELAY)
        while self._rows:
            rows, self._rows = self._rows, []
            try:
                await anyio.to_thread.run_sync(self._write_sync, rows)
            except Exception:
                # Losing accounting rows must not break serving; the operator sees it in the log.
                log.exception("could not record usage of %d requests", len(rows))

    def _write_sync(self, rows: list[UsageRow]) -> None:
        db = self.store.db
        for row in rows:
            log_request(db, **vars(row))  # vars, not asdict: no deep copy

    async def drain(self) -> None:
        """Wait until every queued row is written."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
