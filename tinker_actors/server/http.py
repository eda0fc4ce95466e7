"""HTTP helpers shared by the handlers: the error type, JSON bodies, field checks."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response


class ApiError(Exception):
    """An answer other than 2xx, with a readable message."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        body = json.dumps({"detail": self.message, "error": self.message}).encode()
        return Response(body, status_code=self.status, media_type="application/json", headers=self.headers)


def bad(message: str) -> ApiError:
    return ApiError(400, message)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(obj, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise bad("request body must be a JSON object")
    return obj


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, default: Any = ..., allow_none: bool = False) -> Any:
    """``body[name]`` checked against ``kind``; 400 naming the field otherwise."""
    if name not in body or (body[name] is None and not allow_none):
        if default is ...:
            raise bad(f"missing required field {name!r}")
        return default
    value = body[name]
    if value is None and allow_none:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and kind is int:
        raise bad(f"field {name!r} must be an integer")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise bad(f"field {name!r} must be of type {names}")
    return value
