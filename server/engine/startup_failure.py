"""vLLM's start-up refusal for lack of KV-cache memory, read from its log and turned into advice.

`launch.sh` runs `python -m server.engine.startup_failure ENGINE_LOG --profile P` when the engine
dies; the paragraph it prints quotes vLLM's own numbers and the exact way to start with what
fits. The wording matched is vLLM's `_check_enough_kv_cache_memory` (`v1/core/kv_cache_utils.py`);
`tests/test_startup_failure.py` produces it with the installed vLLM, so an upgrade that changes
it fails there.
"""

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

_REFUSAL = re.compile(
    r"To serve at least one request with the model's max seq len \((?P<asked>\d+)\), "
    r"\((?P<needed>[\d.]+) GiB KV cache is needed, which is larger than the available KV "
    r"cache memory \((?P<available>[\d.]+) GiB\)\. "
    r"(?:Based on the available memory, the estimated maximum model length is "
    r"(?P<estimated>\d+)\. )?"
)
_NO_MEMORY = "No available memory for the cache blocks."


@dataclass(frozen=True)
class KvRefusal:
    """vLLM's numbers: the context asked, the KV cache it needs, what is available (GiB per
    GPU), and the longest context vLLM estimates would fit (0 when not even one token does)."""

    asked: int
    needed_gib: float
    available_gib: float
    estimated: int


def parse(log: str) -> KvRefusal | None:
    """The last KV-memory refusal in an engine log, or None when the engine died otherwise."""
    matches = list(_REFUSAL.finditer(log))
    if matches:
        found = matches[-1]
        return KvRefusal(
            asked=int(found["asked"]),
            needed_gib=float(found["needed"]),
            available_gib=float(found["available"]),
            estimated=int(found["estimated"] or 0),
        )
    if _NO_MEMORY in log:
        return KvRefusal(asked=0, needed_gib=0.0, available_gib=0.0, estimated=0)
    return None


def advice(refusal: KvRefusal, profile: str) -> str:
    """One paragraph: vLLM's numbers, then how to start with what fits."""
    launch = f"./launch.sh --profile {profile}"
    if refusal.estimated <= 0:
        return (
            "vLLM refused to start: after the weights and its measured reserves no memory is "
            "left for the KV cache. Raise --gpu-memory-utilization or free GPU memory; the "
            "arithmetic is in docs/memory.md."
        )
    fit = ""
    if profile == "h200x4":
        fit = f" (or {launch} --fit-context, vLLM's --max-model-len auto)"
    return (
        f"vLLM refused to start: one request of {refusal.asked:,} tokens needs "
        f"{refusal.needed_gib} GiB of KV cache, and {refusal.available_gib} GiB is available "
        f"after the weights and its measured reserves; it estimates the longest context that "
        f"fits at {refusal.estimated:,} tokens. Start with what fits: "
        f"WORKBENCH_MAX_CONTEXT={refusal.estimated} {launch}{fit}. "
        "The memory plan behind the asked context is in docs/memory.md."
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.engine.startup_failure")
    parser.add_argument("log", type=Path)
    parser.add_argument("--profile", default="h200x4")
    args = parser.parse_args(argv)
    try:
        text = args.log.read_text(errors="replace")
    except OSError:
        return 1
    refusal = parse(text)
    if refusal is None:
        return 1
    print(advice(refusal, args.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
