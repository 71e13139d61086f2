"""The usage log and the per-key series behind the usage plot."""

import pytest

from storage import usage
from storage.usage import log_request, log_requests, usage_by_endpoint, usage_series


def log_at(db, monkeypatch, when: float, **fields) -> None:
    monkeypatch.setattr(usage.time, "time", lambda: when)
    defaults = {
        "key_name": "alice",
        "endpoint": "/v1/chat/completions",
        "model": "qwen3",
        "status_code": 200,
    }
    log_request(db, **{**defaults, **fields})


def test_logged_request_has_exactly_these_fields(db, monkeypatch):
    log_at(
        db,
        monkeypatch,
        100.0,
        prompt_tokens=10,
        completion_tokens=5,
        latency_ms=900.0,
        ttft_ms=120.0,
        user="u-42",
    )
    assert list(db["usage_log"].rows) == [
        {
            "id": 1,
            "created_at": 100.0,
            "key_name": "alice",
            "endpoint": "/v1/chat/completions",
            "model": "qwen3",
            "status_code": 200,
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "latency_ms": 900.0,
            "ttft_ms": 120.0,
            "user": "u-42",
            "error_code": None,
            "request_id": None,
        }
    ]


def test_a_request_id_is_recorded_once_however_often_its_row_is_written(db):
    row = ("req-1", 5.0, "alice", "/v1/chat/completions", "qwen3", 200, 3, 4, 1.0, None, None, None)
    log_requests(db, [row, ("req-2", *row[1:])])
    log_requests(db, [row])  # replayed after a crash
    assert [(r["request_id"], r["completion_tokens"]) for r in db["usage_log"].rows] == [
        ("req-1", 4),
        ("req-2", 4),
    ]


def test_series_buckets_every_interval_with_zeros_and_counts_errors(db, monkeypatch):
    log_at(db, monkeypatch, 1_000.0, prompt_tokens=10, completion_tokens=1)
    log_at(db, monkeypatch, 1_059.0, prompt_tokens=20, completion_tokens=2)
    log_at(db, monkeypatch, 1_130.0, status_code=429, error_code="rate_limit_exceeded")
    log_at(db, monkeypatch, 1_130.0, key_name="bob", prompt_tokens=999)
    series = usage_series(db, "alice", since=960.0, bucket_seconds=60, until=1_200.0)
    assert series == [
        {
            "bucket_start": 960.0,
            "requests": 1,
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "errors": 0,
        },
        {
            "bucket_start": 1020.0,
            "requests": 1,
            "prompt_tokens": 20,
            "completion_tokens": 2,
            "errors": 0,
        },
        {
            "bucket_start": 1080.0,
            "requests": 1,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "errors": 1,
        },
        {
            "bucket_start": 1140.0,
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "errors": 0,
        },
        {
            "bucket_start": 1200.0,
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "errors": 0,
        },
    ]
    everyone = usage_series(db, None, since=1_080.0, bucket_seconds=60, until=1_139.0)
    assert [(b["requests"], b["prompt_tokens"]) for b in everyone] == [(2, 999)]


def test_series_refuses_absurd_bucket_counts(db):
    with pytest.raises(ValueError, match="too many"):
        usage_series(db, "alice", since=0.0, bucket_seconds=1, until=1e9)


def test_totals_per_endpoint_for_one_key_or_all(db, monkeypatch):
    log_at(db, monkeypatch, 1_000.0, endpoint="/v1/messages", prompt_tokens=30, completion_tokens=3)
    log_at(
        db,
        monkeypatch,
        1_010.0,
        endpoint="/v1/messages",
        status_code=404,
        error_code="model_not_found",
    )
    log_at(db, monkeypatch, 1_020.0, endpoint="/v1/responses", prompt_tokens=7, completion_tokens=2)
    log_at(db, monkeypatch, 1_030.0, endpoint="/v1/responses", key_name="bob", prompt_tokens=5)
    log_at(db, monkeypatch, 500.0, endpoint="/v1/completions")  # before the range
    assert usage_by_endpoint(db, "alice", since=900.0, until=1_100.0) == [
        {
            "endpoint": "/v1/messages",
            "requests": 2,
            "prompt_tokens": 30,
            "completion_tokens": 3,
            "errors": 1,
        },
        {
            "endpoint": "/v1/responses",
            "requests": 1,
            "prompt_tokens": 7,
            "completion_tokens": 2,
            "errors": 0,
        },
    ]
    everyone = usage_by_endpoint(db, None, since=900.0, until=1_100.0)
    assert [(e["endpoint"], e["requests"], e["prompt_tokens"]) for e in everyone] == [
        ("/v1/messages", 2, 30),
        ("/v1/responses", 2, 12),
    ]
