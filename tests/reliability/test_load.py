"""Load (issue 10, last bullet): 50 client processes x 100 samples against one default local server.

The server is ``tinker-actors serve`` as a user starts it (hypercorn-trio, the
numpy model, one compute thread). 5,000 samples arrive at once from 50
processes, each opening up to 150 connections; the server cannot keep up and
sheds submits with 429 + Retry-After once 1,024 futures are queued, and
connections may time out or be reset under the storm. Each client honours the
Retry-After and retries connection failures within the sample's budget, so
not one sample fails, and the server computes each exactly once (its
``work_done`` counter). On main (issue 10) each of 5 processes x 1,000
samples saw hundreds of ConnectTimeout/ECONNRESET failures (asample was not
retried).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from harness import KEY, ROOT, record, subprocess_server
from support import child_env

CHILD = Path(__file__).with_name("_load_child.py")
PROCESSES = 50
SAMPLES = 100


@pytest.mark.slow
def test_fifty_processes_of_a_hundred_samples_all_succeed(tmp_path: Path) -> None:
    with subprocess_server(tmp_path / "server") as server:
        started = time.monotonic()
        children = [
            subprocess.Popen([sys.executable, str(CHILD), server.url, KEY, str(SAMPLES)], cwd=ROOT, env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(PROCESSES)
        ]
        reports = []
        for child in children:
            out, err = child.communicate(timeout=1800)
            assert child.returncode == 0, err.decode()[-2000:]
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
        wall = time.monotonic() - started
        stats = httpx.get(f"{server.url}/_local/stats", headers={"X-API-Key": KEY}, timeout=30).json()
    failures: dict[str, int] = {}
    for report in reports:
        for what, n in report["failures"].items():
            failures[what] = failures.get(what, 0) + n
    done = sum(r["done"] for r in reports)
    assert not failures and done == PROCESSES * SAMPLES, failures
    assert stats["work_done"]["Sample"] == PROCESSES * SAMPLES  # each sample computed once
    record(
        "load_50x100",
        load=f"{PROCESSES} processes x {SAMPLES} samples, default serve (hypercorn-trio, numpy model)",
        failed=0,
        done=done,
        wall_s=round(wall, 1),
        shed_429=stats["shed"],
        client_retries=sum(r["retries"] for r in reports),
        client_rate_limited=sum(r["rate_limited"] for r in reports),
        asample_requests=stats["requests"].get("asample", 0),
        slowest_process_s=max(r["seconds"] for r in reports),
    )
