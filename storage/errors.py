"""Exceptions raised by storage: tiny classes, one line each."""


class StorageError(Exception):
    "Base class for every storage error"


class NotFoundError(StorageError):
    "Record not found, or not owned by the caller"


class KeyExistsError(StorageError):
    "An active API key with that name already exists"


class DocumentExistsError(StorageError):
    "This owner already has a finished document with that sha256"


class ImportFormatError(StorageError):
    "The data is not a conversation export this version can import"


class StoreClosedError(StorageError):
    "The store has been closed"
