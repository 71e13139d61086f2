"""`python -m server` serves the API alone (no UI); `python -m server keys ...` manages API keys.

The workbench and the API together: `python -m ui` (what `./launch.sh` starts).
"""

import sys


def main(argv: list[str]) -> int:
    if argv and argv[0] == "keys":
        from server.cli import main as keys_main

        return keys_main(argv)
    if argv and argv[0] not in ("serve",):
        print(
            "usage: python -m server [serve] | python -m server keys {create,list,revoke} ...",
            file=sys.stderr,
        )
        return 2
    from server.app import create_app, serve
    from server.settings import settings_or_exit

    settings = settings_or_exit("python -m server")
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
