"""APIFuture: await, state, time in state, timeout, cancellation, callbacks."""

from __future__ import annotations

import pytest
import trio

from tinker_actors.clients.futures import APIFuture, CancelledError, FutureState, start_future
from tinker_actors.errors import FutureTimeoutError, ServiceClosedError


class _Tracker:
    def __init__(self) -> None:
        self.state = "queued"
        self.queue_state: str | None = None
        self.request_id = "req-1"


async def test_future_follows_tracker_then_resolves(autojump_clock: trio.abc.Clock) -> None:
    tracker = _Tracker()
    release = trio.Event()

    async def work(fut: APIFuture[int]) -> int:
        fut.track(tracker)
        await release.wait()
        return 42

    async with trio.open_nursery() as nursery:
        fut = start_future(nursery, work, name="op")
        await trio.testing.wait_all_tasks_blocked()
        assert fut.state is FutureState.QUEUED and fut.request_id == "req-1"
        tracker.queue_state = "paused_rate_limit"
        assert fut.state is FutureState.PAUSED_RATE_LIMIT
        await trio.sleep(5)
        assert fut.time_in_state >= 0 and not fut.done()
        tracker.queue_state = "active"
        assert fut.state is FutureState.RUNNING
        release.set()
        assert await fut == 42
    assert fut.state is FutureState.DONE
    assert [c.state for c in fut.history] == [
        FutureState.QUEUED, FutureState.PAUSED_RATE_LIMIT, FutureState.RUNNING, FutureState.DONE,
    ]


async def test_result_timeout_keeps_work_going(autojump_clock: trio.abc.Clock) -> None:
    async def slow(fut: APIFuture[str]) -> str:
        await trio.sleep(10)
        return "late"

    async with trio.open_nursery() as nursery:
        fut = start_future(nursery, slow, name="slow")
        with pytest.raises(FutureTimeoutError):
            await fut.result(timeout=1)
        assert await fut.result(timeout=20) == "late"


async def test_error_and_cancel_and_service_close(autojump_clock: trio.abc.Clock) -> None:
    cancelled_on_server: list[str] = []

    async def boom(fut: APIFuture[None]) -> None:
        raise ValueError("bad")

    async def forever(fut: APIFuture[None]) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        failing = start_future(nursery, boom, name="boom")
        with pytest.raises(ValueError, match="bad"):
            await failing
        assert failing.state is FutureState.FAILED

        waiting = start_future(nursery, forever, name="wait", on_cancel=lambda f: cancelled_on_server.append(f.name))
        seen: list[FutureState] = []
        waiting.add_done_callback(lambda f: seen.append(f.state))
        await trio.sleep(1)
        assert waiting.cancel() is True
        with pytest.raises(CancelledError):
            await waiting
        assert waiting.state is FutureState.CANCELLED and seen == [FutureState.CANCELLED]
        assert cancelled_on_server == ["wait"]

        orphan = start_future(nursery, forever, name="orphan")
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    with pytest.raises(ServiceClosedError):
        orphan.result_nowait()
