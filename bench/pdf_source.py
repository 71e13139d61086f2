"""The long PDF the ingestion benchmark and the fidelity tests read: its source text, how
Chromium prints it, and how faithfully extracted text matches that source."""

from __future__ import annotations

import hashlib
import html
import random
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
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
    lines = [
        f"def handle_request_{n:04d}(payload, retries={rng.randint(1, 9)}):",
        f'    """Process payload {n} and keep its structure."""',
    ]
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
