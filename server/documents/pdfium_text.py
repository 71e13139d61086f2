"""Page text from pdfium, with the whitespace of monospaced code restored from glyph positions.

pdfium is an order of magnitude faster than pypdf but drops space glyphs: a line starts at its
first visible character and every gap becomes one generated space, so code loses its
indentation. In a monospaced font, positions are columns: the indentation of a line is the
distance of its first glyph from the left edge of its code block, in glyph advances, and where
the word after a gap starts tells how many spaces the gap held. Only a few glyph positions
are asked for (about one per word gap), which keeps the restoration cheap next to pdfium's own
layout work.

The left edge of a block is its least indented line. A block that starts at the top of a page
may be the continuation of one from the previous page, all of whose lines are indented, so
the edges seen on earlier pages are remembered and, for a page that starts with code, the
previous page is looked at when nothing is known yet.
"""

from __future__ import annotations

import ctypes
import re
import unicodedata
from dataclasses import dataclass, field

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

_FIXED_PITCH = 1  # bit 0 of the PDF font-descriptor flags
_LOOKBACK_PAGES = 3
_HEADER_LINES = 2  # lines above a code block that may be a running header
_RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")  # Hebrew, Arabic, Syriac...


@dataclass
class _Line:
    text: str
    start: int  # char index of the first character
    x: float = 0.0
    mono: bool = False  # set in a fixed-pitch font from its first to its last glyph
    narrow: int = 0  # length of the prefix before the first wide (CJK) character
    advance: float = 0.0  # glyph advance of a monospaced line (0 when unknown)


@dataclass
class LayoutMemory:
    """Left edges of code blocks seen on earlier pages, by glyph advance."""

    edges: dict[float, set[float]] = field(default_factory=dict)
    last_page: int | None = None  # index of the last page read with this memory

    def remember(self, advance: float, x: float) -> None:
        self.edges.setdefault(round(advance, 2), set()).add(round(x, 2))

    def edge_for(self, advance: float, x: float) -> float | None:
        """The largest known edge left of x by a whole number of columns (within 40)."""
        best = None
        for edge in self.edges.get(round(advance, 2), ()):
            columns = (x - edge) / advance
            if -0.2 < columns < 40 and abs(columns - round(columns)) < 0.2:
                if best is None or edge > best:
                    best = edge
        return best


class _Positions:
    """Glyph origins and font flags of one text page, by text index."""

    def __init__(self, textpage: pdfium.PdfTextPage, text: str):
        self.raw = textpage.raw
        self.identity = textpage.count_chars() == len(text)
        self._x = ctypes.c_double()
        self._y = ctypes.c_double()
        self._flags = ctypes.c_int()

    def char_index(self, text_index: int) -> int:
        if self.identity:
            return text_index
        return pdfium_c.FPDFText_GetCharIndexFromTextIndex(self.raw, text_index)

    def x(self, text_index: int) -> float | None:
        index = self.char_index(text_index)
        if index < 0 or not pdfium_c.FPDFText_GetCharOrigin(self.raw, index, self._x, self._y):
            return None
        return self._x.value

    def fixed_pitch(self, text_index: int) -> bool:
        index = self.char_index(text_index)
        if index < 0:
            return False
        pdfium_c.FPDFText_GetFontInfo(self.raw, index, None, 0, self._flags)
        return bool(self._flags.value & _FIXED_PITCH)


def _narrow_end(text: str) -> int:
    """Length of the line's prefix before its first wide (CJK) character.

    Wide glyphs come from another font, whose advance is not a whole number of columns, so
    columns are only measured in this prefix.
    """
    for i, char in enumerate(text):
        if char >= "\u1100" and unicodedata.east_asian_width(char) in "WF":
            return i
    return len(text)


def _measure(line: _Line, pos: _Positions) -> None:
    """Fill x, mono, narrow and advance of a monospaced line (others are left alone)."""
    text, start = line.text, line.start
    if not pos.fixed_pitch(start):
        return
    line.narrow = _narrow_end(text)
    last = len(text[: line.narrow].rstrip(" ")) - 1
    x0 = pos.x(start)
    if last < 0 or x0 is None or not pos.fixed_pitch(start + last):
        return
    line.x = x0
    line.mono = True
    # The advance is the distance between two neighbouring glyphs that are not a gap.
    advance = 0.0
    for i in range(last):
        if text[i] != " " and text[i + 1] != " ":
            a, b = pos.x(start + i), pos.x(start + i + 1)
            if a is not None and b is not None:
                advance = b - a
            break
    if advance <= 0.1:
        return  # e.g. a lone "}": the advance comes from the lines around it
    # In monospace the last (narrow) glyph sits a whole number of columns, at least one per
    # glyph before it, from the first; a line that only starts with inline code does not.
    x_last = pos.x(start + last)
    columns = (x_last - x0) / advance if x_last is not None else -1.0
    if abs(columns - round(columns)) > 0.15 or columns < last - 0.5:
        line.mono = False
        return
    line.advance = advance


def _respace(line: _Line, pos: _Positions) -> str:
    """Rebuild the inner gaps of a monospaced line as the number of spaces they span.

    Each glyph takes one column, so the column where the word after a gap starts, measured
    from the line's first glyph, says how many spaces the gap held.
    """
    parts = line.text.split(" ")
    if len(parts) < 2:
        return line.text
    out = parts[0]
    offset = len(parts[0])  # index in line.text of the gap's generated space
    for part in parts[1:]:
        spaces = 1
        x = pos.x(line.start + offset + 1) if part and offset < line.narrow else None
        if x is not None:
            spaces = max(1, round((x - line.x) / line.advance) - len(out))
        out += " " * spaces + part
        offset += 1 + len(part)
    return out


def _borrow_advances(lines: list[_Line]) -> None:
    """Give monospaced lines without a measurable advance that of their neighbours."""
    previous = 0.0
    for line in lines:
        if line.mono and not line.advance:
            line.advance = previous
        previous = line.advance if line.mono else 0.0
    following = 0.0
    for line in reversed(lines):
        if line.mono and not line.advance:
            line.advance = following
        following = line.advance if line.mono else 0.0


def _blocks(lines: list[_Line]) -> list[list[_Line]]:
    """Runs of consecutive monospaced lines with the same advance."""
    _borrow_advances(lines)
    blocks, current = [], []
    for line in lines:
        if current and line.advance and abs(line.advance - current[0].advance) < 0.01:
            current.append(line)
            continue
        if current:
            blocks.append(current)
        current = [line] if line.advance else []
    if current:
        blocks.append(current)
    return blocks


def _split_lines(text: str) -> list[_Line]:
    lines, start = [], 0
    for piece in text.split("\r\n"):
        lines.append(_Line(piece, start))
        start += len(piece) + 2
    return lines


def _looks_vertical(lines: list[_Line]) -> bool:
    """pdfium sometimes reads a page with little text as vertical: one glyph per line."""
    filled = [line for line in lines if line.text]
    return len(filled) >= 4 and sum(len(line.text) == 1 for line in filled) > len(filled) / 2


def _layout(textpage: pdfium.PdfTextPage) -> tuple[list[_Line], list[list[_Line]], _Positions]:
    text = textpage.get_text_range()
    pos = _Positions(textpage, text)
    lines = _split_lines(text)
    if not _looks_vertical(lines):
        for line in lines:
            if line.text:
                _measure(line, pos)
    return lines, _blocks(lines), pos


def _near_top(lines: list[_Line], block: list[_Line]) -> bool:
    """Whether a block is the page's first content, allowing for a running header."""
    return any(line is block[0] for line in lines[: _HEADER_LINES + 1])


def _edges(lines: list[_Line], blocks: list[list[_Line]], memory: LayoutMemory) -> dict[int, float]:
    """The left edge of each code line's block; remembers edges of blocks begun on this page."""
    edges = {}
    for n, block in enumerate(blocks):
        edge = min(line.x for line in block)
        if n == 0 and _near_top(lines, block):
            # Maybe the continuation of a block from the previous page, all of it indented.
            known = memory.edge_for(block[0].advance, edge)
            edge = known if known is not None else edge
        else:
            memory.remember(block[0].advance, edge)
        edges.update((id(line), edge) for line in block)
    return edges


def page_text(
    document: pdfium.PdfDocument, index: int, memory: LayoutMemory, *, lookback: bool = True
) -> str | None:
    """Text of page `index` (0-based) with code whitespace restored.

    None when pdfium's reading of the page cannot be trusted (glyphs read as a vertical
    column, or right-to-left script, which pdfium returns in visual order): the caller
    then uses the reference extractor for that page.
    """
    page = document[index]
    textpage = page.get_textpage()
    try:
        lines, blocks, pos = _layout(textpage)
        if _looks_vertical(lines) or any(_RTL.search(line.text) for line in lines):
            memory.last_page = index
            return None
        if (
            lookback
            and index > 0
            and memory.last_page != index - 1
            and blocks
            and _near_top(lines, blocks[0])
        ):
            # This page may continue a block from the page before, which was not read here.
            for back in range(max(0, index - _LOOKBACK_PAGES), index):
                page_text(document, back, memory, lookback=False)
        edges = _edges(lines, blocks, memory)
        memory.last_page = index
        out = []
        for line in lines:
            edge = edges.get(id(line))
            if edge is None:
                out.append(line.text)
            else:
                indent = max(0, round((line.x - edge) / line.advance))
                out.append(" " * indent + _respace(line, pos))
        text = "\n".join(out)
        # pdfium joins a line ending in a hyphen to the next and marks the hyphen with \x02
        # (\ufffe when soft): put the break back, as pypdf has it.
        return text.replace("\x02", "-\n").replace("\ufffe", "-\n").replace("\r", "")
    finally:
        textpage.close()
        page.close()
