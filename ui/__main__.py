"""`python -m ui` serves the workbench and the API on one port (what `./launch.sh` starts)."""

import sys

from server.app import serve
from server.settings import settings_or_exit
from ui.app import create_app


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m ui   (API keys: ./launch.sh keys ...)", file=sys.stderr)
        return 2
    settings = settings_or_exit("python -m ui")
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
