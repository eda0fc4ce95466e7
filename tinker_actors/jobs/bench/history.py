"""The local results store: every run appended to SQLite, read back by ``bench history``.

One row per run (when, the git commit of the checkout the client ran from,
versions, machine facts, the workload and where its bench.json is) and one
row per (operation, metric) with the median and interval over its trials.
``bench history p99 --op sample`` reads a metric back in time order, to see
a regression the day it lands. Same workload, same machine: compare like
with like (``--workload`` filters by name; the table shows the machine).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from .results import BenchResult

__all__ = ["environment", "HistoryStore", "HistoryRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    workload_name TEXT NOT NULL,
    workload_hash TEXT NOT NULL,
    workload TEXT NOT NULL,
    mode TEXT NOT NULL,
    trials INTEGER NOT NULL,
    git_commit TEXT,
    git_dirty INTEGER,
    versions TEXT NOT NULL,
    machine TEXT NOT NULL,
    server_url TEXT,
    result_path TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    op TEXT NOT NULL,
    metric TEXT NOT NULL,
    median REAL,
    lo REAL,
    hi REAL,
    PRIMARY KEY (run_id, op, metric)
);
"""

_PACKAGES = ("tinker_actors", "trio", "httpx", "httpcore", "msgspec", "numpy", "hdrhistogram", "tinker")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _mem_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return None


def environment() -> dict[str, Any]:
    """Facts that make two runs comparable (or not): commit, versions, machine, load."""
    import tinker_actors

    root = Path(tinker_actors.__file__).resolve().parent.parent
    commit = _git(root, "rev-parse", "HEAD")
    dirty = None
    if commit:
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        dirty = bool(status)
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    versions["python"] = platform.python_version()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "memory_gib": _mem_gib(),
            "load_average": load,
        },
    }


class HistoryRow(msgspec.Struct, kw_only=True):
    run_id: int
    created_at: str
    workload: str
    git_commit: str | None
    git_dirty: bool | None
    machine: str
    median: float | None
    lo: float | None
    hi: float | None


class HistoryStore:
    """``with HistoryStore.open(path) as store: store.add(result, path)``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | Path) -> Iterator[HistoryStore]:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(p)
        try:
            conn.executescript(_SCHEMA)
            yield cls(conn)
        finally:
            conn.close()

    def add(self, result: BenchResult, result_path: str | None = None) -> int:
        env = result.environment
        workload = json.dumps(result.workload, sort_keys=True)
        machine = env.get("machine") or {}
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (created_at, workload_name, workload_hash, workload, mode, trials, git_commit,"
                " git_dirty, versions, machine, server_url, result_path) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    result.created_at, str(result.workload.get("name", "")),
                    hashlib.sha256(workload.encode()).hexdigest()[:16], workload, result.mode, len(result.trials),
                    env.get("git_commit"), None if env.get("git_dirty") is None else int(bool(env["git_dirty"])),
                    json.dumps(env.get("versions") or {}, sort_keys=True), json.dumps(machine, sort_keys=True),
                    result.server_url, result_path,
                ),
            )
            run_id = int(cur.lastrowid or 0)
            self.conn.executemany(
                "INSERT INTO metrics (run_id, op, metric, median, lo, hi) VALUES (?,?,?,?,?,?)",
                [(run_id, op, metric, iv.median, iv.lo, iv.hi)
                 for op, by_metric in result.aggregate.items() for metric, iv in by_metric.items()],
            )
        return run_id

    def series(self, metric: str, *, op: str = "all", workload: str | None = None, last: int | None = None) -> list[HistoryRow]:
        """``metric`` of ``op`` over the stored runs, oldest first."""
        sql = ("SELECT r.id, r.created_at, r.workload_name, r.git_commit, r.git_dirty, r.machine, m.median, m.lo, m.hi"
               " FROM runs r JOIN metrics m ON m.run_id = r.id WHERE m.metric = ? AND m.op = ?")
        args: list[Any] = [metric, op]
        if workload is not None:
            sql += " AND r.workload_name = ?"
            args.append(workload)
        sql += " ORDER BY r.id DESC"
        if last is not None:
            sql += " LIMIT ?"
            args.append(last)
        rows = self.conn.execute(sql, args).fetchall()
        out = []
        for rid, created, wl, commit, dirty, machine, med, lo, hi in reversed(rows):
            m = json.loads(machine or "{}")
            out.append(HistoryRow(
                run_id=rid, created_at=created, workload=wl, git_commit=commit,
                git_dirty=None if dirty is None else bool(dirty),
                machine=f"{m.get('cpus', '?')} CPUs {m.get('cpu_model') or ''}".strip(),
                median=med, lo=lo, hi=hi,
            ))
        return out

    def metrics(self) -> list[tuple[str, str]]:
        """Every (op, metric) stored."""
        return [tuple(r) for r in self.conn.execute("SELECT DISTINCT op, metric FROM metrics ORDER BY op, metric")]


def plot_series(rows: list[HistoryRow], metric: str, op: str, path: Path) -> None:
    """The metric over runs with its intervals (matplotlib)."""
    from .plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    try:
        latency = metric not in ("throughput", "error_rate", "knee_rate")
        scale = 1e3 if latency else 1.0
        xs = list(range(len(rows)))
        ys = [(r.median or float("nan")) * scale for r in rows]
        lo = [max(0.0, y - (r.lo * scale if r.lo is not None else y)) for r, y in zip(rows, ys)]
        hi = [max(0.0, (r.hi * scale if r.hi is not None else y) - y) for r, y in zip(rows, ys)]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color="#1f77b4")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{r.created_at[:16]}\n{(r.git_commit or '')[:8]}" for r in rows], fontsize=7,
                           rotation=30, ha="right")
        ax.set_ylabel(f"{metric}" + (" (ms)" if latency else " (/s)" if metric != "error_rate" else ""))
        ax.set_title(f"bench history: {op} {metric} (median and 95 % interval per run)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
