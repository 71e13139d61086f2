"""The one error shape of the API: `{"error": {"message", "type", "param", "code"}}`.

Every error a client can see is an `ApiError` built by one of the constructors below, so the
(status, type, code) triples live in one place:

| status | type                    | code                                                     |
|--------|-------------------------|----------------------------------------------------------|
| 400    | invalid_request_error   | invalid_json, missing_required_parameter, invalid_type,  |
|        |                         | invalid_value, request_too_large, context_length_exceeded,|
|        |                         | invalid_document, invalid_request                        |
| 401    | authentication_error    | invalid_api_key                                          |
| 403    | permission_error        | insufficient_permissions                                 |
| 404    | not_found_error         | model_not_found, unknown_url                             |
| 405    | invalid_request_error   | method_not_allowed                                       |
| 429    | rate_limit_error        | rate_limit_exceeded                                      |
| 500    | internal_server_error   | internal_error, engine_error                             |
| 503    | service_unavailable     | service_unavailable                                      |
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


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

    def body(self) -> dict[str, Any]:
        """The JSON body, keys in the reference's order."""
        return error_body(self.message, self.type, self.param, self.code)

    def sse_event(self) -> bytes:
        """This error as one server-sent event, for failures inside a stream."""
        return b"data: " + orjson.dumps(self.body()) + b"\n\n"

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        headers = {**(extra_headers or {}), **self.headers}
        return Response(
            orjson.dumps(self.body()), status_code=self.status, headers=headers,
            media_type="application/json",
        )


def error_body(message: str, type: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def invalid_request(message: str, param: str | None = None,
                    code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def invalid_json(reason: str | None = None) -> ApiError:
    """400 for a body that is not one JSON object; `reason` says what the parser found."""
    detail = f" ({reason})" if reason else ""
    return invalid_request(
        f"We could not parse the JSON body of your request{detail}: it must be one JSON object.",
        code="invalid_json",
    )


def request_too_large(limit: int) -> ApiError:
    return invalid_request(
        f"Request body exceeds the maximum size of {limit} bytes", code="request_too_large"
    )


def context_length_exceeded(max_context: int, param: str = "messages") -> ApiError:
    return invalid_request(
        f"Request exceeds maximum context length of {max_context} tokens",
        param=param, code="context_length_exceeded",
    )


def invalid_api_key() -> ApiError:
    return ApiError(401, "Incorrect API key provided", "authentication_error", "invalid_api_key")


def permission_denied(message: str) -> ApiError:
    return ApiError(403, message, "permission_error", "insufficient_permissions")


def model_not_found(model: str, available: str) -> ApiError:
    return ApiError(
        404, f"The model '{model}' does not exist; this server serves '{available}'",
        "not_found_error", "model_not_found", "model",
    )


def unknown_url(method: str, path: str) -> ApiError:
    return ApiError(404, f"Unknown request URL: {method} {path}", "not_found_error", "unknown_url")


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(
        405, f"Method {method} is not allowed for {path}", "invalid_request_error",
        "method_not_allowed",
    )


def rate_limited(message: str, headers: dict[str, str]) -> ApiError:
    return ApiError(429, message, "rate_limit_error", "rate_limit_exceeded", headers=headers)


def internal_error(message: str = "The server had an error while processing your request.",
                   code: str = "internal_error") -> ApiError:
    return ApiError(500, message, "internal_server_error", code)


def limits_unavailable() -> ApiError:
    """The shared limits store (Redis) is unreachable: requests are refused (fail closed)."""
    return service_unavailable(
        "Rate limits cannot be checked right now (the limits store is unreachable); retry later.")


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
        return invalid_request(f"Missing required parameter: '{param}'.", param,
                               "missing_required_parameter")
    if kind.endswith("_type") or kind in ("literal_error", "union_tag_invalid", "is_instance_of"):
        return invalid_request(f"Invalid type for '{param}': {msg}.", param, "invalid_type")
    return invalid_request(f"Invalid value for '{param}': {msg}.", param, "invalid_value")
