"""Write transactions that never fail with "database is locked" under concurrent writers."""

import contextlib
from collections.abc import Iterator

import sqlite_utils


@contextlib.contextmanager
def write(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Run the block as one transaction that holds the write lock from its first statement.

    A deferred transaction (plain BEGIN, what `db.atomic()` opens) that reads before it
    writes cannot wait for the lock: SQLite answers SQLITE_BUSY at once when another
    connection committed in between. BEGIN IMMEDIATE takes the lock up front, so the
    connection's busy timeout applies and writers queue instead of failing.
    Nested use becomes a savepoint of the outer transaction.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    try:
        db.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise
