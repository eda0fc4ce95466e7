"""Export of journal results to JSONL and summaries (bench figures: tests/jobs/test_bench_*.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
