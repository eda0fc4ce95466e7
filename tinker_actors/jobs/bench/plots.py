"""The bench PNGs (matplotlib, Agg backend: the ``plots`` extra).

* ``timeline.png``: over the run, (1) sends and successes per second with the
  target rate, failed requests (red x) and HTTP 429 answers (orange
  triangles); (2) latency p50 and p99 of what completed in each interval (log
  axis); (3) requests in flight by where they were (client, queued, running)
  with the server's open long polls. Warm-up is shaded grey; phase starts are
  dotted lines.
* ``cdf.png``: the latency CDF per operation on a log axis, every trial merged.
* ``queued.png``: time queued vs running per operation.
* ``knee.png`` (ramps): offered vs completed rate and p99 per step, the knee marked.

:func:`matplotlib_available` says whether any of this can be drawn.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .histograms import LatencyHistogram
from .results import BenchResult, TrialResult

__all__ = ["matplotlib_available", "write_pngs", "NO_PLOTS"]

NO_PLOTS = "plots skipped: matplotlib is not installed (pip install 'tinker_actors[plots]')"


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, no GUI thread
    import matplotlib.pyplot as plt

    return plt


def _deltas(trial: TrialResult, key: str) -> tuple[list[float], list[int]]:
    """Per-sample increases of a cumulative counter: a server status ("429") or client retries."""
    ts: list[float] = []
    ds: list[int] = []
    prev: int | None = None
    for s in trial.server:
        cur = s.client_retries if key == "retries" else s.statuses.get(key)
        if cur is None:
            continue
        if prev is not None and cur > prev:
            ts.append(s.t)
            ds.append(cur - prev)
        prev = cur
    return ts, ds


def _timeline(trial: TrialResult, path: Path, title: str) -> None:
    plt = _plt()
    tl = trial.timeline
    w = tl.bucket_s
    mid = [t + w / 2 for t in tl.t]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True)
    try:
        ax1.plot(mid, [x / w for x in tl.sent], color="#999999", lw=1, label="sent/s")
        ax1.plot(mid, [x / w for x in tl.ok], color="#1b9e77", lw=1.5, label="ok/s")
        for ph in trial.phases:
            if ph.target_rate:
                ax1.hlines(ph.target_rate, ph.start_s, ph.start_s + ph.duration_s, colors="#333333",
                           linestyles="dashed", lw=1)
        err = [(m, o / w) for m, e, o in zip(mid, tl.errors, tl.ok) if e]
        if err:
            ax1.scatter([m for m, _ in err], [y for _, y in err], marker="x", color="#d62728", zorder=3,
                        label=f"errors ({sum(tl.errors)})")
        t429, d429 = _deltas(trial, "429")
        if t429:
            ax1.scatter(t429, [0] * len(t429), marker="^", color="#ff7f0e", zorder=3, label=f"HTTP 429 ({sum(d429)})")
        ax1.set_ylabel("requests / s")
        ax1.legend(loc="upper left", fontsize="small")
        ax1.set_title(title)

        p50 = [(m, v) for m, v in zip(mid, tl.p50) if v is not None]
        p99 = [(m, v) for m, v in zip(mid, tl.p99) if v is not None]
        if p50:
            ax2.plot([m for m, _ in p50], [v * 1e3 for _, v in p50], color="#1f77b4", lw=1.5, label="p50")
            ax2.plot([m for m, _ in p99], [v * 1e3 for _, v in p99], color="#d62728", lw=1.2, label="p99")
            ax2.set_yscale("log")
            ax2.legend(loc="upper left", fontsize="small")
        ax2.set_ylabel("latency (ms)")

        ax3.stackplot(mid, tl.client, tl.queued, tl.running, labels=["client (not yet acknowledged)",
                      "queued/paused (server said)", "running"], colors=["#bcbd22", "#ff7f0e", "#1b9e77"], alpha=0.7)
        polls = [(s.t, s.open_long_polls) for s in trial.server if s.open_long_polls is not None]
        if polls:
            ax3.plot([t for t, _ in polls], [v for _, v in polls], color="#333333", lw=1, label="server: open long polls")
        ax3.set_ylabel("in flight")
        ax3.set_xlabel("seconds from the start of the trial")
        ax3.legend(loc="upper left", fontsize="small")
        for ax in (ax1, ax2, ax3):
            ax.grid(alpha=0.3)
            for ph in trial.phases:
                if not ph.measured:
                    ax.axvspan(ph.start_s, ph.start_s + ph.duration_s, color="#dddddd", alpha=0.6, lw=0)
                else:
                    ax.axvline(ph.start_s, color="#888888", ls=":", lw=0.8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def _cdf(result: BenchResult, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        for f in result.merged:
            if f.op == "all" and len(result.merged) == 2:
                continue  # one operation: "all" is the same curve
            pts = LatencyHistogram.decode(f.histogram).cdf()
            if pts:
                ax.step([p[0] * 1e3 for p in pts], [p[1] for p in pts], where="post", label=f"{f.op} (n={f.ok})")
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of requests at or below")
        ax.set_title("latency CDF" + (f", {len(result.trials)} trials merged" if len(result.trials) > 1 else ""))
        for q in (0.5, 0.99):
            ax.axhline(q, color="#888888", ls=":", lw=0.8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def _queued(result: BenchResult, path: Path) -> None:
    plt = _plt()
    figs = [f for f in result.merged if f.op != "all"]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(figs) + 2), 4))
    try:
        names = [f.op for f in figs]
        ax.bar(names, [f.queued_s for f in figs], label="queued (client + server-reported)", color="#ff7f0e")
        ax.bar(names, [f.running_s for f in figs], bottom=[f.queued_s for f in figs], label="running", color="#1b9e77")
        ax.set_ylabel("total request time (s)")
        ax.set_title("time queued vs running")
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def _knee(trial: TrialResult, path: Path) -> None:
    plt = _plt()
    steps = [p for p in trial.phases if p.measured and p.target_rate]
    fig, ax1 = plt.subplots(figsize=(8, 4.5))
    try:
        x = [p.target_rate for p in steps]
        ax1.plot(x, x, color="#999999", ls="--", lw=1, label="offered")
        ax1.plot(x, [p.completed_rate for p in steps], marker="o", color="#1b9e77", label="completed/s")
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlabel("offered rate (requests/s)")
        ax1.set_ylabel("completed rate (requests/s)")
        ax2 = ax1.twinx()
        ax2.plot(x, [(p.all.latency.get("p99") or float("nan")) * 1e3 for p in steps], marker="s", color="#d62728",
                 label="p99")
        ax2.set_yscale("log")
        ax2.set_ylabel("p99 latency (ms)")
        if trial.knee is not None and trial.knee.rate:
            ax1.axvline(trial.knee.rate, color="#333333", ls=":", lw=1)
            ax1.annotate(f"knee {trial.knee.rate:.0f}/s", (trial.knee.rate, x[0]), fontsize="small")
        lines = ax1.get_legend_handles_labels()
        more = ax2.get_legend_handles_labels()
        ax1.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize="small")
        from matplotlib.ticker import FormatStrFormatter

        for axis in (ax1.xaxis, ax1.yaxis, ax2.yaxis):  # 40, not 4 x 10^1
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(FormatStrFormatter("%g"))
        ax1.grid(alpha=0.3, which="both")
        ax1.set_title("ramp: offered vs completed, and p99 (the knee: the last step that kept up)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def write_pngs(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    """Every PNG this result has data for, in ``out_dir``; {name: path}. Needs matplotlib."""
    out: dict[str, Path] = {}
    trial = result.trials[0]
    name = result.workload.get("name", "bench")
    title = f"{name}: trial 1 of {len(result.trials)}" if len(result.trials) > 1 else str(name)
    jobs = [("timeline", lambda p: _timeline(trial, p, title)), ("cdf", lambda p: _cdf(result, p)),
            ("queued", lambda p: _queued(result, p))]
    if trial.knee is not None:
        jobs.append(("knee", lambda p: _knee(trial, p)))
    for key, job in jobs:
        path = out_dir / f"{key}.png"
        job(path)
        out[key] = path
    return out
