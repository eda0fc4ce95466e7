"""Futures paused for capacity for minutes, on the virtual clock.

The server holds every new future in ``paused_capacity`` for five minutes.
The caller sees the paused state and for how long; nothing times out while
the server keeps answering; a future that never leaves its paused state ends
with a FutureTimeoutError at its progress deadline instead of hanging.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from harness import BASE_MODEL, in_process, record

from tinker_actors.errors import FutureTimeoutError
from tinker_actors.runtime.config import PollSettings
from tinker_actors.server import FaultConfig, ServerConfig
from tinker_actors.wire import types as wt

PAUSE_S = 300.0


def server(tmp_path: Path, pause_s: float) -> ServerConfig:
    return ServerConfig(
        data_dir=tmp_path / "data",
        null_compute=True,
        compute_inline=True,
        long_poll_timeout_s=20,
        faults=FaultConfig(seed=1, pause_futures_s=pause_s, pause_rate=1.0, pause_kind="paused_capacity", routes=["asample"]),
    )


async def test_paused_for_minutes_is_visible_and_completes(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(3600):  # virtual
        async with in_process(server(tmp_path, PAUSE_S), poll=PollSettings(progress_timeout=600)) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            start = trio.current_time()
            futs = [sampler.sample(wt.ModelInput.from_ints([65, 66, 67]), 1, wt.SamplingParams(max_tokens=4, seed=i)) for i in range(8)]
            await trio.sleep(120)
            # two minutes in: every future reports the pause and its length
            assert {f.state for f in futs} == {"paused_capacity"}
            # the pause is learned from the first try_again, one long poll (20 s) in
            assert all(120 - 20 - 1 <= f.time_in_state <= 120 for f in futs)
            results = [await f for f in futs]
            waited = trio.current_time() - start
            states = [[str(h.state) for h in f.history] for f in futs]
    assert all(len(r.sequences) == 1 for r in results)
    assert PAUSE_S <= waited < PAUSE_S + 60
    assert all("paused_capacity" in s for s in states)
    faults = app.server.stats.snapshot()["faults"]
    record(
        "paused_capacity_5min",
        load="8 samples",
        faults={"pause": dict(faults).get("pause", 0)},
        virtual_wait_s=round(waited, 1),
        lost=0,
        duplicates=0,
        hangs=0,
    )


async def test_stuck_future_fails_at_its_deadline(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(7200):  # virtual
        async with in_process(server(tmp_path, 10**7), poll=PollSettings(progress_timeout=600)) as (_, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            start = trio.current_time()
            fut = sampler.sample(wt.ModelInput.from_ints([65]), 1, wt.SamplingParams(max_tokens=2))
            with pytest.raises(FutureTimeoutError) as info:
                await fut
            ended = trio.current_time() - start
    assert 600 <= ended <= 600 + 60
    message = str(info.value)
    assert "no progress" in message and "600" in message
    assert info.value.queue_state == "paused_capacity" and info.value.request_id
    record("stuck_future_deadline", load="1 sample", faults={"pause": 1}, ended_after_s=round(ended, 1), lost=0, duplicates=0, hangs=0)
