"""``python -m benchmarks``: run the scenarios, write JSON, docs/benchmarks.md and docs/img/.

Results are written after every client run, so an interrupted or partly
failed run still leaves its figures behind.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import markdown, plots, report, runner
from .scenarios import CLIENTS, FULL, QUICK, SCENARIOS, knee_followups, plan
from .server import ROOT, LocalServer


def _versions() -> dict[str, str]:
    out = {}
    for name in ("tinker_actors", "tinker", "httpx", "httpcore", "trio", "uvicorn"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    if out["tinker_actors"] == "not installed":  # run from a checkout without pip install -e
        from tinker_actors._version import __version__

        out["tinker_actors"] = f"{__version__} (checkout)"
    return out


def _write(results: dict[str, Any], json_path: Path, docs: bool) -> None:
    rows = report.summarize(results)
    verdicts = report.targets(rows)
    results["summary"] = report.to_json(rows, verdicts)
    json_path.write_text(json.dumps(results, indent=1, default=str))
    if docs:
        images = plots.write_all(rows, ROOT / "docs" / "img")
        (ROOT / "docs" / "benchmarks.md").write_text(markdown.render(results, rows, verdicts, images))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    ap.add_argument("--client", action="append", choices=CLIENTS, help="run only these clients (repeatable)")
    ap.add_argument("--quick", action="store_true", help="scaled-down counts: checks the harness in a minute or two")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--server", choices=["uvicorn", "hypercorn"], default="uvicorn")
    ap.add_argument("--no-docs", action="store_true", help="write only the JSON file")
    ap.add_argument("--keep", type=Path, default=None, metavar="RESULTS.json",
                    help="copy the scenarios not run this time from an earlier results file (the page says which)")
    args = ap.parse_args(argv)

    names = args.scenario or list(SCENARIOS)
    clients = tuple(args.client or CLIENTS)
    size = QUICK if args.quick else FULL
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = args.out / f"{stamp}-logs"
    log_dir.mkdir()
    json_path = args.out / f"{stamp}.json"
    results: dict[str, Any] = {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "quick": args.quick,
        "size": size,
        "json_path": os.path.relpath(json_path, ROOT),
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(), "server": args.server, "versions": _versions()},
        "scenarios": {},
    }
    t_start = time.monotonic()
    with LocalServer(log_dir / "server.log", kind=args.server) as server:
        queue = plan(names, size, clients)
        while queue:
            group = queue.pop(0)
            if not group:
                continue
            section = results["scenarios"].setdefault(group[0].scenario, [])
            entry = {"setting": group[0].setting, "records": []}
            section.append(entry)
            for run in group:
                print(f"[{time.monotonic() - t_start:6.0f}s] {run.scenario:8} {run.setting:32} {run.client:14}",
                      end=" ", flush=True)
                rec = runner.execute(run, server, log_dir)
                entry["records"].append(rec)
                print("error: " + rec["error"].splitlines()[0][:200] if "error" in rec else "ok", flush=True)
                _write(results, json_path, docs=False)
            if group[0].scenario == "knee" and group[0].setting == "ramp":
                knees = {r["client"]: r.get("figures", {}).get("knee_rate") for r in entry["records"]}
                queue[0:0] = knee_followups(knees, size, clients)
    results["elapsed_s"] = time.monotonic() - t_start
    if args.keep is not None:
        earlier = json.loads(args.keep.read_text())
        for scenario, section in earlier.get("scenarios", {}).items():
            if scenario not in results["scenarios"]:
                results["scenarios"][scenario] = section
                results.setdefault("carried_over", {})[scenario] = {
                    "from": os.path.relpath(args.keep.resolve(), ROOT), "started": earlier.get("started")}
    _write(results, json_path, docs=not args.no_docs)
    for v in results["summary"]["targets"]:
        print(f"target: {v['target']}: {v['status']} ({v['detail']})")
    print(f"wrote {json_path}" + ("" if args.no_docs else " and docs/benchmarks.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
