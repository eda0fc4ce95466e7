"""AIMD concurrency: pure transitions, then the resizable FIFO limiter on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tinker_actors.errors import RateLimitError, RequestFailedError
from tinker_actors.jobs.aimd import AdaptiveLimiter, AimdPolicy, AimdState, is_congestion


def test_a_burst_of_429s_halves_once_per_cooldown() -> None:
    s = AimdState(AimdPolicy(ceiling=64, floor=4, cooldown=5.0))
    assert s.limit == 64  # starts at the ceiling
    assert s.on_congestion(10.0) and s.limit == 32
    for t in (10.0, 10.1, 12.0, 14.99):  # the rest of the burst counts as the same event
        assert not s.on_congestion(t)
    assert s.limit == 32
    assert s.on_congestion(15.0) and s.limit == 16
    assert s.on_congestion(20.0) and s.limit == 8
    assert s.on_congestion(25.0) and s.limit == 4
    assert not s.on_congestion(30.0) and s.limit == 4  # never below the floor
    assert s.decreases == 4


def test_recovery_is_one_step_per_window_of_successes_up_to_the_ceiling() -> None:
    s = AimdState(AimdPolicy(ceiling=6, floor=1, beta=0.5, cooldown=2.0))
    s.on_congestion(0.0)
    assert s.limit == 3
    # completions inside the cool-down were admitted before the cut: ignored
    for _ in range(10):
        assert not s.on_success(1.0)
    # then +1 per `limit` consecutive successes
    grew = [s.on_success(2.0 + i) for i in range(3)]
    assert grew == [False, False, True] and s.limit == 4
    for i in range(4 + 5 + 6):
        s.on_success(10.0 + i)
    assert s.limit == 6
    for i in range(50):
        assert not s.on_success(100.0 + i)  # capped at the ceiling
    assert s.limit == 6 and s.increases == 3


def test_congestion_resets_the_success_streak() -> None:
    s = AimdState(AimdPolicy(ceiling=8, floor=1, cooldown=1.0))
    s.on_congestion(0.0)  # 4
    s.on_success(1.0), s.on_success(1.0), s.on_success(1.0)
    s.on_congestion(1.5)  # 2, streak reset
    assert s.limit == 2
    assert not s.on_success(3.0)
    assert s.on_success(3.0) and s.limit == 3


def test_policy_and_signal_classification() -> None:
    with pytest.raises(ValueError):
        AimdPolicy(ceiling=4, floor=5)
    with pytest.raises(ValueError):
        AimdPolicy(ceiling=4, beta=1.0)
    assert is_congestion(RateLimitError("slow down", status_code=429))
    assert is_congestion("paused_rate_limit") and is_congestion("paused_capacity")
    assert not is_congestion("running") and not is_congestion(RequestFailedError("bad", category="user"))


async def test_limiter_shrinks_on_429_and_admits_fifo(autojump_clock: trio.testing.MockClock) -> None:
    lim = AdaptiveLimiter(AimdPolicy(ceiling=4, floor=1, cooldown=10.0))
    order: list[int] = []
    done = {i: trio.Event() for i in range(10)}

    async def worker(i: int) -> None:
        try:
            async with lim.slot():
                order.append(i)
                await done[i].wait()
                if i == 0:
                    raise RateLimitError("429", status_code=429)
        except RateLimitError:
            pass

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(worker, i)
            await trio.testing.wait_all_tasks_blocked()  # fixes arrival order
        assert lim.in_flight == 4 and lim.waiting == 6 and order == [0, 1, 2, 3]
        done[0].set()
        await trio.testing.wait_all_tasks_blocked()
        assert lim.limit == 2 and lim.in_flight == 3 and order == [0, 1, 2, 3]  # nobody admitted
        # Release one holder at a time: each release admits at most one
        # waiter, so the admission order is observable, and it is arrival order.
        for i in range(1, 10):
            done[i].set()
            await trio.testing.wait_all_tasks_blocked()
            assert lim.in_flight <= max(2, 3 - i + 1)
    assert order == list(range(10))
    assert lim.limit == 2 and lim.state.decreases == 1


async def test_lowered_limit_holds_back_new_work_until_slots_return(autojump_clock: trio.testing.MockClock) -> None:
    lim = AdaptiveLimiter(AimdPolicy(ceiling=4, floor=1, cooldown=100.0))
    active = 0
    peak_after_cut = 0
    cut = False

    async def worker(i: int) -> None:
        nonlocal active, peak_after_cut
        async with lim.slot():
            active += 1
            if cut:
                peak_after_cut = max(peak_after_cut, active)
            await trio.sleep(1.0)
            active -= 1

    async with trio.open_nursery() as nursery:
        for i in range(12):
            nursery.start_soon(worker, i)
        await trio.testing.wait_all_tasks_blocked()
        assert lim.in_flight == 4
        lim.signal_congestion()  # e.g. the poller saw paused_capacity
        cut = True
        assert lim.limit == 2 and lim.in_flight == 4  # nobody evicted
    # after the cut no more than 2 ran at once (while the cool-down held the limit)
    assert peak_after_cut <= 2


async def test_limiter_grows_while_tasks_wait(autojump_clock: trio.testing.MockClock) -> None:
    lim = AdaptiveLimiter(AimdPolicy(ceiling=8, floor=1, cooldown=1.0))
    lim.set_limit(1)
    admitted: list[int] = []
    done = {i: trio.Event() for i in range(5)}

    async def worker(i: int) -> None:
        async with lim.slot():
            admitted.append(i)
            await done[i].wait()

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(worker, i)
            await trio.testing.wait_all_tasks_blocked()
        assert admitted == [0]
        lim.set_limit(3)  # the two oldest waiters are admitted at once
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(admitted) == [0, 1, 2] and lim.waiting == 2
        for i in range(5):
            done[i].set()
            await trio.testing.wait_all_tasks_blocked()
    assert admitted[3:] == [3, 4]
    lim.set_limit(100)
    assert lim.limit == 8  # clamped to the ceiling
