"""``tinker-actors demo``: the whole client in under a minute on a laptop.

On a ServiceClient (the CLI hands it one on an embedded local server) it:

1. trains a LoRA adapter for a few pipelined steps on a tiny corpus with
   :class:`~.trainer.Trainer` (checkpoints, metrics JSONL, resume record);
2. saves sampler weights and samples two continuations from them;
3. writes a sweep spec and its prompts, and runs the sweep with its SQLite
   journal, exporting the results to JSONL;

and returns a :class:`DemoOutcome` naming every file it wrote. All files go
under ``out_dir`` (a fresh directory per run).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec

from tinker_actors.clients import load_tokenizer
from tinker_actors.wire import types as wt

from .._log import get_logger
from .checkpoint_policy import CheckpointPolicy
from .sweep import run_sweep
from .sweep_spec import load_spec
from .trainer import EpochBatches, Trainer, TrainerConfig, sft_datum

__all__ = ["DemoOutcome", "run_demo", "DEMO_BASE_MODEL", "CORPUS"]

log = get_logger(__name__)

DEMO_BASE_MODEL = "tinker-actors/byte-lm-tiny"

CORPUS = [
    "The cat sat on the mat.",
    "The dog sat on the log.",
    "A bird sang in the tree.",
    "The sun rose over the hill.",
    "Rain fell on the quiet town.",
    "The cat chased the red ball.",
    "A fox ran across the field.",
    "The boat drifted down the river.",
]


class DemoOutcome(msgspec.Struct, kw_only=True):
    out_dir: str
    base_model: str
    steps: int
    losses: dict[int, float]
    checkpoints: list[str]
    sampler_path: str
    samples: list[str]
    metrics: str
    loop_state: str
    sweep_spec: str
    journal: str
    results: str
    sweep_counts: dict[str, int]
    sweep_summary: dict[str, Any]
    seconds: float


async def run_demo(service: Any, out_dir: str | Path, *, steps: int = 6, progress: bool | None = False) -> DemoOutcome:
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(None, DEMO_BASE_MODEL)

    # 1. train
    data = [sft_datum(tokenizer.encode(text, add_bos=True)) for text in CORPUS]
    config = TrainerConfig(
        run_dir=str(out / "trainer"),
        base_model=DEMO_BASE_MODEL,
        steps=steps,
        rank=8,
        seed=0,
        learning_rate=5e-3,
        checkpoint=CheckpointPolicy(every_steps=max(1, steps // 2), ttl_seconds=3600, keep_last=2),
    )
    trainer = Trainer(service, config, EpochBatches(data, batch_size=4, seed=0))
    trained = await trainer.run()
    log.info("demo_trained", steps=trained.steps_done, last_checkpoint=trained.last_checkpoint)

    # 2. sample from the trained weights
    saved = await trainer.training.save_weights_for_sampler("demo-final", ttl_seconds=3600)
    sampler = await service.create_sampling_client(model_path=saved.path)
    prompt = wt.ModelInput.from_ints(tokenizer.encode("The cat", add_bos=True))
    response = await sampler.sample(prompt, 2, wt.SamplingParams(max_tokens=24, temperature=0.7, seed=7, stop="."))
    samples = ["The cat" + tokenizer.decode(seq.tokens) for seq in response.sequences]

    # 3. a short sweep over the trained sampler
    sweep_dir = out / "sweep"
    sweep_dir.mkdir(exist_ok=True)
    prompts = ["The dog", "A bird", "The sun", "Rain"]
    (sweep_dir / "prompts.jsonl").write_text(
        "".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(prompts))
    )
    (sweep_dir / "sweep.toml").write_text(
        "[sweep]\nname = \"demo\"\n\n"
        f"[model]\nmodel_path = \"{saved.path}\"\n\n"
        "[input]\nprompts = \"prompts.jsonl\"\n\n"
        "[sampling]\ntemperature = [0.0, 0.8]\nmax_tokens = 24\nnum_samples = 2\nseed = [1, 2]\nstop = \".\"\n\n"
        "[output]\njournal = \"sweep.journal.sqlite\"\nresults = \"results.jsonl\"\n\n"
        "[concurrency]\nmax = 16\n"
    )
    spec = load_spec(sweep_dir / "sweep.toml")
    swept = await run_sweep(spec, service, progress=progress, sampler=sampler)

    checkpoints = [c.path for c in trainer.state.checkpoints]
    return DemoOutcome(
        out_dir=str(out),
        base_model=DEMO_BASE_MODEL,
        steps=trained.steps_done,
        losses=trained.losses,
        checkpoints=checkpoints,
        sampler_path=saved.path,
        samples=samples,
        metrics=trained.metrics_path,
        loop_state=str(trainer.state_path),
        sweep_spec=str(sweep_dir / "sweep.toml"),
        journal=swept.journal,
        results=swept.results or "",
        sweep_counts=swept.counts,
        sweep_summary=swept.summary,
        seconds=round(time.perf_counter() - started, 3),
    )
