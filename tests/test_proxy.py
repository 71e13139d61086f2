"""nginx in front of the API processes, from the config `python -m ui` renders: when no process
answers a /v1 request (none listening, or one that died under it) the client gets a 503 in its
protocol's error shape, never nginx's HTML page. The real nginx, with stand-ins for dead workers.
"""

from __future__ import annotations

import socket
import threading

import anthropic
import httpx
import pytest

from server.processes.proxy import UNAVAILABLE, nginx_argv, render_config, write_config
from tests.harness import ManagedProcess, base_env, free_port
from tests.helpers import assert_anthropic_error, assert_error


def _dies_under_every_request(listener: socket.socket) -> None:
    """A worker that reads a request and dies before answering it."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("proxy")
    dying = socket.create_server(("127.0.0.1", free_port()))
    threading.Thread(target=_dies_under_every_request, args=(dying,), daemon=True).start()
    port = free_port()
    # One API port nobody listens on, one whose process dies under the request; no UI.
    api_ports = [free_port(), dying.getsockname()[1]]
    config = write_config(
        run_dir / "nginx.conf", render_config("127.0.0.1", port, free_port(), api_ports, run_dir)
    )
    nginx = ManagedProcess(nginx_argv(config), base_env(), run_dir / "nginx.log")
    url = f"http://127.0.0.1:{port}"
    try:  # stopped even when it never answers as it should
        nginx.wait_http(url + "/v1/models", timeout=30, expect=503)
        yield url
    finally:
        nginx.stop()
        dying.close()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/models"])
def test_no_api_process_is_a_503_in_the_openai_shape(proxy, path):
    for _ in range(4):  # both dead workers, whichever nginx picks first
        answer = httpx.post(proxy + path, json={"model": "qwen3"}, timeout=30)
        assert_error(
            answer, 503, "service_unavailable", "service_unavailable", message=UNAVAILABLE.message
        )


def test_no_api_process_is_a_503_in_the_anthropic_shape(proxy):
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        answer = httpx.post(proxy + path, json={"model": "qwen3"}, timeout=30)
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/json"
        assert assert_anthropic_error(answer.json(), "overloaded_error") == UNAVAILABLE.message
    client = anthropic.Anthropic(base_url=proxy, api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.create(
            model="qwen3", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
        )
    assert refused.value.status_code == 503
    assert refused.value.body["error"]["message"] == UNAVAILABLE.message


def test_outside_v1_nginx_still_says_bad_gateway(proxy):
    # The UI's pages are not the API: a browser gets nginx's own page there.
    assert httpx.get(proxy + "/", timeout=30).status_code == 502
