"""PNG plots for docs/img/ (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

from .report import Row
from .scenarios import CLIENTS

COLORS = {"floor": "#9e9e9e", "sdk": "#d95f02", "tinker_actors": "#1b9e77"}
LABELS = {"floor": "floor (httpcore)", "sdk": "official SDK", "tinker_actors": "tinker_actors"}


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _sampling_line(rows: list[Row], figure: str, ylabel: str, path: Path, log_y: bool) -> bool:
    sel = [r for r in rows if r.scenario == "sampling" and r.figure == figure]
    if not sel:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [int(r.setting.split("=")[1]) for r in sel]
    for c in CLIENTS:
        pts = [(x, r.values.get(c)) for x, r in zip(xs, sel) if r.values.get(c) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=COLORS[c], label=LABELS[c])
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("requests in flight")
    ax.set_ylabel(ylabel)
    ax.set_title(f"Sampling: {figure}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _bars(rows: list[Row], picks: list[tuple[str, ...]], title: str, path: Path) -> bool:
    """One bar panel per pick: (scenario, figure) or (scenario, figure, setting)."""
    sel = [next((r for r in rows if r.scenario == p[0] and r.figure == p[1] and (len(p) < 3 or r.setting == p[2])), None)
           for p in picks]
    sel = [r for r in sel if r is not None]
    if not sel:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(sel), figsize=(3.2 * len(sel), 3.6), squeeze=False)
    for ax, r in zip(axes[0], sel):
        names = [c for c in CLIENTS if r.values.get(c) is not None]
        ax.bar([LABELS[c] for c in names], [r.values[c] for c in names], color=[COLORS[c] for c in names])
        label = r.figure if r.setting in ("ramp",) or r.scenario != "knee" else f"{r.figure}\nat {r.setting}"
        ax.set_title(f"{label} ({r.unit})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=15)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_all(rows: list[Row], img_dir: Path) -> list[str]:
    """Write every plot we have data for; returns the file names written."""
    img_dir.mkdir(parents=True, exist_ok=True)
    written = []
    jobs = [
        ("sampling_throughput.png", lambda p: _sampling_line(rows, "requests/s", "completed requests per second", p, False)),
        ("sampling_cpu.png", lambda p: _sampling_line(rows, "client CPU per request", "client CPU µs per request", p, True)),
        ("futures.png", lambda p: _bars(rows, [("futures", "polls per future"), ("futures", "open connections (peak)"),
                                              ("futures", "wake lag p99")], "Futures", p)),
        ("training.png", lambda p: _bars(rows, [("training", "step time"), ("training", "optim queued before fb result")],
                                         "Training pipeline", p)),
        ("scale.png", lambda p: _bars(rows, [("scale", "memory per queued request"), ("scale", "time to drain")], "Scale", p)),
        ("knee.png", lambda p: _bars(rows, [("knee", "knee rate"), ("knee", "p99 (open loop)", "50% of the knee"),
                                            ("knee", "p99 (open loop)", "80% of the knee")], "Open loop", p)),
        ("startup.png", lambda p: _bars(rows, [("startup", "import time"), ("startup", "time to first request")], "Start-up", p)),
    ]
    for name, job in jobs:
        if job(img_dir / name):
            written.append(name)
    return written
