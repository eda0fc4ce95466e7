"""Percentiles without numpy, shared by sweep summaries and bench reports.

Linear interpolation between closest ranks, the definition numpy's
``percentile`` uses by default, so figures match what users compute
themselves from the exported samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["percentile", "summarize_latencies"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values; NaN if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    n = len(sorted_values)
    if n == 0:
        return math.nan
    pos = (q / 100.0) * (n - 1)  # same operation order as numpy, same rounding
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    a, b = sorted_values[lo], sorted_values[hi]
    # numpy's lerp form: exact at both ends, monotone in between
    return a + (b - a) * frac if frac < 0.5 else b - (b - a) * (1 - frac)


def summarize_latencies(values: Iterable[float]) -> dict[str, float | int | None]:
    """count, mean, p50, p90, p99 and max of a set of latencies (seconds)."""
    xs = sorted(values)
    if not xs:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    return {
        "count": len(xs),
        "mean": math.fsum(xs) / len(xs),
        "p50": percentile(xs, 50),
        "p90": percentile(xs, 90),
        "p99": percentile(xs, 99),
        "max": xs[-1],
    }
