"""`python -m server` runs the app; `python -m server keys ...` manages API keys.

With WORKBENCH_API_WORKERS > 1 it runs the many-process host instead (server.processes):
the supervisor starts `python -m server worker ui` once and `python -m server worker api`
N times on loopback ports, with nginx in front.
"""

import sys

USAGE = ("usage: python -m server [serve] | python -m server keys {create,list,revoke} ... | "
         "python -m server worker {api,ui}")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "keys":
        from server.cli import main as keys_main

        return keys_main(argv)
    role = None
    if argv[:1] == ["worker"] and argv[1:] in (["api"], ["ui"]):
        role = argv[1]
    elif argv and argv[0] not in ("serve",):
        print(USAGE, file=sys.stderr)
        return 2
    import uvicorn

    from server.app import create_app
    from server.settings import get_settings

    settings = get_settings()
    if role is None and settings.api_workers > 1:
        from server.processes.supervisor import run

        return run(settings)
    tls = {}
    if role is None and settings.tls:  # one process: uvicorn speaks HTTPS itself
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    uvicorn.run(
        create_app(settings, ui=role != "api"), host=settings.host, port=settings.port,
        log_level="info", timeout_graceful_shutdown=5,
        # Every /v1 request already gets a usage row; the access log costs ≈0.25 ms a request.
        access_log=False, **tls,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
