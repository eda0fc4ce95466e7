"""Child-side measurement helpers: CPU, memory, latency percentiles, stats reads.

Only the standard library is imported here, so a client child can load this
module before the start-up scenario times the import of its client library.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm", "rb") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads included."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Phase:
    """Wall time and CPU of one measured phase: ``start()`` then ``stop()``."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_start: int = 0
    _t0: float = 0.0
    _c0: float = 0.0

    def start(self) -> "Phase":
        self.rss_start = rss_bytes()
        self._c0 = cpu_seconds()
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> "Phase":
        self.wall_s = time.perf_counter() - self._t0
        self.cpu_s = cpu_seconds() - self._c0
        return self

    def figures(self, n: int) -> dict[str, float]:
        return {
            "n": n,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "requests_per_s": n / self.wall_s if self.wall_s > 0 else 0.0,
            "cpu_us_per_request": 1e6 * self.cpu_s / n if n else 0.0,
            "peak_rss_mb": peak_rss_bytes() / 2**20,
            "rss_start_mb": self.rss_start / 2**20,
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Latencies:
    """Collects durations in seconds; reports milliseconds."""

    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    def summary_ms(self) -> dict[str, float]:
        v = self.values
        return {
            "count": len(v),
            "mean_ms": 1e3 * sum(v) / len(v) if v else math.nan,
            "p50_ms": 1e3 * percentile(v, 50),
            "p99_ms": 1e3 * percentile(v, 99),
            "max_ms": 1e3 * max(v) if v else math.nan,
        }


def local_stats(base_url: str) -> dict[str, Any]:
    """GET /_local/stats of the local server (blocking; call outside timed phases)."""
    req = urllib.request.Request(base_url.rstrip("/") + "/_local/stats",
                                 headers={"x-api-key": os.environ.get("TINKER_API_KEY", "tml-bench")})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def route_count(stats: dict[str, Any], route: str) -> int:
    """Requests the server has seen on ``route`` (tolerates a few key spellings)."""
    requests = stats.get("requests", {})
    for key in (route, f"/api/v1/{route}", f"POST /api/v1/{route}", f"POST {route}"):
        if key in requests:
            return int(requests[key])
    return 0
