"""A sweep through what a real service does: forgotten futures, expired sessions, outages (issue 10, cases 2, 3).

* The server forgot the futures a killed sweep left in flight (a short
  future TTL): the resumed sweep completes every request. Before, it re-sent
  them under the same idempotency key, the server answered with the dead
  request id, and about 6 % never completed.
* Sessions expire on the server mid-sweep: the sweep opens new ones.
* The server is down for longer than the client keeps a session: the sweep
  waits (and says so), then finishes when the server is back. Before, every
  request in flight was marked failed *permanently*.
* The server stays down: the sweep stops after ``give_up_after`` with a
  resumable journal (nothing marked failed) and a message that says how to
  resume; a later run finishes. The CLI exits 3.
* ``retry_failed`` sends rows a previous run marked failed permanently.
* The progress display's "failed" is the summary's "failed": transient
  errors are labelled as such (issue 13 saw ``errors 64`` beside ``0 failed``).
"""

from __future__ import annotations

import io
import json
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import structlog
import trio
from _server import server_process
from rich.console import Console
from support import child_env, local_server, server_stats
from test_sweep_kill import comparable, done_count, open_rows

from tinker_actors.clients import open_service_client
from tinker_actors.errors import InternalServerError
from tinker_actors.jobs.export import read_jsonl
from tinker_actors.jobs.journal import Journal
from tinker_actors.jobs.sweep import run_sweep
from tinker_actors.jobs.sweep_spec import load_spec
from tinker_actors.server import FaultConfig

KEY = "tml-sweep-faults"


def write_spec(d: Path, n: int, *, concurrency: int = 8, name: str = "faults", extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "prompts.jsonl", "w") as fh:
        for i in range(n):
            line = {"id": f"p{i}", "text": f"prompt {i}:"} if i % 2 else {"id": f"p{i}", "tokens": [65 + i % 20, 66, 67]}
            fh.write(json.dumps(line) + "\n")
    (d / "sweep.toml").write_text(
        f'[sweep]\nname = "{name}"\n[model]\nbase_model = "tinker-actors/byte-lm-tiny"\n'
        '[input]\nprompts = "prompts.jsonl"\n'
        "[sampling]\ntemperature = [0.0, 1.0]\nseed = 3\nmax_tokens = 8\n"
        '[output]\njournal = "journal.sqlite"\nresults = "results.jsonl"\n'
        f"[concurrency]\nmax = {concurrency}\n{extra}"
    )
    return d / "sweep.toml"


def sweep_cmd(url: str, spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tinker_actors", "--base-url", url, "--api-key", KEY, "sweep", str(spec), "--no-progress", *extra]


async def reference(tmp_path: Path, spec_text_dir: Path, n: int) -> dict[str, Any]:
    """The results of the same sweep, uninterrupted, on a fresh server."""
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    for name in ("sweep.toml", "prompts.jsonl"):
        (ref_dir / name).write_text((spec_text_dir / name).read_text())
    async with local_server(tmp_path / "reference-server") as url:
        async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as service:
            out = await run_sweep(load_spec(ref_dir / "sweep.toml"), service, progress=False)
    assert out.counts["done"] == n * 2
    return comparable(Path(out.results or ""))


def fast_client(url: str, **extra: Any) -> Any:
    """A client that notices a dead server in about a second (heartbeats every 0.5 s) and
    declares its session dead after 2 s without one."""
    config: dict[str, Any] = dict(
        base_url=url, api_key=KEY, telemetry=False, heartbeat_interval=0.5, heartbeat_timeout=1.0,
        session_dead_after_s=2.0, max_retries=2, connect_timeout=1.0, close_grace=2.0,
    )
    config.update(extra)
    return open_service_client(**config)


# ------------------------------------------------------------------ case 2


async def test_resume_after_the_server_forgot_the_futures_completes_every_request(tmp_path: Path) -> None:
    n = 40
    spec_path = write_spec(tmp_path / "sweep", n, concurrency=8)
    journal = spec_path.parent / "journal.sqlite"
    want = await reference(tmp_path, spec_path.parent, n)
    # futures wait 0.3 s before they run, and are forgotten 1 s after they finish
    faults = FaultConfig(pause_futures_s=0.3, expire_futures_s=1.0)
    async with local_server(tmp_path / "server", faults=faults) as url:
        proc = await trio.lowlevel.open_process(sweep_cmd(url, spec_path), env=child_env(), stdout=-3, stderr=-3)
        try:
            with trio.fail_after(60):
                while done_count(journal) < n * 2 // 3 and proc.poll() is None:
                    await trio.sleep(0.005)
        finally:
            proc.kill()
            await proc.wait()
        not_done, reattachable = open_rows(journal)
        assert not_done > 0 and reattachable > 0, "the kill should leave requests in flight with a known request id"
        await trio.sleep(1.6)  # past the pause and the TTL: the server forgot every one of them
        expired_before = (await server_stats(url, KEY))["faults"].get("future_expired", 0)
        with trio.fail_after(60):
            final = await trio.run_process(
                sweep_cmd(url, spec_path, "--json"), env=child_env(), capture_stdout=True, capture_stderr=True, check=False
            )
        assert final.returncode == 0, final.stderr.decode()[-3000:]
        stats = await server_stats(url, KEY)
    outcome = json.loads(final.stdout)
    assert outcome["counts"]["done"] == n * 2 and outcome["counts"]["failed"] == 0
    assert outcome["new_keys"] >= reattachable  # each forgotten future got a new key, once
    # no loop on dead ids: a forgotten request costs a 410 or two, not thousands
    assert stats["faults"]["future_expired"] - expired_before <= 3 * not_done, stats["faults"]
    assert comparable(spec_path.parent / "results.jsonl") == want
    conn = sqlite3.connect(journal)
    generations = dict(conn.execute("SELECT generation, count(*) FROM requests GROUP BY generation").fetchall())
    conn.close()
    assert sum(n for g, n in generations.items() if g > 0) == outcome["new_keys"]


# ------------------------------------------------------------------ case 3


async def test_sessions_expiring_on_the_server_are_replaced(tmp_path: Path) -> None:
    n = 60
    spec = load_spec(write_spec(tmp_path / "sweep", n, concurrency=4))
    # every session dies 1 s after its last heartbeat; the client beats every 10 s
    faults = FaultConfig(session_expiry_s=1.0, slow_s=0.02, routes=["asample"])
    async with local_server(tmp_path / "server", faults=faults) as url:
        with trio.fail_after(120):
            async with open_service_client(base_url=url, api_key=KEY, telemetry=False, close_grace=2) as service:
                outcome = await run_sweep(spec, service, progress=False)
        stats = await server_stats(url, KEY)
    assert outcome.complete and outcome.counts["done"] == n * 2 and outcome.counts["failed"] == 0
    assert outcome.sessions_opened >= 1 and stats["faults"]["session_expired"] >= 1
    assert stats["work_done"]["Sample"] == n * 2  # a submit refused by a dead session was not computed


async def test_an_outage_longer_than_a_session_is_waited_out(tmp_path: Path) -> None:
    n = 100
    total = n * 2
    spec_path = write_spec(tmp_path / "sweep", n, concurrency=8)
    spec = load_spec(spec_path)
    want = await reference(tmp_path, spec_path.parent, n)
    done_at_kill = 0
    with server_process(tmp_path / "server", "--fault-slow", "0.02") as server:
        with trio.fail_after(150), structlog.testing.capture_logs() as logs:
            async with fast_client(server.url) as service:

                async def outage() -> None:
                    nonlocal done_at_kill
                    while done_count(spec.journal_path) < total * 0.3:
                        await trio.sleep(0.01)
                    server.kill()
                    done_at_kill = done_count(spec.journal_path)
                    await trio.sleep(4.0)  # twice as long as the client keeps a silent session
                    await trio.to_thread.run_sync(server.start)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(outage)
                    outcome = await run_sweep(spec, service, progress=False, log_interval=0.5, give_up_after=120)
        stats = await server_stats(server.url, KEY)
    assert outcome.complete and not outcome.gave_up, outcome.message
    assert outcome.counts["done"] == total and outcome.counts["failed"] == 0
    assert outcome.sessions_opened >= 1 and outcome.outages >= 1 and outcome.longest_outage_s >= 2.0
    assert comparable(spec.journal_path.parent / "results.jsonl") == want
    # the restarted server computed only what the journal did not have
    assert stats["work_done"]["Sample"] <= total - done_at_kill
    events = [e["event"] for e in logs]
    assert "sweep_server_unreachable" in events and "sweep_server_reachable_again" in events
    # the progress lines said so while it lasted
    down = [e for e in logs if e["event"] == "sweep_progress" and e.get("unreachable_s") is not None]
    assert down and all(e["unreachable_s"] >= 0 and "unreachable_since" in e for e in down)


async def test_a_server_that_stays_down_ends_in_a_resumable_journal(tmp_path: Path) -> None:
    n = 60
    total = n * 2
    spec = load_spec(write_spec(tmp_path / "sweep", n, concurrency=8, extra="[retry]\ngive_up_after_s = 2.5\n"))
    with server_process(tmp_path / "server", "--fault-slow", "0.02") as server:
        with trio.fail_after(90):
            async with fast_client(server.url) as service:

                async def outage() -> None:
                    while done_count(spec.journal_path) < total * 0.3:
                        await trio.sleep(0.01)
                    server.kill()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(outage)
                    started = trio.current_time()
                    stopped = await run_sweep(spec, service, progress=False)
                    took = trio.current_time() - started
        assert stopped.gave_up and not stopped.complete and not stopped.interrupted
        assert stopped.counts["failed"] == 0, "an outage marks nothing failed"
        assert stopped.message and "Run the same command again to resume" in stopped.message
        assert took < 60
        with Journal.open(spec.journal_path, spec_id=spec.spec_id, spec_hash=spec.spec_hash, readonly=True) as journal:
            left = journal.counts()
        assert left["done"] == stopped.counts["done"] < total
        assert left["pending"] + left["sent"] == total - left["done"]

        await trio.to_thread.run_sync(server.start)
        with trio.fail_after(90):
            async with open_service_client(base_url=server.url, api_key=KEY, telemetry=False) as service:
                resumed = await run_sweep(spec, service, progress=False)
    assert resumed.complete and resumed.counts["done"] == total and not resumed.gave_up
    assert resumed.skipped == stopped.counts["done"]


async def test_the_cli_gives_up_with_exit_3_and_resumes(tmp_path: Path) -> None:
    n = 60
    total = n * 2
    spec_path = write_spec(tmp_path / "sweep", n, concurrency=8)
    journal = spec_path.parent / "journal.sqlite"
    with server_process(tmp_path / "server", "--fault-slow", "0.02") as server:
        cmd = sweep_cmd(server.url, spec_path, "--give-up-after", "1")
        proc = await trio.lowlevel.open_process(cmd, env=child_env(), cwd=str(spec_path.parent), stdout=-3, stderr=-1)
        assert proc.stderr is not None
        try:
            with trio.fail_after(120):
                while done_count(journal) < total * 0.3 and proc.poll() is None:
                    await trio.sleep(0.01)
                server.kill()
                killed_at = time.monotonic()
                err = b""
                async for chunk in proc.stderr:
                    err += chunk
                rc = await proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
        stderr = err.decode()
        assert rc == 3, stderr[-3000:]
        assert "unreachable" in stderr and "Run the same command again to resume" in stderr
        assert time.monotonic() - killed_at < 90
        assert done_count(journal) < total

        await trio.to_thread.run_sync(server.start)
        with trio.fail_after(90):
            final = await trio.run_process(sweep_cmd(server.url, spec_path, "--json"), env=child_env(),
                                           capture_stdout=True, capture_stderr=True, check=False)
    assert final.returncode == 0, final.stderr.decode()[-3000:]
    assert json.loads(final.stdout)["counts"]["done"] == total


async def test_retry_failed_sends_rows_marked_failed_again(tmp_path: Path) -> None:
    n = 5
    spec = load_spec(write_spec(tmp_path / "sweep", n))
    async with local_server(tmp_path / "server") as url:
        async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as service:
            first = await run_sweep(spec, service, progress=False)
            assert first.counts["done"] == n * 2
            # What a run before the fix left behind: rows failed "permanently" by an outage.
            conn = sqlite3.connect(spec.journal_path)
            keys = [k for (k,) in conn.execute("SELECT key FROM requests ORDER BY seq LIMIT 3")]
            conn.executemany(
                "UPDATE requests SET state = 'failed', result = NULL, error = 'SessionExpiredError: ...', retryable = 0 WHERE key = ?",
                [(k,) for k in keys],
            )
            conn.commit()
            conn.close()
            plain = await run_sweep(spec, service, progress=False)
            assert plain.sent_this_run == 0 and plain.counts["failed_permanent"] == 3 and plain.complete
            assert plain.message and "--retry-failed" in plain.message
            retried = await run_sweep(spec, service, progress=False, retry_failed=True)
    assert retried.sent_this_run == 3 and retried.counts["done"] == n * 2 and retried.counts["failed"] == 0
    assert [line.state for line in read_jsonl(retried.results or "")] == ["done"] * n * 2


class _FailedOnce:
    """What a sample whose own retries gave up looks like to the sweep: an error on await."""

    request_id = None
    state = None

    def __await__(self) -> Any:
        raise InternalServerError("POST /api/v1/asample: HTTP 500 (for the test)", status_code=500)
        yield  # pragma: no cover  (makes this a generator)


class _FlakySampler:
    """The real sampling client, except every third request fails once before it is sent."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.seen: set[str] = set()

    def get_tokenizer(self) -> Any:
        return self.real.get_tokenizer()

    def sample(self, *args: Any, idempotency_key: str, **kwargs: Any) -> Any:
        first = idempotency_key not in self.seen
        self.seen.add(idempotency_key)
        if first and len(self.seen) % 3 == 0:
            return _FailedOnce()
        return self.real.sample(*args, idempotency_key=idempotency_key, **kwargs)


async def test_the_bar_labels_transient_errors_apart_from_failed_rows(tmp_path: Path) -> None:
    n = 30
    spec = load_spec(write_spec(tmp_path / "sweep", n, concurrency=8))
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=250)
    async with local_server(tmp_path / "server") as url:
        async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as service:
            real = await service.create_sampling_client(base_model=spec.model.base_model)
            outcome = await run_sweep(spec, service, progress=True, console=console, sampler=_FlakySampler(real))
    assert outcome.complete and outcome.counts["failed"] == 0
    assert outcome.transient_errors == n * 2 // 3 and outcome.resent == outcome.transient_errors
    last = [line for line in out.getvalue().splitlines() if "re-sent" in line][-1]  # the final frame
    assert "failed 0" in last, last
    assert f"re-sent {outcome.resent} ({outcome.transient_errors} transient errors)" in last, last
    assert "errors 0" not in last.replace("transient errors", "")
