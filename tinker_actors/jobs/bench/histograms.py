"""Latency histograms: HDR histograms (``hdrhistogram`` from PyPI) in microseconds.

An HDR histogram keeps every value to 3 significant figures (0.1 %) from 1 µs
to one hour in a fixed, small array, so p99.9 of ten million requests costs
the same as p99.9 of ten, and two histograms merge exactly by adding counts:
per worker, per trial, per run. Their compressed form (``encode``, the format
every HdrHistogram implementation reads) goes into ``bench.json`` so a later
``bench compare`` or a merge across runs starts from the counts, not from
rounded percentiles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

__all__ = ["LatencyHistogram", "PERCENTILES", "percentile_key"]

LOWEST_US = 1
HIGHEST_US = 3600 * 1_000_000  # one hour: anything slower is clamped (and counted in ``clamped``)
DIGITS = 3

# The percentiles every report prints, in this order.
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def percentile_key(q: float) -> str:
    """``50.0 -> "p50"``, ``99.9 -> "p99.9"``: the names used in bench.json and by ``bench history``."""
    return f"p{q:g}"


class LatencyHistogram:
    """Seconds in, seconds out; microsecond resolution inside."""

    __slots__ = ("_h", "clamped")

    def __init__(self, digits: int = DIGITS) -> None:
        self._h = HdrHistogram(LOWEST_US, HIGHEST_US, digits)
        self.clamped = 0

    def record(self, seconds: float, count: int = 1) -> None:
        us = int(round(seconds * 1e6))
        if us < LOWEST_US:
            us = LOWEST_US
        elif us > HIGHEST_US:
            us = HIGHEST_US
            self.clamped += count
        self._h.record_value(us, count)

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other``'s counts to this histogram (exact); returns self."""
        self._h.add(other._h)
        self.clamped += other.clamped
        return self

    @classmethod
    def merged(cls, parts: Iterable[LatencyHistogram]) -> LatencyHistogram:
        out = cls()
        for p in parts:
            out.merge(p)
        return out

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def percentile(self, q: float) -> float | None:
        """The value at percentile ``q`` (0..100) in seconds; None when empty."""
        if self.count == 0:
            return None
        return self._h.get_value_at_percentile(q) / 1e6

    @property
    def max(self) -> float | None:
        return None if self.count == 0 else self._h.get_max_value() / 1e6

    @property
    def min(self) -> float | None:
        return None if self.count == 0 else self._h.get_min_value() / 1e6

    @property
    def mean(self) -> float | None:
        """The mean, each value taken at the middle of its bucket (as HdrHistogram does)."""
        if self.count == 0:
            return None
        # hdrh's own get_mean_value walks every bucket in Python (0.1-0.5 s);
        # the same sum over the non-zero counts with numpy is instant.
        h = self._h
        counts = np.ctypeslib.as_array(h.counts)
        idx = np.nonzero(counts)[0]
        bucket = (idx >> h.sub_bucket_half_count_magnitude) - 1
        sub = (idx & (h.sub_bucket_half_count - 1)) + h.sub_bucket_half_count
        low = bucket < 0
        sub = np.where(low, sub - h.sub_bucket_half_count, sub)
        bucket = np.where(low, 0, bucket)
        lowest = sub.astype(np.int64) << (bucket + h.unit_magnitude)
        # the bucket's width: 1 << (unit_magnitude + bucket index of the value)
        width = np.int64(1) << (bucket + h.unit_magnitude)
        mids = lowest + width // 2
        return float((counts[idx] * mids).sum() / counts[idx].sum()) / 1e6

    def summary(self) -> dict[str, Any]:
        """count, mean, p50/p90/p99/p99.9 and max, in seconds."""
        out: dict[str, Any] = {"count": self.count, "mean": self.mean}
        for q in PERCENTILES:
            out[percentile_key(q)] = self.percentile(q)
        out["max"] = self.max
        return out

    def cdf(self) -> list[tuple[float, float]]:
        """(latency seconds, fraction at or below) at each recorded value, for plots."""
        total = self.count
        if total == 0:
            return []
        points: list[tuple[float, float]] = []
        seen = 0
        for item in self._h.get_recorded_iterator():
            seen += item.count_at_value_iterated_to
            points.append((item.value_iterated_to / 1e6, seen / total))
        return points

    def encode(self) -> str:
        """The standard compressed, base64 form (readable by any HdrHistogram library)."""
        return self._h.encode().decode("ascii")

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        out = cls()
        if text:
            out._h = HdrHistogram.decode(text.encode("ascii"))
        return out
