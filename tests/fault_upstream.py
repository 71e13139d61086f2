"""A stand-in vLLM, ONLY for faults the real engine cannot be made to produce on demand.

Each fault lives under its own path prefix, so one server serves them all:
`FaultUpstream.url("die")` is an upstream base URL whose `/v1/chat/completions` ...

- `die`:   streams a role chunk and two content chunks, then the process "crashes" (the
           connection drops without finishing the response);
- `error500`: answers every completion with a 500 in vLLM's error shape;
- `hang`:  streams a role chunk, then goes silent forever (a non-streamed call hangs before
           answering); it records when the gateway closes the connection.

`/v1/responses` and `/v1/messages` stream their own protocol's events in the same modes.

`/health` and `/v1/models` answer like a healthy vLLM (max_model_len 8192), so an app
starts in front of it normally. Runs uvicorn in a thread of the test process.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.helpers import wait_until

MODES = ("die", "error500", "hang")


def _chunk(content: str | None = None, role: str | None = None) -> bytes:
    delta = {"role": role, "content": ""} if role else {"content": content}
    event = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "qwen3",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _typed(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def _responses_chunk(content: str | None = None, role: str | None = None) -> bytes:
    """The Responses API's events as vLLM streams them (`response.created`, then deltas)."""
    if role:
        return _typed(
            "response.created",
            {
                "response": {
                    "id": "resp_fault",
                    "object": "response",
                    "created_at": 1,
                    "model": "qwen3",
                    "status": "in_progress",
                    "output": [],
                    "usage": None,
                },
                "sequence_number": 0,
            },
        )
    return _typed(
        "response.output_text.delta",
        {
            "item_id": "msg_fault",
            "output_index": 0,
            "content_index": 0,
            "delta": content,
            "logprobs": [],
            "sequence_number": 1,
        },
    )


def _messages_chunk(content: str | None = None, role: str | None = None) -> bytes:
    """Anthropic's Messages events as vLLM streams them (`message_start`, then deltas)."""
    if role:
        return _typed(
            "message_start",
            {
                "message": {
                    "id": "msg_fault",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "qwen3",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 7, "output_tokens": 0},
                }
            },
        ) + _typed(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
    return _typed(
        "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": content}}
    )


_PROTOCOL_CHUNKS = {"responses": _responses_chunk, "messages": _messages_chunk}


class FaultUpstream:
    """The stand-in server; `closed[mode]` is set when the gateway dropped a hanging call."""

    def __init__(self) -> None:
        self.closed = {mode: threading.Event() for mode in MODES}
        self.requests = {mode: 0 for mode in MODES}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def url(self, mode: str) -> str:
        """The base URL (without /v1) of an upstream that behaves as `mode`."""
        assert mode in MODES, mode
        return f"http://127.0.0.1:{self.port}/{mode}"

    def reset(self) -> None:
        for event in self.closed.values():
            event.clear()

    # --- the ASGI app ---------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        return JSONResponse({})

    async def _models(self, request: Request) -> Response:
        card = {
            "id": "qwen3",
            "object": "model",
            "created": 1,
            "owned_by": "vllm",
            "max_model_len": 8192,
        }
        return JSONResponse({"object": "list", "data": [card]})

    async def _complete(self, request: Request) -> Response:
        mode = request.path_params["mode"]
        self.requests[mode] += 1
        body = await request.json()
        if mode == "error500":
            error = {
                "message": "EngineCore encountered an issue",
                "type": "InternalServerError",
                "param": None,
                "code": 500,
            }
            return JSONResponse({"error": error}, status_code=500)
        if not body.get("stream"):
            if mode == "hang":
                # Like vLLM, notice the caller leaving even while nothing is being sent.
                while not await request.is_disconnected():
                    await anyio.sleep(0.05)
                self.closed[mode].set()
            raise RuntimeError("the engine died")
        chunk = _PROTOCOL_CHUNKS.get(request.url.path.rsplit("/", 1)[-1], _chunk)
        return StreamingResponse(self._events(mode, chunk), media_type="text/event-stream")

    async def _events(self, mode: str, chunk=_chunk) -> AsyncIterator[bytes]:
        yield chunk(role="assistant")
        if mode == "hang":
            await self._hang(mode)
        for word in ("Hello", " there"):
            await anyio.sleep(0.05)
            yield chunk(word)
        raise RuntimeError("the engine died mid-stream")

    async def _hang(self, mode: str) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            self.closed[mode].set()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/{mode}/health", self._health),
                Route("/{mode}/v1/models", self._models),
                Route("/{mode}/v1/chat/completions", self._complete, methods=["POST"]),
                Route("/{mode}/v1/completions", self._complete, methods=["POST"]),
                Route("/{mode}/v1/responses", self._complete, methods=["POST"]),
                Route("/{mode}/v1/messages", self._complete, methods=["POST"]),
            ]
        )

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FaultUpstream:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="critical", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_until(
            lambda: self._server.started, interval=0.02, message="fault upstream did not start"
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
