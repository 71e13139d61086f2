"""Sampling parameters of a conversation: the API reference's defaults, completed and clamped."""

from __future__ import annotations

import math
from typing import Any

# Sampling defaults, as documented in docs/API.md (stop: none).
DEFAULT_PARAMS: dict[str, Any] = {
    "temperature": 0.7,
    "top_p": 1.0,
    "max_tokens": 2048,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "stop": [],
}
# OpenAI accepts at most four stop sequences (and so does vLLM).
MAX_STOP_SEQUENCES = 4
MIN_TOP_P = 0.01  # /v1 refuses 0 (nothing could be sampled)


def normalize_params(params: dict | None) -> dict[str, Any]:
    """Stored or typed sampling parameters, completed with the defaults and clamped to range."""
    merged = {**DEFAULT_PARAMS, **{k: v for k, v in (params or {}).items() if v is not None}}

    def number(key: str, low: float, high: float) -> float:
        try:
            value = float(merged[key])
        except (TypeError, ValueError):
            value = DEFAULT_PARAMS[key]
        if not math.isfinite(value):
            value = DEFAULT_PARAMS[key]
        return min(max(value, low), high)

    stop = merged["stop"]
    if isinstance(stop, str):
        stop = [stop]
    stop = [s for s in stop if isinstance(s, str) and s][:MAX_STOP_SEQUENCES]
    return {
        "temperature": number("temperature", 0.0, 2.0),
        "top_p": number("top_p", MIN_TOP_P, 1.0),
        "max_tokens": int(number("max_tokens", 1, 10_000_000)),
        "presence_penalty": number("presence_penalty", -2.0, 2.0),
        "frequency_penalty": number("frequency_penalty", -2.0, 2.0),
        "stop": stop,
    }
