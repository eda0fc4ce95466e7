"""Per-call options and the plain records a call can return instead of a value.

``RequestOptions`` is what a caller may change for one call: timeouts, retry
budget, the idempotency key, extra headers/query/body, and whether it wants the
raw response or a signed URL instead of a decoded body. ``None`` in a field
means "use the transport's default".
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Mapping
from typing import Any, Final

import msgspec

__all__ = [
    "IdempotencyKey",
    "AUTO",
    "OMIT",
    "RequestOptions",
    "DEFAULT_OPTIONS",
    "RawResponse",
    "SignedURL",
]


class IdempotencyKey(enum.Enum):
    """How a non-GET call's ``X-Idempotency-Key`` is chosen when no string is given."""

    AUTO = "auto"  # a fresh uuid4 per logical call, kept across its retries
    OMIT = "omit"  # send no key at all

    def __repr__(self) -> str:
        return self.name


AUTO: Final = IdempotencyKey.AUTO
OMIT: Final = IdempotencyKey.OMIT


class RequestOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What one call may override. ``None`` means the transport's default.

    * ``timeout``: read timeout in seconds (also sent as ``x-stainless-read-timeout``).
    * ``connect_timeout``: TCP/TLS connect timeout in seconds.
    * ``max_retries``: retries after the first attempt; 0 disables retrying.
    * ``total_retry_timeout``: no retry starts once this many seconds have passed
      since the first attempt began (or would be passed by the backoff sleep).
    * ``idempotency_key``: an explicit string, ``AUTO`` or ``OMIT``.
    * ``extra_headers`` / ``extra_query``: added last, so they win.
    * ``extra_body``: merged into the top level of a JSON body.
    * ``raw``: return a :class:`RawResponse` instead of the decoded body.
    * ``signed_url``: a 3xx answer returns a :class:`SignedURL` instead of an error.
    * ``compress``: send the body with ``Content-Encoding: zstd``.
    * ``max_response_bytes``: refuse a response body larger than this (read
      into memory whole otherwise); ``ResponseDecodeError`` names the size.
    * ``response_deadline``: seconds one attempt may take from sending to the
      last byte of the body (headers and body; never less than connect +
      read timeout). A read timeout bounds each read only.
    * ``defer_429``: raise a 429 at once instead of retrying it (for a caller
      with its own backpressure: sampling admission).
    """

    timeout: float | None = None
    connect_timeout: float | None = None
    max_retries: int | None = None
    total_retry_timeout: float | None = None
    idempotency_key: str | IdempotencyKey = AUTO
    extra_headers: Mapping[str, str] | None = None
    extra_query: Mapping[str, str] | None = None
    extra_body: Mapping[str, Any] | None = None
    raw: bool = False
    signed_url: bool = False
    compress: bool = False
    max_response_bytes: int | None = None
    response_deadline: float | None = None
    defer_429: bool = False


DEFAULT_OPTIONS: Final = RequestOptions()


class RawResponse(msgspec.Struct, frozen=True):
    """An HTTP answer as it arrived (body already content-decoded: gzip, zstd)."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    elapsed: float  # seconds spent on the successful attempt, queueing excluded

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


class SignedURL(msgspec.Struct, frozen=True):
    """Where a redirect pointed, for calls that want the URL rather than the body."""

    url: str
    expires_at: _dt.datetime | None = None
