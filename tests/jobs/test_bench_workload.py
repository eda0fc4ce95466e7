"""Workload files and HDR histograms: every field, every error says where, percentiles that merge exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinker_actors.jobs.bench.histograms import LatencyHistogram
from tinker_actors.jobs.bench.workload import Length, WorkloadError, load_workload, preset, workload_from_dict

FULL = """
name = "chat-mix"
model = "tinker-actors/byte-lm-tiny"
seed = 3

[load]
mode = "open"
arrivals = "poisson"
warmup_s = 2
max_in_flight = 500

[load.ramp]
start = 10
stop = 160
steps = 5
step_s = 4
spacing = "geometric"
knee_p99_factor = 5

[[ops]]
kind = "sample"
weight = 6
prompt_len = { dist = "lognormal", median = 64, sigma = 0.5, max = 512 }
output_len = { dist = "uniform", min = 8, max = 32 }
temperature = 0.7

[[ops]]
kind = "sample"
name = "replay"
weight = 2
prompts = "prompts.jsonl"
output_len = { dist = "choice", values = [16, 64], weights = [3, 1] }

[[ops]]
kind = "compute_logprobs"
weight = 1
prompt_len = 128

[[ops]]
kind = "train_step"
weight = 1
model = "tinker-actors/byte-lm-small"
batch_size = 4
seq_len = 128

[[ops]]
kind = "save"
weight = 0.1
model = "tinker-actors/byte-lm-small"
"""


def test_a_full_workload_file(tmp_path: Path) -> None:
    (tmp_path / "w.toml").write_text(FULL)
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    wl = load_workload(tmp_path / "w.toml")
    assert [op.label for op in wl.ops] == ["sample", "replay", "compute_logprobs", "train_step", "save"]
    assert wl.ops[1].prompts == str(tmp_path / "prompts.jsonl")  # resolved beside the file
    assert wl.model_of(wl.ops[3]) == "tinker-actors/byte-lm-small" and wl.model_of(wl.ops[0]) == wl.model
    assert wl.load.ramp is not None and [round(r) for r in wl.load.ramp.rates()] == [10, 20, 40, 80, 160]
    assert wl.weights().sum() == pytest.approx(1.0)
    json_copy = tmp_path / "w.json"
    json_copy.write_text(json.dumps({"load": {"mode": "closed", "count": 5}, "ops": [{"kind": "save"}]}))
    assert load_workload(json_copy).load.count == 5


@pytest.mark.parametrize(("patch", "message"), [
    ({"ops": [{"kind": "smaple"}]}, "ops[0].kind: unknown operation 'smaple'"),
    ({"ops": [{"kind": "sample"}, {"kind": "sample"}]}, "ops[1]: two operations are labelled 'sample'"),
    ({"ops": [{"kind": "sample", "prompt_len": {"dist": "zipf"}}]}, "ops[0].prompt_len.dist: unknown distribution 'zipf'"),
    ({"ops": [{"kind": "sample", "output_len": {"dist": "uniform", "min": 9, "max": 3}}]}, "ops[0].output_len: uniform needs"),
    ({"ops": [{"kind": "sample", "weight": -1}]}, "ops[0].weight: must be >= 0"),
    ({"ops": [{"kind": "sample", "tempreature": 1}]}, "unknown field `tempreature`"),
    ({"load": {"mode": "open"}}, "an open loop needs load.rate > 0"),
    ({"load": {"mode": "open", "rate": 5}}, "an open loop needs load.duration_s > 0"),
    ({"load": {"mode": "closed", "rate": 5, "count": 3}}, "load.rate and load.ramp are for open loops"),
    ({"load": {"mode": "closed"}}, "exactly one of load.count or load.duration_s"),
    ({"load": {"mode": "open", "ramp": {"start": 50, "stop": 10}}}, "load.ramp needs 0 < start <= stop"),
    ({"load": {"mode": "sideways", "count": 1}}, "load.mode must be 'open' or 'closed'"),
    ({"ops": []}, "no [[ops]]"),
])
def test_each_mistake_is_named_with_its_place(patch: dict, message: str) -> None:
    data = {"load": {"mode": "closed", "count": 10}, "ops": [{"kind": "sample"}]}
    data.update(patch)
    with pytest.raises(WorkloadError) as err:
        workload_from_dict(data, source="w.toml")
    assert message in str(err.value) and str(err.value).startswith("w.toml")


def test_file_problems_are_workload_errors(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="cannot read"):
        load_workload(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("name = ")
    with pytest.raises(WorkloadError, match="not valid TOML"):
        load_workload(tmp_path / "bad.toml")


def test_lengths_stay_in_their_bounds() -> None:
    rng = np.random.default_rng(0)
    uni = Length(dist="uniform", min=3, max=5)
    assert {uni.draw(rng) for _ in range(200)} == {3, 4, 5}
    logn = Length(dist="lognormal", median=50, sigma=1.0, max=80, min=2)
    xs = [logn.draw(rng) for _ in range(2000)]
    assert min(xs) >= 2 and max(xs) == 80 and 40 <= float(np.median(xs)) <= 60
    choice = Length(dist="choice", values=[1, 100], weights=[0, 1])
    assert {choice.draw(rng) for _ in range(50)} == {100}
    assert Length(value=7).draw(rng) == 7


def test_presets_and_their_flag_conflicts() -> None:
    assert preset("sampling").load.mode == "closed" and preset("sampling").load.count == 200
    open_ = preset("mixed", rate=40.0)
    assert (open_.load.mode, open_.load.rate, open_.load.duration_s, open_.load.warmup_s) == ("open", 40.0, 10.0, 1.0)
    assert [op.kind for op in open_.ops] == ["sample", "train_step"]
    with pytest.raises(WorkloadError, match="--count is for closed loops"):
        preset("sampling", rate=5.0, count=10)
    with pytest.raises(WorkloadError, match="not both"):
        preset("sampling", count=10, duration_s=3.0)
    with pytest.raises(WorkloadError, match="unknown scenario"):
        preset("chaos")


def test_hdr_percentiles_are_within_a_tenth_of_a_percent_and_merge_exactly() -> None:
    rng = np.random.default_rng(5)
    xs = rng.lognormal(-4, 1.0, 20_000)
    whole = LatencyHistogram()
    parts = [LatencyHistogram() for _ in range(4)]
    for i, x in enumerate(xs):
        whole.record(float(x))
        parts[i % 4].record(float(x))
    merged = LatencyHistogram.merged(parts)
    ordered = np.sort(xs)
    for q in (50, 90, 99, 99.9):
        # HDR keeps 3 significant digits; its rank rounding may pick a neighbouring sample
        k = int(np.ceil(q / 100 * len(xs)))
        lo, hi = ordered[k - 2] * (1 - 1e-3) - 1e-6, ordered[k] * (1 + 1e-3) + 1e-6
        assert lo <= whole.percentile(q) <= hi
        assert merged.percentile(q) == whole.percentile(q)
    assert merged.count == whole.count == 20_000 and merged.max == whole.max
    assert merged.mean == pytest.approx(float(xs.mean()), rel=2e-3)
    again = LatencyHistogram.decode(merged.encode())
    assert again.summary() == merged.summary()
    cdf = again.cdf()
    assert cdf[-1][1] == 1.0 and all(a[0] < b[0] for a, b in zip(cdf, cdf[1:]))


def test_hdr_clamps_beyond_an_hour_and_floors_at_a_microsecond() -> None:
    h = LatencyHistogram()
    h.record(7200.0)
    h.record(0.0)
    assert h.clamped == 1 and h.count == 2
    assert h.max == pytest.approx(3600.0, rel=1e-3) and h.min == pytest.approx(1e-6)
    assert LatencyHistogram().summary()["p99"] is None


def test_op_labels_print_as_data_not_markup_or_emoji() -> None:
    import io

    from rich.console import Console

    from tinker_actors.jobs.bench.compare import median_interval
    from tinker_actors.jobs.bench.histograms import LatencyHistogram as H
    from tinker_actors.jobs.bench.report import render_summary
    from tinker_actors.jobs.bench.results import BenchResult, OpFigures

    h = H()
    h.record(0.01)
    fig = OpFigures(op="s:train:[bold]x", count=1, ok=1, errors=0, error_kinds={}, throughput_per_s=1.0,
                    latency=h.summary(), histogram=h.encode())
    result = BenchResult(created_at="t", workload={"name": ":train:"}, mode="closed", trials=[],
                         aggregate={"s:train:[bold]x": {"p99": median_interval([0.01])}}, merged=[fig])
    out = io.StringIO()
    render_summary(result, Console(file=out, width=200, force_terminal=False))
    assert "s:train:[bold]x" in out.getvalue() and "bench :train:" in out.getvalue()
