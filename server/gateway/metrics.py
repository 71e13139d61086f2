"""Prometheus metrics of the gateway, in a registry per app (tests run several apps).

`/metrics` needs an admin key (Bearer, as on /v1): the counts say how busy the host is and
which endpoints fail, which is an operator's business. A Prometheus scrape job passes the key
with `authorization: {credentials: ...}`. No label carries a key name, prompt or user.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.gateway.replicas import Replicas

# Label values are bounded: unknown paths are counted as "other".
ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/models",
        "/health",
        "/metrics",
    }
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class GatewayMetrics:
    """Every metric the gateway exports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "workbench_requests",
            "Requests answered, by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "workbench_request_duration_seconds",
            "Time from request to the last byte of the response",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "workbench_time_to_first_token_seconds",
            "Time from request to the first streamed event",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "workbench_tokens",
            "Tokens processed, by endpoint and kind (prompt, completion)",
            ["endpoint", "kind"],
            registry=r,
        )
        self.rejections = Counter(
            "workbench_rate_limit_rejections",
            "Requests refused by a rate limit, by limit",
            ["limit"],
            registry=r,
        )
        self.in_flight = Gauge(
            "workbench_requests_in_flight", "Requests being answered", registry=r
        )
        self.engine_up = Gauge(
            "workbench_engine_up", "1 if the engine answered its last check", registry=r
        )
        # Behind vllm-router only; one label value per configured replica URL.
        self.router_up = Gauge(
            "workbench_router_up", "1 if vllm-router answered its last check", registry=r
        )
        self.replica_up = Gauge(
            "workbench_replica_up",
            "1 if the replica answered its /health (checked by the gateway)",
            ["replica"],
            registry=r,
        )
        self.replica_routed = Gauge(
            "workbench_replica_routed",
            "1 if vllm-router sends requests to the replica",
            ["replica"],
            registry=r,
        )
        self.replica_load = Gauge(
            "workbench_replica_load",
            "Requests in flight on the replica, as vllm-router counts them",
            ["replica"],
            registry=r,
        )
        self.replica_context = Gauge(
            "workbench_replica_max_model_len",
            "The replica's max_model_len",
            ["replica"],
            registry=r,
        )
        self.limits_store_up = Gauge(
            "workbench_limits_store_up",
            "1 if the rate limits' store answered the last admission (always 1 in memory)",
            registry=r,
        )
        self.limits_store_up.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_replicas(self, replicas: Replicas) -> None:
        self.router_up.set(1 if replicas.router_up else 0)
        for replica in replicas.replicas:
            self.replica_up.labels(replica.url).set(1 if replica.up else 0)
            self.replica_routed.labels(replica.url).set(1 if replica.routed else 0)
            self.replica_load.labels(replica.url).set(replica.load or 0)
            self.replica_context.labels(replica.url).set(replica.max_model_len or 0)

    def count_tokens(self, endpoint: str, prompt: int, completion: int) -> None:
        endpoint = endpoint if endpoint in ENDPOINTS else "other"
        if prompt:
            self.tokens.labels(endpoint, "prompt").inc(prompt)
        if completion:
            self.tokens.labels(endpoint, "completion").inc(completion)


class MetricsMiddleware:
    """Counts and times every /v1, /health and /metrics request (streams until their end)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith("/v1") or path in ENDPOINTS):
            await self.app(scope, receive, send)
            return
        endpoint = path if path in ENDPOINTS else "other"
        status = 500
        started = time.perf_counter()
        # Routes read it as request.state.started: latency includes authentication.
        scope.setdefault("state", {})["started"] = started

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
