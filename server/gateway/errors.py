"""The error shapes of the API: every error is one `ApiError`, rendered in the caller's protocol.

- OpenAI (the reference; `/v1` except below): `{"error": {"message", "type", "param", "code"}}`;
  in a stream, a `data:` event with that body.
- Anthropic (`/v1/messages*`): `{"type": "error", "error": {"type", "message"}}` with the same
  status; the type is translated by ANTHROPIC_TYPES; in a stream, an `event: error`.
- Responses (`/v1/responses`): JSON errors in the OpenAI shape; in a stream, the Responses API's
  own `error` event `{"type": "error", "code", "message", "param", "sequence_number"}`.

Every error a client can see is an `ApiError` built by one of the constructors below (other
modules call them and never build one themselves), so the (status, type, code) triples live in
one place. `docs/API.md` lists each in its error table; `tests/test_docs.py` checks both.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from starlette.responses import Response

Dialect = Literal["openai", "anthropic", "responses"]

# Our error types as Anthropic names them (its SDK picks its exception class by status).
ANTHROPIC_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "internal_server_error": "api_error",
    "service_unavailable": "overloaded_error",
}


def dialect_of(path: str) -> Dialect:
    """Which protocol's error shape a request path answers in."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1/responses"):
        return "responses"
    return "openai"


class ApiError(Exception):
    """An error answered to the client in the API's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str,
        code: str | None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self, dialect: Dialect = "openai") -> dict[str, Any]:
        """The JSON body, keys in the reference's order (or Anthropic's shape)."""
        if dialect == "anthropic":
            kind = ANTHROPIC_TYPES.get(self.type, "api_error")
            return {"type": "error", "error": {"type": kind, "message": self.message}}
        return error_body(self.message, self.type, self.param, self.code)

    def sse_event(self, dialect: Dialect = "openai", sequence_number: int = 0) -> bytes:
        """This error as one server-sent event, for failures inside a stream."""
        if dialect == "anthropic":
            return b"event: error\ndata: " + orjson.dumps(self.body("anthropic")) + b"\n\n"
        if dialect == "responses":
            event = {
                "type": "error",
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "sequence_number": sequence_number,
            }
            return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"
        return b"data: " + orjson.dumps(self.body()) + b"\n\n"

    def response(
        self, extra_headers: dict[str, str] | None = None, dialect: Dialect = "openai"
    ) -> Response:
        headers = {**(extra_headers or {}), **self.headers}
        return Response(
            orjson.dumps(self.body(dialect)),
            status_code=self.status,
            headers=headers,
            media_type="application/json",
        )


def error_body(message: str, type: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def invalid_request(
    message: str, param: str | None = None, code: str = "invalid_request"
) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def invalid_json(reason: str | None = None) -> ApiError:
    """400 for a body that is not one JSON object; `reason` says what the parser found."""
    detail = f" ({reason})" if reason else ""
    return invalid_request(
        f"We could not parse the JSON body of your request{detail}: it must be one JSON object.",
        code="invalid_json",
    )


def invalid_value(message: str, param: str | None) -> ApiError:
    return invalid_request(message, param, "invalid_value")


def invalid_document(message: str, param: str = "messages") -> ApiError:
    """400 for a PDF that cannot be read (damaged, encrypted, no text, too large)."""
    return invalid_request(message, param, "invalid_document")


def request_too_large(limit: int) -> ApiError:
    return invalid_request(
        f"Request body exceeds the maximum size of {limit} bytes", code="request_too_large"
    )


def context_length_exceeded(max_context: int, param: str = "messages") -> ApiError:
    return invalid_request(
        f"Request exceeds maximum context length of {max_context} tokens",
        param=param,
        code="context_length_exceeded",
    )


def invalid_api_key() -> ApiError:
    return ApiError(401, "Incorrect API key provided", "authentication_error", "invalid_api_key")


def permission_denied(message: str) -> ApiError:
    return ApiError(403, message, "permission_error", "insufficient_permissions")


def model_not_found(model: str, available: str) -> ApiError:
    return ApiError(
        404,
        f"The model '{model}' does not exist; this server serves '{available}'",
        "not_found_error",
        "model_not_found",
        "model",
    )


def unknown_url(method: str, path: str, hint: str = "") -> ApiError:
    """404 for a path nothing serves; `hint` says where the client probably meant."""
    return ApiError(
        404, f"Unknown request URL: {method} {path}{hint}", "not_found_error", "unknown_url"
    )


def upstream_not_found(message: str) -> ApiError:
    """The engine's own 404: it does not serve the model asked for."""
    return ApiError(404, message, "not_found_error", "model_not_found", "model")


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(
        405,
        f"Method {method} is not allowed for {path}",
        "invalid_request_error",
        "method_not_allowed",
    )


def rate_limited(message: str, headers: dict[str, str]) -> ApiError:
    return ApiError(429, message, "rate_limit_error", "rate_limit_exceeded", headers=headers)


def internal_error(
    message: str = "The server had an error while processing your request.",
    code: str = "internal_error",
) -> ApiError:
    return ApiError(500, message, "internal_server_error", code)


def engine_error(message: str) -> ApiError:
    """500 for an engine that failed or broke off its answer."""
    return internal_error(message, code="engine_error")


def limits_unavailable() -> ApiError:
    """The shared limits store (Redis) is unreachable: requests are refused (fail closed)."""
    return service_unavailable(
        "Rate limits cannot be checked right now (the limits store is unreachable); retry later."
    )


def service_unavailable(message: str = "The engine is not available; retry later.") -> ApiError:
    return ApiError(503, message, "service_unavailable", "service_unavailable")


# Pydantic names union members in error locations ("stop", "str"); they are not parameters.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "None"})
# Where FastAPI's own request validation says the value came from; not part of the param name.
_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})


def param_name(loc: tuple | list) -> str | None:
    """`("messages", 0, "role")` → `"messages[0].role"`, OpenAI's way of naming a param."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if i == 0 and item in _SOURCES and len(loc) > 1:
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(item, str) and item.isidentifier() and item not in _TYPE_TAGS:
            parts.append(("." if parts else "") + item)
        else:
            break
    return "".join(parts) or None


def from_validation_errors(errors: list[dict[str, Any]]) -> ApiError:
    """The first pydantic error as a 400 that names the parameter."""
    if not errors:
        return invalid_request("Invalid request body")
    first = errors[0]
    param = param_name(first.get("loc", ()))
    # A union reports each alternative; the one the input has the type of says what is wrong
    # ("at most 4 items" rather than "should be a valid string").
    same_param = [e for e in errors if param_name(e.get("loc", ())) == param]
    first = next((e for e in same_param if not e.get("type", "").endswith("_type")), first)
    kind = first.get("type", "")
    msg = first.get("msg", "invalid")
    if kind == "missing":
        if first.get("ctx", {}).get("field"):  # a model-level check naming the missing field
            param = f"{param}.{first['ctx']['field']}" if param else first["ctx"]["field"]
        return invalid_request(
            f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
        )
    if kind.endswith("_type") or kind in ("literal_error", "union_tag_invalid", "is_instance_of"):
        return invalid_request(f"Invalid type for '{param}': {msg}.", param, "invalid_type")
    return invalid_request(f"Invalid value for '{param}': {msg}.", param, "invalid_value")
