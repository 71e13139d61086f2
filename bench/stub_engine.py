"""A stand-in vLLM that answers at once: what the gateway costs, with the engine's cost taken out.

    python bench/stub_engine.py --port 8101 [--lean]

Its front end is built as vLLM's is (`vllm/entrypoints/openai/api_server.py`): FastAPI, the
body validated into a pydantic request model, the answer built as pydantic models and
serialized; so "direct" costs what a real engine's HTTP layer costs, and only generation is
taken out. `--lean` answers from pre-encoded bytes through bare Starlette instead: a stand-in
cheaper than any real server, the harshest baseline for the gateway's ratios.

Serves what the gateway calls, in vLLM's shapes: `/health`, `/v1/models` (max_model_len
8192), `/tokenize` (a count of 12, or the prompt's bytes / 4) and `/v1/chat/completions`:
one fixed word with usage, or streamed, `max_tokens` one-word chunks as fast as they can be
written (the usage chunk when `stream_options.include_usage` asks for it, then `[DONE]`).
Used by bench/gateway_overhead.py.
"""

from __future__ import annotations

import argparse
import sys

import orjson
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

CONTEXT = 8192
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1,
        "model": "qwen3",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello"},
                "finish_reason": "length",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }
)
MODELS = orjson.dumps(
    {
        "object": "list",
        "data": [
            {
                "id": "qwen3",
                "object": "model",
                "created": 1,
                "owned_by": "vllm",
                "max_model_len": CONTEXT,
            }
        ],
    }
)
_CHUNK = (
    b'data: {"id":"chatcmpl-stub","object":"chat.completion.chunk","created":1,'
    b'"model":"qwen3","choices":[{"index":0,"delta":{"content":" word"},'
    b'"logprobs":null,"finish_reason":null}]}\n\n'
)


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b"")


async def models(request: Request) -> Response:
    return _json(MODELS)


async def tokenize(request: Request) -> Response:
    body = orjson.loads(await request.body())
    count = max(12, len(orjson.dumps(body.get("messages") or body.get("prompt") or "")) // 4)
    return _json(orjson.dumps({"count": count, "max_model_len": CONTEXT, "tokens": []}))


async def _chunks(tokens: int, usage: bool):
    for _ in range(tokens):
        yield _CHUNK
    if usage:
        yield (
            b"data: "
            + orjson.dumps(
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "qwen3",
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 12,
                        "completion_tokens": tokens,
                        "total_tokens": 12 + tokens,
                    },
                }
            )
            + b"\n\n"
        )
    yield b"data: [DONE]\n\n"


async def complete(request: Request) -> Response:
    body = orjson.loads(await request.body())
    if not body.get("stream"):
        return _json(ANSWER)
    usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return StreamingResponse(
        _chunks(int(body.get("max_tokens") or 16), usage), media_type="text/event-stream"
    )


lean = Starlette(
    routes=[
        Route("/health", health),
        Route("/v1/models", models),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/v1/chat/completions", complete, methods=["POST"]),
    ]
)


class Message(BaseModel):
    role: str
    content: str | list | None = None


class StreamOptions(BaseModel):
    include_usage: bool | None = None


class ChatRequest(BaseModel):
    """The fields of vLLM's ChatCompletionRequest that a chat request commonly sets."""

    model: str | None = None
    messages: list[Message]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    seed: int | None = None
    user: str | None = None
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    ignore_eos: bool = False


class AnswerMessage(BaseModel):
    role: str = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AnswerMessage
    finish_reason: str = "length"
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatAnswer(BaseModel):
    id: str = "chatcmpl-stub"
    object: str = "chat.completion"
    created: int = 1
    model: str = "qwen3"
    choices: list[Choice]
    usage: Usage


like_vllm = FastAPI()
like_vllm.add_api_route("/health", health)
like_vllm.add_api_route("/v1/models", models)
like_vllm.add_api_route("/tokenize", tokenize, methods=["POST"])


@like_vllm.post("/v1/chat/completions")
async def chat(request: ChatRequest) -> Response:
    if request.stream:
        usage = bool(request.stream_options and request.stream_options.include_usage)
        return StreamingResponse(
            _chunks(request.max_tokens or 16, usage), media_type="text/event-stream"
        )
    answer = ChatAnswer(
        choices=[Choice(message=AnswerMessage(content="Hello"))],
        usage=Usage(prompt_tokens=12, completion_tokens=1, total_tokens=13),
    )
    return Response(answer.model_dump_json(), media_type="application/json")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lean", action="store_true", help="bare Starlette, pre-encoded answers")
    args = parser.parse_args(sys.argv[1:])
    uvicorn.run(
        lean if args.lean else like_vllm,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )
