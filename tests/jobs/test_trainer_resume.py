"""The trainer: a SIGKILLed ``tinker-actors train`` resumes with the loss of an uninterrupted run.

Also: SIGTERM finishes the step in flight and checkpoints it (exit 130), and
in-process, rolling clean-up deletes old checkpoints on the server while
evaluation hooks run beside training.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from support import child_env, local_server, server_stats

from tinker_actors.clients import load_tokenizer, open_service_client
from tinker_actors.errors import ConfigError
from tinker_actors.jobs.checkpoint_policy import CheckpointPolicy, load_loop_state
from tinker_actors.jobs.trainer import (
    EpochBatches,
    EvalHook,
    Trainer,
    TrainerConfig,
    read_metrics,
    sft_datum,
)
from tinker_actors.server import FaultConfig

ROOT = Path(__file__).resolve().parents[2]
KEY = "tml-trainer-test"
BASE = "tinker-actors/byte-lm-tiny"
TEXTS = [f"example {i}: the {'cat' if i % 2 else 'dog'} sat on mat {i}." for i in range(16)]


def train_cmd(url: str, data: Path, run_dir: Path, steps: int = 12) -> list[str]:
    return [
        sys.executable, "-m", "tinker_actors", "--base-url", url, "--api-key", KEY, "train",
        "--data", str(data), "--run-dir", str(run_dir), "--steps", str(steps), "--batch-size", "4",
        "--save-every", "3", "--lr", "0.005", "--seed", "1",
    ]


def losses(run_dir: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in read_metrics(run_dir / "metrics.jsonl") if "eval" not in m}


def write_data(path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return path


async def run_cli(cmd: list[str]) -> trio.CompletedProcess:  # type: ignore[type-arg]
    with trio.fail_after(60):
        return await trio.run_process(cmd, env=child_env(), capture_stdout=True, capture_stderr=True, check=False)


async def test_sigkilled_trainer_resumes_with_matching_loss(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl")
    slow = FaultConfig(slow_s=0.03, routes=["forward_backward"])
    async with local_server(tmp_path / "server", faults=slow) as url:
        ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
        ref = await run_cli(train_cmd(url, data, ref_dir))
        assert ref.returncode == 0, ref.stderr.decode()[-2000:]

        proc = await trio.lowlevel.open_process(train_cmd(url, data, run_dir), env=child_env(), stdout=-3, stderr=-3)
        with trio.fail_after(30):
            # past the first checkpoint (step 3), between two checkpoints
            while len(losses(run_dir)) < 5 and proc.poll() is None:
                await trio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        killed_at = max(losses(run_dir))
        state = load_loop_state(run_dir / "loop_state.json")
        assert state is not None and 3 <= state.step < 12 and state.step <= killed_at
        assert state.data.index == state.step % 4 and state.data.epoch == state.step // 4

        resumed = await run_cli(train_cmd(url, data, run_dir) + ["--json"])
        assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
        out = json.loads(resumed.stdout)
        assert out["resumed_from"] == state.last_checkpoint
        assert min(int(k) for k in out["losses"]) == state.step + 1  # it re-ran only what the checkpoint lacks

    want, got = losses(ref_dir), losses(run_dir)
    assert sorted(got) == list(range(1, 13))  # no duplicate or missing metric lines
    assert got == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert got[12] < got[1]


async def test_sigterm_finishes_the_step_and_checkpoints(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl")
    slow = FaultConfig(slow_s=0.05, routes=["forward_backward"])
    async with local_server(tmp_path / "server", faults=slow) as url:
        run_dir = tmp_path / "run"
        cmd = train_cmd(url, data, run_dir, steps=40)
        proc = await trio.lowlevel.open_process(cmd, env=child_env(), stdout=-3, stderr=-3)
        with trio.fail_after(30):
            while len(losses(run_dir)) < 4:
                await trio.sleep(0.005)
            proc.send_signal(signal.SIGTERM)
            rc = await proc.wait()
        assert rc == 130
        state = load_loop_state(run_dir / "loop_state.json")
        assert state is not None
        # the checkpoint is of the last step the trainer logged: nothing is lost
        assert state.step == max(losses(run_dir)) < 40
        assert state.last_checkpoint and state.last_checkpoint.endswith(f"step-{state.step:06d}")


async def test_rolling_cleanup_and_eval_hooks(tmp_path: Path) -> None:
    tok = load_tokenizer(None, BASE)
    data = [sft_datum(tok.encode(t, add_bos=True)) for t in TEXTS]
    evals: list[int] = []
    gate = trio.Event()

    async def slow_eval(ctx: Any) -> dict[str, float]:
        # the first evaluation blocks until training is over: training must not wait for it
        if not evals:
            evals.append(ctx.step)
            await gate.wait()
        else:
            evals.append(ctx.step)
        return {"eval_loss": 1.0}

    async with local_server(tmp_path / "server") as url:
        async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as service:
            config = TrainerConfig(run_dir=str(tmp_path / "run"), base_model=BASE, steps=8, learning_rate=5e-3,
                                   checkpoint=CheckpointPolicy(every_steps=2, keep_last=2))
            trainer = Trainer(service, config, EpochBatches(data, 4), eval_hooks=[EvalHook("slow", 2, slow_eval)])

            async def release_after_training() -> None:
                while trainer.state.step < 8:
                    await trio.sleep(0.01)
                gate.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(release_after_training)
                outcome = await trainer.run()
            assert outcome.steps_done == 8 and not outcome.interrupted
            # the blocked hook was skipped at steps 4, 6 (still busy), not queued
            assert evals[0] == 2 and 4 not in evals
            rest = service.create_rest_client()
            run_id = outcome.last_checkpoint.split("/")[2]
            # clean-up runs in the trainer's background nursery, which run() waits for
            names = sorted(c.tinker_path.rsplit("/", 1)[1] for c in (await rest.list_checkpoints(run_id)).checkpoints)
    assert names == ["step-000006", "step-000008"]
    assert [c.step for c in trainer.state.checkpoints] == [6, 8]
    # the resume record on disk lists only the checkpoints that were kept
    saved = load_loop_state(tmp_path / "run" / "loop_state.json")
    assert saved is not None and [c.step for c in saved.checkpoints] == [6, 8]
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in lines if "eval" not in m] == list(range(1, 9))
    assert any(m.get("eval") == "slow" for m in lines)


async def run_child(url: str, run_dir: Path, mode: str = "none", kill_step: int = 0, steps: int = 12) -> trio.CompletedProcess:  # type: ignore[type-arg]
    cmd = [sys.executable, str(Path(__file__).with_name("_trainer_child.py")), url, str(run_dir), str(steps), mode, str(kill_step)]
    with trio.fail_after(60):
        return await trio.run_process(cmd, env=child_env(), capture_stdout=True, capture_stderr=True, check=False)


async def test_metrics_keep_one_line_per_step_across_kills_at_every_write(tmp_path: Path) -> None:
    """Issue 10, case 7: a SIGKILL between loop_state.json and the step's metrics line lost the
    line for good, and a torn last line made every later resume fail with a JSONDecodeError."""
    async with local_server(tmp_path / "server") as url:
        ref = await run_child(url, tmp_path / "ref")
        assert ref.returncode == 0, ref.stderr.decode()[-2000:]
        run_dir = tmp_path / "run"
        # checkpoints every 3 steps: each kill cuts a checkpoint step's two writes apart, or tears a line
        for mode, step in [("after_state", 3), ("after_line", 6), ("torn", 7), ("after_state", 9), ("torn", 10)]:
            killed = await run_child(url, run_dir, mode, step)
            assert killed.returncode == -signal.SIGKILL, (mode, step, killed.stderr.decode()[-2000:])
        final = await run_child(url, run_dir)
        assert final.returncode == 0, final.stderr.decode()[-2000:]
    assert json.loads(final.stdout.decode().splitlines()[-1])["steps_done"] == 12
    steps = [m["step"] for m in read_metrics(run_dir / "metrics.jsonl") if "eval" not in m]
    assert steps == list(range(1, 13))  # one line per step, in order: none lost, none twice
    assert losses(run_dir) == pytest.approx(losses(tmp_path / "ref"), rel=1e-6, abs=1e-9)
    # the last line of the file is whole
    assert (run_dir / "metrics.jsonl").read_text().endswith("}\n")


def test_a_torn_last_line_is_dropped_and_a_bad_middle_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [m["step"] for m in read_metrics(path)] == [1, 2]
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n{"step": 3, "loss": 1.0}\n')
    with pytest.raises(ConfigError, match=r"metrics\.jsonl:2: unreadable metrics line"):
        read_metrics(path)


@pytest.mark.parametrize(
    "faults",
    [FaultConfig(seed=4, rate_5xx=0.05), FaultConfig(seed=4, rate_5xx=0.5, routes=["save_weights"])],
    ids=["5pct-every-route", "half-the-saves"],
)
async def test_a_trainer_run_survives_5xx(tmp_path: Path, faults: FaultConfig) -> None:
    """Issue 10, case 4: one injected 500 on save_weights ended the run."""
    tok = load_tokenizer(None, BASE)
    data = [sft_datum(tok.encode(t, add_bos=True)) for t in TEXTS]

    async def train(server_dir: Path, run_dir: Path, faults: FaultConfig) -> tuple[Any, dict[str, Any]]:
        async with local_server(server_dir, faults=faults) as url:
            async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as service:
                config = TrainerConfig(run_dir=str(run_dir), base_model=BASE, steps=12, rank=4, learning_rate=5e-3,
                                       checkpoint=CheckpointPolicy(every_steps=2, keep_last=2))
                outcome = await Trainer(service, config, EpochBatches(data, 4)).run()
            return outcome, await server_stats(url, KEY)

    with trio.fail_after(300):
        ref, _ = await train(tmp_path / "ref-server", tmp_path / "ref", FaultConfig())
        got, stats = await train(tmp_path / "server", tmp_path / "run", faults)
    assert stats["faults"]["5xx"] > 0
    assert got.steps_done == 12 and not got.interrupted
    steps = [m["step"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval" not in m]
    assert steps == list(range(1, 13))
    assert got.losses == pytest.approx(ref.losses, rel=1e-6, abs=1e-9)
    assert got.last_checkpoint and got.last_checkpoint.endswith("step-000012")
