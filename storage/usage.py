"""The usage log: one row per /v1 request, and per-key series for the usage plot."""

import math
import time

import sqlite_utils

from storage.transactions import write

# A series longer than this is a mistake of bucket size, not something to plot.
MAX_BUCKETS = 10_000


# The columns a request's row is written with, in the order of log_requests' tuples.
USAGE_COLUMNS = (
    "request_id",
    "created_at",
    "key_name",
    "endpoint",
    "model",
    "status_code",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "ttft_ms",
    "user",
    "error_code",
)
_INSERT = (
    f"INSERT OR IGNORE INTO usage_log ({', '.join(USAGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(USAGE_COLUMNS))})"
)


def log_requests(db: sqlite_utils.Database, rows: list[tuple]) -> None:
    """Record requests in one transaction: tuples of USAGE_COLUMNS' values. A row whose
    request_id is already there is skipped, so replaying a batch is harmless."""
    with write(db):
        db.conn.executemany(_INSERT, rows)


def log_request(
    db: sqlite_utils.Database,
    *,
    key_name: str,
    endpoint: str,
    model: str | None,
    status_code: int,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    latency_ms: float | None = None,
    ttft_ms: float | None = None,
    user: str | None = None,
    error_code: str | None = None,
    request_id: str | None = None,
    created_at: float | None = None,
) -> None:
    """Record one request (call it once the response is complete, streamed or not)."""
    log_requests(
        db,
        [
            (
                request_id,
                time.time() if created_at is None else created_at,
                key_name,
                endpoint,
                model,
                status_code,
                prompt_tokens or 0,
                completion_tokens or 0,
                latency_ms,
                ttft_ms,
                user,
                error_code,
            )
        ],
    )


def usage_by_endpoint(
    db: sqlite_utils.Database, key_name: str | None, *, since: float, until: float | None = None
) -> list[dict]:
    """Totals per endpoint from `since` to `until` (default now), one key or all (None), the
    busiest first. Each: {endpoint, requests, prompt_tokens, completion_tokens, errors}."""
    until = time.time() if until is None else until
    where = "created_at >= ? AND created_at <= ?"
    params: list = [since, until]
    if key_name is not None:
        where += " AND key_name = ?"
        params.append(key_name)
    return list(
        db.query(
            f"""SELECT endpoint, count(*) AS requests, sum(prompt_tokens) AS prompt_tokens,
                   sum(completion_tokens) AS completion_tokens, sum(status_code >= 400) AS errors
            FROM usage_log WHERE {where} GROUP BY endpoint ORDER BY requests DESC, endpoint""",
            params,
        )
    )


def usage_series(
    db: sqlite_utils.Database,
    key_name: str | None,
    *,
    since: float,
    bucket_seconds: int = 60,
    until: float | None = None,
) -> list[dict]:
    """Requests per time bucket from `since` to `until` (default now), one key or all (None).

    Every bucket is present, empty ones as zeros, so a plot shows idle time as idle.
    Each: {bucket_start, requests, prompt_tokens, completion_tokens, errors (status >= 400)}.
    """
    if bucket_seconds < 1:
        raise ValueError("bucket_seconds must be at least 1")
    until = time.time() if until is None else until
    first = math.floor(since / bucket_seconds) * bucket_seconds
    count = max(0, math.floor((until - first) / bucket_seconds) + 1)
    if count > MAX_BUCKETS:
        raise ValueError(f"{count} buckets is too many: use a larger bucket_seconds")
    where = "created_at >= ? AND created_at <= ?"
    params: list = [first, until]
    if key_name is not None:
        where += " AND key_name = ?"
        params.append(key_name)
    rows = db.query(
        f"""SELECT CAST((created_at - ?) / ? AS INTEGER) AS bucket, count(*) AS requests,
                   sum(prompt_tokens) AS prompt_tokens,
                   sum(completion_tokens) AS completion_tokens,
                   sum(status_code >= 400) AS errors
            FROM usage_log WHERE {where} GROUP BY bucket""",
        [first, bucket_seconds, *params],
    )
    found = {row.pop("bucket"): row for row in rows}
    empty = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "errors": 0}
    return [
        {"bucket_start": float(first + i * bucket_seconds), **found.get(i, empty)}
        for i in range(count)
    ]
