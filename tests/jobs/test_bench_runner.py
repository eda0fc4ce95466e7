"""The bench engine against the local server: every operation kind, queue states, server counters, outputs."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from support import local_server

from tinker_actors.clients import open_service_client
from tinker_actors.jobs.bench import read_result, run_bench
from tinker_actors.jobs.bench.report import OutputExists, prepare_out_dir, write_outputs
from tinker_actors.jobs.bench.workload import Load, OpSpec, Workload
from tinker_actors.server import FaultConfig

KEY = "tml-bench-test"


async def _run(tmp: Path, wl: Workload, **server: Any) -> Any:
    async with local_server(tmp / "server", **server) as url:
        async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as svc:
            return await run_bench(svc, wl, stats_url=f"{url}/_local/stats", api_key=KEY, server_url=url)


async def test_every_operation_kind_with_paused_futures_and_server_counters(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hello there"}) + "\n" + json.dumps({"tokens": [5, 6, 7], "max_tokens": 3}) + "\n")
    wl = Workload(name="all-kinds", load=Load(mode="closed", concurrency=4, count=16), ops=[
        OpSpec(kind="sample", weight=4, prompt_len=8, output_len=4),
        OpSpec(kind="sample", name="real-prompts", weight=2, prompts=str(prompts)),
        OpSpec(kind="compute_logprobs", weight=2, prompt_len=6),
        OpSpec(kind="train_step", weight=1, batch_size=2, seq_len=8),
        OpSpec(kind="save", weight=1),
    ]).check()
    faults = FaultConfig(pause_futures_s=0.3, pause_rate=1.0, routes=["asample"])
    result = await _run(tmp_path, wl, faults=faults, long_poll_timeout_s=0.1)
    merged = {f.op: f for f in result.merged}
    assert set(merged) == {"sample", "real-prompts", "compute_logprobs", "train_step", "save", "all"}
    assert merged["all"].count == 16 and merged["all"].errors == 0
    assert sum(merged[k].ok for k in merged if k != "all") == 16
    # samples were held paused by the server for 0.3 s: the recorder saw them queued
    paused = merged["sample"]
    assert paused.ok >= 3
    assert paused.queued_share is not None and paused.queued_share > 0.3
    assert paused.latency["p50"] >= 0.3
    # the server's counters were read during the trial and joined to it
    server = result.trials[0].server
    assert server and server[-1].requests and server[-1].statuses.get("200", 0) > 0
    assert result.environment == {} and result.server_url and result.mode == "closed"


async def test_open_loop_against_the_local_server_and_the_files_it_writes(tmp_path: Path) -> None:
    wl = Workload(name="open", load=Load(mode="open", rate=20.0, duration_s=1.0, warmup_s=0.5),
                  ops=[OpSpec(kind="sample", prompt_len=4, output_len=2)]).check()
    result = await _run(tmp_path, wl, null_compute=True)
    warmup, main = result.trials[0].phases
    assert (warmup.measured, warmup.sent, main.sent, main.target_rate) == (False, 10, 20, 20.0)
    assert result.merged[-1].ok == 20  # only the measured phase's requests
    out = prepare_out_dir(tmp_path / "out", overwrite=False)
    files, notes = write_outputs(result, out)
    assert notes == [] and set(files) == {"json", "html", "timeline", "cdf", "queued"}
    again = read_result(files["json"])
    assert again.merged[-1].ok == 20 and again.trials[0].phases[1].sent == 20
    page = Path(files["html"]).read_text()
    # one self-contained file: every picture inline, nothing fetched
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "http://" not in page.replace(result.server_url or "", "")
    with pytest.raises(OutputExists):
        prepare_out_dir(out, overwrite=False)
    assert prepare_out_dir(out, overwrite=True) == out


async def test_without_matplotlib_the_report_says_so_and_still_has_json_and_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinker_actors.jobs.bench import report

    wl = Workload(load=Load(mode="closed", concurrency=2, count=4), ops=[OpSpec(kind="sample", prompt_len=4, output_len=2)]).check()
    result = await _run(tmp_path, wl, null_compute=True)
    monkeypatch.setattr(report, "matplotlib_available", lambda: False)
    files, notes = write_outputs(result, prepare_out_dir(tmp_path / "o", overwrite=False))
    assert set(files) == {"json", "html"}
    assert notes == ["plots skipped: matplotlib is not installed (pip install 'tinker_actors[plots]')"]
    assert html.escape(notes[0]) in Path(files["html"]).read_text()
    assert not list((tmp_path / "o").glob("*.png"))
