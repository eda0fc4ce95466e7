"""When each request is sent: the open loop (arrivals at a rate) and the closed loop (N workers).

**Open loop.** Every request has an *intended* send time drawn before the run
(constant spacing ``1/rate`` or Poisson arrivals, i.e. exponential gaps),
and its latency is measured from that time, not from when it actually left.
A server that stalls therefore shows as latency for every request that
should have been sent during the stall (the coordinated-omission correction
of wrk2 and HdrHistogram), instead of as a quietly lower send rate. A sender
that falls behind its schedule (a busy client, or ``max_in_flight`` reached)
sends at once to catch up; how late it was is the *scheduler lag*, recorded
per phase so a client bottleneck is never read as a server one.

**Closed loop.** ``concurrency`` workers each send, wait for the result and
send again, for ``count`` measured requests or ``duration_s`` seconds. Latency
runs from the actual send: this is the classic benchmark loop, and it hides
queueing (a slow server slows the senders), which is why the open loop exists.

Both loops read time from ``trio.current_time()``, so tests run them on trio's
virtual clock. What a request *is* comes from the target (see
:mod:`.target`); what is recorded goes to a :class:`~.recorder.Recorder`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import trio

from .recorder import Recorder
from .workload import Phase

__all__ = ["arrival_times", "run_open_loop", "run_closed_loop", "Issue"]

# issue(op_index) -> the awaitable operation (it may expose .state / .request_id)
Issue = Callable[[int], Awaitable[Any]]


def arrival_times(phase: Phase, arrivals: str, rng: np.random.Generator) -> Iterator[float]:
    """Intended send times (seconds from the run's start) within ``phase``."""
    assert phase.rate is not None and phase.duration is not None
    end = phase.start + phase.duration
    if arrivals == "constant":
        n = int(np.floor(phase.duration * phase.rate + 1e-9))
        for k in range(n):
            yield phase.start + k / phase.rate
        return
    t = phase.start + float(rng.exponential(1.0 / phase.rate))
    while t < end:
        yield t
        t += float(rng.exponential(1.0 / phase.rate))


async def _one(issue: Issue, rec: Recorder, op: int, phase: int, intended: float, sent: float,
               release: Callable[[], None]) -> None:
    handle = rec.begin(op, phase, intended, sent)
    error: BaseException | None = None
    try:
        work = issue(op)
        rec.attach(handle, work)
        await work
    except Exception as exc:  # noqa: BLE001 - every failure is a figure (errors by kind), not a crash
        error = exc
    finally:
        release()
        rec.end(handle, trio.current_time(), error)


async def run_open_loop(
    issue: Issue,
    rec: Recorder,
    phases: list[Phase],
    *,
    arrivals: str,
    choose: Callable[[], int],
    rng: np.random.Generator,
    max_in_flight: int,
    drain_s: float,
    stop_past_knee: bool = False,
) -> None:
    """Send on schedule through every phase, then wait up to ``drain_s`` for what is still out.

    ``stop_past_knee`` (ramps) ends the run after the first measured phase
    that completed under 95 % of its target rate.

    Requests still unfinished after the drain are cancelled and recorded as
    ``Unfinished`` errors (their latency, counted to the cut, is in no percentile).
    """
    slots = trio.Semaphore(max_in_flight)
    t0 = rec.t0
    async with trio.open_nursery() as nursery:
        for pi, ph in enumerate(phases):
            rec.phase_started(pi, t0 + ph.start)
            for at in arrival_times(ph, arrivals, rng):
                intended = t0 + at
                await trio.sleep_until(intended)
                full = slots.value == 0
                await slots.acquire()
                sent = trio.current_time()
                if full and sent > intended:
                    rec.cap_hit(pi)
                nursery.start_soon(_one, issue, rec, choose(), pi, intended, sent, slots.release)
            # A phase lasts its scheduled time even when its last arrival came early.
            await trio.sleep_until(t0 + ph.start + (ph.duration or 0.0))
            rec.phase_ended(pi, trio.current_time())
            if stop_past_knee and ph.measured and not rec.kept_up(pi):
                break
        with trio.move_on_after(drain_s):
            await rec.wait_idle()
        nursery.cancel_scope.cancel()
    rec.cut_unfinished(trio.current_time())


async def run_closed_loop(
    issue: Issue,
    rec: Recorder,
    phases: list[Phase],
    *,
    concurrency: int,
    count: int | None,
    choose: Callable[[], int],
) -> None:
    """``concurrency`` workers send back to back through the phases.

    A timed phase stops *starting* requests at its end; an untimed one ends
    after ``count`` requests. Latency is from the actual send.
    """
    for pi, ph in enumerate(phases):
        start = trio.current_time()
        rec.phase_started(pi, start)
        budget: list[int | None] = [count if (ph.duration is None and count is not None) else None]
        stop_at = start + ph.duration if ph.duration is not None else None

        async def worker(pi: int = pi, stop_at: float | None = stop_at, budget: list[int | None] = budget) -> None:
            while True:
                now = trio.current_time()
                if stop_at is not None and now >= stop_at:
                    return
                if budget[0] is not None:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                await _one(issue, rec, choose(), pi, now, now, _nothing)

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        # The phase lasts until its last request came back: throughput is per that time.
        rec.phase_ended(pi, trio.current_time())


def _nothing() -> None:
    pass
