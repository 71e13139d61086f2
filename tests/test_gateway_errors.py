"""The one error shape, case by case, with exact bodies (against the real engine)."""

import json
import secrets
import time

import httpx
import openai
import pytest

from server.engine.profiles import EMBEDDED_CONTEXT
from server.gateway.auth import CACHE_SECONDS
from server.gateway.upstream import map_upstream_error
from storage import Store
from storage.keys import create_key, revoke_key
from tests.helpers import assert_error, assert_rate_headers

AUTH_BODY = {
    "error": {
        "message": "Incorrect API key provided",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
HI = [{"role": "user", "content": "Hi"}]


def chat(v1_http, **body):
    return v1_http.post("/chat/completions", json={"model": "qwen3", "messages": HI, **body})


# --- 401 / 403 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer  x y"},
    ],
)
@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/models"),
        ("POST", "/chat/completions"),
        ("POST", "/completions"),
        ("GET", "/nowhere"),
    ],
)
def test_every_v1_route_answers_401_with_the_reference_body(app, headers, method, path):
    response = httpx.request(method, app.v1 + path, headers=headers, json={})
    assert response.status_code == 401
    assert response.json() == AUTH_BODY


def test_a_revoked_key_is_a_wrong_key(app):
    name = "revoked-" + secrets.token_hex(4)
    with Store(app.data_dir / "workbench.db") as store:
        secret = create_key(store.db, name)
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(app.v1 + "/models", headers=headers).status_code == 200
    with Store(app.data_dir / "workbench.db") as store:
        assert revoke_key(store.db, name)
    time.sleep(CACHE_SECONDS + 0.1)  # a key that just worked is remembered for that long
    response = httpx.get(app.v1 + "/models", headers=headers)
    assert response.status_code == 401 and response.json() == AUTH_BODY


def test_metrics_needs_an_admin_key(app):
    with Store(app.data_dir / "workbench.db") as store:
        secret = create_key(store.db, "plain-" + secrets.token_hex(4))
    assert httpx.get(app.url + "/metrics").json() == AUTH_BODY
    response = httpx.get(app.url + "/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert_error(
        response,
        403,
        "permission_error",
        "insufficient_permissions",
        message="This endpoint needs an admin key.",
    )


# --- 400 ------------------------------------------------------------------------------------


def test_a_prompt_over_the_context_is_context_length_exceeded(v1_http):
    response = chat(v1_http, messages=[{"role": "user", "content": "hello " * 9000}])
    assert_error(
        response,
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
        "Request exceeds maximum context length of 8192 tokens",
    )
    response = v1_http.post("/completions", json={"model": "qwen3", "prompt": "hello " * 9000})
    assert_error(
        response,
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "prompt",
        "Request exceeds maximum context length of 8192 tokens",
    )


def test_vllm_refusing_a_long_prompt_maps_to_context_length_exceeded(engine_url):
    # The engine's own refusal (what reaches us if our count ever disagrees with vLLM's).
    raw = httpx.post(
        engine_url + "/v1/chat/completions",
        timeout=60,
        json={
            "model": "qwen3",
            "messages": [{"role": "user", "content": "hello " * (EMBEDDED_CONTEXT + 100)}],
        },
    )
    assert raw.status_code == 400
    error = map_upstream_error(raw.status_code, raw.content, 8192)
    assert error.body() == {
        "error": {
            "message": "Request exceeds maximum context length of 8192 tokens",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


def test_vllm_validation_dumps_become_one_readable_sentence(engine_url):
    # vLLM answers some invalid values with pydantic's whole error list as its message.
    raw = httpx.post(
        engine_url + "/v1/chat/completions",
        timeout=60,
        json={"model": "qwen3", "messages": HI, "stop": ["a", "b", "c", "d", "e", "f"]},
    )
    assert raw.status_code == 400 and "validation error" in raw.json()["error"]["message"]
    error = map_upstream_error(raw.status_code, raw.content, 8192)
    assert error.body() == {
        "error": {
            "message": "Invalid value for 'stop': List should have at most 4 items after "
            "validation,"
            " not 6.",
            "type": "invalid_request_error",
            "param": "stop",
            "code": "invalid_request",
        }
    }


def test_body_over_the_size_cap_is_refused_with_or_without_content_length(make_app):
    small = make_app(WORKBENCH_MAX_BODY_BYTES=2048)
    headers = {"Authorization": f"Bearer {small.api_key}", "content-type": "application/json"}
    big = json.dumps({"model": "qwen3", "messages": [{"role": "user", "content": "x" * 4096}]})
    message = "Request body exceeds the maximum size of 2048 bytes"
    response = httpx.post(small.v1 + "/chat/completions", content=big, headers=headers)
    assert_error(response, 400, "invalid_request_error", "request_too_large", None, message)

    def chunked():  # no Content-Length: the gateway has to count what arrives
        for i in range(0, len(big), 512):
            yield big[i : i + 512].encode()

    response = httpx.post(small.v1 + "/chat/completions", content=chunked(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_error(response, 400, "invalid_request_error", "request_too_large", None, message)


# --- 404 / 405 ------------------------------------------------------------------------------


def test_another_model_is_404_model_not_found(v1_http):
    response = chat(v1_http, model="gpt-4")
    assert_error(
        response,
        404,
        "not_found_error",
        "model_not_found",
        "model",
        "The model 'gpt-4' does not exist; this server serves 'qwen3'",
    )
    assert_rate_headers(response)


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/chat", "/v1", "/v1/models/x/y"])
def test_unknown_v1_paths_are_404(app, path):
    response = httpx.post(app.url + path, headers={"Authorization": f"Bearer {app.api_key}"})
    assert_error(
        response, 404, "not_found_error", "unknown_url", None, f"Unknown request URL: POST {path}"
    )


def test_a_base_url_without_v1_is_told_where_the_api_is(app):
    with openai.OpenAI(base_url=app.url, api_key=app.api_key, max_retries=0) as wrong:
        with pytest.raises(openai.NotFoundError) as caught:
            wrong.chat.completions.create(model="qwen3", messages=HI)
    assert caught.value.code == "unknown_url"
    assert caught.value.body["message"] == (
        f"Unknown request URL: POST /chat/completions. The API is under /v1: use base_url"
        f" {app.url}/v1"
    )
    assert_error(httpx.get(app.url + "/models"), 404, "not_found_error", "unknown_url")


def test_wrong_method_is_405(v1_http):
    response = v1_http.get("/chat/completions")
    assert_error(
        response,
        405,
        "invalid_request_error",
        "method_not_allowed",
        None,
        "Method GET is not allowed for /v1/chat/completions",
    )


# --- 500 / 503 ------------------------------------------------------------------------------


def test_engine_answering_500_is_500_in_our_shape(make_app, fault_upstream):
    broken = make_app(upstream=fault_upstream.url("error500"))
    response = httpx.post(
        broken.v1 + "/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {broken.api_key}"},
        json={"model": "qwen3", "messages": HI},
    )
    assert_error(
        response,
        500,
        "internal_server_error",
        "engine_error",
        None,
        "The engine failed: EngineCore encountered an issue",
    )
    assert_rate_headers(response)


def test_health_answers_head_as_monitors_send_it(app):
    response = httpx.head(app.url + "/health")
    assert response.status_code == 200 and response.content == b""


def test_engine_down_is_503_on_health_and_v1(app_without_engine):
    url, key = app_without_engine
    assert_error(
        httpx.get(url + "/health"),
        503,
        "service_unavailable",
        "service_unavailable",
        None,
        "The engine is not available.",
    )
    assert httpx.head(url + "/health").status_code == 503
    headers = {"Authorization": f"Bearer {key}"}
    for response in (
        httpx.post(
            url + "/v1/chat/completions", headers=headers, json={"model": "qwen3", "messages": HI}
        ),
        httpx.get(url + "/v1/models", headers=headers),
    ):
        assert_error(
            response,
            503,
            "service_unavailable",
            "service_unavailable",
            None,
            "The engine is not available; retry later.",
        )


def test_no_error_anywhere_uses_fastapi_detail_shape(v1_http, app):
    responses = [
        v1_http.post("/chat/completions", content=b"{"),
        v1_http.get("/nowhere"),
        v1_http.delete("/models"),
        httpx.get(app.url + "/v1/models"),
    ]
    for response in responses:
        assert "detail" not in response.json(), response.text
