"""The engines behind vllm-router (WORKBENCH_UPSTREAM_URLS), each checked on its own.

The gateway talks to the router for every request; it asks each replica directly only for its
state: `/health` (up or down, and the replica's name from the `x-workbench-replica` header the
engine middleware adds) and `/v1/models` (its `max_model_len`). The router's own view — which
workers it routes to and their load — comes from its `GET /workers`; its Prometheus text from
its metrics port. The host is `degraded`, not down, while at least one replica answers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
import orjson

from server.engine.replica_header import HEADER

log = logging.getLogger(__name__)

REPLICA_HEADER = HEADER.decode()
CHECK_TIMEOUT = aiohttp.ClientTimeout(total=3.0)


@dataclass
class Replica:
    """One engine as the gateway last saw it."""

    url: str
    up: bool = False
    name: str | None = None  # its x-workbench-replica, as its answers through the router carry
    max_model_len: int | None = None
    routed: bool | None = None  # the router's view: does it send requests there
    load: int | None = None  # requests in flight there, as the router counts them

    def describe(self) -> dict:
        return {
            "url": self.url,
            "status": "up" if self.up else "down",
            "routed": self.routed,
            "load": self.load,
            "max_model_len": self.max_model_len,
        }


class Replicas:
    """The replicas' state; `check()` refreshes it (all replicas at once)."""

    def __init__(self, urls: list[str], router_url: str, metrics_url: str, headers: dict[str, str]):
        self.replicas = [Replica(url) for url in urls]
        self.router_url = router_url
        self.metrics_url = metrics_url
        self.router_up = False
        self._headers = headers  # the engine secret, for /v1/models

    @property
    def any_up(self) -> bool:
        return self.router_up and any(r.up for r in self.replicas)

    @property
    def status(self) -> str:
        """`ok` (all up), `degraded` (some down, one answers) or `down`."""
        if not self.any_up:
            return "down"
        return "ok" if all(r.up for r in self.replicas) else "degraded"

    @property
    def max_model_len(self) -> int | None:
        """The smallest context among the replicas that told theirs: any of them may answer."""
        known = [r.max_model_len for r in self.replicas if r.max_model_len]
        return min(known) if known else None

    def label(self, name: str | None) -> str | None:
        """The URL of the replica whose answers carry `name` (the name itself if unknown)."""
        if not name:
            return None
        for replica in self.replicas:
            if replica.name == name:
                return replica.url
        return name

    async def check(self, session: aiohttp.ClientSession) -> None:
        await asyncio.gather(
            self._check_router(session), *(self._check(session, r) for r in self.replicas)
        )

    async def _check(self, session: aiohttp.ClientSession, replica: Replica) -> None:
        try:
            async with session.get(replica.url + "/health", timeout=CHECK_TIMEOUT) as response:
                replica.up = response.status == 200
                replica.name = response.headers.get(REPLICA_HEADER) or replica.name
            if replica.up:
                # Read every time: a replica restarted with another --max-model-len says so.
                async with session.get(
                    replica.url + "/v1/models", headers=self._headers, timeout=CHECK_TIMEOUT
                ) as response:
                    if response.status == 200:
                        card = orjson.loads(await response.read())["data"][0]
                        replica.max_model_len = int(card.get("max_model_len") or 0) or None
                    else:
                        log.warning(
                            "replica %s answered /v1/models with %d (engine secret?)",
                            replica.url,
                            response.status,
                        )
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, IndexError):
            replica.up = False

    async def _check_router(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(self.router_url + "/workers", timeout=CHECK_TIMEOUT) as response:
                workers = orjson.loads(await response.read())["workers"]
            self.router_up = response.status == 200
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError):
            self.router_up = False
            workers = []
        seen = {w.get("url"): w for w in workers if isinstance(w, dict)}
        for replica in self.replicas:
            worker = seen.get(replica.url, {})
            replica.routed = worker.get("is_healthy")
            replica.load = worker.get("load")

    async def router_metrics(self, session: aiohttp.ClientSession) -> bytes:
        """The router's own Prometheus text (empty if it does not answer)."""
        try:
            async with session.get(
                self.metrics_url + "/metrics", timeout=CHECK_TIMEOUT
            ) as response:
                return await response.read() if response.status == 200 else b""
        except (TimeoutError, aiohttp.ClientError):
            return b""
