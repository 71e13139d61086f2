"""Complete requests per second straight to the engine and through the gateway with 1, 2 and 4
API workers (`python -m server`, WORKBENCH_API_WORKERS=N: nginx and Redis in front from 2 on),
each as a ratio to direct, in one run.

    python bench/gateway_workers.py [--engine URL] [--workers 1,2,4] [--clients 32,128]

Without --engine it starts bench/stub_engine.py, which answers at once, so the gateway's own
cost shows. One process per request path: bench/gateway_overhead.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.measure import app_env, requests_per_second, start_stub  # noqa: E402


def throughput(engine: str | None, workers: list[int], clients: list[int], seconds: float) -> None:
    """Requests/s direct and through 1, 2, 4 API workers, as ratios to direct."""
    from tests.harness import APP_PYTHON, ManagedProcess, base_env, free_port

    stub = None
    if engine is None:
        stub, engine = start_stub()
    rates: dict[tuple[str, int], float] = {}
    try:
        for n in clients:
            rates["direct", n] = asyncio.run(requests_per_second(engine, None, n, seconds))[0]
        for count in workers:
            key = "bench-" + secrets.token_hex(8)
            with tempfile.TemporaryDirectory() as data:
                env = app_env(key, data, engine, tokenizer=True, WORKBENCH_API_WORKERS=str(count))
                port = free_port()
                # As launch.sh starts it; N + 2 processes take minutes to start on a busy host.
                proc = ManagedProcess(
                    [APP_PYTHON, "-m", "ui"],
                    base_env(WORKBENCH_PORT=str(port), WORKBENCH_HOST="127.0.0.1", **env),
                    Path(data) / "logs" / "app.log",
                )
                url = f"http://127.0.0.1:{port}"
                try:
                    proc.wait_http(url + "/health", timeout=600)
                    for n in clients:
                        rates[f"{count} worker(s)", n] = asyncio.run(
                            requests_per_second(url, key, n, seconds)
                        )[0]
                finally:
                    proc.stop()
    finally:
        if stub is not None:
            stub.stop()
    print(f"complete requests/s (max_tokens=1, {seconds:.0f} s each), ratio to direct")
    print("  " + "".join(f"{f'{n} clients':>24}" for n in clients))
    for side in dict.fromkeys(name for name, _ in rates):
        cells = "".join(
            f"{rates[side, n]:>14.0f} ({rates[side, n] / rates['direct', n]:.2f}x)" for n in clients
        )
        print(f"  {side:<12}{cells}")
    print(f"  cores: {os.cpu_count()} (bench clients, engine, nginx, Redis and workers share them)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", help="a real vLLM's base URL; default: bench/stub_engine.py")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--clients", default="32,128")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    engine = args.engine and args.engine.rstrip("/").removesuffix("/v1")
    throughput(
        engine,
        [int(n) for n in args.workers.split(",")],
        [int(n) for n in args.clients.split(",")],
        args.seconds,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
