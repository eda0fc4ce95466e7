"""A trainer loop for long-running processes: pipelined, checkpointed, resumable.

::

    trainer = Trainer(service, TrainerConfig(run_dir="runs/sft", base_model=..., steps=1000),
                      batches=EpochBatches(data, batch_size=32, seed=0))
    outcome = await trainer.run(stop=stop_event)

What it does each step ``k`` (1-based; batch ``k - 1``):

* **Pipelined.** ``forward_backward`` and ``optim_step`` of step ``k + 1`` are
  submitted *before* the results of step ``k`` are awaited. The training
  client reserves seq_ids at call time, so the server always has the next
  step queued behind the current one and never idles between steps.
* **Checkpoints.** Whether to save after step ``k`` is decided when step
  ``k`` has been submitted and before step ``k + 1`` is, so ``save_state``
  is ordered exactly after ``optim_step(k)``. The policy
  (:class:`~.checkpoint_policy.CheckpointPolicy`) saves every N steps or M
  seconds, with a TTL; rolling clean-up deletes old checkpoints in the
  background.
* **Resume record.** After a checkpoint is saved, ``loop_state.json`` is
  written atomically (step, next data position, checkpoint path, RNG state).
  A restarted trainer loads the checkpoint *with its optimizer state* and
  continues at the next batch, so its next loss equals the uninterrupted
  run's. Metrics lines logged after the last checkpoint are dropped on
  resume (those steps run again).
* **Crash-consistent files.** The metrics line of a checkpoint step is
  appended (and fsynced) *before* the loop state that names that
  checkpoint is written. So at any instant, including a SIGKILL between the
  two writes, ``metrics.jsonl`` holds a line for every step up to the loop
  state's step; lines past it are dropped on resume and written again, so
  the file ends with exactly one line per step however often the process
  was killed. A line cut short by a crash (the last one) is dropped on
  resume with a ``trainer_metrics_repaired`` warning, never fatal.
* **Evaluation hooks** run in the trainer's nursery without blocking the
  loop; a hook still busy when its next turn comes is skipped, not queued.
* **Metrics** go to ``metrics.jsonl`` in the run directory, one JSON object
  per step (and one per evaluation, with an ``"eval"`` key).
* **Stopping.** When ``stop`` is set (the CLI sets it on SIGINT/SIGTERM), the
  step in flight is finished, a checkpoint is saved and ``run`` returns with
  ``interrupted=True``; raising :class:`JobInterrupted` inside the service
  block then closes the session with the reason ``interrupted``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import trio

from tinker_actors.errors import ConfigError, TinkerActorsError
from tinker_actors.wire import types as wt

from .._log import get_logger
from .checkpoint_policy import (
    CheckpointPolicy,
    CheckpointRecord,
    DataPosition,
    LoopState,
    expiry,
    load_loop_state,
    numpy_rng_state,
    plan_cleanup,
    restore_numpy_rng,
    save_loop_state,
    should_save,
)

__all__ = [
    "TrainerConfig",
    "Trainer",
    "TrainerOutcome",
    "EvalHook",
    "EvalContext",
    "EpochBatches",
    "JobInterrupted",
    "sft_datum",
    "read_metrics",
]

log = get_logger(__name__)

LOOP_STATE_FILE = "loop_state.json"
METRICS_FILE = "metrics.jsonl"


class JobInterrupted(KeyboardInterrupt):
    """Raised inside ``open_service_client`` after a clean stop, so the session closes as ``interrupted``."""


class TrainerConfig(msgspec.Struct, kw_only=True):
    run_dir: str
    base_model: str
    steps: int
    rank: int = 8
    seed: int = 0  # LoRA init seed: a fresh run is reproducible
    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    loss_fn: str = "cross_entropy"
    loss_fn_config: dict[str, Any] | None = None
    checkpoint: CheckpointPolicy = msgspec.field(default_factory=CheckpointPolicy)
    checkpoint_prefix: str = "step"
    pipeline: bool = True

    def adam(self) -> wt.AdamParams:
        return wt.AdamParams(
            learning_rate=self.learning_rate,
            beta1=self.beta1,
            beta2=self.beta2,
            weight_decay=self.weight_decay,
            grad_clip_norm=self.grad_clip_norm,
        )


@dataclass
class EvalContext:
    step: int
    training: Any  # the TrainingClient
    service: Any  # the ServiceClient
    trainer: Trainer


@dataclass
class EvalHook:
    """``fn(ctx)`` every ``every_steps`` steps; returns metrics (a dict of numbers) or None."""

    name: str
    every_steps: int
    fn: Callable[[EvalContext], Awaitable[dict[str, Any] | None]]
    _busy: bool = field(default=False, repr=False)


BatchSource = Callable[..., Sequence[wt.Datum] | Awaitable[Sequence[wt.Datum]]]


class EpochBatches:
    """Batch ``i`` of a dataset: epochs of ``batch_size`` examples, reshuffled per epoch.

    The order is a pure function of (seed, epoch), so batch ``i`` is the same
    in a resumed process as in the original one.
    """

    def __init__(self, data: Sequence[wt.Datum], batch_size: int, *, seed: int = 0, shuffle: bool = True) -> None:
        if batch_size < 1 or not data:
            raise ValueError("need at least one example and batch_size >= 1")
        self.data = list(data)
        self.batch_size = min(batch_size, len(self.data))
        self.seed = seed
        self.shuffle = shuffle
        self.per_epoch = len(self.data) // self.batch_size

    def position(self, index: int) -> DataPosition:
        return DataPosition(epoch=index // self.per_epoch, index=index % self.per_epoch)

    def __call__(self, index: int) -> list[wt.Datum]:
        pos = self.position(index)
        order = np.arange(len(self.data))
        if self.shuffle:
            np.random.default_rng([self.seed, pos.epoch]).shuffle(order)
        start = pos.index * self.batch_size
        return [self.data[int(i)] for i in order[start : start + self.batch_size]]


def sft_datum(tokens: Sequence[int], *, prompt_len: int = 0) -> wt.Datum:
    """A next-token datum: predict ``tokens[1:]`` from ``tokens[:-1]``; the prompt part has weight 0."""
    if len(tokens) < 2:
        raise ValueError("a training example needs at least two tokens")
    inputs = list(tokens[:-1])
    targets = np.asarray(tokens[1:], dtype=np.int64)
    weights = np.ones(len(targets), dtype=np.float32)
    weights[: max(0, prompt_len - 1)] = 0.0
    return wt.Datum(
        model_input=wt.ModelInput.from_ints(inputs),
        loss_fn_inputs={"target_tokens": wt.TensorData.from_numpy(targets), "weights": wt.TensorData.from_numpy(weights)},
    )


class TrainerOutcome(msgspec.Struct, kw_only=True):
    run_dir: str
    steps_done: int
    resumed_from: str | None
    last_checkpoint: str | None
    interrupted: bool
    losses: dict[int, float]  # step -> loss, for the steps this process ran
    metrics_path: str


@dataclass
class _Step:
    k: int
    fb: Any
    opt: Any
    weight: float
    submitted: float


def _loss(metrics: dict[str, float], weight: float) -> float | None:
    if "loss:mean" in metrics:
        return float(metrics["loss:mean"])
    if "loss:sum" in metrics:
        return float(metrics["loss:sum"]) / weight if weight > 0 else float(metrics["loss:sum"])
    return None


def _weight(data: Sequence[wt.Datum]) -> float:
    total = 0.0
    for d in data:
        w = d.loss_fn_inputs.get("weights")
        total += float(np.sum(w.to_numpy())) if w is not None else float(d.model_input.length)
    return total


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every line of a metrics JSONL file (missing file: empty).

    A last line cut short by a crash is left out (see :func:`_read_metrics`);
    an unreadable line anywhere else is a ConfigError naming the file and line.
    """
    return _read_metrics(Path(path))[0]


def _read_metrics(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The lines of ``path``, and the torn last line left out (None if there was none)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], None
    raw = text.split("\n")
    out: list[dict[str, Any]] = []
    torn: str | None = None
    for n, line in enumerate(raw, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            # Only the last line can be torn: a crash in the middle of an append.
            if all(not rest.strip() for rest in raw[n:]):
                torn = line
                continue
            raise ConfigError(f"{path}:{n}: unreadable metrics line ({exc}); fix or remove that line") from None
        out.append(value)
    return out, torn


@contextlib.asynccontextmanager
async def _one_error_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery that lets a lone failure out as itself (its traceback intact), not as a group."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if leaf is group:
            raise
        raise leaf from leaf.__cause__


class Trainer:
    """See the module docstring."""

    def __init__(
        self,
        service: Any,
        config: TrainerConfig,
        batches: BatchSource,
        *,
        eval_hooks: Sequence[EvalHook] = (),
        rng: np.random.Generator | None = None,
        positions: Callable[[int], DataPosition] | None = None,
    ) -> None:
        if config.steps < 1:
            raise ValueError("steps must be >= 1")
        self.service = service
        self.config = config
        self.batches = batches
        self.eval_hooks = list(eval_hooks)
        self.rng = rng
        self._positions = positions or getattr(batches, "position", None) or (lambda i: DataPosition(index=i))
        self.run_dir = Path(config.run_dir)
        self.state_path = self.run_dir / LOOP_STATE_FILE
        self.metrics_path = self.run_dir / METRICS_FILE
        self.training: Any = None
        self.state = LoopState(step=0)

    # -- set-up ----------------------------------------------------------------------

    async def _open_model(self) -> str | None:
        saved = load_loop_state(self.state_path)
        if saved is not None and saved.last_checkpoint:
            log.info("trainer_resume", run_dir=str(self.run_dir), step=saved.step, checkpoint=saved.last_checkpoint)
            self.training = await self.service.create_training_client_from_state_with_optimizer(
                saved.last_checkpoint, base_model=self.config.base_model
            )
            self.state = saved
            if self.rng is not None and saved.rng_state is not None:
                restore_numpy_rng(self.rng, saved.rng_state)
            self._truncate_metrics(saved.step)
            return saved.last_checkpoint
        self.training = await self.service.create_lora_training_client(
            self.config.base_model, rank=self.config.rank, seed=self.config.seed
        )
        self.state = LoopState(step=0)
        self._truncate_metrics(0)
        return None

    def _truncate_metrics(self, step: int) -> None:
        """Keep the lines of steps up to ``step`` (the checkpoint resumed from), one per step.

        Steps after the checkpoint run again, so their old lines would be
        duplicates; a torn last line is dropped.
        """
        lines, torn = _read_metrics(self.metrics_path)
        if torn is not None:
            log.warning("trainer_metrics_repaired", path=str(self.metrics_path), dropped=torn[:200])
        kept: dict[tuple[int, Any], dict[str, Any]] = {}
        for m in lines:
            k = int(m.get("step", 0))
            if k <= step:
                kept[(k, m.get("eval"))] = m  # the last line of a step wins (none is ever written twice)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.metrics_path.with_name(f".{METRICS_FILE}.tmp-{os.getpid()}")
        with open(tmp, "w") as fh:
            fh.write("".join(json.dumps(m) + "\n" for m in kept.values()))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.metrics_path)

    def _log_metrics(self, line: dict[str, Any], *, durable: bool = False) -> None:
        """Append one line; ``durable`` fsyncs it (a loop state that counts it is written next)."""
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(line, default=float) + "\n")
            if durable:
                fh.flush()
                os.fsync(fh.fileno())

    # -- the loop ----------------------------------------------------------------------

    async def _batch(self, index: int) -> Sequence[wt.Datum]:
        params = inspect.signature(self.batches).parameters
        got = self.batches(index, self) if len(params) >= 2 else self.batches(index)
        if inspect.isawaitable(got):
            got = await got
        return got  # type: ignore[return-value]

    async def _submit(self, k: int) -> _Step:
        data = await self._batch(k - 1)
        cfg = self.config
        fb = self.training.forward_backward(list(data), cfg.loss_fn, cfg.loss_fn_config)
        opt = self.training.optim_step(cfg.adam())
        return _Step(k=k, fb=fb, opt=opt, weight=_weight(data), submitted=time.perf_counter())

    async def run(self, *, stop: trio.Event | None = None) -> TrainerOutcome:
        """Train until ``config.steps`` or until ``stop`` is set; see the module docstring."""
        stop = stop if stop is not None else trio.Event()
        cfg = self.config
        policy = cfg.checkpoint
        resumed_from = await self._open_model()
        run_started = time.time()
        losses: dict[int, float] = {}
        interrupted = False
        # one failure leaves as itself, not wrapped in an ExceptionGroup
        async with _one_error_nursery() as background:
            cur = await self._submit(self.state.step + 1) if self.state.step < cfg.steps and not stop.is_set() else None
            while cur is not None:
                k = cur.k
                stopping = stop.is_set()
                save = (
                    k == cfg.steps
                    or stopping
                    or should_save(
                        policy,
                        step=k,
                        now=time.time(),
                        last_save_step=self.state.last_save_step,
                        last_save_time=self.state.last_save_time,
                        run_started=run_started,
                    )
                )
                name = f"{cfg.checkpoint_prefix}-{k:06d}"
                save_fut = self.training.save_state(name, ttl_seconds=policy.ttl_seconds) if save else None
                nxt = None
                if k < cfg.steps and not stopping and cfg.pipeline:
                    nxt = await self._submit(k + 1)
                fb_out = await cur.fb
                opt_out = await cur.opt
                metrics = dict(fb_out.metrics or {})
                loss = _loss(metrics, cur.weight)
                if loss is not None:
                    losses[k] = loss
                line: dict[str, Any] = {
                    "step": k,
                    "loss": loss,
                    "time": time.time(),
                    "step_s": round(time.perf_counter() - cur.submitted, 6),
                    "learning_rate": cfg.learning_rate,
                    **{f"fb/{n}": v for n, v in metrics.items()},
                    **{f"optim/{n}": v for n, v in (opt_out.metrics or {}).items()},
                }
                self.state.step = k
                self.state.data = self._positions(k)
                if save_fut is not None:
                    saved = await save_fut
                    now = time.time()
                    self.state.checkpoints.append(
                        CheckpointRecord(path=saved.path, step=k, created_at=now, expires_at=expiry(policy, now))
                    )
                    self.state.last_checkpoint = saved.path
                    self.state.last_save_step = k
                    self.state.last_save_time = now
                    if self.rng is not None:
                        self.state.rng_state = numpy_rng_state(self.rng)
                    line["checkpoint"] = saved.path
                    # Checkpoints to delete leave the record before their
                    # deletion starts, so it never lists a deleted one.
                    doomed = plan_cleanup(self.state.checkpoints, policy, now=now)
                    gone = {c.path for c in doomed}
                    self.state.checkpoints = [c for c in self.state.checkpoints if c.path not in gone]
                    # The step's line first, then the record that counts it:
                    # a crash between the two re-runs the step (its line is
                    # dropped on resume), never loses its line.
                    self._log_metrics(line, durable=True)
                    save_loop_state(self.state, self.state_path)
                    log.info("trainer_checkpoint", step=k, path=saved.path)
                    if doomed:
                        background.start_soon(self._delete, [c.path for c in doomed])
                else:
                    self._log_metrics(line)
                log.info("trainer_step", step=k, loss=loss)
                self._start_evals(background, k)
                if nxt is None and k < cfg.steps and not cfg.pipeline and not stop.is_set():
                    nxt = await self._submit(k + 1)
                if nxt is None and k < cfg.steps:
                    interrupted = True
                cur = nxt
            if self.state.step < cfg.steps:
                interrupted = True
        return TrainerOutcome(
            run_dir=str(self.run_dir),
            steps_done=self.state.step,
            resumed_from=resumed_from,
            last_checkpoint=self.state.last_checkpoint,
            interrupted=interrupted,
            losses=losses,
            metrics_path=str(self.metrics_path),
        )

    # -- background work ---------------------------------------------------------------

    async def _delete(self, paths: list[str]) -> None:
        rest = self.service.create_rest_client()
        for path in paths:
            try:
                await rest.delete_checkpoint_from_tinker_path(path)
                log.info("trainer_checkpoint_deleted", path=path)
            except TinkerActorsError as exc:
                # Clean-up is best effort: the TTL removes what we miss.
                log.warning("trainer_checkpoint_delete_failed", path=path, error=str(exc))

    def _start_evals(self, nursery: trio.Nursery, step: int) -> None:
        for hook in self.eval_hooks:
            if step % hook.every_steps:
                continue
            if hook._busy:
                log.info("trainer_eval_skipped", hook=hook.name, step=step, reason="previous run still busy")
                continue
            hook._busy = True
            nursery.start_soon(self._eval, hook, step)

    async def _eval(self, hook: EvalHook, step: int) -> None:
        started = time.perf_counter()
        try:
            result = await hook.fn(EvalContext(step=step, training=self.training, service=self.service, trainer=self))
        except TinkerActorsError as exc:
            log.warning("trainer_eval_failed", hook=hook.name, step=step, error=str(exc))
            return
        finally:
            hook._busy = False
        line = {"step": step, "eval": hook.name, "eval_s": round(time.perf_counter() - started, 6)}
        for key, value in (result or {}).items():
            line[key] = value if not isinstance(value, float) or math.isfinite(value) else None
        self._log_metrics(line)
        log.info("trainer_eval", hook=hook.name, step=step, **(result or {}))
