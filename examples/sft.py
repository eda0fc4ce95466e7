"""Supervised fine-tuning with the trainer helper.

    python examples/sft.py [RUN_DIR]

Teaches the local byte-level model a handful of question/answer pairs:
pipelined steps, a checkpoint every 10 steps (kept: the newest 2), an
evaluation hook that samples without blocking training, metrics in
RUN_DIR/metrics.jsonl. Kill it and run it again: it resumes from its last
checkpoint. Against a real endpoint set TINKER_BASE_URL / TINKER_API_KEY
(and BASE_MODEL).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import trio

sys.path.insert(0, os.path.dirname(__file__))
from _local import service_client  # noqa: E402

from tinker_actors.jobs.checkpoint_policy import CheckpointPolicy  # noqa: E402
from tinker_actors.jobs.trainer import EpochBatches, EvalHook, Trainer, TrainerConfig, sft_datum  # noqa: E402
from tinker_actors.wire import types as wt  # noqa: E402

BASE_MODEL = os.environ.get("BASE_MODEL", "tinker-actors/byte-lm-tiny")
PAIRS = [("2+2=", "4"), ("3+3=", "6"), ("1+4=", "5"), ("2+5=", "7"), ("4+4=", "8"), ("1+2=", "3"), ("3+6=", "9"), ("0+1=", "1")]


async def main(run_dir: str) -> None:
    async with service_client() as service:
        tokenizer = (await service.create_sampling_client(base_model=BASE_MODEL)).get_tokenizer()
        data = []
        for q, a in PAIRS:
            prompt = tokenizer.encode(q, add_bos=True)
            data.append(sft_datum(prompt + tokenizer.encode(a + "\n"), prompt_len=len(prompt)))

        async def sample_answers(ctx: Any) -> dict[str, float]:
            saved = await ctx.training.save_weights_for_sampler(f"eval-{ctx.step:06d}", ttl_seconds=3600)
            sampler = await ctx.service.create_sampling_client(model_path=saved.path)
            right = 0
            for q, a in PAIRS:
                prompt = wt.ModelInput.from_ints(tokenizer.encode(q, add_bos=True))
                out = await sampler.sample(prompt, 1, wt.SamplingParams(max_tokens=2, temperature=0.0))
                right += tokenizer.decode(out.sequences[0].tokens).startswith(a)
            return {"accuracy": right / len(PAIRS)}

        config = TrainerConfig(
            run_dir=run_dir, base_model=BASE_MODEL, steps=60, rank=16, learning_rate=1e-2,
            checkpoint=CheckpointPolicy(every_steps=10, ttl_seconds=24 * 3600, keep_last=2),
        )
        trainer = Trainer(service, config, EpochBatches(data, batch_size=8),
                          eval_hooks=[EvalHook("answers", every_steps=20, fn=sample_answers)])
        outcome = await trainer.run()
        losses = list(outcome.losses.values())
        if losses:
            print(f"steps {outcome.steps_done}: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        print(f"checkpoint {outcome.last_checkpoint}\nmetrics    {outcome.metrics_path}")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "runs/sft-example")
