"""`./launch.sh keys ...` (`python -m server keys ...`): create, list and revoke API keys from the
host's shell."""

import argparse
import sys
from datetime import datetime

from server.settings import settings_or_exit
from storage import KeyExistsError, Store
from storage.keys import create_key, list_keys, revoke_key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="./launch.sh")
    commands = parser.add_subparsers(dest="command", required=True)
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--name", required=True, help="the key's owner name, e.g. alice")
    create.add_argument("--admin", action="store_true", help="make it an admin key")
    keys.add_parser("list", help="list keys (never the keys themselves)")
    revoke = keys.add_parser("revoke", help="revoke the active key with this name")
    revoke.add_argument("name")
    return parser


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _keys(args: argparse.Namespace, store: Store) -> int:
    if args.action == "create":
        try:
            secret = create_key(store.db, args.name, admin=args.admin)
        except (KeyExistsError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        # The key alone on stdout (so `KEY=$(... keys create ...)` works); the note on stderr.
        note = f"Created key {args.name!r}. It is shown only this once: store it now."
        print(note, file=sys.stderr)
        print(secret)
        return 0
    if args.action == "list":
        rows = [["NAME", "ADMIN", "CREATED", "LAST USED", "REVOKED"]]
        for key in list_keys(store.db):
            rows.append(
                [
                    key["name"],
                    "yes" if key["admin"] else "no",
                    _when(key["created_at"]),
                    _when(key["last_used_at"]),
                    _when(key["revoked_at"]),
                ]
            )
        print(_table(rows))
        return 0
    if revoke_key(store.db, args.name):
        print(f"Revoked key {args.name!r}.")
        return 0
    print(f"error: no active key named {args.name!r} (see `keys list`)", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    """Run a CLI command; returns the process exit code."""
    args = _parser().parse_args(argv)
    with Store(settings_or_exit("launch.sh keys").db_path) as store:
        return _keys(args, store)
