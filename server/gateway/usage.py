"""Usage accounting: one usage_log row per /v1 request, written off the request's path.

SQLite writes are blocking, so each row is written in a worker thread by a background task;
the response never waits for it. `drain()` (at shutdown) waits for the rows still in flight.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass

import anyio.to_thread

from server.gateway.metrics import GatewayMetrics
from storage import Store
from storage.usage import log_request

log = logging.getLogger(__name__)


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
        self._pending: set[asyncio.Task] = set()

    def record(self, row: UsageRow) -> None:
        """Schedule the row's write; returns at once."""
        self.metrics.count_tokens(row.prompt_tokens, row.completion_tokens)
        task = asyncio.get_running_loop().create_task(self._write(row))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, row: UsageRow) -> None:
        try:
            await anyio.to_thread.run_sync(self._write_sync, row)
        except Exception:
            # Losing one accounting row must not break serving; the operator sees it in the log.
            log.exception("could not record usage for %s %s", row.key_name, row.endpoint)

    def _write_sync(self, row: UsageRow) -> None:
        log_request(self.store.db, **asdict(row))

    async def drain(self) -> None:
        """Wait until every scheduled row is written."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
