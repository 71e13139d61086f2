"""What routing buys: round_robin against prefix-affine policies, behind the real vllm-router.

    python bench/routing.py [--replicas 4 --documents 16 --questions 8 --users 16 ...]

N stand-in replicas (small aiohttp servers speaking OpenAI chat streaming) each keep an LRU
prefix cache of limited size; a request's time to first token is its uncached prompt tokens
at a fixed prefill rate, one prefill at a time per replica (a GPU prefills one batch at once,
so a replica that gets more misses queues them). The real `vllm-router` (the command
launch.sh runs, `server.engine.router.router_argv`) sits in front of them, once per policy,
each time with cold caches. The workload is D documents (long shared prefixes, page-marked as
the gateway sends them) × Q short questions, asked by U concurrent users in a shuffled order;
requests carry the `x-session-id` the gateway sets (`server.gateway.affinity`).

Prefill rate: 12,000 tokens/s per replica, an estimate for Qwen3-Coder-480B-A35B-FP8 on 4×H200
(35B active parameters ≈ 70 GFLOP per token; 4×H200 ≈ 4 PFLOP/s of FP8; ≈20% utilisation at
long context). No measurement of it exists on this machine; `--prefill-rate` changes it. A
cached token costs nothing here, which flatters hits slightly (vLLM still reads them).

Prints TTFT p50/p90, requests/s and the share of prompt tokens served from a replica's cache,
for each policy side by side, with ratios against round_robin. For scale: llm-d reported TTFT
p90 of 0.54 s with precise prefix-cache routing against 92.6 s for random routing on 8 pods
with 6k-token shared prefixes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The imports below need the sys.path line above.
from server.engine.router import router_argv, router_binary  # noqa: E402
from server.gateway.affinity import affinity_key  # noqa: E402
from tests.harness import ManagedProcess, base_env, free_port  # noqa: E402

CHARS_PER_TOKEN = 4  # English text under Qwen's tokenizer
POLICIES = ("round_robin", "cache_aware", "consistent_hash", "sticky_least_loaded")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


@dataclass
class StandInReplica:
    """One engine: an LRU of prefixes (by tokens), serial prefill, streamed decode."""

    capacity_tokens: int
    prefill_rate: float
    decode_tokens: int
    decode_interval: float
    cache: OrderedDict = field(default_factory=OrderedDict)
    prefill: asyncio.Lock = field(default_factory=asyncio.Lock)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    requests: int = 0

    def reset(self) -> None:
        self.cache.clear()
        self.prompt_tokens = self.cached_tokens = self.requests = 0

    def _lookup(self, prefix: str) -> int:
        """Cached tokens of this prompt's prefix; the prefix is cached afterwards."""
        key, tokens = hash(prefix), len(prefix) // CHARS_PER_TOKEN
        if key in self.cache:
            self.cache.move_to_end(key)
            return tokens
        self.cache[key] = tokens
        while sum(self.cache.values()) > self.capacity_tokens and len(self.cache) > 1:
            self.cache.popitem(last=False)
        return 0

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        messages = body["messages"]
        prefix = messages[0]["content"] if messages[0]["role"] == "system" else ""
        total = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN
        async with self.prefill:  # one prefill at a time on this replica
            cached = self._lookup(prefix) if prefix else 0
            await asyncio.sleep((total - cached) / self.prefill_rate)
        self.requests += 1
        self.prompt_tokens += total
        self.cached_tokens += cached
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(self.decode_tokens):
            chunk = {
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": f"t{i} "}}],
            }
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await asyncio.sleep(self.decode_interval)
        usage = {
            "prompt_tokens": total,
            "completion_tokens": self.decode_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        await response.write(b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="")

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/health", self.health)
        app.router.add_post("/v1/chat/completions", self.chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, f"http://127.0.0.1:{port}"


def document(n: int, tokens: int) -> str:
    """A page-marked document of about `tokens` tokens, as the gateway sends it."""
    page, pages, size = 0, [], 0
    while size < tokens * CHARS_PER_TOKEN:
        page += 1
        text = (
            f"[page {page}]\nDocument {n}, page {page}: the specification describes the "
            f"interfaces, the failure modes and the tests of component {n}.{page}.\n"
        )
        pages.append(text)
        size += len(text)
    return "".join(pages)


def workload(args: argparse.Namespace) -> list[dict]:
    docs = [document(d, args.document_tokens) for d in range(args.documents)]
    bodies = [
        {
            "model": "qwen3",
            "stream": True,
            "max_tokens": args.decode_tokens,
            "messages": [
                {"role": "system", "content": docs[d]},
                {"role": "user", "content": f"Question {q} about document {d}?"},
            ],
        }
        for d in range(args.documents)
        for q in range(args.questions)
    ]
    random.Random(args.seed).shuffle(bodies)
    return bodies


async def run_users(router: str, bodies: list[dict], users: int) -> tuple[list[float], float]:
    """Send every body through the router from `users` concurrent users: (TTFTs, seconds)."""
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    ttfts: list[float] = []

    async def user(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            headers = {"x-session-id": affinity_key(body)}
            started = time.perf_counter()
            async with session.post(
                router + "/v1/chat/completions", json=body, headers=headers
            ) as response:
                response.raise_for_status()
                first = None
                async for _ in response.content.iter_any():
                    first = first or time.perf_counter()
            ttfts.append(first - started)

    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(user(session) for _ in range(users)))
    return ttfts, time.perf_counter() - started


async def measure(
    policy: str,
    replicas: list[StandInReplica],
    urls: list[str],
    bodies: list[dict],
    users: int,
    logs: Path,
) -> dict:
    for replica in replicas:
        replica.reset()
    port = free_port()
    argv = router_argv(router_binary(sys.executable), urls, port, free_port(), policy)
    router = ManagedProcess(argv, base_env(), logs / f"router-{policy}.log")
    try:
        await asyncio.to_thread(router.wait_http, f"http://127.0.0.1:{port}/readiness", 60)
        ttfts, seconds = await run_users(f"http://127.0.0.1:{port}", bodies, users)
    finally:
        router.stop()
    prompt = sum(r.prompt_tokens for r in replicas)
    return {
        "policy": policy,
        "p50": percentile(ttfts, 50),
        "p90": percentile(ttfts, 90),
        "rps": len(ttfts) / seconds,
        "cached": sum(r.cached_tokens for r in replicas) / prompt,
        "spread": [r.requests for r in replicas],
    }


async def main(args: argparse.Namespace) -> None:
    bodies = workload(args)
    # Room for exactly `cache_documents` of the documents as generated (a page over the target).
    largest = max(len(b["messages"][0]["content"]) for b in bodies) // CHARS_PER_TOKEN
    replicas = [
        StandInReplica(
            args.cache_documents * largest,
            args.prefill_rate,
            args.decode_tokens,
            args.decode_interval,
        )
        for _ in range(args.replicas)
    ]
    started = [await r.start() for r in replicas]
    print(
        f"{args.replicas} replicas (LRU of {args.cache_documents} documents each, prefill "
        f"{args.prefill_rate:,.0f} tokens/s), {args.documents} documents × {args.questions} "
        f"questions of ≈{args.document_tokens:,}-token prefixes, {args.users} users"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="routing-bench-") as logs:
        try:
            for policy in args.policies:
                results.append(
                    await measure(
                        policy, replicas, [u for _, u in started], bodies, args.users, Path(logs)
                    )
                )
        finally:
            for runner, _ in started:
                await runner.cleanup()
    base = results[0]
    print(
        f"\n{'policy':<20}{'TTFT p50':>10}{'TTFT p90':>10}{'req/s':>8}{'cached':>8}"
        f"{'p90 vs ' + base['policy']:>22}{'req/s vs':>10}   requests per replica"
    )
    for r in results:
        print(
            f"{r['policy']:<20}{r['p50']:>9.2f}s{r['p90']:>9.2f}s{r['rps']:>8.2f}"
            f"{r['cached']:>8.0%}{base['p90'] / r['p90']:>21.1f}x{r['rps'] / base['rps']:>9.1f}x"
            f"   {r['spread']}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--documents", type=int, default=16)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--document-tokens", type=int, default=6000)
    parser.add_argument(
        "--cache-documents", type=int, default=4, help="prefix cache per replica, in documents"
    )
    parser.add_argument("--prefill-rate", type=float, default=12_000, help="tokens/s")
    parser.add_argument("--decode-tokens", type=int, default=16)
    parser.add_argument("--decode-interval", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--policies",
        nargs="+",
        default=list(POLICIES),
        choices=POLICIES,
        help="the first is the baseline",
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
