"""WAL, many writers at once, and durability when a writer is killed."""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from storage import Store, StoreClosedError
from storage.conversations import create_conversation
from storage.messages import add_message, list_messages
from storage.usage import log_request

REPO = Path(__file__).resolve().parents[1]


def test_store_uses_wal_and_one_connection_per_thread(tmp_path):
    with Store(tmp_path / "workbench.db") as store:
        assert store.db.journal_mode == "wal"
        assert store.db is store.db
        seen = []
        thread = threading.Thread(target=lambda: seen.append(store.db))
        thread.start()
        thread.join()
        assert seen[0] is not store.db
        assert seen[0].execute("PRAGMA foreign_keys").fetchone() == (1,)


def test_closed_store_refuses_new_connections(tmp_path):
    store = Store(tmp_path / "workbench.db")
    store.close()
    with pytest.raises(StoreClosedError):
        store.db  # noqa: B018 (the property opens a connection)


def test_sixteen_threads_writing_fifty_times_each_never_hit_database_is_locked(tmp_path):
    threads_n, writes_n = 16, 50
    with Store(tmp_path / "workbench.db") as store:
        cid = create_conversation(store.db, "alice")
        errors = []
        start = threading.Barrier(threads_n)

        def writer(n: int) -> None:
            try:
                start.wait()
                for i in range(writes_n):
                    add_message(store.db, "alice", cid, "user", f"thread {n} message {i}")
                    log_request(
                        store.db,
                        key_name="alice",
                        endpoint="/v1/chat/completions",
                        model="qwen3",
                        status_code=200,
                    )
            except Exception as exc:  # collected: an exception in a thread is otherwise lost
                errors.append(repr(exc))

        workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads_n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        assert errors == []
        contents = {m["content"] for m in list_messages(store.db, "alice", cid)}
        assert contents == {
            f"thread {n} message {i}" for n in range(threads_n) for i in range(writes_n)
        }
        assert store.db["usage_log"].count == threads_n * writes_n


WRITER = """
import sys
from pathlib import Path
from storage import Store
from storage.conversations import create_conversation
from storage.messages import add_message

store = Store(Path(sys.argv[1]))
cid = create_conversation(store.db, "alice")
n = 0
while True:
    add_message(store.db, "alice", cid, "user", "x" * 200)
    n += 1
    # Printed only after the commit returned: everything reported must survive the kill.
    print(n, flush=True)
"""


def test_writer_killed_with_sigkill_loses_nothing_it_committed(tmp_path):
    path = tmp_path / "workbench.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        reported = 0
        for line in proc.stdout:
            reported = int(line)
            if reported >= 300:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Lines still in the pipe were committed too; so may be one more not yet printed.
    reported += sum(1 for _ in proc.stdout)
    with Store(path) as store:
        stored = store.db["messages"].count
        assert store.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert stored in (reported, reported + 1)


def _open_when_released(path: Path, barrier, failures) -> None:
    barrier.wait()
    try:
        Store(path).close()
    except Exception as exc:  # reported to the test, which names it
        failures.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path):
    # The app and the keys CLI may create the file together. Unserialised, switching to WAL
    # failed with "database is locked" in about one trial in seven.
    context = multiprocessing.get_context("fork")  # fast, and all four start together
    failures = context.Queue()
    with Store(tmp_path / "alone.db") as store:
        alone = [row["name"] for row in store.db["_sqlite_migrations"].rows]
    assert alone
    for trial in range(60):
        path = tmp_path / f"new-{trial}.db"
        barrier = context.Barrier(4)
        procs = [
            context.Process(target=_open_when_released, args=(path, barrier, failures))
            for _ in range(4)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0] * 4
        assert failures.empty(), failures.get()
        with Store(path) as store:
            assert store.db.journal_mode == "wal"
            applied = [row["name"] for row in store.db["_sqlite_migrations"].rows]
            assert applied == alone  # each once, as in a database made by one process
