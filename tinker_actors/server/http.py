"""HTTP helpers shared by the handlers: the error type, JSON bodies in and out.

Request bodies are decoded with the wire Structs (``wire.decoder(T)``), so a
malformed or wrong-typed field is a 400 whose message is msgspec's, naming
the field (``Expected `int`, got `str` - at `$.seq_id```); the decoded body
then goes through the generic limits (``limits.check_body``: string and list
sizes, 64-bit integers, nesting), again a 400 naming the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.responses import Response

from .. import wire
from .limits import LimitError, Limits, check_body

T = TypeVar("T")

_json = msgspec.json.Encoder()


class ApiError(Exception):
    """An answer other than 2xx, with a readable message."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        body = _json.encode({"detail": self.message, "error": self.message})
        return Response(body, status_code=self.status, media_type="application/json", headers=self.headers)


def bad(message: str) -> ApiError:
    return ApiError(400, message)


def dumps(obj: Any) -> bytes:
    return _json.encode(obj)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(obj), status_code=status, media_type="application/json", headers=headers)


def decode_body(type_: type[T], body: bytes, limits: Limits | None = None) -> T:
    """``body`` as the wire Struct ``type_``; an empty body is ``{}``. 400/413 otherwise."""
    limits = limits or _DEFAULT_LIMITS
    name = getattr(type_, "__name__", "request body")
    if len(body) > limits.max_json_body_bytes:
        raise ApiError(
            413, f"a JSON body of {len(body)} bytes exceeds the limit of {limits.max_json_body_bytes} for JSON bodies"
        )
    try:
        value = wire.decoder(type_).decode(body or b"{}")
    except msgspec.ValidationError as exc:
        raise bad(f"invalid {name}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise bad(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad(f"invalid {name}: the body nests deeper than {limits.max_json_depth} levels") from None
    try:
        check_body(value, limits)
    except LimitError as exc:
        raise bad(f"invalid {name}: {exc}") from None
    return value  # type: ignore[no-any-return]


_DEFAULT_LIMITS = Limits()
