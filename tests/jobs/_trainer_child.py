"""A trainer that SIGKILLs itself at a chosen write, for the crash-consistency test.

argv: base URL, run dir, steps, kill mode, kill step. Modes:

* ``after_state``: right after ``loop_state.json`` is written for the kill step;
* ``after_line``: right after the kill step's metrics line is appended;
* ``torn``: half-way through appending the kill step's metrics line;
* ``none``: run to the end and print the outcome as JSON.

Both write orders of a checkpoint step (line then state, state then line)
are thereby cut in between, whichever order the trainer uses.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import trio

from tinker_actors.clients import load_tokenizer, open_service_client
from tinker_actors.jobs import trainer as trainer_module
from tinker_actors.jobs.checkpoint_policy import CheckpointPolicy
from tinker_actors.jobs.trainer import EpochBatches, Trainer, TrainerConfig, sft_datum

KEY = "tml-trainer-crash"
BASE = "tinker-actors/byte-lm-tiny"
TEXTS = [f"example {i}: the {'cat' if i % 2 else 'dog'} sat on mat {i}." for i in range(16)]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(mode: str, kill_step: int) -> None:
    if mode == "after_state":
        real_save = trainer_module.save_loop_state

        def save_then_die(state: Any, path: Any) -> None:
            real_save(state, path)
            if state.step == kill_step:
                die()

        trainer_module.save_loop_state = save_then_die
    elif mode in ("after_line", "torn"):
        real_log = Trainer._log_metrics

        def log_then_die(self: Trainer, line: dict[str, Any], **kw: Any) -> None:
            if line.get("step") != kill_step or "eval" in line:
                real_log(self, line, **kw)
                return
            if mode == "torn":
                text = json.dumps(line)
                with open(self.metrics_path, "a") as fh:
                    fh.write(text[: len(text) // 2])
                die()
            real_log(self, line, **kw)
            die()

        Trainer._log_metrics = log_then_die  # type: ignore[method-assign]


async def main() -> None:
    url, run_dir, steps, mode, kill_step = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    arm(mode, kill_step)
    tok = load_tokenizer(None, BASE)
    data = [sft_datum(tok.encode(t, add_bos=True)) for t in TEXTS]
    config = TrainerConfig(
        run_dir=run_dir, base_model=BASE, steps=steps, rank=4, seed=1, learning_rate=5e-3,
        checkpoint=CheckpointPolicy(every_steps=3),
    )
    async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as service:
        outcome = await Trainer(service, config, EpochBatches(data, 4, seed=1)).run()
    print(json.dumps({"steps_done": outcome.steps_done, "resumed_from": outcome.resumed_from}), flush=True)


if __name__ == "__main__":
    trio.run(main)
