"""Benchmark: ingesting a long, realistic PDF (speed and fidelity).

Builds once (cached under data/bench/) a ~1,500-page PDF printed by Chromium from HTML with
mixed prose, indented code blocks and some Chinese, with embedded fonts. Then, in the same run:
single-process pypdf (the fidelity reference) versus the chosen pipeline, pages/s, total
seconds, their ratio, peak memory, token-counting speed, and a fidelity check of both outputs
against the source text (code-line indentation, CJK sentences, reading order).

    .venv/app/bin/python bench/pdf_ingest.py [--sections N] [--rebuild] [--skip-reference]
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import random
import re
import resource
import sys
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
WORDS = (
    "the request handler reads each page and keeps indentation because a coding model needs "
    "structure so we measure throughput latency memory tokens cache prefix engine context "
    "window budget chunk summary answer citation document storage sqlite worker process pool "
    "reader font glyph stream object offset table trailer parser decoder encoder merge rank "
    "vocabulary regex normal form unicode byte order layout column margin baseline kerning"
).split()
CJK_SENTENCES = [
    "长文档分析需要保留每一页的页码，以便回答时引用原文。",
    "代码块的缩进对编程模型非常重要，不能在提取文本时丢失。",
    "我们在两核机器上测量每秒处理的页数和总耗时。",
    "前缀缓存让同一文档的第二个问题回答得更快。",
    "加密、损坏或只有图片的文件都应该给出清楚的提示。",
    "分词器必须与服务模型完全一致，计数才准确。",
    "日本語の文章も少し含めて、全角文字の扱いを確認する。",
    "文件上传后立即显示总词元数以及占上下文的比例。",
]
STYLE = """
@page { size: A4; margin: 20mm 18mm; }
body { font-family: 'DejaVu Serif', serif; font-size: 11pt; line-height: 1.4; }
h2 { font-family: 'DejaVu Sans', sans-serif; font-size: 13pt; margin: 10pt 0 4pt; }
p { margin: 0 0 6pt; text-align: justify; }
p.cjk { font-family: 'WenQuanYi Micro Hei', sans-serif; text-align: left; }
code { font-family: 'DejaVu Sans Mono', monospace; font-size: 0.9em; }
pre { font-family: 'DejaVu Sans Mono', monospace; font-size: 9pt; line-height: 1.3;
      white-space: pre; margin: 4pt 0 8pt; padding: 4pt 6pt; border-left: 2pt solid #999; }
"""
# The test fixture tests/pdfs/chromium-code-cjk.pdf: 16 sections, denser, and a last page of
# two code lines alone, which pdfium misreads as a vertical column of glyphs (the case the
# extractor hands to pypdf).
DENSE_STYLE = (
    STYLE.replace("margin: 20mm 18mm", "margin: 18mm 16mm")
    .replace("font-size: 11pt; line-height: 1.4", "font-size: 10.5pt; line-height: 1.35")
    .replace("font-size: 9pt; line-height: 1.3", "font-size: 8.5pt; line-height: 1.25")
)
FIXTURE = REPO / "tests" / "pdfs" / "chromium-code-cjk.pdf"
FIXTURE_TAIL = ["        return payload['key_99'] * 15", "    return {'status': 'done', 'id': 99}"]


@dataclass
class Source:
    """The HTML to print and what a faithful extraction must reproduce."""

    html: str
    code_lines: list[str] = field(default_factory=list)  # in document order, with indentation
    cjk_sentences: list[str] = field(default_factory=list)
    paragraph_markers: list[str] = field(default_factory=list)  # in reading order
    paragraphs: list[str] = field(default_factory=list)  # prose as plain text


def _prose(rng: random.Random, marker: str) -> str:
    sentences = []
    for _ in range(rng.randint(4, 7)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 18))]
        sentences.append(" ".join(words).capitalize() + ".")
    return f"{marker} " + " ".join(sentences)


def _c_code(rng: random.Random, n: int) -> list[str]:
    """A C function: lone braces and comments aligned with runs of spaces."""
    return [
        f"static int parse_header_{n:04d}(const char *buf, size_t len)",
        "{",
        f"    int state = {rng.randint(0, 9)};          /* lines seen so far */",
        "    for (size_t i = 0; i < len; i++) {",
        "        if (buf[i] == '\\n') {",
        f"            state += {rng.randint(1, 4)};     /* next line */",
        "            /* 换行计数 (count the line) */",
        "        }",
        "    }",
        "    return state;",
        "}",
    ]


def _python_code(rng: random.Random, n: int) -> list[str]:
    """A Python function with nested blocks: indentation at 4, 8, 12 and 16 spaces."""
    lines = [f"def handle_request_{n:04d}(payload, retries={rng.randint(1, 9)}):",
             f'    """Process payload {n} and keep its structure."""']
    for block in range(rng.randint(1, 3)):
        key = f"key_{n}_{block}"
        lines += [
            f"    for attempt_{block} in range(retries):",
            f"        if payload.get({key!r}) is None:",
            f"            value = compute(attempt_{block}, {rng.randint(10, 999)})",
            f"            while value > {rng.randint(0, 5)}:",
            f"                value -= step({key!r}, value)",
            "        else:",
            f"            return payload[{key!r}] * {rng.randint(2, 50)}",
        ]
    lines.append(f"    return {{'status': 'done', 'id': {n}}}")
    return lines


def build_source(
    sections: int, seed: int = 6, *, style: str = STYLE, last_page: list[str] | None = None
) -> Source:
    """A deterministic document: each section has prose, a code block, sometimes Chinese.

    `last_page`: code lines to print alone on a final page.
    """
    rng = random.Random(seed)
    src = Source(html="")
    head = f"<meta charset='utf-8'><style>{style}</style>"
    parts = [f"<!doctype html><html><head>{head}</head><body>"]
    for n in range(sections):
        parts.append(f"<h2>Section {n + 1}: request handling</h2>")
        for k in range(2):
            marker = f"[P{n:04d}.{k}]"
            src.paragraph_markers.append(marker)
            prose = _prose(rng, marker)
            if k == 1 and n % 5 == 0:  # a line that starts with inline code, then prose
                name = f"module_{n}.py"
                src.paragraphs.append(f"{name} {prose}")
                parts.append(f"<p><code>{name}</code> {html.escape(prose)}</p>")
            else:
                src.paragraphs.append(prose)
                parts.append(f"<p>{html.escape(prose)}</p>")
        code = _c_code(rng, n) if n % 4 == 1 else _python_code(rng, n)
        src.code_lines += code
        parts.append("<pre>" + html.escape("\n".join(code)) + "</pre>")
        if n % 3 == 0:
            chosen = rng.sample(CJK_SENTENCES, 3)
            src.cjk_sentences += chosen
            parts.append(f"<p class='cjk'>{''.join(chosen)}</p>")
    if last_page:
        src.code_lines += last_page
        code = html.escape("\n".join(last_page))
        parts.append(f"<pre style='break-before: page'>{code}</pre>")
    parts.append("</body></html>")
    src.html = "".join(parts)
    return src


def fixture_source() -> Source:
    """The source of tests/pdfs/chromium-code-cjk.pdf (tests check the PDF's text against it)."""
    return build_source(16, style=DENSE_STYLE, last_page=FIXTURE_TAIL)


def print_pdf(page_html: str) -> bytes:
    """Print HTML to PDF with Debian's Chromium through Playwright (fonts get embedded)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        path = Path(tmp) / "doc.html"
        path.write_text(page_html, encoding="utf-8")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(0)  # printing ~1,500 pages takes a while
            page.goto(path.as_uri(), wait_until="load")
            return page.pdf(prefer_css_page_size=True)
        finally:
            browser.close()


def bench_pdf(sections: int, rebuild: bool) -> tuple[Source, bytes, Path]:
    """The benchmark PDF, printed once and cached under data/bench/."""
    src = build_source(sections)
    digest = hashlib.sha256(src.html.encode()).hexdigest()[:8]  # a changed generator reprints
    path = REPO / "data" / "bench" / f"long-{sections}-{digest}.pdf"
    if rebuild or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        path.write_bytes(print_pdf(src.html))
        took = time.perf_counter() - started
        print(f"printed {path.relative_to(REPO)} with Chromium in {took:.1f} s")
    return src, path.read_bytes(), path


def fidelity(src: Source, texts: list[str]) -> dict:
    """How much of the source survives: code lines with exact indentation, CJK, order."""
    lines = "\n".join(texts).split("\n")
    found = exact = cursor = 0
    for code in src.code_lines:
        # Code lines are searched in document order, a little ahead of the last match.
        want = code.strip()
        for k in range(cursor, min(cursor + 400, len(lines))):
            if lines[k].strip() == want:
                found += 1
                exact += lines[k].rstrip() == code
                cursor = k + 1
                break
    everything = "\n".join(texts)
    flat = "".join(everything.split())
    spaced = " ".join(everything.split())
    prose = sum(" ".join(p.split()) in spaced for p in src.paragraphs)
    cjk = sum(unicodedata.normalize("NFKC", s) in flat for s in src.cjk_sentences)
    positions = [everything.find(m) for m in src.paragraph_markers]
    in_order = all(p >= 0 for p in positions) and positions == sorted(positions)
    return {
        "code_found": found / len(src.code_lines),
        "indent_exact": exact / len(src.code_lines),
        "cjk": cjk / max(1, len(src.cjk_sentences)),
        "prose": prose / len(src.paragraphs),
        "order": in_order,
    }


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _reference_in_child(data: bytes) -> tuple[float, list[str], float]:
    """Single-process pypdf over every page, in a fresh process (for a clean peak memory)."""
    from server.documents.extract import extract_pages

    started = time.perf_counter()
    texts = [p.text for p in extract_pages(data, engine="pypdf", workers=1)]
    return time.perf_counter() - started, texts, _maxrss_mb(resource.RUSAGE_SELF)


def _raw_pdfium(data: bytes) -> list[str]:
    """pdfium's own text, nothing restored (its speed and fidelity on its own)."""
    import pypdfium2 as pdfium

    from server.documents.extract import normalize_text

    document = pdfium.PdfDocument(data)
    texts = []
    for page in document:
        textpage = page.get_textpage()
        texts.append(normalize_text(textpage.get_text_range()))
        textpage.close()
        page.close()
    document.close()
    return texts


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.split("\n")]


# pypdf puts an extra space after a run of wide (CJK) glyphs that is followed by a gap.
_AFTER_WIDE = re.compile(r"(?<=[\u2e80-\u9fff\uac00-\ud7af\uff00-\uffef])  +")


def _same_pages(ours: list[str], reference: list[str], *, forgive_wide: bool) -> int:
    if forgive_wide:
        reference = [_AFTER_WIDE.sub(" ", text) for text in reference]
    return sum(_lines(a) == _lines(b) for a, b in zip(ours, reference, strict=True))


def _fork_server_pid() -> int | None:
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None)


class WorkerMemory:
    """Samples the resident memory of the fork server's children (the extraction workers),
    which this process cannot see through getrusage."""

    def __init__(self) -> None:
        self.peak_single = self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        parent = str(_fork_server_pid())
        while not self._stop.wait(0.05):
            sizes = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                    if fields[1] == parent:
                        sizes.append(int(fields[21]) * os.sysconf("SC_PAGE_SIZE"))  # rss
                except (OSError, IndexError, ValueError):
                    continue  # the process ended meanwhile
            if sizes:
                self.peak_single = max(self.peak_single, max(sizes))
                self.peak_total = max(self.peak_total, sum(sizes))

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _forked_workers_cpu() -> float:
    """CPU time of finished extraction workers: children of the fork server, which reaps them
    (so they count in its cutime/cstime, not in this process's RUSAGE_CHILDREN)."""
    pid = _fork_server_pid()
    if not pid:
        return 0.0
    time.sleep(0.05)  # let it reap the workers that just exited
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime


def _cpu_seconds() -> float:
    """CPU time of this process, its finished children and the fork server's workers."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
            + _forked_workers_cpu())


def _timed(function, *args, **kwargs):
    """(wall seconds, CPU seconds, result)."""
    cpu, wall = _cpu_seconds(), time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - wall, _cpu_seconds() - cpu, result


def _row(name: str, seconds: float, cpu: float | None, pages: int, fid: dict) -> str:
    cpu_cell = f"{cpu:6.2f}" if cpu is not None else f"{'':6}"
    return (f"{name:<40} {seconds:7.2f} {cpu_cell} {pages / seconds:7.0f}"
            f" {fid['code_found']:7.1%} {fid['indent_exact']:7.1%} {fid['cjk']:6.1%}"
            f" {fid['prose']:6.1%} {'yes' if fid['order'] else 'NO':>5}")


def _ingest(data: bytes, name: str, counter, workers: int) -> tuple[dict, list[str]]:
    from server.documents.ingest import ingest_pdf
    from storage import Store
    from storage.documents import get_pages

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        try:
            document = ingest_pdf(store, "bench", name, data, counter, max_bytes=len(data),
                                  workers=workers)
            return document, [p["text"] for p in get_pages(store.db, document["id"])]
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", type=int, default=2370, help="2370 ≈ 1,500 pages")
    parser.add_argument("--rebuild", action="store_true", help="print the PDF again")
    parser.add_argument("--skip-reference", action="store_true", help="skip pypdf (~2 min)")
    parser.add_argument("--workers", type=int, default=None, help="default: available CPUs")
    parser.add_argument("--repeat", type=int, default=3,
                        help="pipeline runs; the fastest is shown (the machine is shared)")
    parser.add_argument("--write-fixture", action="store_true", help=f"print {FIXTURE.name}")
    args = parser.parse_args()
    if args.write_fixture:
        FIXTURE.write_bytes(print_pdf(fixture_source().html))
        print(f"wrote {FIXTURE.relative_to(REPO)}")
        return

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from server.documents.extract import available_cpus, extract_pages, prepare_workers
    from server.tokens import qwen3_counter

    src, data, path = bench_pdf(args.sections, args.rebuild)
    counter = qwen3_counter()  # loaded once at app start, not per upload
    workers = args.workers or available_cpus()
    # What the app does once at start-up: the worker fork server, ready before any upload.
    warm_up_s, _, _ = _timed(lambda: (prepare_workers(), list(extract_pages(
        FIXTURE.read_bytes(), workers=2))))
    load_before = os.getloadavg()[0]

    with WorkerMemory() as worker_memory:
        runs = [_timed(_ingest, data, path.name, counter, workers) for _ in range(args.repeat)]
    pipeline_s, pipeline_cpu, (document, stored) = min(runs, key=lambda run: run[0])
    walls = [f"{wall:.2f}" for wall in sorted(run[0] for run in runs)]
    peak_main = _maxrss_mb(resource.RUSAGE_SELF)
    pages = document["page_count"]
    parallel_s, parallel_cpu, parallel = _timed(
        lambda: [p.text for p in extract_pages(data, workers=workers)])
    one_s, one_cpu, one = _timed(lambda: [p.text for p in extract_pages(data, workers=1)])
    raw_s, raw_cpu, raw_texts = _timed(_raw_pdfium, data)

    count_1t_s, _, tokens = _timed(lambda: sum(counter.count_text(t) for t in one))
    count_2t_s, _, counts = _timed(counter.count_texts, one, threads=2)
    assert sum(counts) == tokens == document["total_tokens"]

    print(f"\n{path.relative_to(REPO)}: {pages} pages, {len(data) / 1e6:.1f} MB, "
          f"{tokens:,} {counter.name} tokens; {available_cpus()} CPUs; load average "
          f"{load_before:.2f} before the pipeline run")
    print(f"{'':<40} {'wall s':>7} {'CPU s':>6} {'pages/s':>7} {'code':>7} {'indent':>7}"
          f" {'CJK':>6} {'prose':>6} {'order':>5}")
    reference = None
    if not args.skip_reference:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            ref_s, ref_texts, ref_peak = pool.submit(_reference_in_child, data).result()
        reference = ref_texts
        print(_row("pypdf, 1 process (reference)", ref_s, None, pages, fidelity(src, ref_texts)))
    print(_row(f"pipeline: ingest_pdf, {workers} workers", pipeline_s, pipeline_cpu, pages,
               fidelity(src, stored)))
    print(_row(f"  extraction only, {workers} workers", parallel_s, parallel_cpu, pages,
               fidelity(src, parallel)))
    print(_row("  extraction only, 1 process", one_s, one_cpu, pages, fidelity(src, one)))
    print(_row("pdfium raw text (nothing restored)", raw_s, raw_cpu, pages,
               fidelity(src, raw_texts)))
    print("  (ingest_pdf = extraction + Qwen3 token counts + SQLite writes, pages streamed;"
          f" fastest of {args.repeat} runs: {', '.join(walls)} s)")
    if reference:
        same = _same_pages(stored, reference, forgive_wide=False)
        forgiven = _same_pages(stored, reference, forgive_wide=True)
        print(f"\nratio pypdf / pipeline: {ref_s / pipeline_s:.1f}x; pages identical to pypdf's "
              f"(trailing spaces aside): {same}/{pages}, {forgiven}/{pages} without pypdf's "
              f"extra space after Chinese; pypdf peak RSS {ref_peak:.0f} MB")
    print(f"peak RSS: main {peak_main:.0f} MB (tokenizer included), one worker "
          f"{worker_memory.peak_single / 2**20:.0f} MB, all workers "
          f"{worker_memory.peak_total / 2**20:.0f} MB; worker start-up, once per app: "
          f"{warm_up_s:.2f} s")
    print(f"token counting: {tokens / count_1t_s / 1e6:.2f} M tokens/s on 1 thread, "
          f"{tokens / count_2t_s / 1e6:.2f} M tokens/s on 2 threads")
    idle = pipeline_cpu / available_cpus()
    print(f"target: {pages} pages in <= 5 s -> {'met' if pipeline_s <= 5 else 'not met'} at "
          f"{pipeline_s:.2f} s wall; {pipeline_cpu:.2f} CPU s over {available_cpus()} cores is "
          f"{idle:.2f} s on an idle machine")


if __name__ == "__main__":
    main()
