"""Benchmark: the context gauge's count while a question is typed under a ~700k-token document.

The workbench recounts the whole prompt (documents, system prompt, history, draft) with the
served model's tokenizer on every change of the draft, and the gateway counts every request's
prompt again. Side by side in the same run, for each keystroke of a question:

- baseline: one tiktoken encode of the whole rendered prompt (how counting worked before);
- counter: `TokenCounter.count_messages`, which remembers the counts of long stretches
  between special tokens, so only the draft's short tail is new.

Both must give the same number at every keystroke. Times are medians, in milliseconds.

    .venv/app/bin/python bench/token_counting.py [--tokens 690000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from pdf_source import build_source  # noqa: E402

from server.tokens import TokenCounter, qwen3_counter  # noqa: E402

QUESTION = "Which sections retry a request, and what do they return on success? Cite pages."


def document_text(counter: TokenCounter, tokens: int) -> str:
    """Page-marked prose, code and Chinese (as the prompt builder lays out a PDF) of ≈tokens."""
    src = build_source(400)
    page = "\n\n".join(
        src.paragraphs[:6] + ["\n".join(src.code_lines[:40])] + src.cjk_sentences[:3]
    )
    per_page = counter.count_text(page)
    pages = [f"[page {n}]\n{page}" for n in range(1, tokens // per_page + 1)]
    return '<document filename="bench.pdf">\n' + "\n\n".join(pages) + "\n</document>"


def baseline(counter: TokenCounter, messages: list[dict]) -> int:
    """The whole rendered prompt through one encode (what count_text did before)."""
    return len(counter.encode(counter.render_messages(messages)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=690_000)
    args = parser.parse_args()

    counter = qwen3_counter()
    started = time.perf_counter()
    document = document_text(counter, args.tokens)
    print(f"document: {len(document):,} chars, built in {time.perf_counter() - started:.1f} s")
    system = {"role": "system", "content": document + "\n\nAnswer from the document."}

    base_ms, counter_ms = [], []
    first = None
    for i in range(1, len(QUESTION) + 1):
        messages = [system, {"role": "user", "content": QUESTION[:i]}]
        t0 = time.perf_counter()
        expected = baseline(counter, messages)
        t1 = time.perf_counter()
        got = counter.count_messages(messages)
        t2 = time.perf_counter()
        if got != expected:
            raise SystemExit(f"count differs at keystroke {i}: {got} != {expected}")
        first = first if first is not None else (t2 - t1) * 1000
        base_ms.append((t1 - t0) * 1000)
        counter_ms.append((t2 - t1) * 1000)

    base, ours = statistics.median(base_ms), statistics.median(counter_ms[1:])
    print(
        f"prompt: {expected:,} tokens (Qwen3 tokenizer), {len(QUESTION)} keystrokes, "
        "identical counts at every one"
    )
    print(f"baseline, whole prompt encoded : {base:8.1f} ms per keystroke (median)")
    print(f"counter, first count (cold)    : {first:8.1f} ms")
    print(f"counter, later keystrokes      : {ours:8.1f} ms per keystroke (median)")
    print(f"ratio baseline / counter       : {base / ours:8.1f}x")


if __name__ == "__main__":
    main()
