"""The bench engine on trio's virtual clock: open-loop rate, coordinated omission, closed loop, ramps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import trio

from tinker_actors.jobs.bench.recorder import Recorder
from tinker_actors.jobs.bench.runner import run_trial, run_workload
from tinker_actors.jobs.bench.workload import Load, OpSpec, Ramp, Workload, phases

SERVICE_S = 0.010


class StallingServer:
    """Answers every request after SERVICE_S, except that nothing is answered during [stall_from, stall_to)."""

    def __init__(self, stall_from: float = float("inf"), stall_to: float = float("inf"), capacity: float | None = None) -> None:
        self.t0 = 0.0
        self.stall = (stall_from, stall_to)
        self.capacity = capacity  # requests per second the server can serve (one at a time)
        self._free_at = 0.0

    async def handle(self) -> None:
        now = trio.current_time() - self.t0
        if self.stall[0] <= now < self.stall[1]:
            await trio.sleep_until(self.t0 + self.stall[1])
        if self.capacity is not None:
            # a single FIFO server: each request takes 1/capacity seconds of it
            start = max(trio.current_time(), self._free_at)
            self._free_at = start + 1 / self.capacity
            await trio.sleep_until(self._free_at)
        else:
            await trio.sleep(SERVICE_S)


class FakeTarget:
    def __init__(self, server: StallingServer) -> None:
        self.server = server
        self.sends: list[float] = []

    async def setup(self) -> None:
        self.server.t0 = trio.current_time()

    def issue(self, op: int) -> Any:
        self.sends.append(trio.current_time() - self.server.t0)
        return self.server.handle()


def _workload(load: Load) -> Workload:
    return Workload(name="t", load=load, ops=[OpSpec(kind="sample")]).check()


def _per_request(trial_rec: Recorder) -> tuple[np.ndarray, np.ndarray]:
    return np.frombuffer(trial_rec.done_intended), np.frombuffer(trial_rec.done_lat)


async def _trial(target: FakeTarget, wl: Workload) -> tuple[Any, Recorder]:
    captured: list[Recorder] = []
    orig = Recorder.__init__

    def spy(self: Recorder, *a: Any, **kw: Any) -> None:
        orig(self, *a, **kw)
        captured.append(self)

    Recorder.__init__ = spy  # type: ignore[method-assign]
    try:
        await target.setup()
        result = await run_trial(target, wl)
    finally:
        Recorder.__init__ = orig  # type: ignore[method-assign]
    return result, captured[0]


async def test_open_loop_sends_at_the_target_rate(autojump_clock: Any) -> None:
    target = FakeTarget(StallingServer())
    wl = _workload(Load(mode="open", rate=200.0, duration_s=5.0, warmup_s=1.0))
    result, _ = await _trial(target, wl)
    sends = np.asarray(target.sends)
    assert len(sends) == 200 * 6  # warm-up and main phase, every arrival sent
    assert np.allclose(np.diff(sends), 1 / 200, atol=1e-9)  # exactly on schedule
    main = result.phases[1]
    assert (main.name, main.target_rate, main.sent) == ("main", 200.0, 1000)
    assert main.achieved_rate == pytest.approx(200.0)
    assert main.completed_rate == pytest.approx(200.0, rel=0.01)
    assert main.lag is not None and main.lag.p99 is not None and main.lag.p99 <= 1e-5 and not main.lag.behind
    assert result.measured[-1].op == "all" and result.measured[-1].ok == 1000  # warm-up excluded
    assert result.warnings == []


async def test_poisson_arrivals_average_the_target_rate(autojump_clock: Any) -> None:
    target = FakeTarget(StallingServer())
    wl = _workload(Load(mode="open", rate=100.0, arrivals="poisson", duration_s=30.0))
    await _trial(target, wl)
    gaps = np.diff(np.asarray(target.sends))
    assert len(target.sends) == pytest.approx(3000, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.1)  # exponential gaps: cv = 1


async def test_a_stall_shows_as_latency_for_every_request_scheduled_during_it(autojump_clock: Any) -> None:
    stall_from, stall_to = 3.0, 5.0
    open_target = FakeTarget(StallingServer(stall_from, stall_to))
    result, rec = await _trial(open_target, _workload(Load(mode="open", rate=100.0, duration_s=10.0)))
    intended, lat = _per_request(rec)
    during = (intended >= stall_from) & (intended < stall_to)
    assert during.sum() == 200
    # each waited out the rest of the stall, counted from when it should have been sent
    assert np.all(lat[during] >= (stall_to - intended[during]) + SERVICE_S - 1e-6)
    assert np.all(lat[~during] < 0.05)
    assert result.measured[-1].latency["p99"] >= 1.5  # 2 % of requests waited > 1.5 s

    # The closed loop, on the same server: only the requests in flight when it
    # stalled see it, and its percentiles hide the stall.
    closed_target = FakeTarget(StallingServer(stall_from, stall_to))
    result, rec = await _trial(closed_target, _workload(Load(mode="closed", concurrency=4, duration_s=10.0)))
    _, lat = _per_request(rec)
    assert (lat > 0.5).sum() <= 4
    assert result.measured[-1].latency["p99"] < 0.05
    # ... because it simply stopped sending: one request per worker during the whole stall
    sends = np.asarray(closed_target.sends)
    assert ((sends > stall_from) & (sends < stall_to)).sum() <= 4


async def test_a_slow_client_is_reported_as_behind_not_blamed_on_the_server(autojump_clock: Any) -> None:
    target = FakeTarget(StallingServer())
    wl = _workload(Load(mode="open", rate=50.0, duration_s=5.0, max_in_flight=1))
    result, _ = await _trial(target, wl)
    main = result.phases[0]
    # one slot, 10 ms per request: keeps up with 50/s...
    assert not main.lag.behind
    target = FakeTarget(StallingServer())
    result, _ = await _trial(target, _workload(Load(mode="open", rate=200.0, duration_s=5.0, max_in_flight=1)))
    main = result.phases[0]
    # ... but not with 200/s: every send waits for the slot and the run says so
    assert main.lag.behind and main.lag.cap_hits > 0
    assert any("could not keep up" in w for w in result.warnings)
    assert main.achieved_rate == pytest.approx(100.0, rel=0.05)


async def test_a_ramp_finds_the_knee_of_a_server_with_fixed_capacity(autojump_clock: Any) -> None:
    target = FakeTarget(StallingServer(capacity=100.0))
    ramp = Ramp(start=20.0, stop=320.0, steps=5, step_s=2.0)  # 20, 40, 80, 160, 320
    wl = _workload(Load(mode="open", ramp=ramp, warmup_s=1.0))
    result = await run_workload(target, wl)
    trial = result.trials[0]
    # the ramp stopped after the first step past the knee: step5 would only add backlog
    assert [p.name for p in trial.phases] == ["warmup", "step1", "step2", "step3", "step4"]
    assert [round(p.target_rate) for p in trial.phases[1:]] == [20, 40, 80, 160]
    assert trial.phases[4].completed_rate < 0.95 * 160
    assert trial.knee is not None and trial.knee.rate == pytest.approx(80.0)
    assert trial.knee.reason.startswith("step4")
    assert result.aggregate["all"]["knee_rate"].median == pytest.approx(80.0)


def test_phases_of_a_ramp_and_of_a_closed_loop() -> None:
    ph = phases(Load(mode="open", ramp=Ramp(start=10, stop=40, steps=3, step_s=2, spacing="linear"), warmup_s=1))
    assert [(p.name, p.start, p.rate, p.measured) for p in ph] == [
        ("warmup", 0.0, 10.0, False), ("step1", 1.0, 10.0, True), ("step2", 3.0, 25.0, True), ("step3", 5.0, 40.0, True)]
    ph = phases(Load(mode="closed", count=10))
    assert [(p.name, p.duration, p.rate) for p in ph] == [("main", None, None)]


def test_timeline_buckets_hold_several_sends_at_low_rates() -> None:
    from tinker_actors.jobs.bench.recorder import _bucket_width

    assert _bucket_width(10.0, 1000.0) == 0.1
    assert _bucket_width(10.0, 5.0) == 1.0  # not 0.1 s: that would alternate 0 and 10 per second
    assert _bucket_width(600.0, 50.0) == 10.0
