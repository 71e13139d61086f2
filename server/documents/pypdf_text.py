"""Page text from pypdf: the fidelity reference, and the fallback for pages pdfium misreads."""

from __future__ import annotations

import io
import logging

import pypdf
from pypdf.errors import FileNotDecryptedError
from pypdf.errors import WrongPasswordError as PypdfWrongPasswordError

from server.documents.errors import (
    CorruptPdfError,
    DocumentError,
    EncryptedPdfError,
    WrongPasswordError,
)

# pypdf logs every repaired xref entry; a damaged upload is reported once, as an error.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def open_reader(source: bytes | str, password: str | None = None) -> pypdf.PdfReader:
    """A PdfReader over bytes or a file path, decrypted, failures mapped to DocumentErrors."""
    try:
        reader = pypdf.PdfReader(io.BytesIO(source) if isinstance(source, bytes) else source)
        if reader.is_encrypted:
            if not password:
                raise EncryptedPdfError()
            if not reader.decrypt(password):
                raise WrongPasswordError()
        len(reader.pages)  # walks the page tree, so a broken one fails here and not later
        return reader
    except PypdfWrongPasswordError:
        raise WrongPasswordError() from None
    except FileNotDecryptedError:
        raise EncryptedPdfError() from None
    except DocumentError:
        raise
    except Exception as exc:  # pypdf fails in many ways on hostile input; all mean "broken"
        raise CorruptPdfError() from exc


def page_text(reader: pypdf.PdfReader, index: int) -> str:
    """Text of page `index` (0-based) as pypdf extracts it."""
    try:
        return reader.pages[index].extract_text()
    except Exception as exc:
        raise CorruptPdfError() from exc
