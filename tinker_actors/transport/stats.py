"""Per-pool counters and latency percentiles, readable at any time.

Latencies live in a bounded ring of the most recent samples, so memory stays
flat on a days-long run and the percentiles describe recent behaviour.
"""

from __future__ import annotations

import collections

import msgspec

__all__ = ["LatencyWindow", "LatencySummary", "PoolStatistics"]


class LatencySummary(msgspec.Struct, frozen=True):
    """Seconds. All zero until the first sample."""

    count: int = 0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    max: float = 0.0


class LatencyWindow:
    """The last ``size`` latency samples."""

    __slots__ = ("_samples",)

    def __init__(self, size: int = 2048) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

    def summary(self) -> LatencySummary:
        if not self._samples:
            return LatencySummary()
        ordered = sorted(self._samples)
        last = len(ordered) - 1

        def pct(q: float) -> float:
            # nearest-rank percentile: a value that was actually observed
            return ordered[min(last, int(q * len(ordered)))]

        return LatencySummary(
            count=len(ordered), p50=pct(0.50), p90=pct(0.90), p99=pct(0.99), max=ordered[-1]
        )


class PoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one pool.

    ``in_flight`` requests hold a connection slot; ``queued`` wait for one.
    ``attempts`` counts HTTP exchanges, ``completed`` logical calls that
    returned, ``errors`` logical calls that raised, ``retries`` retry sleeps.
    ``latency`` covers attempts that got an answer, queueing excluded.
    ``peak_in_flight_per_shard`` is the most requests any one httpx client has
    ever held at once; it never exceeds ``shard_connections``.
    """

    resource: str
    connections: int
    shard_connections: tuple[int, ...]
    in_flight: int
    queued: int
    peak_in_flight: int
    peak_in_flight_per_shard: tuple[int, ...]
    attempts: int
    completed: int
    errors: int
    retries: int
    latency: LatencySummary
