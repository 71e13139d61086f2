"""Errors of document ingestion; `str(error)` is the message shown to the person."""


class DocumentError(Exception):
    "The document could not be read."

    def __init__(self, message: str | None = None):
        # The class docstring is the default message, so `raise EncryptedPdfError()` reads well.
        super().__init__(message or self.__doc__)


class NotAPdfError(DocumentError):
    "This file is not a PDF (it has no PDF header): upload a .pdf file."


class EncryptedPdfError(DocumentError):
    "This PDF is password-protected: enter its password to open it."


class WrongPasswordError(DocumentError):
    "The password is wrong for this PDF: check it and try again."


class CorruptPdfError(DocumentError):
    "This PDF is damaged or truncated and cannot be read: export or download it again."


class NoTextLayerError(DocumentError):
    "No page of this PDF has text (they are images or scans): run OCR on it, then send it again."

    def __init__(self, page_count: int | None = None):
        self.page_count = page_count
        if page_count is None:
            super().__init__()
        else:
            super().__init__(
                f"No page of this PDF has text (all {page_count:,} are images or scans): "
                "run OCR on it, then send it again."
            )

    def __reduce__(self):
        return type(self), (self.page_count,)


class PdfTooLargeError(DocumentError):
    "This PDF is larger than the upload limit."

    def __init__(self, size: int, limit: int):
        self.size, self.limit = size, limit
        super().__init__(
            f"This PDF is {size / 1e6:.1f} MB, over the {limit / 1e6:.1f} MB upload limit."
        )

    def __reduce__(self):  # picklable across worker processes despite the custom signature
        return type(self), (self.size, self.limit)
