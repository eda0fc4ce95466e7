"""The job commands: demo, sweep, train (bench lives in _bench)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import trio
from rich.console import Console

from ._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNAVAILABLE, Globals, UsageError, connect, run_job


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter, help=help, description=description
        )

    p = add(
        "demo",
        help="train, save, sample and sweep on a local server; print where the files are",
        description=(
            "Start the local server (unless --base-url/TINKER_BASE_URL names one), train a LoRA adapter for a few\n"
            "steps, save it, sample from it and run a short journaled sweep. Files go to DATA_DIR/demo/run-<time>/."
        ),
    )
    p.add_argument("--steps", type=int, default=6, help="training steps (default 6)")
    p.add_argument("--out", type=Path, default=None, help="where the demo writes its files (default: DATA_DIR/demo/run-<time>)")
    p.set_defaults(handler=cmd_demo)

    p = add(
        "sweep",
        help="run or resume a sampling sweep",
        description=(
            "Run every prompt x sampling setting of SPEC (TOML or JSON; see docs/sweep.md).\n"
            "Each request is journaled (SQLite, WAL) before it is sent and its result when it arrives.\n"
            "Interrupt at any point and run the same command again: finished work is never re-sent.\n"
            "Transient failures (connection loss, 5xx, 429, an expired session or future) are retried; while the\n"
            "server is unreachable the sweep waits, up to --give-up-after, then stops with a resumable journal.\n\n"
            "exit codes: 0 all done, 1 some requests failed, 2 bad spec, 3 server unavailable (resumable), 130 interrupted"
        ),
    )
    p.add_argument("spec", type=Path, help="the sweep spec file (.toml or .json)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="print the journal's counts and exit (no server needed)")
    mode.add_argument("--export-only", action="store_true", help="write the results JSONL from the journal and exit (no server needed)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="log lines instead of a bar")
    p.add_argument("--log-interval", type=float, default=10.0, help="seconds between progress log lines when not on a terminal")
    p.add_argument("--durable", action="store_true", help="fsync every journal commit (survives power loss, slower)")
    p.add_argument("--journal", type=Path, default=None, metavar="PATH", help="use this journal file instead of [output] journal")
    p.add_argument(
        "--give-up-after", type=float, default=None, metavar="SECONDS",
        help="stop (resumable, exit 3) once the server was unreachable this long (default: [retry] give_up_after_s, "
        "7200; inf: never)",
    )
    p.add_argument("--retry-failed", action="store_true", help="also send again the requests a previous run marked failed")
    p.set_defaults(handler=cmd_sweep)

    p = add(
        "train",
        help="run or resume a supervised fine-tuning trainer",
        description=(
            "Fine-tune a LoRA adapter on a JSONL file of {\"text\": ...} or {\"prompt\": ..., \"completion\": ...}\n"
            "(or {\"tokens\": [...]}) lines. Checkpoints, loop state and metrics.jsonl live in --run-dir; running\n"
            "the same command again resumes from the last checkpoint with the optimizer state.\n"
            "SIGINT/SIGTERM: the step in flight finishes, a checkpoint is saved, exit code 130."
        ),
    )
    p.add_argument("--data", type=Path, required=True, help="training examples (JSONL)")
    p.add_argument("--run-dir", type=Path, required=True, help="checkpoint records and metrics go here")
    p.add_argument("--base-model", default="tinker-actors/byte-lm-tiny")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--save-every", type=int, default=20, help="checkpoint every N steps")
    p.add_argument("--save-minutes", type=float, default=None, help="...and/or every M minutes")
    p.add_argument("--ttl-hours", type=float, default=168.0, help="checkpoint TTL (default 7 days; 0: none)")
    p.add_argument("--keep-last", type=int, default=None, help="delete older checkpoints beyond the newest K")
    p.add_argument("--no-pipeline", action="store_true", help="await each step before submitting the next")
    p.set_defaults(handler=cmd_train)

    from . import _bench

    _bench.add_parsers(sub, common)


# ----------------------------------------------------------------- demo


async def cmd_demo(ns: argparse.Namespace, g: Globals) -> int:
    from tinker_actors.jobs.demo import run_demo

    out = ns.out or g.data_dir / "demo" / f"run-{dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"

    async def job(stop: trio.Event) -> int:
        async with connect(g) as service:
            g.note("[bold]tinker-actors demo[/]: training, saving, sampling and sweeping on the local model...")
            outcome = await run_demo(service, out, steps=ns.steps)

        def human(c: Console) -> None:
            losses = list(outcome.losses.values())
            c.print(f"[bold green]demo finished[/] in {outcome.seconds:.1f} s")
            where = "embedded local server" if g.embedded else g.remote_url
            c.print(f"  server       {where}" + (f" (data dir {g.data_dir}/)" if g.embedded else ""))
            if losses:
                c.print(f"  trained      {outcome.steps} steps of {outcome.base_model}: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
            c.print(f"  checkpoints  {', '.join(outcome.checkpoints) or '-'}")
            c.print(f"  sampled      {outcome.sampler_path}")
            for s in outcome.samples:
                c.print(f"               {s!r}")
            done = outcome.sweep_counts.get("done", 0)
            c.print(f"  swept        {done}/{outcome.sweep_counts.get('total', 0)} requests")
            c.print("[bold]files[/]")
            c.print(f"  demo dir     {outcome.out_dir}")
            c.print(f"  metrics      {outcome.metrics}")
            c.print(f"  loop state   {outcome.loop_state}")
            c.print(f"  sweep spec   {outcome.sweep_spec}")
            c.print(f"  journal      {outcome.journal}")
            c.print(f"  results      {outcome.results}")
            c.print(f"next: tinker-actors sweep {outcome.sweep_spec}   (resumes; nothing left to send)")

        g.emit(outcome, human)
        return EXIT_OK

    return await run_job(job, graceful=False)


# ----------------------------------------------------------------- sweep


async def cmd_sweep(ns: argparse.Namespace, g: Globals) -> int:
    from tinker_actors.jobs.journal import Journal
    from tinker_actors.jobs.sweep import export_sweep, run_sweep, sweep_status
    from tinker_actors.jobs.sweep_spec import load_spec

    spec = load_spec(ns.spec)
    if ns.journal is not None:
        spec = msgspec.structs.replace(spec, journal_path=ns.journal)
    if ns.status:
        status = sweep_status(spec)
        g.emit(status, lambda c: c.print(_status_line(status)))
        return EXIT_OK
    if ns.export_only:
        if not spec.journal_path.exists():
            raise UsageError(f"{spec.journal_path}: no journal yet; run the sweep first")
        with Journal.open(spec.journal_path, spec_id=spec.spec_id, spec_hash=spec.spec_hash, readonly=True) as journal:
            summary = export_sweep(spec, journal)
        g.emit({"results": str(spec.results_path), "summary": summary}, lambda c: c.print(f"wrote {spec.results_path}"))
        return EXIT_OK

    give_up = spec.give_up_after_s
    if ns.give_up_after is not None:
        if not ns.give_up_after > 0:
            raise UsageError(f"--give-up-after must be a positive number of seconds (or inf), got {ns.give_up_after:g}")
        give_up = None if ns.give_up_after == float("inf") else ns.give_up_after

    async def job(stop: trio.Event) -> int:
        async with connect(g) as service:
            outcome = await run_sweep(
                spec, service, progress=ns.progress, console=g.stderr, log_interval=ns.log_interval, durable=ns.durable,
                give_up_after=give_up, retry_failed=ns.retry_failed,
            )
        g.emit(outcome, lambda c: _sweep_human(c, outcome))
        if outcome.message:
            g.note(outcome.message)
        if outcome.gave_up:
            return EXIT_UNAVAILABLE
        return EXIT_OK if outcome.complete and not outcome.counts.get("failed") else EXIT_FAILED

    rc = await run_job(job, graceful=False)
    if rc == EXIT_INTERRUPTED:
        g.note(f"interrupted: the journal {spec.journal_path} holds every finished result; run the same command to resume")
    return rc


def _status_line(s: dict[str, Any]) -> str:
    if not s.get("exists"):
        return f"{s['journal']}: no journal yet"
    return (
        f"{s['journal']}: {s['done']}/{s['total']} done, {s['sent']} in flight when last stopped, "
        f"{s['pending']} pending, {s['failed']} failed ({s['failed_permanent']} permanently)"
    )


def _sweep_human(c: Console, o: Any) -> None:
    counts = o.counts
    failed, permanent = counts.get("failed", 0), counts.get("failed_permanent", 0)
    c.print(
        f"[bold]sweep {o.spec_id}[/]: {counts.get('done', 0)}/{counts.get('total', 0)} done "
        f"({o.sent_this_run} sent this run, {o.skipped} already done), {failed} failed"
        + (f" ({permanent} refused by the server)" if failed else "")
    )
    c.print(
        f"  retried  {o.resent} re-sent after {o.transient_errors} transient errors"
        + (f"; {o.new_keys} under a new key (the server forgot their future)" if o.new_keys else "")
        + (f"; {o.sessions_opened} new sessions" if o.sessions_opened else "")
        + (f"; server unreachable {o.outages}x, longest {o.longest_outage_s:.0f} s" if o.outages else "")
    )
    lat = (o.summary or {}).get("latency_s") or {}
    if lat.get("count"):
        c.print(
            f"  latency p50 {lat['p50'] * 1000:.0f} ms, p90 {lat['p90'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms, "
            f"max {lat['max'] * 1000:.0f} ms; {o.summary.get('generated_tokens', 0)} tokens generated"
        )
    c.print(f"  journal  {o.journal}")
    if o.results:
        c.print(f"  results  {o.results}")


# ----------------------------------------------------------------- train


def _load_examples(path: Path, tokenizer: Any) -> list[Any]:
    from tinker_actors.jobs.trainer import sft_datum

    data = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read training data: {exc.strerror or exc}") from None
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{n}: invalid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise UsageError(f"{path}:{n}: each line must be a JSON object")
        if "tokens" in obj:
            data.append(sft_datum(obj["tokens"]))
        elif "text" in obj:
            data.append(sft_datum(tokenizer.encode(obj["text"], add_bos=True)))
        elif "prompt" in obj and "completion" in obj:
            prompt = tokenizer.encode(obj["prompt"], add_bos=True)
            data.append(sft_datum(prompt + tokenizer.encode(obj["completion"]), prompt_len=len(prompt)))
        else:
            raise UsageError(f"{path}:{n}: expected \"text\", \"tokens\" or \"prompt\" + \"completion\"")
    if not data:
        raise UsageError(f"{path}: no training examples")
    return data


async def cmd_train(ns: argparse.Namespace, g: Globals) -> int:
    from tinker_actors.clients import load_tokenizer
    from tinker_actors.jobs.checkpoint_policy import CheckpointPolicy
    from tinker_actors.jobs.trainer import EpochBatches, JobInterrupted, Trainer, TrainerConfig

    if ns.steps < 1 or ns.batch_size < 1:
        raise UsageError("--steps and --batch-size must be at least 1")
    try:
        tokenizer = load_tokenizer(None, ns.base_model)
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    data = _load_examples(ns.data, tokenizer)
    config = TrainerConfig(
        run_dir=str(ns.run_dir),
        base_model=ns.base_model,
        steps=ns.steps,
        rank=ns.rank,
        seed=ns.seed,
        learning_rate=ns.lr,
        pipeline=not ns.no_pipeline,
        checkpoint=CheckpointPolicy(
            every_steps=ns.save_every,
            every_seconds=ns.save_minutes * 60 if ns.save_minutes else None,
            ttl_seconds=int(ns.ttl_hours * 3600) if ns.ttl_hours else None,
            keep_last=ns.keep_last,
        ),
    )
    outcome: Any = None

    async def job(stop: trio.Event) -> int:
        nonlocal outcome
        try:
            async with connect(g) as service:
                trainer = Trainer(service, config, EpochBatches(data, ns.batch_size, seed=ns.seed))
                outcome = await trainer.run(stop=stop)
                if outcome.interrupted:
                    # closes the session with reason "interrupted"
                    raise JobInterrupted
        except JobInterrupted:
            pass
        losses = list(outcome.losses.values())

        def human(c: Console) -> None:
            verb = "stopped" if outcome.interrupted else "finished"
            c.print(f"[bold]train {verb}[/] at step {outcome.steps_done}/{config.steps}" + (
                f" (resumed from {outcome.resumed_from})" if outcome.resumed_from else ""))
            if losses:
                c.print(f"  loss       {losses[0]:.4f} -> {losses[-1]:.4f}")
            c.print(f"  checkpoint {outcome.last_checkpoint}")
            c.print(f"  metrics    {outcome.metrics_path}")

        g.emit(outcome, human)
        return EXIT_INTERRUPTED if outcome.interrupted else EXIT_OK

    return await run_job(job, graceful=True)
