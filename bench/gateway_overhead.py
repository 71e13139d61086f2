"""What the gateway adds: the same requests straight to the engine and through /v1, in one run.

    python bench/gateway_overhead.py [--rounds 4] [--tokenizer] [--profile FILE]

Against bench/stub_engine.py, which answers at once, so only the gateway's own cost shows; the
app (`python -m ui`, as launch.sh starts it) in the `external` profile with its defaults (no
local tokenizer unless --tokenizer) and limits too high to interfere. Each round, the two sides
alternate who goes first, so drift in the machine's speed hits both alike:

- added p50 latency of sequential complete requests (max_tokens=1);
- streamed chunks/s of `--tokens`-chunk streams, gateway / direct;
- complete requests/s at 32 concurrent clients, gateway / direct, twice: with the official
  OpenAI SDK as the clients (what the API's callers run; the goal's figure), and with raw
  aiohttp requests, which cost the client a tenth as much and so leave the gateway's own cost
  as the bottleneck (the harshest figure; on 2 cores it is bounded by one Python process's
  cost per proxied request);
- the app's CPU per sequential request (from /proc, its idle baseline taken out), and per
  request at 32 raw clients.

Then the medians of the rounds against the goals of issue 12. --profile records the app with
py-spy meanwhile (`py-spy` from the `bench` extra; collapsed stacks, to rank the hot frames).

    python bench/gateway_overhead.py --engine http://127.0.0.1:8001 \\
        [--protocols chat,messages,responses]

The same rounds against a real vLLM (latency and chunks/s only), for each protocol.

Requests/s by the number of API worker processes: bench/gateway_workers.py.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.measure import (  # noqa: E402
    PROTOCOLS,
    Protocol,
    app_env,
    complete_once,
    percentile,
    process_cpu_seconds,
    requests_per_second,
    sdk_requests_per_second,
    start_stub,
    stream_once,
)

IDLE_SAMPLE_SECONDS = 5.0


@dataclass
class Round:
    """One round's figures, gateway against direct."""

    direct_p50_ms: float
    gateway_p50_ms: float
    chunk_ratio: float | None = None
    cpu_ms: float | None = None  # the app's CPU per sequential request, idle baseline out
    rps_ratio: float | None = None  # with the OpenAI SDK as the clients
    raw_rps_ratio: float | None = None  # with raw aiohttp clients
    rps_cpu_ms: float | None = None  # the app's CPU per request at `clients` raw clients

    @property
    def added_ms(self) -> float:
        return self.gateway_p50_ms - self.direct_p50_ms


class Side:
    """Direct or through the gateway: a client, a base URL, and the process to watch."""

    def __init__(self, base: str, key: str | None = None, pid: int | None = None):
        self.base, self.key, self.pid = base, key, pid
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=300, headers=headers)


def idle_cpu_rate(pid: int | None) -> float | None:
    """The app's CPU seconds per second when nobody calls it (the mounted UI's own polling)."""
    before = process_cpu_seconds(pid)
    time.sleep(IDLE_SAMPLE_SECONDS)
    after = process_cpu_seconds(pid)
    return None if None in (before, after) else (after - before) / IDLE_SAMPLE_SECONDS


def measure_round(
    index: int,
    direct: Side,
    gateway: Side,
    protocol: Protocol,
    args: argparse.Namespace,
    idle_rate: float | None,
) -> Round:
    """Sequential latency, streamed chunks/s and (with --clients) requests/s, alternating
    which side goes first so drift in the machine's speed hits both alike."""
    times: dict[Side, list[float]] = {direct: [], gateway: []}
    cpu_before, started = process_cpu_seconds(gateway.pid), time.perf_counter()
    for i in range(args.requests):
        for side in (direct, gateway) if (i + index) % 2 else (gateway, direct):
            times[side].append(complete_once(side.client, side.base, protocol))
    cpu = _cpu_per_request(gateway.pid, cpu_before, started, args.requests, idle_rate)
    result = Round(percentile(times[direct], 50), percentile(times[gateway], 50), cpu_ms=cpu)
    if args.streams:
        rates: dict[Side, list[float]] = {direct: [], gateway: []}
        for i in range(args.streams):
            for side in (direct, gateway) if (i + index) % 2 else (gateway, direct):
                rates[side].append(stream_once(side.client, side.base, protocol, args.tokens))
        result.chunk_ratio = statistics.mean(rates[gateway]) / statistics.mean(rates[direct])
    if args.clients_seq:
        for clients, measure in (("SDK", sdk_requests_per_second), ("raw", requests_per_second)):
            rps: dict[Side, float] = {}
            for side in (direct, gateway) if index % 2 else (gateway, direct):
                cpu_before, started = process_cpu_seconds(gateway.pid), time.perf_counter()
                rps[side], done = asyncio.run(
                    measure(side.base, side.key, args.clients_seq, args.seconds)
                )
                if side is gateway and measure is requests_per_second:
                    result.rps_cpu_ms = _cpu_per_request(
                        gateway.pid, cpu_before, started, done, idle_rate
                    )
            ratio = rps[gateway] / rps[direct]
            if measure is requests_per_second:
                result.raw_rps_ratio = ratio
            else:
                result.rps_ratio = ratio
            print(
                f"  round {index + 1}: {rps[direct]:.0f} req/s direct, {rps[gateway]:.0f} "
                f"through the gateway, at {args.clients_seq} {clients} clients"
            )
    return result


def _cpu_per_request(
    pid: int | None, before: float | None, started: float, requests: int, idle_rate: float | None
) -> float | None:
    after = process_cpu_seconds(pid)
    if None in (before, after, idle_rate) or not requests:
        return None
    busy = after - before - idle_rate * (time.perf_counter() - started)
    return busy / requests * 1000


def report(name: str, rounds: list[Round], goals: bool) -> None:
    """Each round, then the medians (and, against the stub, the issue's four goals)."""

    def med(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    print(f"{name}: gateway against direct, {len(rounds)} interleaved rounds")
    print(
        f"  {'round':<7}{'direct p50':>11}{'gateway p50':>12}{'added p50':>10}"
        f"{'chunks/s':>9}{'req/s':>7}{'raw req/s':>10}{'CPU/req':>9}{'CPU/req busy':>13}"
    )
    rows = [(str(i + 1), r) for i, r in enumerate(rounds)]
    median = Round(
        med([r.direct_p50_ms for r in rounds]),
        med([r.gateway_p50_ms for r in rounds]),
        med([r.chunk_ratio for r in rounds]),
        med([r.cpu_ms for r in rounds]),
        med([r.rps_ratio for r in rounds]),
        med([r.raw_rps_ratio for r in rounds]),
        med([r.rps_cpu_ms for r in rounds]),
    )
    added = med([r.added_ms for r in rounds])
    for label, r in [*rows, ("median", median)]:
        shown = added if label == "median" else r.added_ms
        print(
            f"  {label:<7}{r.direct_p50_ms:>9.2f}ms{r.gateway_p50_ms:>10.2f}ms"
            f"{shown:>+8.2f}ms{cell(r.chunk_ratio, '.3f'):>8}x{cell(r.rps_ratio, '.3f'):>6}x"
            f"{cell(r.raw_rps_ratio, '.3f'):>9}x"
            f"{cell(r.cpu_ms, '.2f'):>7}ms{cell(r.rps_cpu_ms, '.2f'):>11}ms"
        )
    if not goals:
        return
    print("  goals (issue 12):")
    for label, value, ok in (
        ("added p50 latency <= 1 ms", f"{added:+.2f} ms", added <= 1.0),
        (
            "req/s at 32 SDK clients >= 0.6x direct",
            cell(median.rps_ratio, ".3f") + "x",
            median.rps_ratio is not None and median.rps_ratio >= 0.6,
        ),
        (
            "streamed chunks/s >= 0.9x direct",
            cell(median.chunk_ratio, ".3f") + "x",
            median.chunk_ratio is not None and median.chunk_ratio >= 0.9,
        ),
        (
            "gateway CPU per request <= 1.5 ms",
            cell(median.cpu_ms, ".2f") + " ms",
            median.cpu_ms is not None and median.cpu_ms <= 1.5,
        ),
    ):
        print(f"    {'met ' if ok else 'MISS'}  {label:<40} {value}")
    print(
        f"    (raw aiohttp clients: {cell(median.raw_rps_ratio, '.3f')}x of direct, the gateway's"
        " own cost per request the bottleneck)"
    )


def compare(engine: str, args: argparse.Namespace, protocols: list[str], goals: bool) -> None:
    """Start the app in front of `engine` and report each protocol's rounds."""
    from tests.harness import start_app

    key = "bench-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory() as data:
        proc, url = start_app(
            app_env(key, data, engine, tokenizer=args.tokenizer), Path(data) / "logs"
        )
        try:
            direct, gateway = Side(engine), Side(url, key, proc.pid)
            for _ in range(3):  # warm up connections and the gateway's paths
                for side in (direct, gateway):
                    complete_once(side.client, side.base, PROTOCOLS[protocols[0]])
            idle_rate = idle_cpu_rate(proc.pid)
            if idle_rate is not None:
                print(f"the app at rest: {idle_rate * 100:.1f} % of a core (taken out of CPU/req)")
            if args.profile:
                args.profile_proc = _start_profile(proc.pid, args.profile)
            for name in protocols:
                rounds = [
                    measure_round(i, direct, gateway, PROTOCOLS[name], args, idle_rate)
                    for i in range(args.rounds)
                ]
                report(PROTOCOLS[name].path, rounds, goals)
                print()
            if args.profile:
                _stop_profile(args.profile_proc)
        finally:
            proc.stop()


def _start_profile(pid: int, out: str):
    """py-spy sampling the app while the rounds run (its top entries: `py-spy top` style)."""
    import subprocess

    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "250",
            "--output",
            out,
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_profile(proc) -> None:
    import signal

    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", help="a real vLLM's base URL; default: bench/stub_engine.py")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200, help="sequential, each side")
    parser.add_argument("--streams", type=int, default=6, help="each side")
    parser.add_argument("--tokens", type=int, default=1024, help="chunks of each stream")
    parser.add_argument(
        "--clients", type=int, default=32, help="concurrent clients for req/s (0: skip)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="of each req/s measurement")
    parser.add_argument(
        "--protocols",
        default="chat",
        help=f"with --engine, comma-separated, of {', '.join(PROTOCOLS)}",
    )
    parser.add_argument(
        "--tokenizer",
        action="store_true",
        help="give the app the embedded model's tokenizer (WORKBENCH_TOKENIZER_PATH)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record the app with py-spy while the rounds run (collapsed stacks)",
    )
    parser.add_argument(
        "--lean-stub",
        action="store_true",
        help="the stand-in engine without its FastAPI front (see stub_engine.py)",
    )
    args = parser.parse_args(argv)
    engine = args.engine and args.engine.rstrip("/").removesuffix("/v1")
    protocols = args.protocols.split(",")
    if unknown := set(protocols) - set(PROTOCOLS):
        parser.error(f"unknown protocols: {', '.join(sorted(unknown))}")
    args.clients_seq = args.clients
    if engine:
        args.clients_seq = 0  # a real CPU engine measures itself, not the gateway, under load
        compare(engine, args, protocols, goals=False)
        return 0
    if protocols != ["chat"]:
        parser.error("the stand-in engine serves chat only: use --engine for the others")
    stub, url = start_stub(args.lean_stub)
    try:
        compare(url, args, protocols, goals=True)
    finally:
        stub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
