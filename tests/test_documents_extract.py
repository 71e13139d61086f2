"""PDF text extraction on real files: fidelity against pypdf, and each hostile case's message."""

import os
import pickle
import random
from pathlib import Path

import pytest

from bench.pdf_source import fidelity, fixture_source
from server.documents.errors import (
    CorruptPdfError,
    DocumentError,
    EncryptedPdfError,
    NotAPdfError,
    PdfTooLargeError,
    WrongPasswordError,
)
from server.documents.extract import PageText, PdfText, check_pdf, extract_pages, page_count

PDFS = Path(__file__).parent / "pdfs"
# Printed by Chromium from bench/pdf_ingest.py's generator: prose, indented Python, Chinese.
GENERATED = PDFS / "chromium-code-cjk.pdf"


def read(name: str) -> bytes:
    return (PDFS / name).read_bytes()


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.split("\n")]


@pytest.fixture(scope="module")
def generated_pages() -> list[PageText]:
    return list(extract_pages(GENERATED.read_bytes(), workers=1))


@pytest.fixture(scope="module")
def reference_pages() -> list[PageText]:
    return list(extract_pages(GENERATED.read_bytes(), workers=1, engine="pypdf"))


def test_text_matches_the_source_it_was_printed_from(generated_pages):
    """Every code line with its exact indentation, every Chinese sentence and paragraph."""
    assert len(generated_pages) == 10
    assert fidelity(fixture_source(), [p.text for p in generated_pages]) == {
        "code_found": 1.0,
        "indent_exact": 1.0,
        "cjk": 1.0,
        "prose": 1.0,
        "order": True,
    }


def test_every_page_matches_the_pypdf_reference(generated_pages, reference_pages):
    # pypdf adds a space after the Chinese words of a code comment (they are wider than a
    # column); the source has one, as the pipeline gives.
    reference = [p.text.replace("换行计数  (", "换行计数 (") for p in reference_pages]
    assert [lines(p.text) for p in generated_pages] == [lines(text) for text in reference]


def test_indented_code_keeps_its_columns(generated_pages):
    assert generated_pages[8].text.startswith(
        "            value = compute(attempt_0, 897)\n"
        "            while value > 0:\n"
        "                value -= step('key_14_0', value)\n"
        "        else:\n"
        "            return payload['key_14_0'] * 50\n"
        "    for attempt_1 in range(retries):\n"
    )


def test_lone_braces_aligned_comments_and_chinese_comments_keep_their_spaces(generated_pages):
    assert (
        "static int parse_header_0001(const char *buf, size_t len)\n"
        "{\n"
        "    int state = 7;          /* lines seen so far */\n"
        "    for (size_t i = 0; i < len; i++) {\n"
        "        if (buf[i] == '\\n') {\n"
        "            state += 3;     /* next line */\n"
        "            /* 换行计数 (count the line) */\n"
        "        }\n"
        "    }\n"
        "    return state;\n"
        "}\n"
    ) in generated_pages[1].text


def test_prose_line_starting_with_inline_code_keeps_single_spaces(generated_pages):
    assert "\nmodule_0.py [P0000.1] Layout prefix citation column normal layout model document" in (
        generated_pages[0].text
    )


def test_page_that_pdfium_reads_as_a_vertical_column_comes_from_pypdf(generated_pages):
    assert generated_pages[9] == PageText(
        10, "        return payload['key_99'] * 15\n    return {'status': 'done', 'id': 99}"
    )


def test_chinese_survives_nfkc_normalised(generated_pages):
    text = "".join("".join(p.text for p in generated_pages).split())
    # NFKC turns the full-width comma into ","; the ideographs are unchanged.
    assert "长文档分析需要保留每一页的页码,以便回答时引用原文。" in text


def test_pages_read_alone_keep_indentation_of_blocks_continued_from_before(generated_pages):
    """Each page as the first of its range: the page before is consulted for code edges."""
    with PdfText(GENERATED.read_bytes()) as pdf:
        alone = [page for chunk in pdf.chunks(workers=1, chunk_pages=1) for page in chunk]
    assert alone == generated_pages


def test_two_worker_processes_give_the_same_pages_in_order(generated_pages):
    with PdfText(GENERATED.read_bytes()) as pdf:
        chunks = list(pdf.chunks(workers=2, chunk_pages=3))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    assert [page for chunk in chunks for page in chunk] == generated_pages


def test_page_count_without_reading_pages():
    assert page_count(GENERATED.read_bytes()) == 10
    assert page_count(read("multicolumn.pdf")) == 3


def test_encrypted_pdf_asks_for_its_password():
    with pytest.raises(EncryptedPdfError) as caught:
        list(extract_pages(read("libreoffice-writer-password.pdf")))
    assert str(caught.value) == "This PDF is password-protected: enter its password to open it."


def test_wrong_password_says_it_is_wrong():
    with pytest.raises(WrongPasswordError) as caught:
        page_count(read("libreoffice-writer-password.pdf"), password="not-it")
    assert str(caught.value) == "The password is wrong for this PDF: check it and try again."


def test_right_password_opens_the_encrypted_pdf():
    pages = list(extract_pages(read("libreoffice-writer-password.pdf"), password="openpassword"))
    assert len(pages) == 1
    assert pages[0].text.startswith("Lorem ipsum dolor sit amet, consetetur sadipscing elitr")


def test_image_only_pages_yield_empty_text():
    pages = list(extract_pages(read("imagemagick-images.pdf")))
    assert [p.text for p in pages] == ["Background"] * 3 + ["", ""] + ["Background"]


def test_arabic_comes_out_in_logical_order():
    (page,) = extract_pages(read("habibi.pdf"))
    assert page.text.strip() == "حَبيبي habibi حَبيبي"


def test_two_columns_are_read_one_after_the_other():
    pages = list(extract_pages(read("multicolumn.pdf")))
    reference = list(extract_pages(read("multicolumn.pdf"), engine="pypdf"))
    first = pages[0].text
    assert lines(first) == lines(reference[0].text)
    # A line that mixed both columns would be twice as wide as one column (<= 57 characters).
    assert max(len(line) for line in first.split("\n")) <= 60
    assert first.index("Lorem ipsum dolor sit amet, consectetuer adip-") < first.index(
        "Nulla malesuada porttitor diam"
    )


def test_outline_pdf_contents_page():
    pages = list(extract_pages(read("pdflatex-outline.pdf")))
    assert len(pages) == 4
    assert pages[0].text == (
        "Contents\n1 Foo 2\n2 Bar 2\n3 Baz 2\n4 Foo 2\n5 Bar 3\n6 Baz 3\n7 Foo 3\n8 Bar 4\n"
        "9 Baz 4\n1"
    )


def test_line_ending_in_a_hyphen_keeps_its_break():
    (page,) = extract_pages(read("minimal-document.pdf"))
    assert "no sea taki-\nmata sanctus est" in page.text


def test_pdf_with_unreadable_metadata_and_page_tree_is_reported_damaged():
    with pytest.raises(CorruptPdfError) as caught:
        page_count(read("unreadablemetadata.pdf"))
    assert str(caught.value) == (
        "This PDF is damaged or truncated and cannot be read: export or download it again."
    )


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_pdf_is_reported_damaged(fraction):
    data = GENERATED.read_bytes()
    with pytest.raises(CorruptPdfError):
        list(extract_pages(data[: int(len(data) * fraction)]))


def test_random_bytes_are_not_a_pdf():
    with pytest.raises(NotAPdfError) as caught:
        list(extract_pages(random.Random(1).randbytes(50_000)))
    assert str(caught.value) == "This file is not a PDF (it has no PDF header): upload a .pdf file."


def test_random_bytes_behind_a_pdf_header_are_damaged():
    with pytest.raises(CorruptPdfError):
        page_count(b"%PDF-1.7\n" + random.Random(2).randbytes(50_000))


def test_empty_upload_is_not_a_pdf():
    with pytest.raises(NotAPdfError):
        page_count(b"")


def test_size_over_the_limit_is_refused_with_both_sizes():
    with pytest.raises(PdfTooLargeError) as caught:
        check_pdf(GENERATED.read_bytes(), max_bytes=100_000)
    assert str(caught.value) == "This PDF is 0.1 MB, over the 0.1 MB upload limit."
    assert (caught.value.size, caught.value.limit) == (GENERATED.stat().st_size, 100_000)


def test_document_errors_survive_pickling_between_processes():
    for error in [PdfTooLargeError(3_000_000, 1_000_000), WrongPasswordError(), CorruptPdfError()]:
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), str(copy)) == (type(error), str(error))
        assert isinstance(copy, DocumentError)


def test_cpu_count_respects_the_affinity_mask():
    from server.documents.extract import available_cpus

    assert available_cpus() == len(os.sched_getaffinity(0))
