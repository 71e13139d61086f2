"""Everything the workbench keeps, in one SQLite file (through sqlite-utils).

Imports nothing else from the project. Open a `Store`, then call the functions of
`keys`, `conversations`, `documents` and `usage` with `store.db`.
"""

from storage.db import Store
from storage.errors import (
    DocumentExistsError,
    ImportFormatError,
    KeyExistsError,
    NotFoundError,
    StorageError,
    StoreClosedError,
)

__all__ = [
    "DocumentExistsError",
    "ImportFormatError",
    "KeyExistsError",
    "NotFoundError",
    "StorageError",
    "Store",
    "StoreClosedError",
]
