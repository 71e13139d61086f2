"""A stand-in vLLM that answers at once: what the gateway costs, with the engine's cost taken out.

    python bench/stub_engine.py --port 8101

Serves `/health`, `/v1/models` (max_model_len 8192) and `/v1/chat/completions` (one fixed
word, with usage; no streaming). Used by bench/gateway_overhead.py --throughput.
"""

from __future__ import annotations

import argparse
import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = orjson.dumps({
    "id": "chatcmpl-stub", "object": "chat.completion", "created": 1, "model": "qwen3",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                 "finish_reason": "length", "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
})
MODELS = orjson.dumps({"object": "list", "data": [
    {"id": "qwen3", "object": "model", "created": 1, "owned_by": "vllm", "max_model_len": 8192}]})


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b"")


async def models(request: Request) -> Response:
    return _json(MODELS)


async def complete(request: Request) -> Response:
    await request.body()
    return _json(ANSWER)


app = Starlette(routes=[
    Route("/health", health), Route("/v1/models", models),
    Route("/v1/chat/completions", complete, methods=["POST"]),
])

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(sys.argv[1:])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
