"""The sweep runner in-process: back-off under 429s and paused queues, growth by appended prompts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from support import local_server

from tinker_actors.clients import open_service_client
from tinker_actors.jobs.export import read_jsonl
from tinker_actors.jobs.sweep import run_sweep, sweep_status
from tinker_actors.jobs.sweep_spec import load_spec
from tinker_actors.server import FaultConfig

KEY = "tml-sweep-runner"


@contextlib.asynccontextmanager
async def service_on_local_server(tmp: Path, **kw: Any) -> AsyncIterator[tuple[Any, str]]:
    async with local_server(tmp / "server", **kw) as url:
        async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as service:
            yield service, url


def spec_file(d: Path, n: int, *, cmax: int = 16, cmin: int = 1) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "p.jsonl").write_text("".join(json.dumps({"id": i, "text": f"p{i}"}) + "\n" for i in range(n)))
    (d / "s.toml").write_text(
        '[model]\nbase_model = "tinker-actors/byte-lm-tiny"\n[input]\nprompts = "p.jsonl"\n'
        "[sampling]\nmax_tokens = 4\nseed = [1, 2]\n"
        '[output]\njournal = "j.sqlite"\nresults = "r.jsonl"\n'
        f"[concurrency]\nmax = {cmax}\nmin = {cmin}\n"
    )
    return d / "s.toml"


async def test_backs_off_on_429_and_finishes_everything(tmp_path: Path) -> None:
    faults = FaultConfig(seed=3, rate_429=0.3, retry_after_s=0.01, routes=["asample"])
    async with service_on_local_server(tmp_path, faults=faults) as (service, url):
        spec = load_spec(spec_file(tmp_path / "s", 30, cmax=32))
        out = await run_sweep(spec, service, progress=False)
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"{url}/_local/stats", headers={"X-API-Key": KEY})).json()
    assert out.counts["done"] == 60 and out.complete
    assert stats["faults"]["429"] > 0
    assert stats["work_done"]["Sample"] == 60  # a 429 never made the server compute twice
    lines = list(read_jsonl(out.results or ""))
    assert [line.state for line in lines] == ["done"] * 60


async def test_paused_queue_halves_concurrency(tmp_path: Path) -> None:
    faults = FaultConfig(pause_futures_s=0.6, pause_rate=1.0, pause_kind="paused_rate_limit")
    async with service_on_local_server(tmp_path, faults=faults, long_poll_timeout_s=0.2) as (service, _):
        spec = load_spec(spec_file(tmp_path / "s", 8, cmax=16, cmin=2))
        out = await run_sweep(spec, service, progress=False)
    assert out.counts["done"] == 16
    assert out.aimd["decreases"] >= 1 and out.aimd["limit"] < 16


async def test_appended_prompts_are_the_only_new_work(tmp_path: Path) -> None:
    async with service_on_local_server(tmp_path) as (service, _):
        path = spec_file(tmp_path / "s", 5)
        first = await run_sweep(load_spec(path), service, progress=False)
        with open(tmp_path / "s" / "p.jsonl", "a") as fh:
            fh.write(json.dumps({"id": "new", "text": "appended"}) + "\n")
        second = await run_sweep(load_spec(path), service, progress=False)
    assert first.sent_this_run == 10
    assert second.sent_this_run == 2 and second.skipped == 10 and second.counts["done"] == 12
    assert sweep_status(load_spec(path))["done"] == 12
