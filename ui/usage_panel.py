"""The usage view of the signed-in key: requests and tokens over time, and totals.

The series come from the gateway's usage log (every /v1 request, the UI's included); the
rate-limit headroom next to it is read from the last response's headers (see ui.chat).
"""

from __future__ import annotations

from datetime import datetime

import gradio as gr
import pandas as pd

from server.workbench import Workbench
from ui.layout import Components

# Range → (window, bucket) in seconds: about a hundred buckets or fewer each.
RANGES = {"1h": (3600, 60), "24h": (86400, 900), "7d": (7 * 86400, 3600)}
_LABELS = {"1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days"}


def frames(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(requests by outcome, tokens by kind) per bucket, in long form for colored plots."""
    requests, tokens = [], []
    for row in rows:
        t = datetime.fromtimestamp(row["bucket_start"])
        requests.append({"time": t, "requests": row["requests"] - row["errors"], "outcome": "ok"})
        requests.append({"time": t, "requests": row["errors"], "outcome": "error"})
        tokens.append({"time": t, "tokens": row["prompt_tokens"], "kind": "prompt"})
        tokens.append({"time": t, "tokens": row["completion_tokens"], "kind": "completion"})
    return (
        pd.DataFrame(requests, columns=["time", "requests", "outcome"]),
        pd.DataFrame(tokens, columns=["time", "tokens", "kind"]),
    )


def totals_markdown(rows: list[dict], range_key: str, endpoints: list[dict] = ()) -> str:
    """One line of totals over the range, then a table of them per endpoint."""
    requests = sum(r["requests"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    prompt = sum(r["prompt_tokens"] for r in rows)
    completion = sum(r["completion_tokens"] for r in rows)
    failed = f" ({errors:,} failed)" if errors else ""
    return (
        f"**{requests:,}** requests{failed} · **{prompt:,}** prompt + **{completion:,}** "
        f"completion tokens in the {_LABELS[range_key]}" + _endpoint_table(endpoints)
    )


def _endpoint_table(endpoints: list[dict]) -> str:
    if not endpoints:
        return ""
    lines = ["", "", "| endpoint | requests | failed | prompt tokens | completion tokens |",
             "|---|--:|--:|--:|--:|"]
    lines += [f"| `{e['endpoint']}` | {e['requests']:,} | {e['errors']:,} | "
              f"{e['prompt_tokens']:,} | {e['completion_tokens']:,} |" for e in endpoints]
    return "\n".join(lines)


def make_refresh(c: Components, wb: Workbench):
    """The callback that redraws the plots for a session and a range."""

    def refresh(session, range_key):
        if session is None:
            return {}
        window, bucket = RANGES.get(range_key, RANGES["1h"])
        rows = wb.usage_series(session.owner, window_seconds=window, bucket_seconds=bucket)
        requests, tokens = frames(rows)
        endpoints = wb.usage_by_endpoint(session.owner, window_seconds=window)
        return {
            c.usage_requests: requests,
            c.usage_tokens: tokens,
            c.usage_totals: totals_markdown(rows, range_key if range_key in RANGES else "1h",
                                            endpoints),
        }

    return refresh


def _args(c: Components, wb: Workbench) -> dict:
    return dict(
        fn=make_refresh(c, wb), inputs=[c.session, c.usage_range],
        outputs={c.usage_requests, c.usage_tokens, c.usage_totals},
        show_progress="hidden", api_visibility="private",
    )


def chain(event, c: Components, wb: Workbench):
    """Redraw the usage after `event` (an answer ended: one more request is logged)."""
    return event.then(**_args(c, wb))


def wire(c: Components, wb: Workbench) -> None:
    """Redraw on Refresh, on a range change and when the tab is opened."""
    gr.on([c.usage_refresh.click, c.usage_range.change, c.usage_tab.select], **_args(c, wb))
