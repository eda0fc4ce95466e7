"""Turning an HTTP answer into what the caller asked for: a value, a signed URL or an error.

Everything here is sync and pure apart from reading the response object, so
the retry loop in ``Transport.request`` stays short.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import typing
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import msgspec

from ..errors import (
    APIStatusError,
    RateLimitError,
    ResponseDecodeError,
    TinkerActorsError,
    redact,
    status_error,
)
from .options import RawResponse, SignedURL
from .retry import retry_after_seconds

__all__ = [
    "plain_headers",
    "signed_url_from",
    "status_error_from",
    "decode_body",
    "is_json_type",
]

# Longest server text kept in an error message; the full (redacted) body stays on .body.
_MAX_MESSAGE = 1000


def plain_headers(headers: httpx.Headers) -> dict[str, str]:
    """Lower-cased names; repeated headers joined with ", " as HTTP allows."""
    out: dict[str, str] = {}
    for name, value in headers.multi_items():
        name = name.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _expiry(url: httpx.URL, headers: Mapping[str, str]) -> dt.datetime | None:
    header = headers.get("expires")
    if header:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    for name, value in url.params.multi_items():
        if name.lower() == "expires":
            try:
                return dt.datetime.fromtimestamp(int(value), tz=dt.timezone.utc)
            except (ValueError, OverflowError, OSError):
                return None
    return None


def signed_url_from(request_url: httpx.URL, headers: Mapping[str, str]) -> SignedURL | None:
    """The ``Location`` of a redirect as a :class:`SignedURL`, or None without one."""
    location = headers.get("location")
    if not location:
        return None
    url = request_url.join(location)
    return SignedURL(url=str(url), expires_at=_expiry(url, headers))


def _server_message(text: str, body: Any) -> str:
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"]
    text = text.strip()
    return text[:_MAX_MESSAGE] + ("..." if len(text) > _MAX_MESSAGE else "") if text else "(empty body)"


def status_error_from(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    endpoint: str,
    now: float,
    secrets: tuple[str, ...],
) -> APIStatusError:
    """The typed error for a status we do not accept, carrying the server's (redacted) text."""
    text = redact(content.decode("utf-8", errors="replace"), *secrets)
    try:
        body: Any = msgspec.json.decode(text) if text else None
    except msgspec.DecodeError:
        body = text
    message = _server_message(text, body)
    if 300 <= status < 400 and headers.get("location"):
        message = f"redirect to {redact(headers['location'], *secrets)} not followed"
    kwargs: dict[str, Any] = {
        "status_code": status,
        "endpoint": endpoint,
        "body": body,
        "headers": dict(headers),
        "request_id": headers.get("x-request-id"),
    }
    cls = status_error(status)
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=retry_after_seconds(headers, now, cap=None), **kwargs)
    return cls(message, **kwargs)


def is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@functools.lru_cache(maxsize=512)
def _decoder(target: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(target)


def _is_target_type(decode: Any) -> bool:
    # A class, a parametrised generic (list[Foo]), a union (A | B) or Any is a
    # target type for msgspec; any other callable is a decode function.
    return (
        isinstance(decode, type)
        or typing.get_origin(decode) is not None
        or decode is Any
    )


def decode_body(
    decode: type[Any] | Callable[[RawResponse], Any] | Any | None,
    raw: RawResponse,
    *,
    endpoint: str,
) -> Any:
    """Decode a 2xx body. ``decode`` is a msgspec target type, a function of the
    :class:`RawResponse`, or None (JSON to builtins, or the bytes if not JSON).
    Any failure becomes :class:`ResponseDecodeError` naming ``endpoint``."""
    content_type = raw.content_type
    try:
        if decode is None:
            if not raw.content:
                return None
            if is_json_type(content_type) or content_type is None:
                return msgspec.json.decode(raw.content)
            return raw.content
        if _is_target_type(decode):
            return _decoder(decode).decode(raw.content)
        return decode(raw)
    except TinkerActorsError:
        raise
    except Exception as exc:  # the body came from outside; any failure to read it is the server's
        raise ResponseDecodeError(
            f"{type(exc).__name__}: {exc}", endpoint=endpoint, content_type=content_type, status=raw.status, body=raw.content
        ) from exc
