"""The server SIGKILLed and restarted (same port, same data dir) mid-sweep and mid-training.

* Sweep: the server is down for a second. The run in progress retries what
  was in flight (a future the restarted server never heard of is sent again)
  and finishes; a second run resumes from the journal and has nothing left
  to send. Every request ends done exactly once, and the restarted server
  computed nothing the journal already had.
* Trainer: the run reports the failure (a typed error, not a hang); a new
  run on the restarted server resumes from the last checkpoint and finishes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import trio
from harness import BASE_MODEL, KEY, record, stats, subprocess_server

from tinker_actors.clients import load_tokenizer, open_service_client
from tinker_actors.errors import TinkerActorsError
from tinker_actors.jobs.checkpoint_policy import CheckpointPolicy
from tinker_actors.jobs.export import read_jsonl
from tinker_actors.jobs.journal import Journal
from tinker_actors.jobs.sweep import run_sweep
from tinker_actors.jobs.trainer import EpochBatches, Trainer, TrainerConfig, sft_datum
from tinker_actors.jobs.sweep_spec import load_spec
from tinker_actors.runtime.config import PollSettings
from test_fault_sweep import write_spec

N_PROMPTS = 300  # x 2 seeds


def leaves(exc: BaseException) -> list[BaseException]:
    # Trainer.run raises its nursery's group (noted in docs/reliability.md)
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def done_count(spec: object) -> int:
    with Journal.open(spec.journal_path, spec_id=spec.spec_id, spec_hash=spec.spec_hash, readonly=True) as journal:  # type: ignore[attr-defined]
        return int(journal.counts()["done"])


async def test_sweep_resumes_from_its_journal_after_a_server_kill(tmp_path: Path) -> None:
    expected = N_PROMPTS * 2
    spec = load_spec(write_spec(tmp_path / "sweep", N_PROMPTS, cmax=16))
    started = time.perf_counter()
    first_error: str | None = None
    done_at_kill = 0
    with subprocess_server(tmp_path / "server", "--null-compute", "--fault-slow", "0.01") as server, trio.fail_after(180):
        async with open_service_client(base_url=server.url, api_key=KEY, telemetry=False, close_grace=5) as service:

            async def killer() -> None:
                while done_count(spec) < expected * 0.3:
                    await trio.sleep(0.02)
                nonlocal done_at_kill
                server.kill()
                done_at_kill = done_count(spec)
                await trio.sleep(1.0)
                server.start()

            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(killer)
                    first = await run_sweep(spec, service, progress=False, log_interval=3600)
            except* TinkerActorsError as group:  # the session died with the server: reported, not hung
                first_error = f"{type(group.exceptions[0]).__name__}: {group.exceptions[0]}"
                first = None
        done_after_first = done_count(spec)
        async with open_service_client(base_url=server.url, api_key=KEY, telemetry=False) as service:
            second = await run_sweep(spec, service, progress=False, log_interval=3600)
        s = await stats(server.url)
    lines = list(read_jsonl(second.results or ""))
    assert second.complete and second.counts["done"] == expected, [line.error for line in lines if line.state != "done"][:3]
    assert len(lines) == expected and len({line.key for line in lines}) == expected
    assert all(line.state == "done" for line in lines)
    # the resumed run sent only what the journal did not have
    assert second.skipped == done_after_first and second.sent_this_run >= expected - done_after_first
    assert s["work_done"]["Sample"] <= expected - done_at_kill  # nothing the journal had was computed again
    assert first is not None and first.complete, first_error
    record(
        "server_kill_mid_sweep",
        load=f"{expected} sample requests",
        faults={"sigkill": 1},
        done_at_kill=done_at_kill,
        restarted_server_work=s["work_done"]["Sample"],
        first_run=first_error or ("complete" if first is not None and first.complete else "partial"),
        resumed_sent=second.sent_this_run,
        lost=0,
        duplicates=len(lines) - len({line.key for line in lines}),
        hangs=0,
        wall_s=round(time.perf_counter() - started, 1),
    )


async def test_trainer_reports_the_kill_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    tok = load_tokenizer(None, BASE_MODEL)
    texts = [f"line {i}: the quick brown fox" for i in range(16)]
    data = [sft_datum(tok.encode(t, add_bos=True)) for t in texts]
    steps = 12
    config = TrainerConfig(
        run_dir=str(tmp_path / "run"), base_model=BASE_MODEL, steps=steps, rank=4, learning_rate=5e-3,
        checkpoint=CheckpointPolicy(every_steps=2),
    )
    error: BaseException | None = None
    with subprocess_server(tmp_path / "server") as server, trio.fail_after(180):
        # max_retries bounds how long the transport keeps trying a dead server;
        # progress_timeout how long a future's poll does (the default is the SDK's 2 h)
        async with open_service_client(
            base_url=server.url, api_key=KEY, telemetry=False, close_grace=5, max_retries=2, poll=PollSettings(progress_timeout=5)
        ) as service:
            trainer = Trainer(service, config, EpochBatches(data, 4))

            async def killer() -> None:
                while not (trainer.state.checkpoints and trainer.state.step >= 5):
                    await trio.sleep(0.01)
                server.kill()

            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(killer)
                    await trainer.run()
            except* TinkerActorsError as group:
                error = leaves(group)[0]
        step_at_kill = trainer.state.step
        checkpoint_at_kill = trainer.state.last_checkpoint
        server.start()
        async with open_service_client(base_url=server.url, api_key=KEY, telemetry=False) as service:
            outcome = await Trainer(service, config, EpochBatches(data, 4)).run()
    assert error is not None, "the trainer must report the server's death"
    assert "POST /api/v1/" in str(error) or "no progress" in str(error)
    assert outcome.resumed_from is not None and outcome.resumed_from == checkpoint_at_kill
    assert outcome.steps_done == steps
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_steps = [m["step"] for m in metrics if "eval" not in m]
    assert train_steps == list(range(1, steps + 1))  # each step once, in order
    record(
        "server_kill_mid_training",
        load=f"{steps} steps, checkpoint every 2",
        faults={"sigkill": 1},
        error=type(error).__name__,
        step_at_kill=step_at_kill,
        resumed_from=checkpoint_at_kill,
        lost=0,
        duplicates=len(train_steps) - len(set(train_steps)),
        hangs=0,
    )
