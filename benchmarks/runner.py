"""Run one client child against the server and collect everything about it.

Around each child: the server's faults are set and its counters reset; the
server's CPU is read before and after (its utilisation tells whether the
server was the bottleneck); for the futures scenario the parent counts the
child's established TCP connections to the server every 0.25 s from /proc.
A child that fails, crashes or times out yields an error record, never an
exception, so one broken client cannot lose the other results.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .scenarios import Run
from .server import ROOT, LocalServer

API_KEY = "tml-bench"


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(link[8:-1])
    except OSError:
        pass
    return out


def open_connections(pid: int, port: int) -> int:
    """Established TCP connections from process ``pid`` to ``port`` on loopback."""
    inodes = _socket_inodes(pid)
    if not inodes:
        return 0
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    # remote address is "IP:PORT" in hex; state 01 is ESTABLISHED
                    if parts[3] == "01" and int(parts[2].rsplit(":", 1)[1], 16) == port and parts[9] in inodes:
                        count += 1
        except OSError:
            continue
    return count


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    b, a = before.get("requests", {}), after.get("requests", {})
    return {k: int(a.get(k, 0)) - int(b.get(k, 0)) for k in a if int(a.get(k, 0)) - int(b.get(k, 0))}


def run_child(run: Run, server: LocalServer, log_dir: Path) -> dict[str, Any]:
    server.set_faults(run.faults or {})
    server.reset_stats()
    before = server.stats()
    cpu0 = server.cpu_seconds()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        result_path = Path(tmp.name)
    log_path = log_dir / f"{run.scenario}-{run.child_scenario}-{run.client}.log"
    cmd = [sys.executable, "-m", "benchmarks.clients", run.client, run.child_scenario,
           "--base-url", server.base_url, "--params", json.dumps(run.params), "--result", str(result_path)]
    env = {**os.environ, "TINKER_API_KEY": API_KEY}
    conns: list[int] = []
    t0 = time.monotonic()
    record: dict[str, Any] = {"client": run.client, "setting": run.setting, "child_scenario": run.child_scenario}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    proc.wait(0.25)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if run.count_sockets:
                    conns.append(open_connections(proc.pid, server.port))
                if time.monotonic() - t0 > run.timeout_s:
                    proc.kill()
                    proc.wait()
                    record["error"] = f"timed out after {run.timeout_s:.0f} s (log: {log_path})"
                    break
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    wall = time.monotonic() - t0
    record["child_wall_s"] = wall
    record["server_cpu_util"] = (server.cpu_seconds() - cpu0) / wall if wall > 0 else 0.0
    after = server.stats()
    record["server_requests"] = _delta(before, after)
    record["server_peak_long_polls"] = after.get("peak_long_polls", 0)
    if conns:
        record["open_connections"] = {"peak": max(conns), "mean": statistics.fmean(conns)}
    if "error" not in record:
        try:
            out = json.loads(result_path.read_text())
        except (OSError, ValueError):
            out = {"ok": False, "error": f"no result (exit code {proc.returncode}; log: {log_path})"}
        if out.get("ok"):
            record["figures"] = out["figures"]
        else:
            record["error"] = out.get("error", "failed")
            record["traceback"] = out.get("traceback", "")
    result_path.unlink(missing_ok=True)
    if not server.alive():
        record["error"] = record.get("error", "") + " (the local server died)"
    return record


def _median_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    figs = [r["figures"] for r in records if "figures" in r]
    if not figs:
        return {}
    return {k: statistics.median(f[k] for f in figs) for k in figs[0] if isinstance(figs[0][k], (int, float))}


def execute(run: Run, server: LocalServer, log_dir: Path) -> dict[str, Any]:
    """Run ``run`` (``repeat`` times for start-up; medians are kept)."""
    records = [run_child(run, server, log_dir) for _ in range(run.repeat)]
    if run.repeat == 1:
        return records[0]
    out = dict(records[-1])
    good = [r for r in records if "figures" in r]
    if good:
        out.pop("error", None)
        out["figures"] = _median_figures(good)
        out["repeats"] = len(good)
    return out
