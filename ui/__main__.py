"""`python -m ui` serves the workbench and the API on one port (what `./launch.sh` starts).

With WORKBENCH_API_WORKERS > 1 it supervises the many-process host instead (server.processes):
`python -m ui` once for the UI, `python -m server` N times for /v1, nginx in front.
"""

import sys

from server.app import serve
from server.settings import settings_or_exit
from ui.app import create_app


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m ui   (API keys: ./launch.sh keys ...)", file=sys.stderr)
        return 2
    settings = settings_or_exit("python -m ui")
    if settings.api_workers > 1:
        from server.processes.supervisor import run

        return run(settings)
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
