"""The sweep's outage rule and probe spacing, as pure functions of time."""

from __future__ import annotations

import random

from tinker_actors.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    GoneError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    RequestFailedError,
    ServiceClosedError,
    SessionExpiredError,
    UnprocessableError,
    ValidationError,
)
from tinker_actors.jobs.outage import OutageTracker
from tinker_actors.jobs.sweep import failure_kind


def test_unreachable_after_a_failure_with_nothing_succeeding_for_quiet_s() -> None:
    t = OutageTracker(quiet_s=5.0)
    t.success(100.0)
    t.unreachable_failure(101.0)
    assert t.unreachable_since(102.0) is None  # something got through 2 s ago
    assert t.unreachable_since(105.0) == 101.0
    t.success(106.0)
    assert t.unreachable_since(106.5) is None
    assert t.outages == 1 and t.longest == 5.0  # from the failure to the success


def test_failing_heartbeats_mean_unreachable_unless_we_got_through_since() -> None:
    t = OutageTracker()
    t.success(10.0)
    assert t.unreachable_since(12.0, heartbeat_failing_since=11.0) == 11.0
    t.success(13.0)  # a request got through after the heartbeat began failing
    assert t.unreachable_since(14.0, heartbeat_failing_since=11.0) is None


def test_one_probe_at_a_time_spaced_by_a_capped_backoff() -> None:
    t = OutageTracker(probe_initial=1.0, probe_max=10.0, rng=random.Random(0))
    t.unreachable_failure(0.0)
    assert not t.may_probe(0.0)  # the first probe waits about probe_initial
    assert t.next_try is not None and 0.8 <= t.next_try <= 1.2
    now = t.next_try
    assert t.may_probe(now) and not t.may_probe(now)  # one at a time
    gaps = []
    for _ in range(8):
        t.probe_failed(now)
        assert t.next_try is not None
        gaps.append(t.next_try - now)
        now = t.next_try
        assert t.may_probe(now)
    assert gaps[0] < gaps[2] and max(gaps) <= 12.0 and gaps[-1] >= 8.0
    t.success(now)
    assert t.next_try is None and not t.probing


def test_failure_kinds() -> None:
    ep_poll, ep_submit = "POST /api/v1/retrieve_future", "POST /api/v1/asample"
    cases = {
        "permanent": [ValidationError("x"), BadRequestError("x", status_code=400), UnprocessableError("x", status_code=422),
                      RequestFailedError("bad prompt", category="user")],
        "fatal": [AuthenticationError("x", status_code=401)],
        "gone": [GoneError("x", status_code=410, endpoint=ep_poll), NotFoundError("x", status_code=404, endpoint=ep_poll)],
        "session": [SessionExpiredError("x"), ServiceClosedError("x"), GoneError("x", status_code=410, endpoint=ep_submit)],
        "unreachable": [APIConnectionError("refused"), APITimeoutError("slow"), InternalServerError("x", status_code=503)],
        "transient": [InternalServerError("x", status_code=500), RateLimitError("x", status_code=429),
                      RequestFailedError("oom", category="server"), RequestFailedError("?", category="unknown")],
        "bug": [KeyError("x")],
    }
    for kind, errors in cases.items():
        for exc in errors:
            assert failure_kind(exc) == kind, (kind, exc)


def test_a_burst_of_unreachable_failures_is_an_outage_at_once() -> None:
    t = OutageTracker(quiet_s=5.0, burst=3)
    t.success(100.0)
    t.unreachable_failure(100.1)
    t.unreachable_failure(100.2)
    assert t.unreachable_since(100.3) is None
    t.unreachable_failure(100.3)
    assert t.unreachable_since(100.3) == 100.1
