"""The retry rules, as pure functions. The one retry loop lives in ``Transport.request``.

Rules (docs/transport.md repeats them for users):

1. ``x-should-retry: true`` retries any failed answer; ``x-should-retry: false``
   retries none. Otherwise 408, 409, 429 and every 5xx retry; other statuses fail.
2. Connection errors and timeouts retry. A bare 400 with ``content-length: 0``
   is a proxy rejecting the request, and counts as a connection error while the
   pool's proxy-rejection budget lasts.
3. The wait before retry ``n`` (``n`` = retries already taken, from 0) is the
   server's hint when it gave one (``retry-after-ms``, else ``retry-after`` in
   seconds or as an HTTP date), clamped to [0, 60] s; otherwise full-jitter
   exponential backoff: ``U(0, min(max_delay, initial_delay * 2**n))``.
4. No retry once ``max_retries`` retries were taken (None: no count limit),
   nor when the time since the first attempt began plus the wait would pass
   ``total_timeout``. The time budget is what bounds a call by default: the
   official SDK wraps its HTTP retries in a 300 s loop for submits, so a count
   alone would give up on a long outage sooner than it does.
5. ``defer_429``: a 429 is not retried here but raised at once, for a caller
   that owns its own backpressure (sampling admission releases its slot,
   tightens and resubmits).

Nothing here sleeps, reads a clock or draws randomness by itself: callers pass
``now``, ``elapsed`` and ``random`` in, so tests can call every rule directly.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Mapping

import msgspec

__all__ = [
    "RetryPolicy",
    "server_retry_hint",
    "should_retry",
    "is_proxy_rejection",
    "retry_after_seconds",
    "backoff_delay",
    "next_delay",
]

_RETRY_STATUSES = frozenset({408, 409, 429})


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Retry budget and backoff shape.

    The backoff follows the official SDK's HTTP layer; the budget covers its
    HTTP layer and the 300 s ``execute_with_retries`` loop above it together:
    no count limit, 300 s from the first attempt.
    """

    max_retries: int | None = None  # None: no count limit (total_timeout bounds the call)
    initial_delay: float = 0.5
    max_delay: float = 10.0  # cap on one backoff wait
    max_retry_after: float = 60.0  # cap on a server-given wait
    total_timeout: float | None = 300.0  # cap on the whole retrying, first attempt included
    proxy_rejection_budget: int = 16  # per pool; refilled by one per success


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx.Headers is case-insensitive already; plain dicts from tests may not be.
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def server_retry_hint(headers: Mapping[str, str]) -> bool | None:
    """What ``x-should-retry`` says: True, False, or None when absent or unreadable."""
    value = _header(headers, "x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a failed HTTP answer (status outside 2xx) may be retried."""
    hint = server_retry_hint(headers)
    if hint is not None:
        return hint
    return status in _RETRY_STATUSES or status >= 500


def is_proxy_rejection(status: int, headers: Mapping[str, str], content: bytes = b"") -> bool:
    """A 400 with an empty body: what a fronting proxy sends when it drops a request."""
    if status != 400 or content:
        return False
    length = _header(headers, "content-length")
    return length is None or length.strip() == "0"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def retry_after_seconds(
    headers: Mapping[str, str], now: float, *, cap: float | None = 60.0
) -> float | None:
    """The server's requested wait in seconds, clamped to ``[0, cap]``; None if it gave none.

    ``retry-after-ms`` wins over ``retry-after``; ``retry-after`` may be seconds
    (floats accepted) or an HTTP date, measured against ``now`` (Unix seconds).
    """
    seconds: float | None = None
    ms = _header(headers, "retry-after-ms")
    if ms is not None:
        try:
            seconds = _finite(float(ms) / 1000.0)
        except ValueError:
            seconds = None
    if seconds is None:
        value = _header(headers, "retry-after")
        if value is None:
            return None
        try:
            seconds = _finite(float(value))
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                return None
            seconds = email.utils.mktime_tz(parsed) - now
    if seconds is None:
        return None
    seconds = max(0.0, seconds)
    return min(seconds, cap) if cap is not None else seconds


def backoff_delay(attempt: int, policy: RetryPolicy, random: Callable[[], float]) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (from 0)."""
    # 2**1000 overflows nothing in Python, but min() against max_delay keeps it small.
    ceiling = min(policy.max_delay, policy.initial_delay * 2.0 ** min(attempt, 64))
    return random() * ceiling


def next_delay(
    *,
    attempt: int,
    policy: RetryPolicy,
    retryable: bool,
    headers: Mapping[str, str] | None,
    elapsed: float,
    now: float,
    random: Callable[[], float],
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up.

    ``attempt`` is the number of retries already taken; ``elapsed`` the seconds
    since the first attempt began; ``now`` wall-clock Unix seconds (for HTTP dates).
    """
    if not retryable or (policy.max_retries is not None and attempt >= policy.max_retries):
        return None
    delay = None
    if headers is not None:
        delay = retry_after_seconds(headers, now, cap=policy.max_retry_after)
    if delay is None:
        delay = backoff_delay(attempt, policy, random)
    if policy.total_timeout is not None and elapsed + delay > policy.total_timeout:
        return None
    return delay
