"""Figures for ``tinker-actors bench``: throughput and latency per operation.

The bench runner records one :class:`OpSample` per operation it issued; this
module turns them into a :class:`BenchReport` (JSON), a PNG (matplotlib with
the Agg backend, imported only when a plot is asked for) and a rich table.

Time queued vs running splits each latency into the part the request spent
waiting (client admission plus the server's queue states) and the part the
server spent working on it, which is what tells a slow server from a
saturated client.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from .stats import percentile

__all__ = ["OpSample", "OpStats", "BenchReport", "build_report", "write_json", "write_png", "render_table"]


class OpSample(msgspec.Struct, frozen=True, kw_only=True):
    op: str  # e.g. "sample", "forward_backward"
    latency_s: float  # submit -> result
    queued_s: float = 0.0
    running_s: float = 0.0
    retries: int = 0
    error: str | None = None  # error class name when the operation failed
    started_at: float | None = None  # clock of the run, for the timeline plot


class OpStats(msgspec.Struct, kw_only=True):
    op: str
    count: int
    errors: int
    retries: int
    throughput_per_s: float | None
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    max_s: float | None
    mean_s: float | None
    queued_total_s: float
    running_total_s: float
    queued_share: float | None  # queued / (queued + running)
    error_kinds: dict[str, int]


class BenchReport(msgspec.Struct, kw_only=True):
    wall_s: float
    total: int
    errors: int
    throughput_per_s: float | None
    ops: list[OpStats]
    meta: dict[str, Any] = msgspec.field(default_factory=dict)


def _op_stats(op: str, samples: list[OpSample], wall_s: float) -> OpStats:
    ok = sorted(s.latency_s for s in samples if s.error is None)
    kinds: dict[str, int] = {}
    for s in samples:
        if s.error is not None:
            kinds[s.error] = kinds.get(s.error, 0) + 1
    queued = math.fsum(s.queued_s for s in samples)
    running = math.fsum(s.running_s for s in samples)

    def pct(q: float) -> float | None:
        return percentile(ok, q) if ok else None

    return OpStats(
        op=op,
        count=len(samples),
        errors=sum(kinds.values()),
        retries=sum(s.retries for s in samples),
        # Throughput counts successes only: errors that return fast would
        # otherwise make a failing endpoint look quick.
        throughput_per_s=len(ok) / wall_s if wall_s > 0 else None,
        p50_s=pct(50),
        p90_s=pct(90),
        p99_s=pct(99),
        max_s=ok[-1] if ok else None,
        mean_s=math.fsum(ok) / len(ok) if ok else None,
        queued_total_s=queued,
        running_total_s=running,
        queued_share=queued / (queued + running) if queued + running > 0 else None,
        error_kinds=dict(sorted(kinds.items())),
    )


def build_report(samples: Iterable[OpSample], *, wall_s: float, meta: dict[str, Any] | None = None) -> BenchReport:
    """Group ``samples`` by operation; ``wall_s`` is the run's wall-clock length."""
    by_op: dict[str, list[OpSample]] = {}
    for s in samples:
        by_op.setdefault(s.op, []).append(s)
    ops = [_op_stats(op, group, wall_s) for op, group in sorted(by_op.items())]
    total = sum(o.count for o in ops)
    errors = sum(o.errors for o in ops)
    return BenchReport(
        wall_s=wall_s,
        total=total,
        errors=errors,
        throughput_per_s=(total - errors) / wall_s if wall_s > 0 else None,
        ops=ops,
        meta=dict(meta or {}),
    )


def write_json(report: BenchReport, path: str | Path) -> None:
    Path(path).write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")


def write_png(report: BenchReport, samples: Iterable[OpSample], path: str | Path) -> None:
    """Two panels: latency CDF per operation, and queued vs running time per operation."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, no GUI thread
    import matplotlib.pyplot as plt

    by_op: dict[str, list[float]] = {}
    for s in samples:
        if s.error is None:
            by_op.setdefault(s.op, []).append(s.latency_s)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    try:
        for op, xs in sorted(by_op.items()):
            xs.sort()
            n = len(xs)
            ax1.step(xs, [(i + 1) / n for i in range(n)], where="post", label=f"{op} (n={n})")
        ax1.set_xlabel("latency (s)")
        ax1.set_ylabel("fraction of requests")
        ax1.set_title("latency CDF")
        if by_op:
            ax1.legend(loc="lower right", fontsize="small")
        ax1.grid(alpha=0.3)

        names = [o.op for o in report.ops]
        queued = [o.queued_total_s for o in report.ops]
        running = [o.running_total_s for o in report.ops]
        ax2.bar(names, queued, label="queued")
        ax2.bar(names, running, bottom=queued, label="running")
        ax2.set_ylabel("total time (s)")
        ax2.set_title("time queued vs running")
        ax2.legend(fontsize="small")
        fig.suptitle(f"{report.total} ops in {report.wall_s:.2f} s, {report.errors} errors")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}"


def render_table(report: BenchReport, console: Console | None = None) -> Table:
    """Print the report as a table (and return it, for tests and embedding)."""
    table = Table(title=f"bench: {report.total} ops in {report.wall_s:.2f} s")
    for col in ("op", "count", "ok/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "queued %", "retries", "errors"):
        table.add_column(col, justify="left" if col == "op" else "right")
    for o in report.ops:
        table.add_row(
            o.op,
            str(o.count),
            "-" if o.throughput_per_s is None else f"{o.throughput_per_s:.1f}",
            _ms(o.p50_s),
            _ms(o.p90_s),
            _ms(o.p99_s),
            _ms(o.max_s),
            "-" if o.queued_share is None else f"{o.queued_share * 100:.0f}",
            str(o.retries),
            str(o.errors),
        )
    if console is not None:
        console.print(table)
    return table
