"""The narrow seam between the runtime and the transport.

Actors depend on an object with the transport's ``request`` method (the
:class:`Requester` protocol), never on the transport class itself, so tests
inject fakes and the service can route calls through pool actors.

``options(...)`` builds the transport's ``RequestOptions`` when the transport
package provides it, else a stand-in with the same fields (fakes read either).
``raw_parts(response)`` reads a raw response's content type and body.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

import msgspec

__all__ = ["Requester", "Resource", "options", "raw_parts"]


class Resource(enum.StrEnum):
    """Resource types; the values match ``transport.ResourceType``."""

    SESSION = "session"
    SAMPLING = "sampling"
    FUTURES = "futures"
    TRAINING = "training"
    TELEMETRY = "telemetry"


class Requester(Protocol):
    async def request(
        self,
        resource: Any,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        headers: dict[str, str] | None = None,
        options: Any = None,
        decode: Any = None,
    ) -> Any: ...


class _Options(msgspec.Struct, frozen=True, kw_only=True):
    timeout: float | None = None
    max_retries: int | None = None
    raw: bool = False


def _transport_options_type() -> Any:
    try:
        from ..transport import RequestOptions  # type: ignore[attr-defined]
    except ImportError:
        return _Options
    return RequestOptions


def options(*, timeout: float | None = None, max_retries: int | None = None, raw: bool = False) -> Any:
    cls = _transport_options_type()
    kwargs: dict[str, Any] = {"timeout": timeout, "max_retries": max_retries}
    if raw:
        kwargs["raw"] = True
    return cls(**kwargs)


def resource(value: Resource) -> Any:
    """Map our resource name to the transport's enum when it exists."""
    try:
        from ..transport import ResourceType  # type: ignore[attr-defined]
    except ImportError:
        return value
    return ResourceType(value.value)


def raw_parts(response: Any) -> tuple[str, bytes]:
    """(content type, body) of a raw response; plain bytes are taken as JSON."""
    if isinstance(response, (bytes, bytearray, memoryview)):
        return "application/json", bytes(response)
    headers = getattr(response, "headers", None) or {}
    content_type = getattr(response, "content_type", None) or headers.get("content-type") or "application/json"
    body = getattr(response, "content", None)
    if body is None:
        body = getattr(response, "body", b"")
    return content_type, bytes(body)
