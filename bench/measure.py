"""How the benches call the engine and the gateway: one complete request, one stream, many
concurrent clients, the stand-in engine, and a process's CPU clock."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]

MESSAGES = [{"role": "user", "content": "Reply with one word."}]


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
    "chat": Protocol(
        "/v1/chat/completions",
        lambda n: {"model": "qwen3", "messages": MESSAGES, "max_tokens": n, "temperature": 0.0},
        None,
    ),
    "messages": Protocol(
        "/v1/messages",
        lambda n: {"model": "qwen3", "messages": MESSAGES, "max_tokens": n, "temperature": 0.0},
        "content_block_delta",
    ),
    "responses": Protocol(
        "/v1/responses",
        lambda n: {
            "model": "qwen3",
            "input": MESSAGES[0]["content"],
            "max_output_tokens": n,
            "temperature": 0.0,
        },
        "response.output_text.delta",
    ),
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
    """Content events per second of one stream, from sending the request to its last event
    (so what the gateway adds before the first event counts too)."""
    body = {**protocol.body(tokens), "stream": True, "ignore_eos": True}
    times: list[float] = []
    event = None
    started = time.perf_counter()
    with client.stream("POST", base + protocol.path, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif protocol.is_chunk(line, event):
                times.append(time.perf_counter())
    if len(times) < 3:
        raise RuntimeError(f"only {len(times)} events streamed")
    return len(times) / (times[-1] - started)


async def _rate(request: Callable[[], Awaitable[object]], clients: int, seconds: float):
    """(requests/s, requests counted) of `clients` concurrent loops of `request`, counted for
    `seconds` after one second of warm-up."""
    done = 0
    counting = False

    async def loop(stop: float) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await request()
            if counting:
                done += 1

    stop = time.perf_counter() + 1 + seconds
    tasks = [asyncio.create_task(loop(stop)) for _ in range(clients)]
    await asyncio.sleep(1)
    counting, started = True, time.perf_counter()
    await asyncio.gather(*tasks)
    return done / (time.perf_counter() - started), done


async def requests_per_second(
    base: str, key: str | None, clients: int, seconds: float
) -> tuple[float, int]:
    """Complete requests/s with `clients` concurrent clients after one second of warm-up, and
    how many requests were counted."""
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "qwen3", "messages": MESSAGES, "max_tokens": 1}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def request() -> None:
            async with session.post(base + "/v1/chat/completions", json=body) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{response.status}: {await response.text()}")

        return await _rate(request, clients, seconds)


async def sdk_requests_per_second(
    base: str, key: str | None, clients: int, seconds: float
) -> tuple[float, int]:
    """As `requests_per_second`, with the official OpenAI SDK as the clients: `clients`
    concurrent calls through one `AsyncOpenAI`, as a program using the API makes them. The SDK
    costs the client ≈1.5 ms of CPU a request here (raw aiohttp ≈0.12 ms), which is what the
    API's real callers pay."""
    import openai

    async with openai.AsyncOpenAI(
        base_url=base + "/v1", api_key=key or "none", max_retries=0
    ) as client:
        return await _rate(
            lambda: client.chat.completions.create(model="qwen3", messages=MESSAGES, max_tokens=1),
            clients,
            seconds,
        )


def app_env(key: str, data: str, engine: str, tokenizer: bool, **extra: str) -> dict[str, str]:
    """The app's environment: the `external` profile in front of `engine`, limits too high to
    interfere, the embedded model's tokenizer if `tokenizer` (else the profile's default)."""
    env = {
        "VLLM_API_KEY": key,
        "WORKBENCH_DATA_DIR": data,
        "WORKBENCH_PROFILE": "external",
        "WORKBENCH_UPSTREAM_URL": engine,
        "WORKBENCH_RPM": "100000000",
        "WORKBENCH_TPM": "1000000000000",
        "WORKBENCH_MAX_CONCURRENT": "100000",
        **extra,
    }
    model_dir = REPO / "data" / "models" / "SmolLM2-135M-Instruct"
    if tokenizer and (model_dir / "tokenizer.json").is_file():
        env["WORKBENCH_TOKENIZER_PATH"] = str(model_dir)
    return env


def start_stub(lean: bool = False):
    """bench/stub_engine.py on a free port: (its process, its base URL)."""
    from tests.harness import ManagedProcess, base_env, free_port

    port = free_port()
    stub = ManagedProcess(
        [
            sys.executable,
            str(REPO / "bench" / "stub_engine.py"),
            "--port",
            str(port),
            *(["--lean"] if lean else []),
        ],
        base_env(),
        Path(tempfile.gettempdir()) / f"stub-engine-{port}.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        stub.wait_http(url + "/health", timeout=30)
    except Exception:
        stub.stop()
        raise
    return stub, url
