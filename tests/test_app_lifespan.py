"""create_app: nothing connects until the lifespan runs, which opens and closes what it owns;
/health and /metrics."""

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.engine.profiles import EMBEDDED_CONTEXT
from server.gateway.completions import CompletionService
from server.gateway.metrics import GatewayMetrics
from server.remote_tokens import RemoteTokenCounter
from server.settings import Settings
from server.tokens import TokenCounter
from storage import StoreClosedError
from tests.helpers import assert_anthropic_error, assert_error
from ui.app import create_app as create_ui_app


@pytest.fixture
def settings(tmp_path, engine_url, model_dir):
    return Settings(
        data_dir=tmp_path / "data",
        profile="external",
        upstream_url=engine_url,
        vllm_api_key="boot-secret",
        tokenizer_path=model_dir,
        max_context=4096,
    )


def test_create_app_connects_to_nothing_and_the_lifespan_owns_its_resources(settings):
    app = create_app(settings)
    services = app.state.services
    assert not settings.db_path.exists()
    assert services.store is None and services.counter is None
    with TestClient(app) as client:
        store = services.store
        assert settings.db_path.exists()
        assert isinstance(services.counter, TokenCounter)
        # Discovered from the engine's max_model_len (32,768), capped by WORKBENCH_MAX_CONTEXT.
        assert services.engine.max_context == 4096
        assert services.engine.healthy is True
        assert services.settings.self_url == "http://127.0.0.1:8000/v1"
        response = client.get("/v1/models", headers={"Authorization": "Bearer boot-secret"})
        assert response.json()["data"][0]["max_model_len"] == 4096
    assert services.store is None and services.counter is None
    with pytest.raises(StoreClosedError):
        store.db  # noqa: B018 (the closed store refuses new connections)


def test_the_api_app_alone_has_no_ui_and_ui_app_mounts_it_behind_the_api(settings):
    with TestClient(create_app(settings)) as client:
        assert_error(
            client.get("/"),
            404,
            "not_found_error",
            "unknown_url",
            None,
            "Unknown request URL: GET /",
        )
    with TestClient(create_ui_app(settings)) as client:
        assert "Qwen Workbench" in client.get("/").text
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/v1/models").status_code == 401  # the API still answers first


def test_bootstrap_key_is_an_admin_and_health_needs_no_key(settings):
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        metrics = client.get("/metrics", headers={"Authorization": "Bearer boot-secret"})
        assert metrics.status_code == 200


def test_metrics_count_requests_tokens_and_rejections(make_app):
    app = make_app(WORKBENCH_RPM=1)
    headers = {"Authorization": f"Bearer {app.api_key}"}
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    assert (
        httpx.post(app.v1 + "/chat/completions", json=body, headers=headers, timeout=60).status_code
        == 200
    )
    assert (
        httpx.post(app.v1 + "/chat/completions", json=body, headers=headers, timeout=60).status_code
        == 429
    )
    assert httpx.get(app.v1 + "/nowhere", headers=headers).status_code == 404
    text = httpx.get(app.url + "/metrics", headers=headers).text
    assert 'workbench_requests_total{endpoint="/v1/chat/completions",status="200"} 1.0' in text
    assert 'workbench_requests_total{endpoint="/v1/chat/completions",status="429"} 1.0' in text
    assert 'workbench_requests_total{endpoint="other",status="404"} 1.0' in text
    assert 'workbench_rate_limit_rejections_total{limit="requests"} 1.0' in text
    assert 'workbench_tokens_total{endpoint="/v1/chat/completions",kind="prompt"}' in text
    assert 'workbench_request_duration_seconds_count{endpoint="/v1/chat/completions"} 2.0' in text
    assert "workbench_engine_up 1.0" in text


def test_metrics_registries_are_per_app():
    first, second = GatewayMetrics(), GatewayMetrics()
    first.rejections.labels("tokens").inc()
    assert b'limit="tokens"' in first.render()
    assert b'limit="tokens"' not in second.render()


def test_health_is_503_in_the_error_shape_when_the_engine_is_down(tmp_path, model_dir):
    settings = Settings(
        data_dir=tmp_path,
        profile="external",
        upstream_url="http://127.0.0.1:9",
        tokenizer_path=model_dir,
    )
    with TestClient(create_app(settings)) as client:
        assert_error(
            client.get("/health"),
            503,
            "service_unavailable",
            "service_unavailable",
            None,
            "The engine is not available.",
        )
        assert client.app.state.services.engine.healthy is False


def test_external_engine_without_tokenizer_files_counts_through_its_tokenize(tmp_path, engine_url):
    settings = Settings(
        data_dir=tmp_path, profile="external", upstream_url=engine_url, vllm_api_key="boot-secret"
    )
    headers = {"Authorization": "Bearer boot-secret"}
    with TestClient(create_app(settings)) as client:
        assert isinstance(client.app.state.services.counter, RemoteTokenCounter)
        body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        response = client.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200, response.text
        # The gateway's count (via /tokenize) is what it reserved against the TPM budget,
        # and the settled usage equals vLLM's own: the remaining budget reflects exactly it.
        usage = response.json()["usage"]
        state = client.get("/v1/models", headers=headers).headers
        assert int(state["x-ratelimit-remaining-tokens"]) == 100_000 - usage["total_tokens"]
        # Over the engine's own max_model_len, discovered through /tokenize.
        body["messages"] = [{"role": "user", "content": "hello " * (EMBEDDED_CONTEXT + 100)}]
        assert_error(
            client.post("/v1/chat/completions", json=body, headers=headers),
            400,
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
            f"Request exceeds maximum context length of {EMBEDDED_CONTEXT} tokens",
        )


def test_an_unexpected_error_in_a_generating_route_is_a_500_in_its_protocols_shape(
    tmp_path, model_dir, monkeypatch, caplog
):
    # A fault injected into the completion service: the routes served before FastAPI's stack
    # (server.gateway.front) answer it as FastAPI's ServerErrorMiddleware does for the others.
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(CompletionService, "serve", broken)
    settings = Settings(
        data_dir=tmp_path,
        profile="external",
        upstream_url="http://127.0.0.1:9",
        vllm_api_key="boot-secret",
        tokenizer_path=model_dir,
    )
    headers = {"Authorization": "Bearer boot-secret"}
    body = {"model": "qwen3", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}
    with TestClient(create_app(settings)) as client:
        chat = client.post("/v1/chat/completions", json=body, headers=headers)
        claude = client.post("/v1/messages", json=body, headers={"x-api-key": "boot-secret"})
        metrics = client.get("/metrics", headers=headers).text
    assert_error(chat, 500, "internal_server_error", "internal_error")
    assert claude.status_code == 500
    assert assert_anthropic_error(claude.json(), "api_error") == chat.json()["error"]["message"]
    assert "secret internals" not in chat.text + claude.text
    assert "RuntimeError: secret internals" in caplog.text  # the operator's log has it all
    assert 'endpoint="/v1/chat/completions",status="500"' in metrics
