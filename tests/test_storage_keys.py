"""API keys: hashed at rest, revocation, the bootstrap key, last-used throttling, the keys CLI."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server import cli
from server.settings import get_settings
from storage import KeyExistsError, Store, keys
from storage.keys import Key, authenticate, create_key, ensure_key, list_keys, revoke_key

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clock(monkeypatch):
    """time.time() under the test's control."""
    now = [1_000_000.0]
    monkeypatch.setattr(keys.time, "time", lambda: now[0])
    return now


def test_created_key_authenticates_and_only_its_hash_is_stored(db, clock):
    secret = create_key(db, "alice")
    assert secret.startswith("wb-") and len(secret) > 40
    assert authenticate(db, secret) == Key(id=1, name="alice", admin=False)
    assert list(db.query("SELECT name, key_hash, admin FROM api_keys")) == [
        {"name": "alice", "key_hash": hashlib.sha256(secret.encode()).hexdigest(), "admin": 0}
    ]
    assert secret not in str(list(db.query("SELECT * FROM api_keys")))


def test_wrong_or_empty_secret_does_not_authenticate(db):
    secret = create_key(db, "alice")
    assert authenticate(db, secret + "x") is None
    assert authenticate(db, "") is None


def test_revoked_key_stops_authenticating_and_its_name_can_be_reissued(db):
    old = create_key(db, "alice")
    assert revoke_key(db, "alice") is True
    assert authenticate(db, old) is None
    assert revoke_key(db, "alice") is False
    new = create_key(db, "alice")
    assert authenticate(db, new).name == "alice"
    assert authenticate(db, old) is None


def test_second_active_key_with_the_same_name_is_refused(db):
    create_key(db, "alice")
    with pytest.raises(KeyExistsError):
        create_key(db, "alice")


def test_ensure_key_is_idempotent_and_replaces_a_changed_secret(db):
    ensure_key(db, "admin", "first-secret")
    ensure_key(db, "admin", "first-secret")
    assert authenticate(db, "first-secret") == Key(id=1, name="admin", admin=True)
    ensure_key(db, "admin", "second-secret")
    assert authenticate(db, "first-secret") is None
    assert authenticate(db, "second-secret") == Key(id=1, name="admin", admin=True)
    assert db["api_keys"].count == 1


def test_last_used_is_written_at_most_once_per_resolution(db, clock):
    secret = create_key(db, "alice")
    last_used = lambda: list_keys(db)[0]["last_used_at"]  # noqa: E731
    assert last_used() is None
    authenticate(db, secret)
    assert last_used() == 1_000_000.0
    clock[0] += keys.LAST_USED_RESOLUTION_SECONDS / 2
    authenticate(db, secret)
    assert last_used() == 1_000_000.0
    clock[0] += keys.LAST_USED_RESOLUTION_SECONDS
    authenticate(db, secret)
    assert last_used() == clock[0]


def test_list_keys_shows_every_key_without_hashes(db, clock):
    create_key(db, "alice", admin=True)
    create_key(db, "bob")
    revoke_key(db, "bob")
    assert list_keys(db) == [
        {
            "name": "alice",
            "admin": True,
            "created_at": 1_000_000.0,
            "last_used_at": None,
            "revoked_at": None,
        },
        {
            "name": "bob",
            "admin": False,
            "created_at": 1_000_000.0,
            "last_used_at": None,
            "revoked_at": 1_000_000.0,
        },
    ]


# The keys CLI ---------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_cli_create_prints_the_key_once_and_it_authenticates(data_dir, capsys):
    assert cli.main(["keys", "create", "--name", "alice"]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("wb-") and "\n" not in secret
    assert "shown only this once" in err
    with Store(data_dir / "workbench.db") as store:
        assert authenticate(store.db, secret).name == "alice"


def test_cli_list_shows_names_and_times_never_keys(data_dir, capsys):
    cli.main(["keys", "create", "--name", "alice", "--admin"])
    cli.main(["keys", "create", "--name", "bob"])
    secrets = capsys.readouterr().out.split()
    assert cli.main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ADMIN", "CREATED", "LAST", "USED", "REVOKED"]
    assert [line.split()[:2] for line in lines[1:]] == [["alice", "yes"], ["bob", "no"]]
    assert all(secret not in out for secret in secrets)
    assert "wb-" not in out


def test_cli_revoke_unknown_name_exits_1_with_a_message(data_dir, capsys):
    assert cli.main(["keys", "revoke", "nobody"]) == 1
    assert capsys.readouterr().err == "error: no active key named 'nobody' (see `keys list`)\n"


def test_cli_create_duplicate_name_exits_1(data_dir, capsys):
    cli.main(["keys", "create", "--name", "alice"])
    assert cli.main(["keys", "create", "--name", "alice"]) == 1
    assert "already exists" in capsys.readouterr().err


def run_server(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "server", "keys", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_python_m_server_keys_create_list_revoke(tmp_path):
    data_dir = tmp_path / "data"
    created = run_server(data_dir, "create", "--name", "alice")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    listed = run_server(data_dir, "list")
    assert listed.returncode == 0 and "alice" in listed.stdout and secret not in listed.stdout
    assert run_server(data_dir, "revoke", "alice").returncode == 0
    with Store(data_dir / "workbench.db") as store:
        assert authenticate(store.db, secret) is None
    missing = run_server(data_dir, "revoke", "alice")
    assert (missing.returncode, missing.stderr) == (
        1,
        "error: no active key named 'alice' (see `keys list`)\n",
    )
