"""One usage row per /v1 completion request, whatever its outcome."""

import httpx
import sqlite_utils

from tests.helpers import wait_until

COLUMNS = "key_name, endpoint, model, status_code, user, error_code"


def rows(app, count: int, timeout: float = 10.0) -> list[dict]:
    """The app's usage rows, once `count` of them are written (they are written async)."""

    def found() -> list[dict]:
        db = sqlite_utils.Database(app.data_dir / "workbench.db")
        try:
            return list(
                db.query(
                    f"SELECT {COLUMNS}, prompt_tokens, completion_tokens, "
                    "latency_ms, ttft_ms FROM usage_log ORDER BY id"
                )
            )
        finally:
            db.close()

    return wait_until(
        lambda: rows if len(rows := found()) >= count else None,
        timeout=timeout,
        interval=0.05,
        message=f"fewer than {count} usage rows",
    )


def test_every_completion_request_leaves_one_row(make_app):
    app = make_app(WORKBENCH_RPM=5)
    headers = {"Authorization": f"Bearer {app.api_key}"}
    hi = [{"role": "user", "content": "Hi"}]
    with httpx.Client(base_url=app.v1, headers=headers, timeout=60) as client:
        statuses = [
            client.post(
                "/chat/completions",
                json={"model": "qwen3", "messages": hi, "max_tokens": 2, "user": "ann"},
            ),
            client.post("/completions", json={"model": "qwen3", "prompt": "Hi", "max_tokens": 2}),
            client.post("/chat/completions", content=b"{oops"),
            client.post("/chat/completions", json={"model": "gpt-4", "messages": hi}),
            client.post(
                "/chat/completions", json={"model": "qwen3", "messages": hi, "temperature": 9}
            ),
            client.post(
                "/chat/completions", json={"model": "qwen3", "messages": hi, "max_tokens": 2}
            ),
            client.post(
                "/chat/completions", json={"model": "qwen3", "messages": hi, "max_tokens": 2}
            ),
            client.get("/models"),  # not a completion: no row
        ]
        assert [r.status_code for r in statuses] == [200, 200, 400, 404, 400, 200, 200, 200]
        # 5 admitted completions per minute (errors before admission do not count): the 5th
        # completion is admitted, the 6th refused.
        fifth = client.post(
            "/chat/completions", json={"model": "qwen3", "messages": hi, "max_tokens": 2}
        )
        sixth = client.post("/chat/completions", json={"model": "qwen3", "messages": hi})
        assert (fifth.status_code, sixth.status_code) == (200, 429)
    found = rows(app, 9)
    chat, legacy = "/v1/chat/completions", "/v1/completions"
    assert [tuple(r[c.strip()] for c in COLUMNS.split(",")) for r in found] == [
        ("admin", chat, "qwen3", 200, "ann", None),
        ("admin", legacy, "qwen3", 200, None, None),
        ("admin", chat, None, 400, None, "invalid_json"),
        ("admin", chat, "gpt-4", 404, None, "model_not_found"),
        ("admin", chat, "qwen3", 400, None, "invalid_value"),
        ("admin", chat, "qwen3", 200, None, None),
        ("admin", chat, "qwen3", 200, None, None),
        ("admin", chat, "qwen3", 200, None, None),
        ("admin", chat, "qwen3", 429, None, "rate_limit_exceeded"),
    ]
    first = found[0]
    assert first["prompt_tokens"] == statuses[0].json()["usage"]["prompt_tokens"]
    assert first["completion_tokens"] == statuses[0].json()["usage"]["completion_tokens"]
    assert first["latency_ms"] > 0 and first["ttft_ms"] is None
    assert all(r["prompt_tokens"] == 0 for r in found if r["status_code"] != 200)
