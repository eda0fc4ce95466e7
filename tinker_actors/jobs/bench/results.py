"""The shape of ``bench.json``: one run, its trials, their phases and per-operation figures.

Times are seconds; latencies are from the intended send time (open loop) or
the actual send (closed loop). Every per-operation figure carries its HDR
histogram (``histogram``, the standard compressed base64 form), so runs can
be merged or re-read exactly. ``aggregate`` holds, for each operation and
metric, the value of every trial with their median and a confidence interval
(see :mod:`.compare`); it is what ``bench compare`` and ``bench history`` read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

__all__ = [
    "OpFigures", "LagFigures", "PhaseResult", "Knee", "Timeline", "ServerSample", "TrialResult",
    "Interval", "BenchResult", "write_result", "read_result", "SCHEMA",
]

SCHEMA = "tinker-actors-bench/1"


class OpFigures(msgspec.Struct, kw_only=True):
    op: str  # an operation's label, or "all"
    count: int  # finished (ok + failed)
    ok: int
    errors: int
    error_kinds: dict[str, int]
    throughput_per_s: float | None  # successes per second of the phase
    latency: dict[str, float | int | None]  # count, mean, p50, p90, p99, p99.9, max (seconds; successes only)
    histogram: str  # HDR, compressed base64
    queued_s: float = 0.0  # time spent before the server ran it (client side and server-reported queues)
    running_s: float = 0.0
    queued_share: float | None = None


class LagFigures(msgspec.Struct, kw_only=True):
    """How late the open loop's sends were against their schedule."""

    p50: float | None
    p99: float | None
    max: float | None
    cap_hits: int  # arrivals sent late because max_in_flight requests were already out
    behind: bool  # the client could not keep up: figures include the client's own delay


class PhaseResult(msgspec.Struct, kw_only=True):
    name: str
    measured: bool
    start_s: float
    duration_s: float
    target_rate: float | None
    sent: int
    achieved_rate: float | None  # sends per second (open loop: compare with target_rate)
    completed_rate: float | None  # successes per second that completed within the phase
    lag: LagFigures | None
    ops: list[OpFigures]
    all: OpFigures


class Knee(msgspec.Struct, kw_only=True):
    """The highest ramp step still within capacity (None when even the first step was not)."""

    rate: float | None
    step: str | None
    reason: str  # why the next step was past the knee (or that no step was)
    baseline_p99: float | None


class Timeline(msgspec.Struct, kw_only=True):
    """Per-bucket figures by completion time (columns of equal length)."""

    bucket_s: float
    t: list[float]  # bucket starts, seconds from the run's start
    sent: list[int]
    ok: list[int]
    errors: list[int]
    p50: list[float | None]
    p99: list[float | None]
    # in-flight requests by where they were (sampled; mean over the bucket)
    client: list[float]  # not yet acknowledged by the server (admission, ordering, the submit POST)
    queued: list[float]  # the server reported them queued or paused
    running: list[float]


class ServerSample(msgspec.Struct, kw_only=True):
    """One read of the server's counters (``GET /_local/stats``) and the client's retry count."""

    t: float
    statuses: dict[str, int] = msgspec.field(default_factory=dict)  # cumulative HTTP statuses, e.g. "429"
    open_long_polls: int | None = None
    work_done: dict[str, int] = msgspec.field(default_factory=dict)
    requests: int | None = None  # all requests the server has seen
    client_retries: int | None = None


class TrialResult(msgspec.Struct, kw_only=True):
    index: int
    wall_s: float
    phases: list[PhaseResult]
    measured: list[OpFigures]  # over every measured phase, per op, then "all" last
    timeline: Timeline
    server: list[ServerSample]
    knee: Knee | None = None
    warnings: list[str] = msgspec.field(default_factory=list)


class Interval(msgspec.Struct, kw_only=True):
    """A metric over the trials: each trial's value, their median and a confidence interval."""

    values: list[float]
    median: float | None
    lo: float | None
    hi: float | None
    confidence: float | None  # the interval's actual coverage (order statistics), e.g. 0.95


class BenchResult(msgspec.Struct, kw_only=True):
    schema: str = SCHEMA
    created_at: str
    workload: dict[str, Any]
    mode: str  # open | closed
    trials: list[TrialResult]
    # aggregate[op][metric]; metrics: throughput, p50, p90, p99, p99.9, max, mean, error_rate (+ knee_rate)
    aggregate: dict[str, dict[str, Interval]]
    merged: list[OpFigures]  # every trial's measured histograms merged, per op, "all" last
    environment: dict[str, Any] = msgspec.field(default_factory=dict)
    server_url: str | None = None


def write_result(result: BenchResult, path: str | Path) -> None:
    Path(path).write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=1) + b"\n")


def read_result(path: str | Path) -> BenchResult:
    """Read a ``bench.json``; a clear ValueError when it is not one."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        return msgspec.json.decode(raw, type=BenchResult)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{p}: not a bench result ({SCHEMA}): {exc}") from None
