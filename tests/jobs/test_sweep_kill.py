"""A sweep killed with SIGKILL at random points, then resumed, equals an uninterrupted run.

The sweep runs as the real command (``python -m tinker_actors sweep``) in a
subprocess against a local server this test starts. It is killed several
times at random amounts of progress (read from its journal), then run to the
end. The exported results must equal those of an uninterrupted run against a
second, fresh server, and the first server must have computed every request
exactly once: whatever a killed run had in flight is answered on resume from
the server's idempotency record, not computed again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import trio
from support import child_env, local_server, server_stats

from tinker_actors.clients import open_service_client
from tinker_actors.jobs.export import read_jsonl
from tinker_actors.jobs.sweep import run_sweep
from tinker_actors.jobs.sweep_spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
KEY = "tml-sweep-kill"
N_PROMPTS = 40


async def stats(url: str) -> dict[str, Any]:
    return await server_stats(url, KEY)


def write_spec(d: Path, *, concurrency: int = 8) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "prompts.jsonl", "w") as fh:
        for i in range(N_PROMPTS):
            line = {"id": f"p{i}", "text": f"prompt number {i}:"} if i % 3 else {"id": f"p{i}", "tokens": [65 + i % 20, 66, 67]}
            fh.write(json.dumps(line) + "\n")
    (d / "sweep.toml").write_text(
        '[sweep]\nname = "kill-test"\n[model]\nbase_model = "tinker-actors/byte-lm-tiny"\n'
        '[input]\nprompts = "prompts.jsonl"\n'
        "[sampling]\ntemperature = [0.0, 1.0]\nseed = [3, 4]\nmax_tokens = 12\nnum_samples = 2\n"
        '[output]\njournal = "journal.sqlite"\nresults = "results.jsonl"\n'
        f"[concurrency]\nmax = {concurrency}\n"
    )
    return d / "sweep.toml"


def done_count(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT count(*) FROM requests WHERE state = 'done'").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def open_rows(journal: Path) -> tuple[int, int]:
    """(rows not done, rows `sent` with a recorded request id) of the journal."""
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        not_done = conn.execute("SELECT count(*) FROM requests WHERE state != 'done'").fetchone()[0]
        reattach = conn.execute(
            "SELECT count(*) FROM requests WHERE state = 'sent' AND request_id IS NOT NULL"
        ).fetchone()[0]
    finally:
        conn.close()
    return int(not_done), int(reattach)


def sweep_cmd(url: str, spec: Path) -> list[str]:
    return [sys.executable, "-m", "tinker_actors", "--base-url", url, "--api-key", KEY, "sweep", str(spec), "--no-progress"]


async def run_until_killed(cmd: list[str], journal: Path, target: int | None, delay: float) -> int:
    """Start the sweep; SIGKILL it once the journal has ``target`` results (or after ``delay`` s)."""
    proc = await trio.lowlevel.open_process(cmd, env=child_env(), cwd=str(journal.parent),
                                            stdout=trio.DEVNULL if hasattr(trio, "DEVNULL") else -3, stderr=-3)
    try:
        with trio.fail_after(60):
            if target is None:
                await trio.sleep(delay)
            else:
                while done_count(journal) < target and proc.poll() is None:
                    await trio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            return await proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            await proc.wait()


def comparable(path: Path) -> dict[str, Any]:
    out = {}
    for line in read_jsonl(path):
        out[line.key] = (
            line.state,
            line.prompt_id,
            line.setting,
            [(s.tokens, s.stop_reason, s.logprobs, s.text) for s in line.sequences or []],
        )
    return out


async def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    total = N_PROMPTS * 4
    async with local_server(tmp_path / "ref-server") as ref_url:
        ref_spec = load_spec(write_spec(tmp_path / "ref"))
        async with open_service_client(base_url=ref_url, api_key=KEY, telemetry=False) as service:
            ref = await run_sweep(ref_spec, service, progress=False)
        assert ref.counts["done"] == total and not ref.interrupted

    spec_path = write_spec(tmp_path / "killed")
    journal = spec_path.parent / "journal.sqlite"
    async with local_server(tmp_path / "server") as url:
        cmd = sweep_cmd(url, spec_path)
        # one kill at a random moment of start-up, then kills at random progress
        await run_until_killed(cmd, journal, None, rng.uniform(0.05, 0.6))
        kills = 1
        # Results are committed in batches, so progress jumps; stop killing
        # at 3/4 so the last kill still lands before the end.
        cap = total * 3 // 4
        for _ in range(4):
            have = done_count(journal)
            if have >= cap - 5:
                break
            await run_until_killed(cmd, journal, rng.randint(have + 1, min(cap, have + total // 5)), 0)
            kills += 1
        assert 0 < done_count(journal) < total, "the kills should have left the sweep unfinished"

        # What the last run inherits: rows not done, and those of them left in
        # flight with a recorded server request id (to be re-attached, not re-sent).
        not_done, reattachable = open_rows(journal)
        asample_before = (await stats(url))["requests"].get("asample", 0)
        with trio.fail_after(60):
            final = await trio.run_process(cmd, env=child_env(), cwd=str(spec_path.parent), capture_stdout=True, capture_stderr=True, check=False)
        assert final.returncode == 0, final.stderr.decode()[-2000:]
        server = await stats(url)
        # Re-attached requests are not sent again: the last run POSTed asample
        # exactly once for every other open row (no faults, so no retries).
        assert server["requests"]["asample"] - asample_before == not_done - reattachable, (not_done, reattachable)

    killed = comparable(spec_path.parent / "results.jsonl")
    assert len(killed) == total
    assert killed == comparable(Path(ref.results or ""))
    # Every request was computed once by the server, however often it was sent.
    assert server["work_done"]["Sample"] == total, server
    # Requests in flight at a kill were either re-attached by their recorded
    # request id or sent again under the same key and answered from the
    # idempotency record (a send cut off before the server read its body left
    # no record and is simply computed on resume).
    assert server["requests"]["asample"] >= total - reattachable
    conn = sqlite3.connect(journal)
    attempts = conn.execute("SELECT sum(attempts) FROM requests").fetchone()[0]
    conn.close()
    assert attempts >= total
    print(f"kills={kills} duplicates={server['duplicate_idempotency_keys']} attempts={attempts} "
          f"reattachable_at_last_resume={reattachable}")


async def test_sigterm_stops_cleanly_and_the_next_run_finishes(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "sweep", concurrency=4)
    journal = spec_path.parent / "journal.sqlite"
    async with local_server(tmp_path / "server", faults=_slow_samples()) as url:
        cmd = sweep_cmd(url, spec_path)
        proc = await trio.lowlevel.open_process(cmd, env=child_env(), cwd=str(spec_path.parent), stdout=-3, stderr=-1)
        with trio.fail_after(30):
            while done_count(journal) < 5:
                await trio.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            rc = await proc.wait()
        assert rc == 130
        partial = done_count(journal)
        assert 5 <= partial < N_PROMPTS * 4
        with trio.fail_after(60):
            status = await trio.run_process([*cmd, "--status", "--json"], env=child_env(), capture_stdout=True, check=False)
        counts = json.loads(status.stdout)
        assert counts["done"] == partial and counts["total"] == N_PROMPTS * 4
        await trio.sleep(0)
    async with local_server(tmp_path / "server2") as url2:
        with trio.fail_after(60):
            final = await trio.run_process(sweep_cmd(url2, spec_path), env=child_env(), capture_stdout=True, capture_stderr=True, check=False)
        assert final.returncode == 0, final.stderr.decode()[-2000:]
        server = await stats(url2)
    assert server["work_done"]["Sample"] == N_PROMPTS * 4 - partial  # finished work is never re-sent
    assert done_count(journal) == N_PROMPTS * 4


def _slow_samples() -> Any:
    from tinker_actors.server import FaultConfig

    return FaultConfig(slow_s=0.02, routes=["asample"])


async def test_sweep_and_server_killed_at_random_with_a_short_future_ttl(tmp_path: Path) -> None:
    """Issue 10: SIGKILL the sweep at random moments while the server is also killed and
    restarted, and forgets finished futures after 1 s. Every request ends done exactly once,
    with the results of an uninterrupted run."""
    from _server import ServerProcess

    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    total = N_PROMPTS * 4
    async with local_server(tmp_path / "ref-server") as ref_url:
        async with open_service_client(base_url=ref_url, api_key=KEY, telemetry=False) as service:
            ref = await run_sweep(load_spec(write_spec(tmp_path / "ref")), service, progress=False)
    spec_path = write_spec(tmp_path / "killed")
    journal = spec_path.parent / "journal.sqlite"
    server = ServerProcess(tmp_path / "server", "--fault-expire-futures", "1.0", "--fault-slow", "0.01")
    work = 0  # samples computed, over every life of the server
    kills = {"sweep": 0, "server": 0}

    async def kill_server() -> None:
        nonlocal work
        work += int((await stats(server.url))["work_done"].get("Sample", 0))
        server.kill()
        kills["server"] += 1

    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(300):
            for _ in range(5):
                have = done_count(journal)
                if have >= total * 3 // 4:
                    break
                proc = await trio.lowlevel.open_process(sweep_cmd(server.url, spec_path), env=child_env(),
                                                        cwd=str(spec_path.parent), stdout=-3, stderr=-3)
                try:
                    target = rng.randint(have + 1, min(total * 3 // 4, have + total // 5))
                    while done_count(journal) < target and proc.poll() is None:
                        await trio.sleep(0.005)
                    what = rng.choice(["sweep", "server", "both"])
                    if what in ("server", "both"):
                        await kill_server()
                    if what in ("sweep", "both"):
                        proc.send_signal(signal.SIGKILL)
                        kills["sweep"] += 1
                    await trio.sleep(rng.uniform(0.0, 1.5))  # past the futures' TTL, sometimes
                    if not server.running:
                        await trio.to_thread.run_sync(server.start)
                    if what == "server":
                        # the sweep rode the outage out; kill it too, somewhere further on
                        mark = done_count(journal)
                        while done_count(journal) < min(total - 1, mark + rng.randint(1, 10)) and proc.poll() is None:
                            await trio.sleep(0.005)
                        proc.send_signal(signal.SIGKILL)
                        kills["sweep"] += 1
                    await proc.wait()
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        await proc.wait()
            assert 0 < done_count(journal) < total, "the kills should leave the sweep unfinished"
            final = await trio.run_process([*sweep_cmd(server.url, spec_path), "--json"], env=child_env(),
                                           cwd=str(spec_path.parent), capture_stdout=True, capture_stderr=True, check=False)
            assert final.returncode == 0, (seed, final.stderr.decode()[-3000:])
            work += int((await stats(server.url))["work_done"].get("Sample", 0))
    finally:
        server.kill()
    killed = comparable(spec_path.parent / "results.jsonl")
    assert len(killed) == total and all(state == "done" for state, *_ in killed.values()), seed
    assert killed == comparable(Path(ref.results or "")), seed
    conn = sqlite3.connect(journal)
    rows = conn.execute("SELECT count(*), count(DISTINCT key), sum(state = 'done') FROM requests").fetchone()
    new_keys = conn.execute("SELECT sum(generation) FROM requests").fetchone()[0]
    conn.close()
    assert tuple(rows) == (total, total, total)
    # Work was repeated only for what a kill or the TTL made the server forget: at most one
    # concurrency window of requests per kill of either process, and each forgotten future once.
    assert total <= work <= total + 8 * (kills["sweep"] + kills["server"]) + new_keys, (seed, work, kills, new_keys)
    print(f"seed={seed} kills={kills} work={work} new_keys={new_keys}")
