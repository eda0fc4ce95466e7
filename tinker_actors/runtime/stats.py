"""Latency statistics: a bounded reservoir with percentiles, and frozen records.

Every actor that does work counts it here. Numbers are read at any moment
through ``statistics()`` methods that return frozen ``msgspec.Struct`` records
(the trio convention), so a reader never sees a half-updated object.

The reservoir keeps the latest ``capacity`` samples in a ring (recent
behaviour matters more than the start of a day-long run), plus an exact count,
sum and maximum over the whole lifetime.
"""

from __future__ import annotations

import math

import msgspec

__all__ = ["LatencyStats", "LatencyRecorder", "PoolStatistics"]


class LatencyStats(msgspec.Struct, frozen=True, kw_only=True):
    """Latency summary in seconds. Percentiles cover the recent reservoir."""

    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    max: float = 0.0


class PoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One pool actor at a moment: what waits, what runs, what finished."""

    resource: str
    concurrency: int
    in_flight: int
    queued: int
    completed: int
    errors: int
    retries: int
    latency: LatencyStats


def _percentile(sorted_values: list[float], q: float) -> float:
    # nearest-rank: the smallest value with at least q of the samples at or below it
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class LatencyRecorder:
    """Records durations; O(1) per sample, sorting only when read."""

    __slots__ = ("_ring", "_capacity", "_next", "count", "total", "max")

    def __init__(self, capacity: int = 4096) -> None:
        self._ring: list[float] = []
        self._capacity = capacity
        self._next = 0
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        if len(self._ring) < self._capacity:
            self._ring.append(seconds)
        else:
            self._ring[self._next] = seconds
            self._next = (self._next + 1) % self._capacity
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def snapshot(self) -> LatencyStats:
        values = sorted(self._ring)
        return LatencyStats(
            count=self.count,
            mean=self.total / self.count if self.count else 0.0,
            p50=_percentile(values, 0.50),
            p90=_percentile(values, 0.90),
            p99=_percentile(values, 0.99),
            max=self.max,
        )
