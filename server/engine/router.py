"""vllm-router in front of several engines (WORKBENCH_UPSTREAM_URLS): its exact command.

The router (PyPI `vllm-router`, a Rust binary) listens on loopback beside the gateway; the
gateway is its only client. What it does with what the gateway sends, as read in its source
and checked against 0.1.17 in tests/test_replicas.py:

- the client's `Authorization` header is passed on to the worker as it is, so the engine
  secret travels in the gateway's own header (the router's `--api-key` is only used for
  data-parallel routing);
- a client that disconnects drops the router's connection to the worker, which aborts the
  engine's request;
- a connection refused by a dead worker is retried on another; a stream cut by a dying worker
  reaches the gateway cut (no `[DONE]`), and the gateway ends it with its error event;
- the worker's response headers come back unchanged (the replica middleware's name included);
- `GET /workers` tells each worker's health and load as the router sees them, and its own
  Prometheus metrics are served on a port of their own.
"""

from __future__ import annotations

from pathlib import Path

from server.settings import Settings

# Measured with bench/routing.py (4 stand-in replicas each caching 4 documents, 16 documents ×
# 8 questions, 16 users): against round_robin, `sticky_least_loaded` on the gateway's
# x-session-id gave TTFT p90 0.66 s against 2.08 s (3.2x) and 2.8x the throughput, 87% of
# prompt tokens from cache (the most there is: a document's first question always misses).
# A document's questions stay on one replica and a new document goes to the replica with the
# fewest. `consistent_hash` kept documents too but spread 16 of them unevenly (24/16/40/48
# requests: p90 1.3x); `cache_aware` (0.1.17) kept nothing: its tree wants token ids the router
# cannot make without the model's tokenizer, so it routed like round_robin.
POLICY = "sticky_least_loaded"
# The router's own default checks a worker once a minute and needs 3 failures: a dead replica
# would be tried (and retried elsewhere) for 3 minutes. 5 s × 2 takes it out in ≈10 s.
HEALTH_INTERVAL_SECONDS = 5
HEALTH_FAILURES = 2
# A refused connection is retried 5 times (50 ms backoff, doubling); the router's policy picks
# the same sticky replica again until that replica's circuit breaker opens, after 10 failures by
# default: more than the retries, so a session on a dead replica would fail until the next
# health check. 3 opens it on the third retry and the fourth goes to a live replica.
BREAKER_FAILURES = 3
# The router cuts any request older than this; a 700k-token prefill plus a long answer on a
# busy host takes tens of minutes, so its default (1,800 s) is too short.
REQUEST_TIMEOUT_SECONDS = 6 * 3600


def router_binary(app_python: str) -> str:
    """The `vllm-router` console script installed beside the app's Python."""
    return str(Path(app_python).with_name("vllm-router"))


def metrics_port(settings: Settings) -> int:
    """The router's own Prometheus endpoint: the port after the router's."""
    return settings.router_port + 1


def router_argv(
    binary: str, worker_urls: list[str], port: int, prometheus_port: int, policy: str = POLICY
) -> list[str]:
    """The router's command line (shared by launch.sh, the tests and bench/routing.py)."""
    return [
        binary,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--worker-urls",
        *worker_urls,
        "--policy",
        policy,
        "--prometheus-host",
        "127.0.0.1",
        "--prometheus-port",
        str(prometheus_port),
        "--health-check-interval-secs",
        str(HEALTH_INTERVAL_SECONDS),
        "--health-failure-threshold",
        str(HEALTH_FAILURES),
        "--cb-failure-threshold",
        str(BREAKER_FAILURES),
        "--request-timeout-secs",
        str(REQUEST_TIMEOUT_SECONDS),
        "--log-level",
        "warning",
    ]


def router_plan(settings: Settings, app_python: str) -> list[str]:
    """The router launch.sh starts for these settings; empty without replicas."""
    if not settings.replica_urls:
        return []
    return router_argv(
        router_binary(app_python),
        settings.replica_urls,
        settings.router_port,
        metrics_port(settings),
    )
