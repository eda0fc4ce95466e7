"""One bench run: ``repeat`` trials of a workload on a target, and the figures across them.

:func:`run_trial` drives one trial (the scheduler, the state sampler and the
counter monitor in one nursery) and turns the recorder into a
:class:`~.results.TrialResult`; :func:`run_workload` runs the trials back to
back on one target and aggregates them (median and interval per metric,
histograms merged across trials); :func:`run_bench` does that on a
tinker_actors ``ServiceClient``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import trio

from .compare import METRICS, interval_of
from .histograms import LatencyHistogram
from .monitor import Monitor
from .recorder import Recorder
from .results import BenchResult, Interval, Knee, OpFigures, PhaseResult, ServerSample, TrialResult
from .scheduler import run_closed_loop, run_open_loop
from .target import ClientTarget, Target
from .workload import Phase, Workload, phases

__all__ = ["run_trial", "run_workload", "run_bench", "find_knee", "planned_ops"]

DRAIN_S = 30.0


def _chooser(workload: Workload, rng: np.random.Generator) -> Any:
    """A function giving the next operation index, drawn by weight (in blocks, cheaply)."""
    p = workload.weights()
    if len(p) == 1:
        return lambda: 0

    def blocks() -> Iterator[int]:
        while True:
            yield from rng.choice(len(p), size=4096, p=p).tolist()

    it = blocks()
    return lambda: next(it)


def planned_ops(workload: Workload) -> int | None:
    """Measured requests one trial will send, when that is known in advance."""
    ld = workload.load
    if ld.mode == "closed":
        return ld.count
    return int(sum(round((ph.rate or 0) * (ph.duration or 0)) for ph in phases(ld) if ph.measured))


def find_knee(result_phases: list[PhaseResult], factor: float) -> Knee:
    """The last ramp step within capacity: >= 95 % of its arrivals completed in it,
    p99 at most ``factor`` x the first step's, under 1 % errors."""
    steps = [p for p in result_phases if p.measured and p.target_rate]
    baseline = steps[0].all.latency.get("p99") if steps else None
    knee: PhaseResult | None = None
    reason = "every step was within capacity (raise load.ramp.stop to find the knee)"
    for s in steps:
        p99 = s.all.latency.get("p99")
        rate = s.completed_rate or 0.0
        err = s.all.errors / s.all.count if s.all.count else 0.0
        problems = []
        if rate < 0.95 * (s.target_rate or 0):
            problems.append(f"completed {rate:.1f}/s of {s.target_rate:.1f}/s offered")
        if p99 is None or baseline is None or p99 > factor * baseline:
            p99_text = "none" if p99 is None else f"{p99 * 1e3:.1f} ms"
            base_text = "none" if baseline is None else f"{baseline * 1e3:.1f} ms"
            problems.append(f"p99 {p99_text} > {factor:g} x the first step's {base_text}")
        if err > 0.01:
            problems.append(f"{err:.1%} errors")
        if problems:
            reason = f"{s.name} ({s.target_rate:.1f}/s): " + "; ".join(problems)
            if s.lag is not None and s.lag.behind:
                reason += " - and the client itself fell behind its schedule, so this knee may be the client's"
            break
        knee = s
    return Knee(rate=knee.target_rate if knee else None, step=knee.name if knee else None,
                reason=reason, baseline_p99=baseline)


def _warnings(rec: Recorder, result_phases: list[PhaseResult]) -> list[str]:
    out = []
    for ph in result_phases:
        if not ph.measured or ph.lag is None or not ph.lag.behind:
            continue
        parts = []
        if ph.lag.p99 is not None:
            parts.append(f"send lag p99 {ph.lag.p99 * 1e3:.1f} ms")
        if ph.lag.cap_hits:
            parts.append(f"{ph.lag.cap_hits} arrivals waited for a free slot (max_in_flight)")
        out.append(f"{ph.name}: the client could not keep up with {ph.target_rate:g}/s ({', '.join(parts)}); "
                   "latencies include the client's own delay")
    kinds = {k for ph in result_phases for k in ph.all.error_kinds}
    for kind in sorted(kinds):
        out.append(f"errors: {kind}: {rec.first_errors.get(kind, '')}")
    clamped = sum(h.clamped for row in rec.hist for h in row)
    if clamped:
        out.append(f"{clamped} latencies above one hour were recorded as one hour")
    return out


async def run_trial(
    target: Target,
    workload: Workload,
    *,
    index: int = 0,
    progress: Any = None,
    stats_url: str | None = None,
    api_key: str | None = None,
    service: Any = None,
    drain_s: float = DRAIN_S,
) -> TrialResult:
    """One trial of ``workload`` on an already set-up ``target``."""
    ld = workload.load
    plan: list[Phase] = phases(ld)
    labels = [op.label for op in workload.ops]
    rng = np.random.default_rng(workload.seed)
    choose = _chooser(workload, np.random.default_rng(workload.seed + 7))
    server: list[ServerSample] = []
    async with Monitor(stats_url=stats_url, api_key=api_key, service=service, progress=progress) as monitor:
        t0 = trio.current_time()
        rec = Recorder(labels, plan, t0, progress)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rec.sample_states)
            nursery.start_soon(monitor.run, server, t0)
            if ld.mode == "open":
                await run_open_loop(target.issue, rec, plan, arrivals=ld.arrivals, choose=choose, rng=rng,
                                    max_in_flight=ld.max_in_flight, drain_s=drain_s,
                                    stop_past_knee=ld.ramp is not None and ld.ramp.stop_past_knee)
            else:
                await run_closed_loop(target.issue, rec, plan, concurrency=ld.concurrency, count=ld.count,
                                      choose=choose)
            nursery.cancel_scope.cancel()
    wall = trio.current_time() - t0
    result_phases = rec.phase_results()
    knee = find_knee(result_phases, ld.ramp.knee_p99_factor) if ld.mode == "open" and ld.ramp else None
    return TrialResult(
        index=index,
        wall_s=wall,
        phases=result_phases,
        measured=rec.measured_figures(result_phases),
        timeline=rec.timeline(wall),
        server=server,
        knee=knee,
        warnings=_warnings(rec, result_phases),
    )


def _metric(fig: OpFigures, metric: str) -> float | None:
    if metric == "throughput":
        return fig.throughput_per_s
    if metric == "error_rate":
        return fig.errors / fig.count if fig.count else None
    v = fig.latency.get(metric)
    return float(v) if v is not None else None


def aggregate(trials: list[TrialResult]) -> dict[str, dict[str, Interval]]:
    out: dict[str, dict[str, Interval]] = {}
    labels = [f.op for f in trials[0].measured] if trials else []
    for label in labels:
        figs = [next(f for f in t.measured if f.op == label) for t in trials]
        out[label] = {m: interval_of([_metric(f, m) for f in figs]) for m in METRICS}
    if trials and trials[0].knee is not None:
        out.setdefault("all", {})["knee_rate"] = interval_of([t.knee.rate if t.knee else None for t in trials])
    return out


def merge_trials(trials: list[TrialResult]) -> list[OpFigures]:
    """Each operation's histograms merged over every trial (percentiles of all requests)."""
    if not trials:
        return []
    out = []
    for label in [f.op for f in trials[0].measured]:
        figs = [next(f for f in t.measured if f.op == label) for t in trials]
        h = LatencyHistogram.merged(LatencyHistogram.decode(f.histogram) for f in figs)
        kinds: dict[str, int] = {}
        for f in figs:
            for k, v in f.error_kinds.items():
                kinds[k] = kinds.get(k, 0) + v
        thr = [f.throughput_per_s for f in figs if f.throughput_per_s is not None]
        queued = sum(f.queued_s for f in figs)
        running = sum(f.running_s for f in figs)
        out.append(OpFigures(
            op=label, count=sum(f.count for f in figs), ok=h.count, errors=sum(f.errors for f in figs),
            error_kinds=kinds, throughput_per_s=float(np.median(thr)) if thr else None,
            latency=h.summary(), histogram=h.encode(), queued_s=queued, running_s=running,
            queued_share=queued / (queued + running) if queued + running > 0 else None,
        ))
    return out


async def run_workload(
    target: Target,
    workload: Workload,
    *,
    repeat: int = 1,
    progress: Any = None,
    stats_url: str | None = None,
    api_key: str | None = None,
    service: Any = None,
    drain_s: float = DRAIN_S,
    environment: dict[str, Any] | None = None,
    server_url: str | None = None,
) -> BenchResult:
    """Set ``target`` up once, run ``repeat`` trials, aggregate them."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    await target.setup()
    trials = []
    for i in range(repeat):
        trials.append(await run_trial(target, workload, index=i, progress=progress, stats_url=stats_url,
                                      api_key=api_key, service=service, drain_s=drain_s))
    data = msgspec.to_builtins(workload)
    data.pop("source", None)
    return BenchResult(
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        workload=data,
        mode=workload.load.mode,
        trials=trials,
        aggregate=aggregate(trials),
        merged=merge_trials(trials),
        environment=dict(environment or {}),
        server_url=server_url,
    )


async def run_bench(service: Any, workload: Workload, **kw: Any) -> BenchResult:
    """``workload`` on a tinker_actors ``ServiceClient`` (see :func:`run_workload` for options)."""
    return await run_workload(ClientTarget(service, workload), workload, service=service, **kw)
