"""The narrow seam between the runtime and the transport.

Actors depend on an object with the transport's ``request`` method (the
:class:`Requester` protocol), never on the transport class itself, so tests
inject fakes and the service can route calls through pool actors.

``options(...)`` builds the transport's ``RequestOptions`` (shared, cached);
``resource(...)`` maps a resource name to the transport's ``ResourceType``.
``raw_parts(response)`` reads a raw response's content type and body.
"""

from __future__ import annotations

import enum
import functools
from typing import Any, Protocol

from ..transport.limits import ResourceType
from ..transport.options import RequestOptions

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


@functools.lru_cache(maxsize=64)
def options(
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
    raw: bool = False,
    total_retry_timeout: float | None = None,
) -> RequestOptions:
    """Request options (frozen, so one object per distinct set of values is shared)."""
    return RequestOptions(timeout=timeout, max_retries=max_retries, raw=raw, total_retry_timeout=total_retry_timeout)


@functools.cache
def resource(value: Resource | str) -> ResourceType:
    """Map our resource name to the transport's enum (cached: it is on every request)."""
    return ResourceType(Resource(str(value)).value)


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
