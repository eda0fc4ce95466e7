"""Repeats and comparisons: medians with confidence intervals, and which differences are real.

Each metric of a run (throughput, a percentile, ...) has one value per trial.

* **Interval of one run**: the median of the trials and a distribution-free
  confidence interval for it from order statistics (the binomial method
  benchstat uses): ``[x(k), x(n-k+1)]`` with the widest ``k`` whose coverage
  is still at least 95 %. With fewer than 6 trials no pair of order
  statistics reaches 95 %, so the interval is [min, max] and its actual
  coverage (``1 - 2 / 2**n``, e.g. 88 % for 4 trials) is reported with it.
* **Is B different from A**: the Mann-Whitney U test (benchstat's test),
  two-sided, computed exactly by permutation: every way of splitting the
  pooled trials into groups of the two sizes when there are at most 50,000
  of them (10 vs 10 trials is 184,756, so above 8 vs 8 a seeded Monte-Carlo
  sample of 20,000 splits is used). Ranks, not values, so one wild trial
  cannot fake a difference, and ties are handled exactly. The verdict is
  "better"/"worse" when p < alpha (0.05), "~" otherwise, and "too few
  trials" when even a complete separation could not reach alpha (fewer than
  4 trials a side for 0.05).
* **How big**: the change of the median (B / A - 1) with a 95 % percentile
  bootstrap interval (10,000 seeded resamples of each side's trials).

Why not scipy: it would be a 100 MB dependency for three small functions
whose exact forms fit in this module, and every figure here is reproducible
(seeded) and checked by the tests against hand-computed values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import msgspec
import numpy as np

from .results import BenchResult, Interval

__all__ = [
    "median_interval", "mann_whitney_p", "bootstrap_change", "CompareRow", "compare_results",
    "METRICS", "LOWER_IS_BETTER", "interval_of",
]

# The metrics every result aggregates, and which way is better.
METRICS = ("throughput", "p50", "p90", "p99", "p99.9", "max", "mean", "error_rate")
LOWER_IS_BETTER = {"p50", "p90", "p99", "p99.9", "max", "mean", "error_rate"}
_EXACT_LIMIT = 50_000
_MC_SPLITS = 20_000
_BOOT = 10_000


def _binom_cdf(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(0, k + 1)) / 2**n


def median_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    xs = sorted(float(v) for v in values if v is not None and not math.isnan(v))
    n = len(xs)
    if n == 0:
        return Interval(values=[], median=None, lo=None, hi=None, confidence=None)
    med = float(np.median(xs))
    if n == 1:
        return Interval(values=xs, median=med, lo=None, hi=None, confidence=None)
    # the widest symmetric pair of order statistics whose coverage >= level
    best_k = 1
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * _binom_cdf(k - 1, n)
        if coverage >= level:
            best_k = k
        else:
            break
    coverage = 1 - 2 * _binom_cdf(best_k - 1, n)
    return Interval(values=[float(v) for v in values], median=med, lo=xs[best_k - 1], hi=xs[n - best_k],
                    confidence=round(coverage, 4))


def interval_of(values: Sequence[float | None]) -> Interval:
    return median_interval([v for v in values if v is not None])


def mann_whitney_p(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> float:
    """Two-sided p-value of the Mann-Whitney U test, exact by permutation of the ranks."""
    a = np.asarray([float(x) for x in a])
    b = np.asarray([float(x) for x in b])
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = np.concatenate([a, b])
    # midranks handle ties exactly
    order = pooled.argsort(kind="stable")
    ranks = np.empty(len(pooled))
    sorted_vals = pooled[order]
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    observed = ranks[:n1].sum()
    mean = n1 * (n1 + n2 + 1) / 2
    dev = abs(observed - mean)
    total = math.comb(n1 + n2, n1)
    if total <= _EXACT_LIMIT:
        idx = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n1 + n2), n1)),
                          dtype=np.int64, count=total * n1).reshape(total, n1)
        sums = ranks[idx].sum(axis=1)
        return float(np.mean(np.abs(sums - mean) >= dev - 1e-9))
    rng = np.random.default_rng(seed)
    picks = rng.random((_MC_SPLITS, n1 + n2)).argsort(axis=1)[:, :n1]
    sums = ranks[picks].sum(axis=1)
    # +1 on both sides: the observed split is one of the possible ones
    return float((np.sum(np.abs(sums - mean) >= dev - 1e-9) + 1) / (_MC_SPLITS + 1))


def min_p(n1: int, n2: int) -> float:
    """The smallest two-sided p-value the test can give with these group sizes."""
    return 2 / math.comb(n1 + n2, n1) if n1 and n2 else 1.0


def bootstrap_change(a: Sequence[float], b: Sequence[float], *, level: float = 0.95, seed: int = 0) -> tuple[float | None, float | None, float | None]:
    """(B/A - 1 of the medians, interval low, interval high); None where undefined."""
    a = np.asarray([float(x) for x in a])
    b = np.asarray([float(x) for x in b])
    if not len(a) or not len(b):
        return None, None, None
    ma, mb = float(np.median(a)), float(np.median(b))
    if ma == 0:
        return None, None, None
    change = mb / ma - 1
    if len(a) < 2 or len(b) < 2:
        return change, None, None
    rng = np.random.default_rng(seed)
    ra = np.median(rng.choice(a, size=(_BOOT, len(a)), replace=True), axis=1)
    rb = np.median(rng.choice(b, size=(_BOOT, len(b)), replace=True), axis=1)
    ok = ra != 0
    ratios = rb[ok] / ra[ok] - 1
    tail = (1 - level) / 2 * 100
    return change, float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))


class CompareRow(msgspec.Struct, kw_only=True):
    op: str
    metric: str
    a: Interval
    b: Interval
    change: float | None  # B / A - 1 of the medians
    change_lo: float | None
    change_hi: float | None
    p: float | None
    verdict: str  # better | worse | ~ | too few trials | n/a


def compare_results(a: BenchResult, b: BenchResult, *, alpha: float = 0.05,
                    metrics: Sequence[str] | None = None) -> list[CompareRow]:
    """One row per (operation, metric) present in both results."""
    rows: list[CompareRow] = []
    for op, by_metric in a.aggregate.items():
        other = b.aggregate.get(op)
        if other is None:
            continue
        for metric in metrics or list(by_metric):
            if metric not in by_metric or metric not in other:
                continue
            ia, ib = by_metric[metric], other[metric]
            xa, xb = ia.values, ib.values
            if not xa or not xb:
                rows.append(CompareRow(op=op, metric=metric, a=ia, b=ib, change=None, change_lo=None,
                                       change_hi=None, p=None, verdict="n/a"))
                continue
            change, lo, hi = bootstrap_change(xa, xb)
            if min_p(len(xa), len(xb)) > alpha:
                p, verdict = None, "too few trials"
            else:
                p = mann_whitney_p(xa, xb)
                if p >= alpha:
                    verdict = "~"
                else:
                    up = float(np.median(xb)) > float(np.median(xa))
                    worse = up if metric in LOWER_IS_BETTER else not up
                    verdict = "worse" if worse else "better"
            rows.append(CompareRow(op=op, metric=metric, a=ia, b=ib, change=change, change_lo=lo,
                                   change_hi=hi, p=p, verdict=verdict))
    return rows
