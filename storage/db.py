"""`Store`: the SQLite file, its migrations, and one connection per thread."""

import contextlib
import fcntl
import pathlib
import sqlite3
import threading
from collections.abc import Iterator

import sqlite_utils

from storage import migrations
from storage.errors import StoreClosedError

# How long a writer waits for the lock before SQLite gives up with "database is locked".
BUSY_TIMEOUT_SECONDS = 30.0


@contextlib.contextmanager
def _open_lock(path: pathlib.Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a+b") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


class Store:
    """The workbench database: created and migrated on open, one connection per thread.

    The async app calls storage from a threadpool; SQLite connections must not be shared
    between threads mid-transaction, so each thread lazily gets its own.
    """

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite_utils.Database] = []
        self._closed = False
        db = self.db
        # Processes opening a new file at once (the app, the keys CLI) would race: switching
        # to WAL does not wait for a busy lock, and m001's executescript() commits the
        # migration lock early. One open at a time, across processes, by a lock file.
        with _open_lock(self.path):
            # WAL lets readers run while one writer commits; the mode is stored in the file.
            if db.journal_mode != "wal":
                db.enable_wal()
            migrations.apply(db)

    def _connect(self) -> sqlite_utils.Database:
        # check_same_thread=False only so close() can run on another thread; each
        # connection is otherwise used by the thread that opened it.
        conn = sqlite3.connect(
            str(self.path), timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False
        )
        conn.execute("PRAGMA foreign_keys = ON")
        # In WAL mode NORMAL is durable across process crashes (SIGKILL): a commit is in
        # the WAL file before it returns; only an OS crash or power cut can lose the last ones.
        conn.execute("PRAGMA synchronous = NORMAL")
        return sqlite_utils.Database(conn, execute_plugins=False)

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's own connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            with self._lock:
                if self._closed:
                    raise StoreClosedError(f"store {self.path} is closed")
                db = self._connect()
                self._connections.append(db)
            self._local.db = db
        return db

    def close(self) -> None:
        """Close every connection this store opened, on any thread."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
