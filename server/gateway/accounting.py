"""Usage accounting: one usage_log row per /v1 request, durable without waiting for SQLite.

A finished request's row is appended to this process's journal file (one `write`, a few µs on
the event loop): from then on it survives the process being killed, since the bytes are in the
kernel; an OS crash may lose what was not yet flushed to disk. One background task moves the
rows into SQLite in batches (one thread hop and one transaction per FLUSH_DELAY, not per
request), then deletes that batch's journal. A process that starts replays the journals no
living process holds (each holds an exclusive `flock` on its own); rows carry a request id
that SQLite keeps unique, so a batch replayed after a crash between commit and delete is not
counted twice. `drain()` (at shutdown) writes everything queued.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
import orjson

from server.gateway.metrics import GatewayMetrics
from storage import Store
from storage.usage import USAGE_COLUMNS, log_requests

log = logging.getLogger(__name__)
FLUSH_DELAY = 0.05
JOURNAL_DIR = "usage-journal"


# Request ids: this process's random prefix and a counter (a syscall for fresh randomness per
# request cost 1.5 % of its CPU); unique across processes and restarts by the prefix.
_ID_PREFIX = secrets.token_hex(8)
_ids = itertools.count(1)


def _request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):x}"


@dataclass
class UsageRow:
    """One request's usage_log row (storage.usage.USAGE_COLUMNS, in that order)."""

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
    request_id: str = field(default_factory=_request_id)
    created_at: float = field(default_factory=time.time)

    def values(self) -> tuple:
        """The row as log_requests takes it (USAGE_COLUMNS' order)."""
        return (
            self.request_id,
            self.created_at,
            self.key_name,
            self.endpoint,
            self.model,
            self.status_code,
            self.prompt_tokens,
            self.completion_tokens,
            self.latency_ms,
            self.ttft_ms,
            self.user,
            self.error_code,
        )


class Journal:
    """This process's append-only journal files: one per batch, locked while it lives."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._prefix = f"usage-{os.getpid()}-{secrets.token_hex(4)}-"
        self._sequence = 0
        self._fd: int | None = None
        self._path: Path | None = None

    def append(self, row: UsageRow) -> None:
        if self._fd is None:
            self._sequence += 1
            self._path = self.directory / f"{self._prefix}{self._sequence}.jsonl"
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.write(self._fd, orjson.dumps(row.values()) + b"\n")

    def seal(self) -> tuple[int, Path] | None:
        """Close the current file to new rows (the next row starts another); its handle and
        path, to `remove` once its rows are committed."""
        if self._fd is None:
            return None
        sealed, self._fd = (self._fd, self._path), None
        return sealed

    @staticmethod
    def remove(sealed: tuple[int, Path]) -> None:
        """Its rows are in SQLite: delete it."""
        fd, path = sealed
        path.unlink(missing_ok=True)
        os.close(fd)

    @staticmethod
    def release(sealed: tuple[int, Path]) -> None:
        """Its rows could not be written: unlock it for the next start's replay."""
        os.close(sealed[0])


def _journaled(line: bytes, path: Path) -> tuple | None:
    """One journal line as log_requests takes it; None (and a warning) for a torn one."""
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        row = None
    if isinstance(row, list) and len(row) == len(USAGE_COLUMNS):
        return tuple(row)
    log.warning("skipped a torn usage row in %s", path.name)
    return None


def replay_journals(store: Store, directory: Path) -> int:
    """Write the rows of journals left by processes that died (blocking); how many."""
    if not directory.is_dir():
        return 0
    replayed = 0
    for path in sorted(directory.glob("usage-*.jsonl")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # its owner committed it meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a living process still writes it
            with os.fdopen(fd, "rb", closefd=False) as journal:
                content = journal.read()
            rows = [row for line in content.splitlines() if (row := _journaled(line, path))]
            try:
                log_requests(store.db, rows)
            except sqlite3.Error:
                # Kept for the next start; serving must not wait for it.
                log.exception("could not replay the usage rows of %s", path.name)
                continue
            path.unlink(missing_ok=True)
            replayed += len(rows)
        finally:
            os.close(fd)
    return replayed


class UsageRecorder:
    """Journals usage rows, writes them to SQLite in the background, counts their tokens in
    the metrics."""

    def __init__(self, store: Store, metrics: GatewayMetrics):
        self.store = store
        self.metrics = metrics
        self.journal = Journal(store.path.parent / JOURNAL_DIR)
        self._rows: list[UsageRow] = []
        self._writer: asyncio.Task | None = None

    def record(self, row: UsageRow) -> None:
        """Journal the row (durable once this returns) and queue it for SQLite."""
        self.metrics.count_tokens(row.endpoint, row.prompt_tokens, row.completion_tokens)
        try:
            self.journal.append(row)
        except OSError:
            log.exception("could not journal a usage row; it is kept in memory until written")
        self._rows.append(row)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())

    async def _write_queued(self) -> None:
        while True:
            # A short wait gathers the rows of back-to-back requests into one thread hop.
            await asyncio.sleep(FLUSH_DELAY)
            if not self._rows:
                return
            rows, self._rows = self._rows, []
            sealed = self.journal.seal()
            try:
                await anyio.to_thread.run_sync(
                    log_requests, self.store.db, [row.values() for row in rows]
                )
            except Exception:
                # Serving goes on; the journal keeps the rows for the next start's replay.
                log.exception("could not record usage of %d requests", len(rows))
                if sealed is not None:
                    Journal.release(sealed)
                continue
            if sealed is not None:
                Journal.remove(sealed)

    async def drain(self) -> None:
        """Wait until every queued row is written."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
