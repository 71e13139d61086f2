"""Exception handlers: whatever goes wrong, the client gets the API's error shape (Anthropic's
on `/v1/messages*`, see `errors`).

FastAPI's defaults (a `detail` object, an HTML 500) never reach a client: validation errors,
unknown paths, wrong methods and unexpected exceptions are all turned into `ApiError`s here.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from server.gateway import errors
from server.gateway.errors import ApiError
from server.gateway.limits import LimitsUnavailable, limit_id

log = logging.getLogger(__name__)


async def _ratelimit_headers(request: Request) -> dict[str, str]:
    """The caller's current limit headers, when the request got as far as authentication."""
    headers = getattr(request.state, "ratelimit_headers", None)
    if headers is not None:
        return headers
    key = getattr(request.state, "key", None)
    gateway = getattr(request.app.state, "gateway", None)
    if key is None or gateway is None:
        return {}
    anthropic = errors.dialect_of(request.url.path) == "anthropic"
    try:
        return (await gateway.limiter.snapshot(limit_id(key))).headers(anthropic=anthropic)
    except LimitsUnavailable:
        return {}


async def handle_api_error(request: Request, exc: ApiError) -> Response:
    return exc.response(await _ratelimit_headers(request), errors.dialect_of(request.url.path))


async def handle_validation_error(request: Request, exc: RequestValidationError) -> Response:
    problems = list(exc.errors())
    if problems and problems[0].get("type") == "json_invalid":
        error = errors.invalid_json()
    else:
        error = errors.from_validation_errors(problems)
    return await handle_api_error(request, error)


async def handle_http_exception(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        error = errors.unknown_url(request.method, request.url.path)
    elif exc.status_code == 405:
        error = errors.method_not_allowed(request.method, request.url.path)
    elif exc.status_code == 401:
        error = errors.invalid_api_key()
    elif exc.status_code == 403:
        error = errors.permission_denied("You are not allowed to perform this request")
    elif exc.status_code >= 500:
        error = errors.internal_error()
    else:
        error = errors.invalid_request(str(exc.detail) if exc.detail else "Invalid request")
        error.status = exc.status_code
    headers = dict(exc.headers or {})
    error.headers.update({k: v for k, v in headers.items() if k.lower() == "allow"})
    return await handle_api_error(request, error)


async def handle_limits_unavailable(request: Request, exc: LimitsUnavailable) -> Response:
    # Fail closed: with the shared store gone, per-process limits would multiply every key's
    # budget by the number of processes. Requests are refused until it is back.
    log.warning("limits store unreachable, request refused: %s", exc)
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is not None:
        gateway.metrics.limits_store_up.set(0)
    return errors.limits_unavailable().response(dialect=errors.dialect_of(request.url.path))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Logged with its traceback for the operator; the client sees no internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return errors.internal_error().response(dialect=errors.dialect_of(request.url.path))


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on the app (call once, in create_app)."""
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(LimitsUnavailable, handle_limits_unavailable)
    app.add_exception_handler(Exception, handle_unexpected)
