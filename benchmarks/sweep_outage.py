"""How long a sweep takes to finish after the server was down, against the same sweep with no outage.

::

    python -m benchmarks.sweep_outage                 # 3,000 requests, a 60 s outage at 30 % done
    python -m benchmarks.sweep_outage --outage 60 --requests 3000 --json

Each run starts its own ``tinker-actors serve`` (a child process on a free
port, ``--null-compute`` with every answer delayed by ``--server-delay``, so
the sweep is paced by the server, not by this machine's CPU), and runs the
sweep in this process through ``open_service_client`` with the library's
default settings (heartbeat every 10 s, transport retries, a session declared
dead after 300 s without a heartbeat). The outage run SIGKILLs the server once
the journal holds ``--kill-at`` of the results, keeps it down for
``--outage`` seconds and starts it again on the same port and data directory
(it forgets its futures and idempotency records, as a crashed server would).

Printed: the wall time of both runs, the outage run's extra time beyond the
outage itself and beyond the actual downtime (the outage plus the restarted
server's start-up), how long after the restart the first new result arrived, and
the sweep's own counters (re-sends, requests moved to a new idempotency key,
sessions opened).
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from benchmarks.server import ROOT, free_port
from tinker_actors.clients import open_service_client
from tinker_actors.jobs.sweep import run_sweep
from tinker_actors.jobs.sweep_spec import load_spec

KEY = "tml-bench-outage"


class Server:
    def __init__(self, data_dir: Path, delay: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.delay = delay
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tinker_actors", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
               "--null-compute", "--fault-slow", str(self.delay)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the server did not come up in 60 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def write_spec(d: Path, requests: int, concurrency: int) -> Path:
    d.mkdir(parents=True)
    prompts = requests // 2
    (d / "prompts.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "tokens": [65 + i % 26, 66, 67]}) + "\n" for i in range(prompts)))
    (d / "sweep.toml").write_text(
        '[sweep]\nname = "outage-bench"\n[model]\nbase_model = "tinker-actors/byte-lm-tiny"\n[input]\nprompts = "prompts.jsonl"\n'
        "[sampling]\nmax_tokens = 4\nseed = [1, 2]\n"
        f'[output]\njournal = "journal.sqlite"\nresults = "results.jsonl"\n[concurrency]\nmax = {concurrency}\n'
    )
    return d / "sweep.toml"


def done(journal: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT count(*) FROM requests WHERE state = 'done'").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


async def one_run(work: Path, args: argparse.Namespace, outage: float) -> dict[str, Any]:
    spec = load_spec(write_spec(work / "sweep", args.requests, args.concurrency))
    total = (args.requests // 2) * 2
    server = Server(work / "server", args.server_delay)
    await trio.to_thread.run_sync(server.start)
    marks: dict[str, float] = {}
    try:
        async with open_service_client(base_url=server.url, api_key=KEY, telemetry=False) as service:
            started = trio.current_time()

            async def down() -> None:
                while done(spec.journal_path) < total * args.kill_at:
                    await trio.sleep(0.01)
                server.kill()
                marks["killed"] = trio.current_time() - started
                marks["done_at_kill"] = done(spec.journal_path)
                await trio.sleep(outage)
                await trio.to_thread.run_sync(server.start)
                marks["restarted"] = trio.current_time() - started
                while done(spec.journal_path) <= marks["done_at_kill"]:
                    await trio.sleep(0.01)
                marks["first_result_after_restart"] = trio.current_time() - started

            async with trio.open_nursery() as nursery:
                if outage > 0:
                    nursery.start_soon(down)
                outcome = await run_sweep(spec, service, progress=False, log_interval=3600)
                wall = trio.current_time() - started
                nursery.cancel_scope.cancel()
    finally:
        server.kill()
    return {
        "outage_s": outage,
        "wall_s": round(wall, 2),
        "complete": outcome.complete,
        "done": outcome.counts["done"],
        "total": total,
        "resent": outcome.resent,
        "transient_errors": outcome.transient_errors,
        "new_keys": outcome.new_keys,
        "sessions_opened": outcome.sessions_opened,
        "longest_outage_seen_s": outcome.longest_outage_s,
        **{k: round(v, 2) for k, v in marks.items()},
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sweep-outage-") as tmp:
        base = await one_run(Path(tmp) / "base", args, 0.0)
        down = await one_run(Path(tmp) / "outage", args, args.outage)
    extra = down["wall_s"] - base["wall_s"] - args.outage
    downtime = down.get("restarted", 0.0) - down.get("killed", 0.0)  # the outage plus the server's start-up
    return {
        "requests": base["total"],
        "concurrency": args.concurrency,
        "server_delay_s": args.server_delay,
        "no_outage": base,
        "with_outage": down,
        "extra_beyond_outage_s": round(extra, 2),
        "downtime_s": round(downtime, 2),
        "extra_beyond_downtime_s": round(down["wall_s"] - base["wall_s"] - downtime, 2),
        "first_result_after_restart_s": round(down["first_result_after_restart"] - down["restarted"], 2)
        if "restarted" in down and "first_result_after_restart" in down else None,
        "resends_per_request": round(down["resent"] / down["total"], 3),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--server-delay", type=float, default=0.2, help="seconds the server delays every answer")
    p.add_argument("--outage", type=float, default=60.0, help="seconds the server stays down")
    p.add_argument("--kill-at", type=float, default=0.3, help="share of results in the journal when the server is killed")
    p.add_argument("--json", action="store_true")
    ns = p.parse_args()
    result = trio.run(main, ns)
    print(json.dumps(result, indent=None if ns.json else 2))
