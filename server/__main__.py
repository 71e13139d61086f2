"""`python -m server` runs the app; `python -m server keys ...` manages API keys."""

import sys


def main(argv: list[str]) -> int:
    if argv and argv[0] == "keys":
        from server.cli import main as keys_main

        return keys_main(argv)
    if argv and argv[0] not in ("serve",):
        print("usage: python -m server [serve] | python -m server keys {create,list,revoke} ...",
              file=sys.stderr)
        return 2
    import uvicorn

    from server.app import create_app
    from server.settings import get_settings

    settings = get_settings()
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port,
        log_level="info", timeout_graceful_shutdown=5,
        # Every /v1 request already gets a usage row; the access log costs ≈0.25 ms a request.
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
