"""What a person reads about a conversation: an answer's stats, the Markdown export.

The one set of stat labels: the stats line under an answer in the workbench and the one under
it in a Markdown export say the same thing in the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import sqlite_utils

from storage.documents import conversation_documents
from storage.messages import STREAMING, list_messages
from storage.ownership import require_conversation

# (stored key, label, format) in reading order.
STAT_LABELS = (
    ("ttft_ms", "TTFT", "{:,.0f} ms"),
    ("decode_tps", "decode", "{:,.1f} tok/s"),
    ("prompt_tokens", "prompt", "{:,}"),
    ("cached_tokens", "cached", "{:,}"),
    ("completion_tokens", "completion", "{:,}"),
    ("total_ms", "total", "{:,.0f} ms"),
)


def stats_items(message: Mapping) -> list[str]:
    """The stats of one answer as short labelled items, in reading order, then how it ended."""
    out = [
        f"{label} {fmt.format(message[key])}"
        for key, label, fmt in STAT_LABELS
        if message.get(key) is not None
    ]
    status = message.get("status", "complete")
    if status == "stopped":
        out.append("stopped by you")
    elif status == "error":
        out.append("failed")
    elif message.get("finish_reason") == "length":
        out.append("finish length (max tokens)")
    elif message.get("finish_reason"):
        out.append(f"finish {message['finish_reason']}")
    if message.get("replica"):  # several engines: which one answered
        out.append(f"replica {message['replica'].split('://', 1)[-1]}")
    return out


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def export_markdown(db: sqlite_utils.Database, owner: str, cid: int) -> str:
    """The conversation as Markdown: a heading per message, stats under each answer.

    NotFoundError for a conversation that is not the owner's.
    """
    conversation = require_conversation(db, owner, cid)
    lines = [f"# {conversation['title'] or 'Untitled conversation'}", ""]
    lines += [f"*Created {_when(conversation['created_at'])}*", ""]
    if conversation["system_prompt"]:
        lines += ["## System prompt", "", conversation["system_prompt"], ""]
    documents = conversation_documents(db, owner, cid)
    if documents:
        lines += ["## Documents", ""]
        lines += [
            f"- {d['filename']}: {d['page_count']} pages, {d['total_tokens']:,} tokens"
            for d in documents
        ]
        lines.append("")
    for message in list_messages(db, owner, cid):
        heading = message["role"].capitalize()
        if message["model"]:
            heading += f" ({message['model']})"
        lines += [f"## {heading}", "", message["content"], ""]
        if message["status"] == STREAMING:
            lines += ["> Answer still being written", ""]
        elif message["status"] != "complete":
            reason = f": {message['error']}" if message["error"] else ""
            lines += [f"> Answer {message['status']}{reason}", ""]
        if message["role"] == "assistant" and (stats := stats_items(message)):
            lines += [f"*{' · '.join(stats)}*", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
