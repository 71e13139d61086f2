"""The one way to get text out of a PDF: page by page, NFKC-normalised, in page order.

Chosen by bench/pdf_ingest.py: pdfium reads pages ~20x faster than pypdf, and with the
whitespace of monospaced code restored from glyph positions (`pdfium_text`) its output matches
pypdf's, the fidelity reference. pypdf still reads the pages pdfium gets wrong (right-to-left
scripts, pages it reads as a vertical column) and documents pdfium cannot open. Long
documents are split into page ranges read by worker processes, one open document per worker.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Literal, NamedTuple

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from server.documents import pdfium_text, pypdf_text
from server.documents.errors import (
    CorruptPdfError,
    EncryptedPdfError,
    NotAPdfError,
    PdfTooLargeError,
    WrongPasswordError,
)

# Which reader extracts the text: pdfium with pypdf where it cannot be trusted, or pypdf alone.
Extractor = Literal["auto", "pypdf"]
CHUNK_PAGES = 16  # pages per task: small enough for a smooth progress bar
# Below this, starting worker processes costs more than reading the pages (~4 ms each).
MIN_PARALLEL_PAGES = 64
_HEADER_WINDOW = 1024  # the PDF header may be preceded by junk (the spec allows it)
# C0 controls other than tab and newline carry no text and confuse tokenizers and browsers.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# pdfium is not thread-safe: in this process it is only used under this lock.
_PDFIUM_LOCK = threading.RLock()


class PageText(NamedTuple):
    """The text of one page; `number` counts from 1."""

    number: int
    text: str


def check_pdf(data: bytes, *, max_bytes: int | None = None) -> None:
    """Cheap checks before parsing: the size limit and the PDF header."""
    if max_bytes is not None and len(data) > max_bytes:
        raise PdfTooLargeError(len(data), max_bytes)
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise NotAPdfError()


def normalize_text(text: str) -> str:
    """NFKC (ligatures, full-width forms, CJK radicals), Unix newlines, no control characters."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROLS.sub("", text)


def _open_pdfium(source: bytes | str, password: str | None) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(source, password=password or None)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise (WrongPasswordError() if password else EncryptedPdfError()) from None
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise EncryptedPdfError(
                "This PDF uses an encryption method that is not supported."
            ) from None
        raise CorruptPdfError() from None


class _Reader:
    """One open document in one process: pdfium first, pypdf for what pdfium gets wrong."""

    def __init__(self, source: bytes | str, password: str | None, engine: Extractor):
        """`source`: the PDF's bytes, or the path of a file holding them."""
        self.source, self.password = source, password
        self.document: pdfium.PdfDocument | None = None
        self._pypdf = None
        if engine == "pypdf":
            self._pypdf = pypdf_text.open_reader(source, password)
            return
        try:
            with _PDFIUM_LOCK:
                self.document = _open_pdfium(source, password)
        except CorruptPdfError:
            # pypdf repairs some files pdfium refuses; if it cannot either, the file is broken.
            self._pypdf = pypdf_text.open_reader(source, password)

    def reference(self):
        if self._pypdf is None:
            self._pypdf = pypdf_text.open_reader(self.source, self.password)
        return self._pypdf

    def page_count(self) -> int:
        if self.document is not None:
            return len(self.document)
        return len(self.reference().pages)

    def read(self, first: int, last: int) -> list[PageText]:
        """Pages first..last (0-based, inclusive)."""
        memory = pdfium_text.LayoutMemory()
        pages = []
        for index in range(first, last + 1):
            text = None
            if self.document is not None:
                try:
                    with _PDFIUM_LOCK:
                        text = pdfium_text.page_text(self.document, index, memory)
                except pdfium.PdfiumError:
                    raise CorruptPdfError() from None
            if text is None:
                text = pypdf_text.page_text(self.reference(), index)
            pages.append(PageText(index + 1, normalize_text(text)))
        return pages

    def close(self) -> None:
        if self.document is not None:
            with _PDFIUM_LOCK:
                self.document.close()
            self.document = None


# One reader per worker process, opened by the pool's initializer.
_worker_reader: _Reader | None = None


def _init_worker(path: str, password: str | None, engine: Extractor) -> None:
    global _worker_reader
    _worker_reader = _Reader(path, password, engine)


def _read_in_worker(first: int, last: int) -> list[PageText]:
    return _worker_reader.read(first, last)


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _pool_context():
    # forkserver: workers fork from a small clean process, never from this threaded server;
    # preloading this module makes each worker start in milliseconds.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def prepare_workers() -> None:
    """Start the process that forks extraction workers now rather than at the first upload.

    Optional: call it once at app start-up (it takes a fraction of a second, in the
    background process it starts).
    """
    from multiprocessing import forkserver

    _pool_context()
    forkserver.ensure_running()


class PdfText:
    """An opened PDF: its page count, then its pages' text in order.

    Opening checks the header and the password and raises the DocumentError that reading
    would raise, so nothing needs to be stored for a file that cannot be read.
    Use as a context manager (it holds the parsed document).
    """

    def __init__(self, data: bytes, *, password: str | None = None, engine: Extractor = "auto"):
        check_pdf(data)
        self._data, self._password, self._engine = data, password, engine
        self._reader: _Reader | None = _Reader(data, password, engine)
        self.page_count = self._reader.page_count()

    def chunks(self, *, workers: int | None = None, chunk_pages: int = CHUNK_PAGES):
        """Yield lists of consecutive pages, in order, as soon as each range is read.

        `workers` processes read ranges of `chunk_pages` pages in parallel (default: one per
        available CPU, or none below MIN_PARALLEL_PAGES pages); with one worker, or a single
        range, pages are read in this process.
        """
        total = self.page_count
        ranges = [(f, min(f + chunk_pages, total) - 1) for f in range(0, total, chunk_pages)]
        if workers is None:
            workers = available_cpus() if total >= MIN_PARALLEL_PAGES else 1
        workers = min(workers, len(ranges))
        if workers <= 1:
            for first, last in ranges:
                yield self._reader.read(first, last)
            return
        # Workers open the file by path: pickling the bytes to each of them is much slower.
        with tempfile.NamedTemporaryFile(prefix="workbench-", suffix=".pdf") as file:
            file.write(self._data)
            file.flush()
            pool = ProcessPoolExecutor(
                workers,
                mp_context=_pool_context(),
                initializer=_init_worker,
                initargs=(file.name, self._password, self._engine),
            )
            try:
                yield from pool.map(_read_in_worker, *zip(*ranges, strict=True))
            except BrokenProcessPool as exc:  # a worker died: pdfium crashed on this file
                raise CorruptPdfError() from exc
            finally:
                # Stop at once when the consumer gives up (an error, a cancelled upload).
                pool.shutdown(wait=True, cancel_futures=True)

    def pages(self, **kwargs) -> Iterator[PageText]:
        """Every page's text in order (see `chunks` for the arguments)."""
        for chunk in self.chunks(**kwargs):
            yield from chunk

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> PdfText:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def page_count(data: bytes, password: str | None = None) -> int:
    """Number of pages; raises the DocumentError that reading the file would raise."""
    with PdfText(data, password=password) as pdf:
        return pdf.page_count


def extract_pages(
    data: bytes,
    *,
    password: str | None = None,
    workers: int | None = None,
    engine: Extractor = "auto",
) -> Iterator[PageText]:
    """Yield every page's text in page order (NFKC-normalised; "" for an image-only page).

    `engine="pypdf"` reads with the reference extractor only (for comparisons).
    """
    with PdfText(data, password=password, engine=engine) as pdf:
        yield from pdf.pages(workers=workers)
