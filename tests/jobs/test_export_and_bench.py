"""Export of journal results to JSONL, summaries, and bench report figures."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from tinker_actors.jobs.bench_report import OpSample, build_report, render_table, write_json, write_png
from tinker_actors.jobs.export import export_jsonl, read_jsonl
from tinker_actors.jobs.journal import Journal
from tinker_actors.jobs.records import SampleResult, SequenceResult, result_from_response
from tinker_actors.jobs.stats import percentile
from tinker_actors.jobs.sweep_spec import (
    ModelRef,
    Prompt,
    SamplingSetting,
    SweepRequest,
    idempotency_key,
    request_content,
    request_key,
)


def _journal(tmp_path: Path) -> tuple[Journal, list[SweepRequest], list[SamplingSetting]]:
    settings_ = [SamplingSetting(index=0, temperature=0.0, max_tokens=4), SamplingSetting(index=1, temperature=1.0, seed=3, num_samples=2)]
    reqs = []
    for p in (Prompt(id="a", line=1, text="hi"), Prompt(id="b", line=2, tokens=(5, 6))):
        for s in settings_:
            content = request_content(ModelRef(base_model="m"), p, s, {})
            key = request_key("exp", p.id, content)
            reqs.append(SweepRequest(key=key, idempotency_key=idempotency_key(key), prompt=p, setting=s, content=content))
    j = Journal.open(tmp_path / "j.sqlite", spec_id="exp", spec_hash="h")
    j.plan(reqs)
    return j, reqs, settings_


def test_export_round_trip_with_decode_and_summary(tmp_path: Path) -> None:
    j, reqs, settings_ = _journal(tmp_path)
    results = {
        reqs[0].key: SampleResult(sequences=[SequenceResult(tokens=[104, 105], stop_reason="stop", logprobs=[-0.5, -1.25])], prompt_logprobs=[None, -2.0], request_id="r0"),
        reqs[1].key: SampleResult(sequences=[SequenceResult(tokens=[65], stop_reason="length"), SequenceResult(tokens=[66, 67, 68], stop_reason="stop")]),
        reqs[3].key: SampleResult(sequences=[SequenceResult(tokens=[], stop_reason="stop")]),
    }
    for i, (key, res) in enumerate(results.items()):
        j.mark_sent(key, now=100.0 + i)
        j.record_result(key, res, latency_s=[0.5, 1.0, 2.0][i], now=101.0 + 3 * i)
    j.mark_sent(reqs[2].key, now=100.0)
    j.record_failure(reqs[2].key, "HTTP 400: prompt too long", retryable=False)

    out = tmp_path / "out" / "results.jsonl"
    summary = export_jsonl(j.results(), out, settings=[s.as_dict() for s in settings_], decode=lambda toks: bytes(toks).decode())
    lines = list(read_jsonl(out))
    assert [(l.prompt_id, l.setting["index"], l.state) for l in lines] == [("a", 0, "done"), ("a", 1, "done"), ("b", 0, "failed"), ("b", 1, "done")]
    first = lines[0]
    assert first.key == reqs[0].key and first.request_id == "r0" and first.latency_s == 0.5
    assert first.sequences[0].text == "hi" and first.sequences[0].logprobs == [-0.5, -1.25]
    assert first.prompt_logprobs == [None, -2.0] and first.stop_reasons == ["stop"]
    assert first.setting == {"index": 0, "num_samples": 1, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "max_tokens": 4}
    assert [s.text for s in lines[1].sequences] == ["A", "BCD"]
    assert lines[2].sequences is None and "prompt too long" in lines[2].error
    # every line is plain JSON a user can read without our types
    raw = [json.loads(x) for x in out.read_text().splitlines()]
    assert raw[1]["sequences"][1]["tokens"] == [66, 67, 68]

    assert summary["counts"] == {"done": 3, "failed": 1}
    assert summary["generated_tokens"] == 6
    assert summary["wall_s"] == pytest.approx(107.0 - 100.0)
    assert summary["tokens_per_s"] == pytest.approx(6 / 7.0)
    assert summary["latency_s"]["p50"] == pytest.approx(1.0) and summary["latency_s"]["max"] == 2.0
    assert not list(out.parent.glob(".*tmp*"))  # the temporary file was renamed away
    j.close()


def test_result_from_a_response_shaped_object() -> None:
    class Seq:
        def __init__(self, tokens, logprobs, stop_reason):
            self.tokens, self.logprobs, self.stop_reason = tokens, logprobs, stop_reason

    class Resp:
        sequences = [Seq(np.array([1, 2], dtype=np.int32), np.array([-0.5, -0.25], dtype=np.float32), "length")]
        prompt_logprobs = [float("nan"), -1.5]

    r = result_from_response(Resp(), request_id="rq")
    assert r == SampleResult(sequences=[SequenceResult(tokens=[1, 2], stop_reason="length", logprobs=[-0.5, -0.25])], prompt_logprobs=[None, -1.5], request_id="rq")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=60),
    st.one_of(st.sampled_from([0.0, 50.0, 90.0, 99.0, 100.0]), st.floats(min_value=0, max_value=100)),
)
def test_percentile_matches_numpy(xs: list[float], q: float) -> None:
    ours = percentile(sorted(xs), q)
    assert ours == pytest.approx(float(np.percentile(xs, q)), rel=1e-12, abs=1e-12)


def test_bench_report_figures(tmp_path: Path) -> None:
    rng = random.Random(7)
    samples = []
    for _ in range(500):
        lat = rng.lognormvariate(-3, 0.6)
        samples.append(OpSample(op="sample", latency_s=lat, queued_s=lat * 0.25, running_s=lat * 0.75, retries=rng.random() < 0.1))
    for _ in range(40):
        samples.append(OpSample(op="forward_backward", latency_s=rng.uniform(1, 3), queued_s=1.0, running_s=1.0))
    samples += [OpSample(op="sample", latency_s=0.001, error="RateLimitError")] * 7

    report = build_report(samples, wall_s=20.0, meta={"server": "local"})
    by_op = {o.op: o for o in report.ops}
    ok = [s.latency_s for s in samples if s.op == "sample" and s.error is None]
    s_ = by_op["sample"]
    for q, got in ((50, s_.p50_s), (90, s_.p90_s), (99, s_.p99_s), (100, s_.max_s)):
        assert got == pytest.approx(np.percentile(ok, q), rel=1e-12)
    assert s_.count == 507 and s_.errors == 7 and s_.error_kinds == {"RateLimitError": 7}
    assert s_.throughput_per_s == pytest.approx(500 / 20.0)  # errors do not count as throughput
    assert s_.retries == sum(1 for s in samples if s.op == "sample" and s.retries)
    assert s_.queued_share == pytest.approx(0.25)
    assert by_op["forward_backward"].queued_share == pytest.approx(0.5)
    assert report.total == 547 and report.errors == 7

    write_json(report, tmp_path / "bench.json")
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["ops"][1]["op"] == "sample" and data["meta"] == {"server": "local"}

    write_png(report, samples, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    console = Console(record=True, width=140, force_terminal=False)
    render_table(report, console)
    text = console.export_text()
    assert "forward_backward" in text and f"{s_.p99_s * 1000:.1f}" in text
