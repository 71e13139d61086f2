"""HTTP routes: `/v1/*` (key required), `/health` (open) and `/metrics` (admin key).

Routes only translate: read the request, call one service, turn its result into a response.
The generating endpoints (`POST /v1/chat/completions` and the like) are served by
`front.GenerationFront` before this router is reached.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from server.gateway import errors
from server.gateway.auth import AdminKey, ApiKey
from server.gateway.front import GENERATING
from server.gateway.limits import limit_id
from server.gateway.messages import CountTokensRequest, MessagesRequest
from server.gateway.openapi import (
    AnthropicMessageResponse,
    ChatCompletion,
    Completion,
    CountTokensResponse,
    ModelCard,
    ModelList,
    ResponseObject,
    documented,
    openapi_document,
)
from server.gateway.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    model_card,
    model_list,
)
from server.gateway.responses import ResponsesRequest
from server.settings import SERVED_MODEL_NAME

v1 = APIRouter(prefix="/v1")
ops = APIRouter()

KNOWN_V1_PATHS = frozenset({*GENERATING, "/v1/models", "/v1/openapi.json"})


# The generating endpoints are served by `front.GenerationFront`, in front of this router; their
# operations are declared here only so that /v1/openapi.json describes them with the rest.
async def chat_completions() -> None:
    """OpenAI's Chat Completions (the OpenAI SDKs, aider, Qwen Code)."""


async def completions() -> None:
    """OpenAI's legacy Completions."""


async def responses() -> None:
    """OpenAI's Responses API (Codex)."""


async def messages() -> None:
    """Anthropic's Messages API (Claude Code); `?beta=true` and `anthropic-*` headers are
    accepted; errors answer in Anthropic's shape."""


async def count_tokens() -> None:
    """Anthropic's token counting, by the engine's own template and tokenizer."""


described = APIRouter(prefix="/v1")
for _path, _endpoint, _docs in (
    (
        "/chat/completions",
        chat_completions,
        documented(ChatCompletion, ChatCompletionRequest, stream=True),
    ),
    ("/completions", completions, documented(Completion, CompletionRequest, stream=True)),
    ("/responses", responses, documented(ResponseObject, ResponsesRequest, stream=True)),
    (
        "/messages",
        messages,
        documented(AnthropicMessageResponse, MessagesRequest, stream=True, dialect="anthropic"),
    ),
    (
        "/messages/count_tokens",
        count_tokens,
        documented(CountTokensResponse, CountTokensRequest, dialect="anthropic"),
    ),
):
    described.add_api_route(_path, _endpoint, methods=["POST"], **_docs)
assert {route.path for route in described.routes} == GENERATING


@v1.get("/models", **documented(ModelList))
async def list_models(request: Request, key: ApiKey) -> Response:
    gateway = request.app.state.gateway
    await gateway.engine.ensure_ready()
    state = await gateway.limiter.snapshot(limit_id(key))
    body = model_list(gateway.engine.created, gateway.engine.max_context)
    return JSONResponse(body, headers=state.headers())


@v1.get("/models/{model_id:path}", **documented(ModelCard))
async def retrieve_model(request: Request, model_id: str, key: ApiKey) -> Response:
    """OpenAI's `models.retrieve`: the one model by its name, else 404 `model_not_found`."""
    if model_id != SERVED_MODEL_NAME:
        raise errors.model_not_found(model_id, SERVED_MODEL_NAME)
    gateway = request.app.state.gateway
    await gateway.engine.ensure_ready()
    state = await gateway.limiter.snapshot(limit_id(key))
    body = model_card(gateway.engine.created, gateway.engine.max_context)
    return JSONResponse(body, headers=state.headers())


@v1.get("/openapi.json", openapi_extra={"security": []})
async def openapi(request: Request) -> Response:
    """This description of `/v1` (OpenAPI 3.1); needs no key."""
    document = getattr(request.app.state, "v1_openapi", None)
    if document is None:
        document = request.app.state.v1_openapi = openapi_document(described.routes + v1.routes)
    return JSONResponse(document)


@v1.api_route(
    "",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    include_in_schema=False,
)
@v1.api_route(
    "/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    include_in_schema=False,
)
async def unknown_v1(request: Request, key: ApiKey) -> Response:
    """Everything else under /v1 (so the UI mounted at / never answers for it)."""
    if request.url.path in KNOWN_V1_PATHS:
        raise errors.method_not_allowed(request.method, request.url.path)
    raise errors.unknown_url(request.method, request.url.path)


async def missing_v1(request: Request) -> Response:
    """OpenAI paths without /v1: a base_url missing its /v1 is the commonest client mistake."""
    raise errors.unknown_url(
        request.method,
        request.url.path,
        f". The API is under /v1: use base_url {request.base_url}v1",
    )


for _path in ("/chat/completions", "/completions", "/models", "/models/{model_id:path}"):
    ops.add_api_route(
        _path,
        missing_v1,
        include_in_schema=False,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    )


@ops.api_route("/health", methods=["GET", "HEAD"])  # monitors often probe with HEAD
async def health(request: Request) -> Response:
    """`{"status": "ok"}` while the engine answers its own /health, else 503. Behind
    vllm-router: each replica's state too, and `degraded` while some are down but one answers."""
    gateway = request.app.state.gateway
    healthy = await _check_engine(gateway)
    if not healthy:
        raise errors.service_unavailable("The engine is not available.")
    replicas = gateway.engine.replicas
    if replicas is None:
        return JSONResponse({"status": "ok"})
    return JSONResponse(
        {"status": replicas.status, "replicas": [r.describe() for r in replicas.replicas]}
    )


async def _check_engine(gateway) -> bool:
    healthy = await gateway.engine.check_health()
    gateway.metrics.engine_up.set(1 if healthy else 0)
    if gateway.engine.replicas is not None:
        gateway.metrics.observe_replicas(gateway.engine.replicas)
    return healthy


@ops.get("/metrics")
async def metrics(request: Request, key: AdminKey) -> Response:
    """The gateway's metrics; behind vllm-router, each replica's state and the router's own."""
    gateway = request.app.state.gateway
    router = b""
    if gateway.engine.replicas is not None:
        await _check_engine(gateway)
        router = await gateway.engine.router_metrics()
    return Response(gateway.metrics.render() + router, media_type=gateway.metrics.content_type)
