"""The retry rules of transport.retry, called directly (they are pure)."""

from __future__ import annotations

import email.utils

import pytest

from tinker_actors.transport.retry import (
    RetryPolicy,
    backoff_delay,
    is_proxy_rejection,
    next_delay,
    retry_after_seconds,
    server_retry_hint,
    should_retry,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert should_retry(status, {}) is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 302])
def test_non_retryable_statuses(status: int) -> None:
    assert should_retry(status, {}) is False


def test_x_should_retry_header_wins_both_ways() -> None:
    assert should_retry(503, {"x-should-retry": "false"}) is False
    assert should_retry(400, {"x-should-retry": "true"}) is True
    assert should_retry(404, {"X-Should-Retry": "TRUE"}) is True
    assert server_retry_hint({"x-should-retry": "maybe"}) is None
    assert should_retry(503, {"x-should-retry": "maybe"}) is True


def test_proxy_rejection_is_a_bare_400() -> None:
    assert is_proxy_rejection(400, {"content-length": "0"}, b"")
    assert is_proxy_rejection(400, {}, b"")
    assert not is_proxy_rejection(400, {"content-length": "12"}, b'{"detail":1}')
    assert not is_proxy_rejection(404, {"content-length": "0"}, b"")


def test_retry_after_ms_wins_over_seconds() -> None:
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "7"}, NOW) == 0.25


def test_retry_after_seconds_and_floats() -> None:
    assert retry_after_seconds({"retry-after": "3"}, NOW) == 3.0
    assert retry_after_seconds({"retry-after": "1.5"}, NOW) == 1.5


def test_retry_after_http_date() -> None:
    date = email.utils.formatdate(NOW + 12, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, NOW) == pytest.approx(12.0)
    past = email.utils.formatdate(NOW - 100, usegmt=True)
    assert retry_after_seconds({"retry-after": past}, NOW) == 0.0


def test_retry_after_capped_at_sixty_seconds() -> None:
    assert retry_after_seconds({"retry-after": "3600"}, NOW) == 60.0
    assert retry_after_seconds({"retry-after-ms": "90000"}, NOW) == 60.0
    assert retry_after_seconds({"retry-after": "3600"}, NOW, cap=None) == 3600.0


def test_retry_after_unreadable_or_absent() -> None:
    assert retry_after_seconds({}, NOW) is None
    assert retry_after_seconds({"retry-after": "soon"}, NOW) is None
    assert retry_after_seconds({"retry-after": "nan"}, NOW) is None
    # an unreadable ms header falls back to retry-after
    assert retry_after_seconds({"retry-after-ms": "x", "retry-after": "2"}, NOW) == 2.0


def test_backoff_is_full_jitter_capped_exponential() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=10.0)
    ceilings = [backoff_delay(n, policy, lambda: 1.0) for n in range(8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff_delay(3, policy, lambda: 0.0) == 0.0
    assert backoff_delay(3, policy, lambda: 0.25) == 1.0
    assert backoff_delay(10_000, policy, lambda: 1.0) == 10.0


def _next(**overrides):
    args = dict(
        attempt=0, policy=RetryPolicy(), retryable=True, headers={}, elapsed=0.0, now=NOW, random=lambda: 1.0
    )
    args.update(overrides)
    return next_delay(**args)


def test_next_delay_uses_server_hint_before_backoff() -> None:
    assert _next(headers={"retry-after": "4"}) == 4.0
    assert _next(attempt=2) == 2.0
    assert _next(headers=None, attempt=1) == 1.0


def test_next_delay_stops_when_not_retryable_or_budget_spent() -> None:
    assert _next(retryable=False) is None
    assert _next(attempt=2, policy=RetryPolicy(max_retries=2)) is None
    assert _next(attempt=0, policy=RetryPolicy(max_retries=0)) is None


def test_default_policy_is_bounded_by_time_not_count() -> None:
    # the SDK keeps retrying a submit for 300 s whatever the count: so do we
    assert _next(attempt=1000, elapsed=200.0) == 10.0
    assert _next(attempt=1000, elapsed=295.0) is None


def test_next_delay_respects_total_duration() -> None:
    policy = RetryPolicy(total_timeout=10.0)
    assert _next(policy=policy, elapsed=9.0, attempt=0) == 0.5
    assert _next(policy=policy, elapsed=9.0, headers={"retry-after": "2"}) is None
    assert _next(policy=RetryPolicy(total_timeout=None), elapsed=1e9) == 0.5
