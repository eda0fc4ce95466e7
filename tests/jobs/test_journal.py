"""The sweep journal: crash safety under SIGKILL, spec ownership, batching."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tinker_actors.errors import ConfigError
from tinker_actors.jobs.journal import Journal, JournalCorruptError, open_journal_writer
from tinker_actors.jobs.records import SampleResult, SequenceResult
from tinker_actors.jobs.sweep_spec import (
    ModelRef,
    Prompt,
    SweepRequest,
    idempotency_key,
    request_content,
    request_key,
)

import _journal_child as child  # tests/jobs is on sys.path (pytest rootdir-less import)

N = 800
ROOT = Path(__file__).resolve().parents[2]


def run_child(db: Path, side: Path, *, kill_at: int = -1, kill_after_lines: int | None = None) -> str:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_journal_child.py")), str(db), str(side), str(N), str(kill_at)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    last = ""
    if kill_after_lines is not None:
        # kill from outside while the child is between or inside writes
        for _ in range(kill_after_lines):
            last = proc.stdout.readline()
            if not last:
                break
        proc.kill()
    out = proc.stdout.read()
    proc.wait(timeout=30)
    return last + out


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    db, side = tmp_path / "j.sqlite", tmp_path / "side.log"
    rng = random.Random(20260805)
    killed = 0
    for i in range(4):
        if i % 2 == 0:
            out = run_child(db, side, kill_at=rng.randint(2, 120))
        else:
            out = run_child(db, side, kill_after_lines=rng.randint(5, 150))
        ops = [int(x) for x in out.split() if x.isdigit()]
        # the child got going (wrote to the journal) and was cut off mid-sweep
        killed += bool(ops) and "finished" not in out
    assert killed == 4  # the kills really interrupted the sweep
    assert "finished" in run_child(db, side)

    with Journal.open(db, spec_id=child.SPEC_ID, spec_hash=child.SPEC_HASH) as journal:
        counts = journal.counts()
        assert counts["done"] == counts["total"] == N
        assert list(journal.pending()) == []
        rows = list(journal.results())
    assert len(rows) == N and len({r.key for r in rows}) == N
    assert [r.prompt_id for r in rows] == [f"p{i}" for i in range(N)]  # plan order
    for r in rows:
        assert r.result == child.result_for(r.key)  # every result whole
        assert r.attempts >= 1 and r.latency_s == 0.25

    # finished work was never sent again: no "send" after a key's "done"
    done: set[str] = set()
    resent = []
    for line in side.read_text().splitlines():
        what, key = line.split()
        if what == "done":
            done.add(key)
        elif key in done:
            resent.append(key)
    assert resent == []
    # The child logs "done" just after each commit (of up to 3 results), so a
    # kill between the two leaves at most 3 committed results per kill unlogged.
    assert done <= {r.key for r in rows}
    assert len({r.key for r in rows} - done) <= 3 * 4


def _with_text(req, text: str):
    """``req`` with other text under the same prompt id, keyed as the planner would key it."""
    prompt = Prompt(id=req.prompt.id, line=req.prompt.line, text=text)
    content = request_content(ModelRef(base_model="m"), prompt, req.setting, {})
    key = request_key(child.SPEC_ID, prompt.id, content)
    return SweepRequest(key=key, idempotency_key=idempotency_key(key), prompt=prompt, setting=req.setting, content=content)


def _result(n: int = 3) -> SampleResult:
    return SampleResult(sequences=[SequenceResult(tokens=list(range(n)), stop_reason="stop")])


def test_refuses_a_journal_of_another_spec(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    with Journal.open(db, spec_id="a", spec_hash="1" * 64) as journal:
        journal.plan(child.requests(3))
    with pytest.raises(ConfigError, match="belongs to a different sweep spec"):
        Journal.open(db, spec_id="a", spec_hash="2" * 64)
    with pytest.raises(ConfigError, match="different sweep spec"):
        Journal.open(db, spec_id="b", spec_hash="1" * 64)
    # the refusal changed nothing; the right spec still opens
    with Journal.open(db, spec_id="a", spec_hash="1" * 64) as journal:
        assert journal.counts()["total"] == 3


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    with Journal.open(db, spec_id="a", spec_hash="h"):
        with pytest.raises(ConfigError, match="in use by another process"):
            Journal.open(db, spec_id="a", spec_hash="h")
        with Journal.open(db, spec_id="a", spec_hash="h", readonly=True) as reader:
            assert reader.counts()["total"] == 0
    Journal.open(db, spec_id="a", spec_hash="h").close()  # the lock went with the writer


def test_plan_is_idempotent_and_catches_changed_prompts(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite", spec_id=child.SPEC_ID, spec_hash="h") as journal:
        reqs = child.requests(10)
        assert journal.plan(reqs[:6]) == 6
        assert journal.plan(reqs) == 4  # appended prompts join the sweep
        assert journal.plan(reqs) == 0
        changed = list(reqs)
        changed[2] = _with_text(reqs[2], "another text under the same id")
        with pytest.raises(ConfigError, match=r"prompt 'p2' \(setting 0\) changed"):
            journal.plan(changed)
        assert journal.counts()["total"] == 10


def test_results_are_recorded_once_and_failures_resend(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite", spec_id="s", spec_hash="h") as journal:
        reqs = child.requests(4)
        journal.plan(reqs)
        k0, k1, k2, k3 = (r.key for r in reqs)
        assert journal.mark_sent(k0)
        assert journal.record_result(k0, _result(3), latency_s=1.5)
        assert not journal.record_result(k0, _result(9))  # a duplicate changes nothing
        assert not journal.mark_sent(k0)  # finished work is not sent again
        assert journal.get(k0).result == _result(3)

        journal.mark_sent(k1)
        journal.record_failure(k1, "HTTP 503", retryable=True)
        journal.mark_sent(k2)
        journal.record_failure(k2, "HTTP 400 bad prompt", retryable=False)
        journal.mark_sent(k3)  # in flight when the run stopped

        assert [r.key for r in journal.pending()] == [k1, k3]
        assert [r.key for r in journal.pending(include_failed=True)] == [k1, k2, k3]
        assert journal.counts() == {"pending": 0, "sent": 1, "done": 1, "failed": 2, "total": 4, "failed_permanent": 1}
        journal.mark_sent(k1)
        assert journal.get(k1).attempts == 2 and journal.get(k1).state == "sent"
        with pytest.raises(KeyError):
            journal.mark_sent("no-such-key")


def test_api_key_never_reaches_the_file(tmp_path: Path) -> None:
    secret = "tml-abcdefghijklmnopqrstuvwxyz0123456789"
    db = tmp_path / "j.sqlite"
    with Journal.open(db, spec_id="s", spec_hash="h") as journal:
        reqs = child.requests(1)
        journal.plan(reqs)
        journal.mark_sent(reqs[0].key)
        journal.record_failure(reqs[0].key, f"401 for key {secret}", retryable=False)
        assert secret not in (journal.get(reqs[0].key).error or "")
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("j.sqlite"))
    assert secret.encode() not in data


async def test_writer_batches_by_size_and_time(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    journal = Journal.open(tmp_path / "j.sqlite", spec_id="s", spec_hash="h")
    reqs = child.requests(10)
    journal.plan(reqs)
    async with open_journal_writer(journal, max_batch=4, max_delay=0.5) as writer:
        t0 = trio.current_time()
        writer.add_result(reqs[0].key, _result(), latency_s=0.1)
        await trio.sleep(0.4)
        assert journal.counts()["done"] == 0  # still buffered
        await trio.sleep(0.2)
        assert journal.counts()["done"] == 1  # flushed by time
        for r in reqs[1:5]:
            writer.add_result(r.key, _result())
        await trio.testing.wait_all_tasks_blocked()
        assert journal.counts()["done"] == 5  # flushed by size, no waiting
        assert trio.current_time() - t0 == pytest.approx(0.6)
        writer.add_failure(reqs[5].key, "boom", retryable=True)
        writer.add_result(reqs[6].key, _result())
    # leaving the block flushes what was left
    assert journal.counts()["done"] == 6 and journal.counts()["failed"] == 1
    assert writer.commits == 3
    journal.close()


def _filled(db: Path, n: int = 400) -> list[SweepRequest]:
    reqs = child.requests(n)
    with Journal.open(db, spec_id=child.SPEC_ID, spec_hash=child.SPEC_HASH) as journal:
        journal.plan(reqs)
        with journal.transaction():
            for r in reqs:
                journal.mark_sent(r.key)
                journal.record_result(r.key, child.result_for(r.key))
    # fold the WAL into the main file, so damage to the file is damage to the data
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return reqs


@pytest.mark.parametrize("damage", ["pages", "header"])
def test_a_corrupt_journal_names_the_file_and_the_way_out(tmp_path: Path, damage: str) -> None:
    """Issue 11: "DatabaseError: database disk image is malformed", naming no file and no way out."""
    db = tmp_path / "j.sqlite"
    reqs = _filled(db)
    data = bytearray(db.read_bytes())
    rng = random.Random(11)
    if damage == "pages":  # garbage over every b-tree page after the schema page
        for page in range(1, len(data) // 4096):
            start = page * 4096
            data[start : start + 4096] = bytes(rng.randrange(256) for _ in range(4096))
    else:
        data[:100] = b"\x00" * 100
    db.write_bytes(bytes(data))

    def use() -> None:
        with Journal.open(db, spec_id=child.SPEC_ID, spec_hash=child.SPEC_HASH) as journal:
            journal.plan(reqs)
            list(journal.pending())

    with pytest.raises(JournalCorruptError) as info:
        use()
    message = str(info.value)
    assert info.value.path == db and isinstance(info.value, ConfigError)
    assert message.startswith(f"{db}: the sweep journal is damaged")
    assert "--journal" in message and f"mv {db}" in message and ".recover" in message
    # read-only users (status, export) get the same answer
    with pytest.raises(JournalCorruptError):
        with Journal.open(db, spec_id=child.SPEC_ID, spec_hash=child.SPEC_HASH, readonly=True) as journal:
            journal.counts()
            list(journal.results())
    # moved aside, the sweep starts over in a fresh file
    db.rename(tmp_path / "j.sqlite.damaged")
    with Journal.open(db, spec_id=child.SPEC_ID, spec_hash=child.SPEC_HASH) as journal:
        assert journal.plan(reqs) == len(reqs)


def test_an_older_journal_stays_readable_and_is_refused_for_writing(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    reqs = _filled(db, 5)
    conn = sqlite3.connect(db)
    conn.execute("DROP INDEX requests_slot")
    conn.execute("ALTER TABLE requests DROP COLUMN generation")
    conn.execute("UPDATE meta SET value = '1' WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    with Journal.open(db, spec_id=child.SPEC_ID, spec_hash=child.SPEC_HASH, readonly=True) as journal:
        assert journal.counts()["done"] == 5
        assert [r.result for r in journal.results()] == [child.result_for(r.key) for r in reqs]
    with pytest.raises(ConfigError, match=r"older tinker_actors whose request keys did not cover .* new journal"):
        Journal.open(db, spec_id=child.SPEC_ID, spec_hash=child.SPEC_HASH)


def test_next_generation_is_committed_once_per_forgotten_key(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite", spec_id="s", spec_hash="h") as journal:
        (req,) = child.requests(1)
        journal.plan([req])
        journal.mark_sent(req.key, request_id="req-dead")
        assert journal.get(req.key).idempotency_key == idempotency_key(req.key)
        gen, key = journal.next_generation(req.key, seen=0)
        assert (gen, key) == (1, idempotency_key(req.key, 1))
        # a second task that saw the same dead key does not skip a generation
        assert journal.next_generation(req.key, seen=0) == (1, key)
        row = journal.get(req.key)
        assert (row.generation, row.idempotency_key, row.request_id) == (1, key, None)
    # the move survives a restart: the next process sends under the new key
    with Journal.open(tmp_path / "j.sqlite", spec_id="s", spec_hash="h") as journal:
        (row,) = journal.pending()
        assert (row.generation, row.idempotency_key) == (1, key)


def test_the_cli_reports_a_corrupt_journal_and_runs_on_a_new_one(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "s.toml").write_text(
        '[model]\nbase_model = "tinker-actors/byte-lm-tiny"\n[input]\nprompts = "p.jsonl"\n'
        '[output]\njournal = "j.sqlite"\nresults = "r.jsonl"\n'
    )
    (tmp_path / "j.sqlite").write_bytes(b"this is not a journal" * 500)
    cmd = [sys.executable, "-m", "tinker_actors", "sweep", "s.toml", "--status"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    damaged = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert damaged.returncode == 2, damaged.stderr
    assert "j.sqlite: the sweep journal is damaged" in damaged.stderr and "--journal NEW.sqlite" in damaged.stderr
    assert "Traceback" not in damaged.stderr
    fresh = subprocess.run([*cmd, "--journal", "new.sqlite"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert fresh.returncode == 0, fresh.stderr
    assert "new.sqlite: no journal yet" in fresh.stdout
