"""What the gateway adds: the same requests straight to vLLM and through /v1, in one run.

    python bench/gateway_overhead.py --engine http://127.0.0.1:8001 \\
        [--gateway http://127.0.0.1:8000 --key SECRET] [--protocols chat,messages,responses]

Without --gateway, an app is started in front of the engine (tests/harness.py) with limits
high enough not to interfere. Requests alternate direct/gateway so drift in the engine's
speed hits both sides alike. Each protocol (`chat`: /v1/chat/completions, `messages`:
Anthropic's /v1/messages, `responses`: /v1/responses; vLLM serves all three itself) is
measured in turn, then a table puts their ratios side by side. For each, prints:

- added latency of complete requests (max_tokens=1): p50 and p99 of each side, their
  difference, and the median of the paired differences;
- streamed chunks per second (ignore_eos, fixed length): gateway / direct ratio;
- when the bench started the app itself: the gateway's own CPU time per complete request
  (from /proc), which does not depend on how busy the machine is.

Targets (issue 4): < 1 ms added p50, >= 0.95x chunks/s.

    python bench/gateway_overhead.py --throughput [--engine URL] [--workers 1,2,4]
        [--clients 32,128] [--seconds 10]

--throughput: complete requests per second with 32 and 128 clients, straight to the engine and
through the gateway with 1, 2 and 4 API workers (`python -m server`, WORKBENCH_API_WORKERS=N:
nginx and Redis in front from 2 on), each as a ratio to direct, in one run. Without --engine
it starts bench/stub_engine.py, which answers at once, so the gateway's own cost shows.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MESSAGES = [{"role": "user", "content": "Reply with one word."}]
IDLE_SAMPLE_SECONDS = 5.0


@dataclass(frozen=True)
class Protocol:
    """One API's request for `tokens` generated tokens, and how its stream marks a chunk."""

    path: str
    body: Callable[[int], dict]
    chunk_event: str | None  # the `event:` type of a content chunk; None: every `data:` line

    def is_chunk(self, line: str, last_event: str | None) -> bool:
        if self.chunk_event is None:
            return line.startswith("data: ") and line != "data: [DONE]"
        return line.startswith("data: ") and last_event == self.chunk_event


PROTOCOLS = {
    "chat": Protocol("/v1/chat/completions", lambda n: {
        "model": "qwen3", "messages": MESSAGES, "max_tokens": n, "temperature": 0.0}, None),
    "messages": Protocol("/v1/messages", lambda n: {
        "model": "qwen3", "messages": MESSAGES, "max_tokens": n, "temperature": 0.0},
        "content_block_delta"),
    "responses": Protocol("/v1/responses", lambda n: {
        "model": "qwen3", "input": MESSAGES[0]["content"], "max_output_tokens": n,
        "temperature": 0.0}, "response.output_text.delta"),
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def complete_once(client: httpx.Client, base: str, protocol: Protocol) -> float:
    started = time.perf_counter()
    response = client.post(base + protocol.path, json=protocol.body(1))
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000


def stream_once(client: httpx.Client, base: str, protocol: Protocol, tokens: int) -> float:
    """Chunks per second between the first and the last content event of one stream."""
    body = {**protocol.body(tokens), "stream": True, "ignore_eos": True}
    times: list[float] = []
    event = None
    with client.stream("POST", base + protocol.path, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif protocol.is_chunk(line, event):
                times.append(time.perf_counter())
    if len(times) < 3:
        raise RuntimeError(f"only {len(times)} events streamed")
    return (len(times) - 1) / (times[-1] - times[0])


@dataclass
class Figures:
    """One protocol's results, for the side-by-side table."""

    latency_ratio: float
    added_p50_ms: float
    chunk_ratio: float | None


def run(engine: str, gateway: str, key: str, requests: int, streams: int, tokens: int,
        protocol: Protocol, gateway_pid: int | None = None) -> Figures:
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=300) as direct, httpx.Client(timeout=300, headers=auth) as proxied:
        for _ in range(3):  # warm up connections, the prefix cache and the gateway's paths
            complete_once(direct, engine, protocol)
            complete_once(proxied, gateway, protocol)
        # The mounted UI (Gradio's queue polls every millisecond) costs CPU even when idle:
        # measure that baseline first and take it out of the per-request figure.
        idle_start = process_cpu_seconds(gateway_pid)
        time.sleep(IDLE_SAMPLE_SECONDS)
        idle_end = process_cpu_seconds(gateway_pid)
        direct_ms, gateway_ms = [], []
        cpu_before = process_cpu_seconds(gateway_pid)
        run_started = time.perf_counter()
        for i in range(requests):
            # Alternate who goes first, so neither side always meets a warmer engine.
            if i % 2:
                gateway_ms.append(complete_once(proxied, gateway, protocol))
                direct_ms.append(complete_once(direct, engine, protocol))
            else:
                direct_ms.append(complete_once(direct, engine, protocol))
                gateway_ms.append(complete_once(proxied, gateway, protocol))
        cpu_after = process_cpu_seconds(gateway_pid)
        run_seconds = time.perf_counter() - run_started
        direct_rate, gateway_rate = [], []
        for i in range(streams):
            order = [(direct, engine, direct_rate), (proxied, gateway, gateway_rate)]
            for client, base, rates in order if i % 2 == 0 else reversed(order):
                rates.append(stream_once(client, base, protocol, tokens))

    paired = [g - d for g, d in zip(gateway_ms, direct_ms, strict=True)]
    print(f"{protocol.path}: complete requests (1 token), {requests} each side")
    for name, values in (("direct ", direct_ms), ("gateway", gateway_ms)):
        print(f"  {name}  p50 {percentile(values, 50):8.2f} ms   "
              f"p99 {percentile(values, 99):8.2f} ms")
    added = percentile(gateway_ms, 50) - percentile(direct_ms, 50)
    print(f"  added    p50 {added:+8.2f} ms   "
          f"p99 {percentile(gateway_ms, 99) - percentile(direct_ms, 99):+8.2f} ms   "
          f"(median of paired differences {statistics.median(paired):+.2f} ms)")
    ratio = percentile(gateway_ms, 50) / percentile(direct_ms, 50)
    print(f"  latency ratio p50 {ratio:.3f}x")
    if None not in (cpu_before, cpu_after, idle_start, idle_end):
        idle_rate = (idle_end - idle_start) / IDLE_SAMPLE_SECONDS
        total = cpu_after - cpu_before
        busy = total - idle_rate * run_seconds
        if busy < total / 2:
            # A slow engine makes the run long, and the idle baseline (itself noisy) swamps
            # the figure: point --engine at a fast OpenAI-compatible stub to measure it.
            print(f"  gateway CPU per request: not measurable here (idle baseline "
                  f"{idle_rate * 100:.1f}% of a core over {run_seconds:.0f} s dominates)")
        else:
            print(f"  gateway CPU per request {busy / requests * 1000:.2f} ms "
                  f"(idle baseline {idle_rate * 100:.1f}% of a core taken out)")
    if not streams:
        return Figures(ratio, added, None)
    d, g = statistics.mean(direct_rate), statistics.mean(gateway_rate)
    print(f"  streamed chunks/s ({streams} streams of {tokens} tokens each side)")
    print(f"  direct {d:.1f}/s   gateway {g:.1f}/s   ratio {g / d:.3f}x")
    return Figures(ratio, added, g / d)


def run_all(engine: str, gateway: str, key: str, args: argparse.Namespace,
            gateway_pid: int | None = None) -> None:
    results = {}
    for name in args.protocols.split(","):
        results[name] = run(engine, gateway, key, args.requests, args.streams, args.tokens,
                            PROTOCOLS[name], gateway_pid)
        print()
    print("gateway / direct, side by side")
    print(f"  {'protocol':<10} {'latency p50':>12} {'added p50':>10} {'chunks/s':>9}")
    for name, f in results.items():
        chunks = f"{f.chunk_ratio:.3f}x" if f.chunk_ratio is not None else "-"
        print(f"  {name:<10} {f.latency_ratio:>11.3f}x {f.added_p50_ms:>+8.2f}ms {chunks:>9}")


async def _requests_per_second(base: str, key: str | None, clients: int,
                               seconds: float) -> float:
    """Complete requests/s with `clients` concurrent clients, after one second of warm-up."""
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "qwen3", "messages": MESSAGES, "max_tokens": 1}
    done = 0
    counting = False
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def client(stop: float) -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with session.post(base + "/v1/chat/completions", json=body) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{response.status}: {await response.text()}")
                if counting:
                    done += 1

        import asyncio

        stop = time.perf_counter() + 1 + seconds
        tasks = [asyncio.create_task(client(stop)) for _ in range(clients)]
        await asyncio.sleep(1)
        counting, started = True, time.perf_counter()
        await asyncio.gather(*tasks)
        return done / (time.perf_counter() - started)


def throughput(engine: str | None, workers: list[int], clients: list[int],
               seconds: float) -> None:
    """Requests/s direct and through 1, 2, 4 API workers, as ratios to direct."""
    import asyncio

    from tests.harness import APP_PYTHON, ManagedProcess, base_env, free_port

    stub = None
    if engine is None:
        port = free_port()
        stub = ManagedProcess([sys.executable, str(REPO / "bench" / "stub_engine.py"),
                               "--port", str(port)], base_env(),
                              Path(tempfile.gettempdir()) / f"stub-engine-{port}.log")
        engine = f"http://127.0.0.1:{port}"
        stub.wait_http(engine + "/health", timeout=30)
    rates: dict[tuple[str, int], float] = {}
    try:
        for n in clients:
            rates["direct", n] = asyncio.run(_requests_per_second(engine, None, n, seconds))
        for count in workers:
            key = "bench-" + secrets.token_hex(8)
            with tempfile.TemporaryDirectory() as data:
                env = {"VLLM_API_KEY": key, "WORKBENCH_DATA_DIR": data,
                       "WORKBENCH_PROFILE": "external", "WORKBENCH_UPSTREAM_URL": engine,
                       "WORKBENCH_RPM": "100000000", "WORKBENCH_TPM": "1000000000000",
                       "WORKBENCH_MAX_CONCURRENT": "100000", "WORKBENCH_API_WORKERS": str(count)}
                model_dir = REPO / "data" / "models" / "SmolLM2-135M-Instruct"
                if (model_dir / "tokenizer.json").is_file():
                    env["WORKBENCH_TOKENIZER_PATH"] = str(model_dir)
                port = free_port()
                # As launch.sh starts it; N + 2 processes take minutes to start on a busy host.
                proc = ManagedProcess([APP_PYTHON, "-m", "ui"], base_env(
                    WORKBENCH_PORT=str(port), WORKBENCH_HOST="127.0.0.1", **env),
                    Path(data) / "logs" / "app.log")
                url = f"http://127.0.0.1:{port}"
                try:
                    proc.wait_http(url + "/health", timeout=600)
                    for n in clients:
                        rates[f"{count} worker(s)", n] = asyncio.run(
                            _requests_per_second(url, key, n, seconds))
                finally:
                    proc.stop()
    finally:
        if stub is not None:
            stub.stop()
    print(f"complete requests/s (max_tokens=1, {seconds:.0f} s each), ratio to direct")
    print("  " + "".join(f"{f'{n} clients':>24}" for n in clients))
    for side in dict.fromkeys(name for name, _ in rates):
        cells = "".join(f"{rates[side, n]:>14.0f} ({rates[side, n] / rates['direct', n]:.2f}x)"
                        for n in clients)
        print(f"  {side:<12}{cells}")
    print(f"  cores: {os.cpu_count()} (bench clients, engine, nginx, Redis and workers share them)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", help="vLLM base URL (without /v1)")
    parser.add_argument("--throughput", action="store_true",
                        help="requests/s by number of API workers (see above)")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--clients", default="32,128")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--gateway", help="the app's base URL; default: start one")
    parser.add_argument("--key", help="API key for --gateway")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--streams", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--protocols", default="chat,messages,responses",
                        help=f"comma-separated, of {', '.join(PROTOCOLS)}")
    args = parser.parse_args(argv)
    if args.throughput:
        throughput(args.engine and args.engine.rstrip("/").removesuffix("/v1"),
                   [int(n) for n in args.workers.split(",")],
                   [int(n) for n in args.clients.split(",")], args.seconds)
        return 0
    if not args.engine:
        parser.error("--engine is required (except with --throughput)")
    if unknown := set(args.protocols.split(",")) - set(PROTOCOLS):
        parser.error(f"unknown protocols: {', '.join(sorted(unknown))}")
    engine = args.engine.rstrip("/").removesuffix("/v1")
    if args.gateway:
        if not args.key:
            parser.error("--gateway needs --key")
        run_all(engine, args.gateway.rstrip("/"), args.key, args)
        return 0

    from tests.harness import start_app

    key = "bench-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory() as data:
        env = {"VLLM_API_KEY": key, "WORKBENCH_DATA_DIR": data, "WORKBENCH_PROFILE": "external",
               "WORKBENCH_UPSTREAM_URL": engine, "WORKBENCH_RPM": "1000000",
               "WORKBENCH_TPM": "1000000000", "WORKBENCH_MAX_CONCURRENT": "1000"}
        model_dir = REPO / "data" / "models" / "SmolLM2-135M-Instruct"
        if (model_dir / "tokenizer.json").is_file():
            env["WORKBENCH_TOKENIZER_PATH"] = str(model_dir)
        proc, url = start_app(env, Path(data) / "logs")
        try:
            run_all(engine, url, key, args, proc.pid)
        finally:
            proc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
