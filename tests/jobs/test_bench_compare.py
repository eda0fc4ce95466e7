"""Repeats and comparisons: intervals, the exact Mann-Whitney test, and `bench compare` verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tinker_actors.jobs.bench.compare import (
    bootstrap_change, compare_results, mann_whitney_p, median_interval, min_p,
)
from tinker_actors.jobs.bench.results import BenchResult, Interval, write_result


def synthetic(path: Path, throughput: list[float], p99: list[float]) -> Path:
    """A bench.json with the given per-trial figures (only what compare reads)."""
    agg = {"sample": {"throughput": median_interval(throughput), "p99": median_interval(p99)}}
    write_result(BenchResult(created_at="2026-01-01T00:00:00+00:00", workload={"name": "s"}, mode="open",
                             trials=[], aggregate=agg, merged=[]), path)
    return path


def test_median_interval_is_the_order_statistic_interval() -> None:
    iv = median_interval([float(x) for x in range(10)])
    # n = 10: [x(2), x(9)] covers the median with 1 - 2 P(B(10, .5) <= 1) = 97.85 %
    assert (iv.median, iv.lo, iv.hi, iv.confidence) == (4.5, 1.0, 8.0, 0.9785)
    few = median_interval([3.0, 1.0, 2.0, 4.0])
    # too few for 95 %: min..max, with its true coverage 1 - 2/16
    assert (few.lo, few.hi, few.confidence) == (1.0, 4.0, 0.875)
    assert median_interval([2.0]).lo is None and median_interval([]).median is None


def test_mann_whitney_exact_values() -> None:
    # complete separation of 5 vs 5: 2 of the C(10, 5) = 252 splits are as extreme
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert mann_whitney_p([1, 2, 3], [1, 2, 3]) == 1.0  # ties, no difference
    assert min_p(3, 3) == pytest.approx(0.1) and min_p(4, 4) == pytest.approx(2 / 70)
    # 12 vs 12 (2.7 million splits) is sampled: still tiny for a clean separation
    assert mann_whitney_p(list(range(12)), list(range(100, 112))) < 0.001


def test_compare_finds_a_real_ten_percent_shift_and_not_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    base_thr = list(100 * (1 + 0.02 * rng.standard_normal(10)))
    base_p99 = list(0.050 * (1 + 0.03 * rng.standard_normal(10)))
    a = synthetic(tmp_path / "a.json", base_thr, base_p99)
    # B: the same server 10 % slower in throughput and 10 % higher p99, same noise
    b = synthetic(tmp_path / "b.json", list(90 * (1 + 0.02 * rng.standard_normal(10))),
                  list(0.055 * (1 + 0.03 * rng.standard_normal(10))))
    # C: noise only, drawn from A's distribution
    c = synthetic(tmp_path / "c.json", list(100 * (1 + 0.02 * rng.standard_normal(10))),
                  list(0.050 * (1 + 0.03 * rng.standard_normal(10))))
    from tinker_actors.jobs.bench.results import read_result

    shifted = {(r.op, r.metric): r for r in compare_results(read_result(a), read_result(b))}
    assert shifted["sample", "throughput"].verdict == "worse"
    assert shifted["sample", "p99"].verdict == "worse"
    thr = shifted["sample", "throughput"]
    assert thr.change == pytest.approx(-0.10, abs=0.03) and thr.change_hi is not None and thr.change_hi < 0
    assert thr.p is not None and thr.p < 0.001
    noise = {(r.op, r.metric): r for r in compare_results(read_result(a), read_result(c))}
    for key in (("sample", "throughput"), ("sample", "p99")):
        row = noise[key]
        assert row.verdict == "~" and row.p is not None and row.p > 0.05
        assert row.change_lo is not None and row.change_lo < 0 < row.change_hi
    # and the other way round, B -> A is better
    back = {(r.op, r.metric): r for r in compare_results(read_result(b), read_result(a))}
    assert back["sample", "throughput"].verdict == "better" and back["sample", "p99"].verdict == "better"


def test_three_trials_a_side_are_too_few_to_call_anything(tmp_path: Path) -> None:
    a = synthetic(tmp_path / "a.json", [100, 101, 99], [0.05, 0.05, 0.05])
    b = synthetic(tmp_path / "b.json", [50, 51, 49], [0.5, 0.5, 0.5])
    from tinker_actors.jobs.bench.results import read_result

    rows = compare_results(read_result(a), read_result(b))
    assert {r.verdict for r in rows} == {"too few trials"}
    assert rows[0].change == pytest.approx(-0.5)


def test_bootstrap_change_interval_brackets_the_change() -> None:
    change, lo, hi = bootstrap_change([10, 11, 9, 10, 10], [12, 13, 11, 12, 12])
    assert change == pytest.approx(0.2) and lo is not None and hi is not None and lo <= 0.2 <= hi
    assert bootstrap_change([], [1.0]) == (None, None, None)
    assert not math.isnan(bootstrap_change([1.0], [2.0])[0] or math.nan)


def test_interval_struct_round_trips() -> None:
    iv = median_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert isinstance(iv, Interval) and iv.confidence is not None and iv.confidence >= 0.95
