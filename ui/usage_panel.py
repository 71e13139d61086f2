"""The usage view of the signed-in key: requests and tokens over time, and totals.

The series come from the gateway's usage log (every /v1 request, the UI's included); the
rate-limit headroom next to it is read from the last response's headers (see ui.turn).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import gradio as gr
import pandas as pd

from server.workbench import Workbench
from ui import formatting

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
    lines = [
        "",
        "",
        "| endpoint | requests | failed | prompt tokens | completion tokens |",
        "|---|--:|--:|--:|--:|",
    ]
    lines += [
        f"| `{e['endpoint']}` | {e['requests']:,} | {e['errors']:,} | "
        f"{e['prompt_tokens']:,} | {e['completion_tokens']:,} |"
        for e in endpoints
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class UsagePanel:
    """The usage tab: the rate-limit headroom (drawn by the chat), range, totals, plots."""

    headroom: gr.HTML
    range: gr.Radio
    refresh: gr.Button
    totals: gr.Markdown
    requests: gr.BarPlot
    tokens: gr.LinePlot


def build() -> UsagePanel:
    """Create the tab's components (inside the usage tab)."""
    headroom = gr.HTML(formatting.headroom_html(None), elem_id="rate-limit-headroom")
    with gr.Row():
        usage_range = gr.Radio(
            [("1 h", "1h"), ("24 h", "24h"), ("7 d", "7d")],
            value="1h",
            show_label=False,
            elem_id="usage-range",
            container=False,
            scale=3,
        )
        refresh = gr.Button("Refresh", size="sm", elem_id="usage-refresh", scale=1)
    totals = gr.Markdown("", elem_id="usage-totals")
    requests = gr.BarPlot(
        x="time",
        y="requests",
        color="outcome",
        title="Requests",
        height=200,
        elem_id="usage-requests",
        x_title="",
        y_title="requests",
        color_map={"ok": "#2563eb", "error": "#dc2626"},
    )
    tokens = gr.LinePlot(
        x="time",
        y="tokens",
        color="kind",
        title="Tokens",
        height=200,
        elem_id="usage-tokens",
        x_title="",
        y_title="tokens",
    )
    return UsagePanel(headroom, usage_range, refresh, totals, requests, tokens)


def wire(panel: UsagePanel, wb: Workbench, session: gr.State, tab: gr.Tab):
    """Redraw on Refresh, on a range change and when the tab is opened; returns `chain`, which
    redraws after an event (an answer ended: one more request is logged)."""

    def refresh(session, range_key):
        if session is None:
            return {}
        window, bucket = RANGES.get(range_key, RANGES["1h"])
        rows = wb.usage_series(session.owner, window_seconds=window, bucket_seconds=bucket)
        requests, tokens = frames(rows)
        endpoints = wb.usage_by_endpoint(session.owner, window_seconds=window)
        return {
            panel.requests: requests,
            panel.tokens: tokens,
            panel.totals: totals_markdown(
                rows, range_key if range_key in RANGES else "1h", endpoints
            ),
        }

    args = dict(
        fn=refresh,
        inputs=[session, panel.range],
        outputs={panel.requests, panel.tokens, panel.totals},
        show_progress="hidden",
        api_visibility="private",
    )
    gr.on([panel.refresh.click, panel.range.change, tab.select], **args)

    def chain(event):
        return event.then(**args)

    return chain
