"""The bench runner: the queued/running split, and a mixed scenario end to end."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import local_server

from tinker_actors.clients import open_service_client
from tinker_actors.clients.futures import FutureState, StateChange
from tinker_actors.jobs.bench import BenchScenario, run_bench, split_time, write_outputs
from tinker_actors.server import FaultConfig

KEY = "tml-bench-test"


@contextlib.asynccontextmanager
async def service(tmp: Path, **kw: Any) -> AsyncIterator[Any]:
    async with local_server(tmp / "server", **kw) as url:
        async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as s:
            yield s


def test_split_time_counts_submit_and_pauses_as_queued() -> None:
    history = [
        StateChange(FutureState.QUEUED, 10.0),
        StateChange(FutureState.PAUSED_RATE_LIMIT, 10.5),
        StateChange(FutureState.RUNNING, 11.5),
        StateChange(FutureState.DONE, 12.0),
    ]
    queued, running = split_time(history, submitted=10.0, acked=10.2, end=12.0)
    assert queued == pytest.approx(0.2 + 1.0)  # the submit, then the pause
    assert running == pytest.approx(0.8)
    # a long-polled future reports nothing between submit and result: all running
    q, r = split_time([StateChange(FutureState.QUEUED, 0.0)], submitted=0.0, acked=0.1, end=1.0)
    assert (q, r) == pytest.approx((0.1, 0.9))
    with pytest.raises(ValueError):
        BenchScenario(kind="nope")


async def test_mixed_scenario_reports_every_op_and_paused_time(tmp_path: Path) -> None:
    faults = FaultConfig(pause_futures_s=0.3, pause_rate=1.0, routes=[])
    async with service(tmp_path, faults=faults, long_poll_timeout_s=0.1) as svc:
        report, samples = await run_bench(svc, BenchScenario(kind="mixed", count=12, concurrency=6, steps=2, batch_size=2))
    files = write_outputs(report, samples, tmp_path / "out")
    assert {o.op for o in report.ops} == {"sample", "forward_backward", "optim_step"}
    assert report.total == 16 and report.errors == 0
    sample = next(o for o in report.ops if o.op == "sample")
    assert sample.count == 12 and sample.p50_s is not None and sample.p99_s >= sample.p50_s
    # every sample was held paused for 0.3 s: that time shows up as queued
    assert sample.queued_total_s >= 12 * 0.25
    data = json.loads(Path(files["json"]).read_text())
    assert data["meta"]["scenario"]["kind"] == "mixed"
    assert Path(files["png"]).read_bytes()[:4] == b"\x89PNG"
