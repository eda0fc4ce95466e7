"""The retry loop of Transport.request, on trio's virtual clock."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
import trio

from tinker_actors.errors import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)
from tinker_actors.transport import OMIT, RequestOptions, RetryPolicy
from transport_fakes import Recorder, answer, fail, mock_transport

OK = answer(200, json={"ok": True})


async def test_server_errors_retry_with_backoff_and_counted_headers(autojump_clock) -> None:
    rec = Recorder(answer(500), answer(503), OK)
    async with mock_transport(rec) as t:
        assert await t.request("session", "POST", "create_session", json={}) == {"ok": True}
        stats = t.pool("session").statistics()
    # backoff ceilings with random() == 1: 0.5 s, then 1.0 s
    assert trio.current_time() == pytest.approx(1.5)
    assert rec.header("x-stainless-retry-count") == ["0", "1", "2"]
    assert stats.retries == 2 and stats.completed == 1 and stats.attempts == 3 and stats.errors == 0


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 504])
async def test_retryable_status_is_retried(autojump_clock, status: int) -> None:
    rec = Recorder(answer(status), OK)
    async with mock_transport(rec) as t:
        await t.request("training", "POST", "forward", json={})
    assert len(rec.requests) == 2


@pytest.mark.parametrize(
    ("status", "error"), [(400, BadRequestError), (404, NotFoundError)]
)
async def test_other_status_fails_at_once(autojump_clock, status: int, error: type) -> None:
    rec = Recorder(answer(status, json={"detail": "nope"}), OK)
    async with mock_transport(rec) as t:
        with pytest.raises(error):
            await t.request("training", "POST", "forward", json={})
        assert t.pool("training").statistics().errors == 1
    assert len(rec.requests) == 1 and trio.current_time() == 0


async def test_x_should_retry_false_stops_a_retryable_status(autojump_clock) -> None:
    rec = Recorder(answer(503, headers={"x-should-retry": "false"}), OK)
    async with mock_transport(rec) as t:
        with pytest.raises(InternalServerError):
            await t.request("session", "POST", "x", json={})
    assert len(rec.requests) == 1


async def test_x_should_retry_true_forces_a_retry(autojump_clock) -> None:
    rec = Recorder(answer(409, headers={"x-should-retry": "true"}), answer(400, headers={"x-should-retry": "true"}), OK)
    async with mock_transport(rec) as t:
        assert await t.request("session", "POST", "x", json={}) == {"ok": True}
    assert len(rec.requests) == 3


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "3600"}, 60.0),  # honoured only up to 60 s
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ],
)
async def test_retry_after_sets_the_wait(autojump_clock, headers: dict[str, str], expected: float) -> None:
    rec = Recorder(answer(429, headers=headers), OK)
    async with mock_transport(rec) as t:
        await t.request("sampling", "POST", "asample", json={})
    assert trio.current_time() == pytest.approx(expected)


async def test_retry_after_http_date(autojump_clock) -> None:
    fixed_now = 1_800_000_000.0
    date = email.utils.formatdate(fixed_now + 7, usegmt=True)
    rec = Recorder(answer(503, headers={"retry-after": date}), OK)
    async with mock_transport(rec, wall_clock=lambda: fixed_now) as t:
        await t.request("sampling", "POST", "asample", json={})
    assert trio.current_time() == pytest.approx(7.0)


async def test_max_retries_zero_makes_one_attempt(autojump_clock) -> None:
    rec = Recorder(answer(503))
    async with mock_transport(rec) as t:
        with pytest.raises(InternalServerError):
            await t.request("futures", "POST", "retrieve_future", json={}, options=RequestOptions(max_retries=0))
    assert len(rec.requests) == 1 and trio.current_time() == 0


async def test_max_retries_bounds_attempts(autojump_clock) -> None:
    rec = Recorder(answer(500))
    async with mock_transport(rec, retry=RetryPolicy(max_retries=3)) as t:
        with pytest.raises(InternalServerError):
            await t.request("session", "POST", "x", json={})
    assert len(rec.requests) == 4
    assert trio.current_time() == pytest.approx(0.5 + 1 + 2)


async def test_total_retry_duration_caps_the_loop(autojump_clock) -> None:
    rec = Recorder(answer(503, headers={"retry-after": "2"}))
    async with mock_transport(rec) as t:
        with pytest.raises(InternalServerError):
            await t.request("session", "POST", "x", json={}, options=RequestOptions(total_retry_timeout=5))
    # attempts at t=0, 2, 4; a third wait would end at 6 > 5, so the loop stops at 4
    assert len(rec.requests) == 3
    assert trio.current_time() == pytest.approx(4.0)


async def test_connection_errors_retry_then_raise_typed(autojump_clock) -> None:
    rec = Recorder(fail(httpx.ConnectError, "refused"), fail(httpx.ReadError), OK)
    async with mock_transport(rec) as t:
        assert await t.request("session", "POST", "x", json={}) == {"ok": True}
    rec = Recorder(fail(httpx.RemoteProtocolError, "dropped"))
    async with mock_transport(rec, retry=RetryPolicy(max_retries=2)) as t:
        with pytest.raises(APIConnectionError, match="POST /api/v1/x") as info:
            await t.request("session", "POST", "x", json={})
    assert not isinstance(info.value, APITimeoutError)
    assert len(rec.requests) == 3


async def test_proxy_rejection_retries_as_connection_error(autojump_clock) -> None:
    rec = Recorder(answer(400), answer(400, content=b""), OK)
    async with mock_transport(rec) as t:
        assert await t.request("session", "POST", "x", json={}) == {"ok": True}
    assert len(rec.requests) == 3
    # A 400 with a body is the server's answer, not a proxy's: no retry.
    rec = Recorder(answer(400, json={"detail": "bad field"}), OK)
    async with mock_transport(rec) as t:
        with pytest.raises(BadRequestError, match="bad field"):
            await t.request("session", "POST", "x", json={})
    assert len(rec.requests) == 1


async def test_proxy_rejection_budget_is_bounded(autojump_clock) -> None:
    rec = Recorder(answer(400))
    async with mock_transport(rec, retry=RetryPolicy(proxy_rejection_budget=2)) as t:
        with pytest.raises(BadRequestError):
            await t.request("session", "POST", "x", json={})
        assert len(rec.requests) == 3  # two budgeted retries, then the 400 stands
        with pytest.raises(BadRequestError):
            await t.request("session", "POST", "x", json={})
        assert len(rec.requests) == 4  # the budget refills only on success


async def test_idempotency_key_stable_across_retries_and_new_per_call(autojump_clock) -> None:
    rec = Recorder(answer(500), answer(429), OK)
    async with mock_transport(rec) as t:
        await t.request("training", "POST", "forward_backward", json={})
        await t.request("training", "POST", "optim_step", json={})
    keys = rec.header("x-idempotency-key")
    assert len(keys) == 4 and keys[0] is not None
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] is not None and keys[3] != keys[0]


async def test_idempotency_key_explicit_and_omitted_and_never_on_get(autojump_clock) -> None:
    rec = Recorder(answer(503), OK)
    async with mock_transport(rec) as t:
        await t.request("session", "POST", "x", json={}, options=RequestOptions(idempotency_key="sweep-17-row-3"))
        await t.request("session", "POST", "x", json={}, options=RequestOptions(idempotency_key=OMIT))
        await t.request("session", "GET", "training_runs")
        await t.request("session", "DELETE", "checkpoints/a")
    keys = rec.header("x-idempotency-key")
    assert keys[:2] == ["sweep-17-row-3", "sweep-17-row-3"]
    assert keys[2] is None and keys[3] is None
    assert keys[4] is not None  # DELETE is a non-GET


async def test_timeouts_are_separate_and_sent(autojump_clock) -> None:
    rec = Recorder(OK)
    async with mock_transport(rec) as t:
        await t.request("futures", "POST", "retrieve_future", json={},
                        options=RequestOptions(timeout=45, connect_timeout=2.5))
        await t.request("session", "POST", "x", json={})
    first, second = rec.requests
    assert first.extensions["timeout"] == {"connect": 2.5, "read": 45, "write": 45, "pool": None}
    assert first.headers["x-stainless-read-timeout"] == "45"
    assert second.extensions["timeout"]["connect"] == 5.0
    assert second.headers["x-stainless-read-timeout"] == "60"


async def test_slow_answer_times_out_typed_and_retries(autojump_clock) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(100)
        return httpx.Response(200, json={})

    rec = Recorder(slow)
    options = RequestOptions(timeout=10, connect_timeout=1, max_retries=0)
    async with mock_transport(rec) as t:
        with pytest.raises(APITimeoutError, match="POST /api/v1/heartbeat"):
            await t.request("session", "POST", "heartbeat", json={}, options=options)
        assert trio.current_time() == pytest.approx(11.0)
        rec2 = Recorder(slow, OK)
        async with mock_transport(rec2) as t2:
            assert await t2.request("session", "POST", "x", json={}, options=RequestOptions(timeout=10, connect_timeout=1)) == {"ok": True}
        assert len(rec2.requests) == 2


async def test_httpx_timeout_maps_to_api_timeout(autojump_clock) -> None:
    rec = Recorder(fail(httpx.ReadTimeout, "read timed out"))
    async with mock_transport(rec) as t:
        with pytest.raises(APITimeoutError):
            await t.request("session", "POST", "x", json={}, options=RequestOptions(max_retries=1))
    assert len(rec.requests) == 2


async def test_rate_limit_error_carries_retry_after(autojump_clock) -> None:
    rec = Recorder(answer(429, headers={"retry-after": "120"}, json={"detail": "slow down"}))
    async with mock_transport(rec) as t:
        with pytest.raises(RateLimitError, match="slow down") as info:
            await t.request("sampling", "POST", "asample", json={}, options=RequestOptions(max_retries=0))
    assert info.value.retry_after == 120.0
    assert info.value.status_code == 429


async def test_conflict_retried_then_typed(autojump_clock) -> None:
    rec = Recorder(answer(409, json={"detail": "locked"}))
    async with mock_transport(rec, retry=RetryPolicy(max_retries=1)) as t:
        with pytest.raises(ConflictError):
            await t.request("session", "POST", "x", json={})
    assert len(rec.requests) == 2


async def test_retry_started_before_close_time_is_wall_clock_free(autojump_clock) -> None:
    # The loop measures its total duration on trio's clock, not the wall clock.
    start = time.monotonic()
    rec = Recorder(answer(500))
    async with mock_transport(rec, retry=RetryPolicy(max_retries=8, total_timeout=None)) as t:
        with pytest.raises(InternalServerError):
            await t.request("session", "POST", "x", json={})
    assert trio.current_time() == pytest.approx(0.5 + 1 + 2 + 4 + 8 + 10 + 10 + 10)
    assert time.monotonic() - start < 5
