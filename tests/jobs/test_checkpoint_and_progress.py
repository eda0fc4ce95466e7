"""Checkpoint schedule, rolling clean-up, loop-state records, and progress reporting."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import structlog
import trio
import trio.testing
from rich.console import Console

from tinker_actors.errors import ConfigError
from tinker_actors.jobs.checkpoint_policy import (
    CheckpointPolicy,
    CheckpointRecord,
    DataPosition,
    LoopState,
    load_loop_state,
    numpy_rng_state,
    plan_cleanup,
    restore_numpy_rng,
    save_loop_state,
    should_save,
)
from tinker_actors.jobs.progress import ProgressCounters, open_progress, snapshot


def _saves(policy: CheckpointPolicy, step_times: list[float]) -> list[int]:
    last_step = last_time = None
    saved = []
    for step, now in enumerate(step_times, start=1):
        if should_save(policy, step=step, now=now, last_save_step=last_step, last_save_time=last_time, run_started=0.0):
            saved.append(step)
            last_step, last_time = step, now
    return saved


def test_save_every_n_steps_or_m_seconds_whichever_first() -> None:
    even = [10.0 * i for i in range(1, 31)]  # one step per 10 s
    assert _saves(CheckpointPolicy(every_steps=10), even) == [10, 20, 30]
    assert _saves(CheckpointPolicy(every_steps=None, every_seconds=45), even) == [5, 10, 15, 20, 25, 30]
    assert _saves(CheckpointPolicy(every_steps=10, every_seconds=45), even) == [5, 10, 15, 20, 25, 30]
    # slow steps: the clock triggers first; fast steps: the step count does
    slow_then_fast = [100.0 * i for i in range(1, 4)] + [300.0 + i for i in range(1, 25)]
    assert _saves(CheckpointPolicy(every_steps=10, every_seconds=150), slow_then_fast) == [2, 12, 22]
    # never twice for one step (a resumed loop re-evaluating its last step)
    assert not should_save(CheckpointPolicy(every_steps=1), step=5, now=1e9, last_save_step=5, last_save_time=0.0, run_started=0.0)
    with pytest.raises(ConfigError, match="every_steps must be > 0"):
        CheckpointPolicy(every_steps=0)


def test_rolling_cleanup_keeps_last_k_milestones_and_newest() -> None:
    policy = CheckpointPolicy(keep_last=2, keep_every_steps=50, ttl_seconds=1000)
    cps = [CheckpointRecord(path=f"tinker://r/weights/{s}", step=s, created_at=float(s), expires_at=float(s) + 1000) for s in (10, 20, 30, 40, 50, 60, 70)]
    cps.append(CheckpointRecord(path="tinker://r/sampler_weights/70", step=70, created_at=70.0, kind="sampler"))
    delete = plan_cleanup(cps, policy, now=100.0)
    assert [c.step for c in delete] == [10, 20, 30, 40]  # 50 is a milestone; 60, 70 are the last two
    # already-expired checkpoints are the server's to drop, not ours
    assert [c.step for c in plan_cleanup(cps, policy, now=1025.0)] == [30, 40]
    assert plan_cleanup(cps, CheckpointPolicy(keep_last=None), now=100.0) == []
    assert [c.path for c in plan_cleanup(cps, CheckpointPolicy(keep_last=1), now=0.0, kind="sampler")] == []
    # the newest survives even when keep_last would not cover it (it is what resume loads)
    assert plan_cleanup(cps[-2:-1], CheckpointPolicy(keep_last=1), now=5000.0) == []


def test_loop_state_round_trip_with_rng(tmp_path: Path) -> None:
    rng = np.random.default_rng(1234)
    rng.random(17)
    state = LoopState(
        step=42,
        data=DataPosition(epoch=1, index=96),
        last_checkpoint="tinker://r/weights/40",
        last_save_step=40,
        last_save_time=1.7e9,
        checkpoints=[CheckpointRecord(path="tinker://r/weights/40", step=40, created_at=1.7e9)],
        rng_state=numpy_rng_state(rng),
        pending_request_ids=["req-1"],
    )
    path = tmp_path / "run" / "loop_state.json"
    assert load_loop_state(path) is None
    save_loop_state(state, path)
    back = load_loop_state(path)
    assert back == state
    fresh = np.random.default_rng(0)
    restore_numpy_rng(fresh, back.rng_state)
    assert np.array_equal(fresh.random(5), rng.random(5))  # the 128-bit state came back exactly
    assert [p.name for p in path.parent.iterdir()] == ["loop_state.json"]
    path.write_bytes(b'{"step": "x"}')
    with pytest.raises(ConfigError, match="unreadable loop state"):
        load_loop_state(path)


def test_snapshot_rate_and_eta() -> None:
    c = ProgressCounters(total=100, skipped=20, done=20)
    c.started_at = 0.0
    s0 = snapshot(c, 0.0)
    assert s0.rate == 0.0 and s0.eta is None
    c.done, c.failed, c.in_flight = 45, 5, 8
    s = snapshot(c, 10.0)
    # 30 finished this run in 10 s; the 20 found done in the journal don't count
    assert s.rate == pytest.approx(3.0) and s.eta == pytest.approx(50 / 3.0)
    c.done = 95
    assert snapshot(c, 40.0).eta == 0.0


async def test_progress_logs_plain_lines_off_terminal(autojump_clock: trio.testing.MockClock) -> None:
    counters = ProgressCounters(total=10)
    threads = threading.active_count()
    with structlog.testing.capture_logs() as logs:
        async with open_progress(counters, terminal=False, log_interval=4.0, console=Console(file=io.StringIO())):
            for _ in range(10):
                await trio.sleep(0.9)  # ticks at 4 s and 8 s fall between updates
                counters.done += 1
                assert threading.active_count() == threads
    events = [e for e in logs if e["event"].startswith("sweep_progress")]
    assert [e["event"] for e in events] == ["sweep_progress", "sweep_progress", "sweep_progress_final"]
    assert [e["done"] for e in events] == [4, 8, 10] and events[-1]["eta_s"] == 0.0
    assert events[-1]["rate_per_s"] == pytest.approx(10 / 9.0, abs=1e-3)
    assert events[0]["eta_s"] == pytest.approx(6 / 1.0, abs=0.1)  # 6 left at 1/s


async def test_progress_bar_on_terminal_without_threads(autojump_clock: trio.testing.MockClock) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    counters = ProgressCounters(total=4)
    threads = threading.active_count()
    async with open_progress(counters, console=console, interval=0.5):
        for _ in range(4):
            await trio.sleep(1.0)
            counters.done += 1
            counters.retries += 1
            assert threading.active_count() == threads  # rich's refresh thread was not started
    text = out.getvalue()
    assert "4/4" in text and "re-sent 4 (0 transient errors)" in text and "failed 0" in text
