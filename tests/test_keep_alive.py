"""Kept-alive connections never cost a caller an answer, on any hop.

A connection kept open between requests is closed by the server after it has been idle a
while; a client that keeps it longer sometimes sends its next request on a connection the
server is closing that instant, and that request fails before any answer. Each hop keeps its
idle connections for less time than the server behind it:

- the gateway to vLLM (which closes at 5 s): 4 s, and a call whose connection broke before any
  answer is sent once more. A CI run lost a Responses stream and a chat answer this way; against
  the real engine, 19 in 600 calls sent at 5 s idle failed with a 30 s pool. The real engine
  cannot be made to close at a chosen instant, so a stand-in cuts every connection's second
  request (a FIN, or a reset) before answering;
- clients to the app (uvicorn's default closes at 5 s, the OpenAI SDK keeps 5 s): the app keeps
  idle connections 75 s;
- nginx to the processes: 60 s, under their 75 s.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from server.app import KEEP_ALIVE_SECONDS
from server.gateway.errors import ApiError
from server.gateway.upstream import Engine
from server.processes.proxy import render_config
from server.remote_tokens import RemoteTokenCounter
from server.settings import Settings

CHAT = {"choices": [{"message": {"role": "assistant", "content": "ok"}}], "usage": {}}


class ClosingEngine:
    """Answers the first request of each connection; cuts the second before answering."""

    def __init__(self, cut: str):
        self.cut = cut
        self.connections = 0
        self.answered = 0
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> ClosingEngine:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            self._answer(writer, path)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next request on this kept connection
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        self.cuts += 1
        if self.cut == "reset":
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        writer.close()

    def _answer(self, writer: asyncio.StreamWriter, path: bytes) -> None:
        if path.endswith(b"/tokenize"):
            body = orjson.dumps({"count": 3, "max_model_len": 8192, "tokens": [1, 2, 3]})
            kind = b"application/json"
        elif path.endswith(b"/stream"):
            body = b'data: {"choices": []}\n\ndata: [DONE]\n\n'
            kind = b"text/event-stream"
        else:
            body, kind = orjson.dumps(CHAT), b"application/json"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (kind, len(body), body)
        )
        self.answered += 1


@pytest.fixture(params=["fin", "reset"])
async def closing(request):
    async with ClosingEngine(request.param) as stand_in:
        yield stand_in


async def test_a_call_on_a_connection_the_engine_closed_is_sent_again(closing):
    engine = Engine(Settings(profile="external", upstream_url=closing.url))
    await engine.open()
    try:
        for _ in range(3):
            assert orjson.loads(await engine.post("/v1/chat/completions", b"{}")) == CHAT
        stream = await engine.open_stream("/v1/stream", b"{}")
        assert b"[DONE]" in b"".join([chunk async for chunk in stream.aiter_raw()])
        await stream.aclose()
    finally:
        await engine.aclose()
    # Calls 2-4 each met a cut connection and were answered on a new one.
    assert (closing.answered, closing.cuts, closing.connections) == (4, 3, 4)


async def test_a_count_on_a_connection_the_engine_closed_is_sent_again(closing):
    async with RemoteTokenCounter(closing.url, model="qwen3") as counter:
        assert [await counter.acount_text("a b c") for _ in range(3)] == [3, 3, 3]
        assert await asyncio.to_thread(counter.count_text, "a b c") == 3
    assert closing.cuts == 2


async def test_an_engine_that_is_gone_is_still_a_503_without_a_second_try(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once the socket is closed
    engine = Engine(Settings(profile="external", upstream_url=f"http://127.0.0.1:{port}"))
    await engine.open()
    try:
        with pytest.raises(ApiError) as refused:
            await engine.post("/v1/chat/completions", b"{}")
    finally:
        await engine.aclose()
    assert refused.value.status == 503
    assert "sending the call again" not in caplog.text


def test_the_app_keeps_an_idle_connection_past_the_clients_pools(app):
    host, port = urlsplit(app.url).hostname, urlsplit(app.url).port
    request = f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, port), timeout=10) as conn:
        for _ in range(2):
            conn.sendall(request)
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
            time.sleep(6)  # past the 5 s the OpenAI SDK keeps an idle connection


def test_nginx_lets_idle_connections_go_before_the_processes_do(tmp_path):
    config = render_config("127.0.0.1", 1, 2, [3, 4], Path(tmp_path))
    kept = [int(s) for s in re.findall(r"keepalive_timeout (\d+)s;", config)]
    assert len(kept) == 2 and max(kept) < KEEP_ALIVE_SECONDS, kept
