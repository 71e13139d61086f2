"""Reading a request's JSON body under a size cap.

The cap is checked twice: against Content-Length before reading anything, and against the
bytes actually received (a chunked upload has no Content-Length, and a header can lie).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from server.gateway import errors


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or a 400 (malformed, not an object, or over `limit` bytes)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.request_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.request_too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise errors.invalid_json("the body is empty")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid_json(str(exc)) from None
    if not isinstance(data, dict):
        raise errors.invalid_json(f"found {_json_kind(data)}")
    return data


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")
