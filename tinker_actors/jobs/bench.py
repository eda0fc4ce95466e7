"""``tinker-actors bench``: repeatable load against a Tinker endpoint.

Scenarios (:class:`BenchScenario`):

* ``sampling`` — ``count`` sample requests of ``prompt_len`` random tokens and
  ``output_len`` max tokens, ``concurrency`` of them in flight;
* ``training`` — ``steps`` pipelined forward_backward + optim_step pairs of
  ``batch_size`` datums of ``seq_len`` tokens on a fresh LoRA model;
* ``mixed`` — both at once on one session.

Each operation becomes an :class:`~.bench_report.OpSample`: latency from
submit to result, split into time queued (client admission and the server's
queued/paused states, as the future saw them) and time running. Retries come
from the runtime's pool counters, per resource. The figures go through
:mod:`.bench_report` (JSON, PNG, table).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import trio

from tinker_actors.errors import TinkerActorsError
from tinker_actors.wire import types as wt

from .._log import get_logger
from .bench_report import BenchReport, OpSample, build_report, write_json, write_png
from .trainer import sft_datum

__all__ = ["BenchScenario", "run_bench", "write_outputs", "split_time"]

log = get_logger(__name__)

# How often an operation looks for its request id while the submit is out.
_ACK_CHECK_S = 0.002
_STATE_CHECK_S = 0.02
_POOL_OF = {"sample": "sampling", "forward_backward": "training", "optim_step": "training"}


class BenchScenario(msgspec.Struct, kw_only=True):
    kind: str = "sampling"  # sampling | training | mixed
    count: int = 200
    concurrency: int = 32
    prompt_len: int = 32
    output_len: int = 16
    steps: int = 10
    batch_size: int = 8
    seq_len: int = 64
    base_model: str = "tinker-actors/byte-lm-tiny"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("sampling", "training", "mixed"):
            raise ValueError(f"unknown scenario {self.kind!r}")
        for name in ("count", "concurrency", "prompt_len", "output_len", "steps", "batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


def split_time(history: list[Any], submitted: float, acked: float | None, end: float) -> tuple[float, float]:
    """(queued, running) seconds of one operation.

    Queued is the client-side wait until the submit POST was answered
    (admission, ordering, the POST itself) plus any time the server reported
    the request paused (``paused_capacity`` / ``paused_rate_limit``) or
    queued after that. The rest is running. A server that long-polls reports
    no state until the result, so its time counts as running unless it said
    otherwise.
    """
    acked = end if acked is None else min(max(acked, submitted), end)
    queued = acked - submitted
    for i, change in enumerate(history):
        state = str(getattr(change.state, "value", change.state))
        if state in ("done", "failed", "cancelled"):
            break
        start = max(change.at, acked)
        stop = history[i + 1].at if i + 1 < len(history) else end
        if state.startswith("paused") or (state == "queued" and change.at > acked):
            queued += max(0.0, stop - start)
    queued = min(queued, end - submitted)
    return queued, (end - submitted) - queued


async def _timed(op: str, fut: Any, t0: float, samples: list[OpSample]) -> Any:
    submitted = time.monotonic()
    acked: float | None = None
    error = None
    result = None
    try:
        # Watch the future: its request id times the submit, and reading
        # .state records the server's queue states in its history (a future
        # records what its readers see). Coarser once submitted, so the
        # watching costs little next to the work measured.
        while not fut.done():
            await trio.sleep(_ACK_CHECK_S if acked is None else _STATE_CHECK_S)
            fut.state  # noqa: B018 - refreshes the history from the poller
            if acked is None and fut.request_id is not None:
                acked = time.monotonic()
        result = await fut
    except TinkerActorsError as exc:
        error = type(exc).__name__
        log.warning("bench_op_failed", op=op, error=str(exc))
    end = time.monotonic()
    queued, running = split_time(list(getattr(fut, "history", [])), submitted, acked, end)
    samples.append(
        OpSample(
            op=op,
            latency_s=end - submitted,
            queued_s=queued,
            running_s=running,
            error=error,
            started_at=submitted - t0,
        )
    )
    return result


async def _sampling(service: Any, sc: BenchScenario, t0: float, samples: list[OpSample]) -> None:
    sampler = await service.create_sampling_client(base_model=sc.base_model)
    rng = np.random.default_rng(sc.seed)
    limiter = trio.Semaphore(sc.concurrency)
    params = [wt.SamplingParams(max_tokens=sc.output_len, temperature=1.0, seed=sc.seed + i) for i in range(sc.count)]

    async def one(i: int) -> None:
        async with limiter:
            prompt = wt.ModelInput.from_ints(rng.integers(0, 256, sc.prompt_len).tolist())
            await _timed("sample", sampler.sample(prompt, 1, params[i]), t0, samples)

    async with trio.open_nursery() as nursery:
        for i in range(sc.count):
            nursery.start_soon(one, i)


async def _training(service: Any, sc: BenchScenario, t0: float, samples: list[OpSample]) -> None:
    training = await service.create_lora_training_client(sc.base_model, rank=8, seed=sc.seed)
    rng = np.random.default_rng(sc.seed + 1)
    adam = wt.AdamParams(learning_rate=1e-4)

    def batch() -> list[wt.Datum]:
        return [sft_datum(rng.integers(0, 256, sc.seq_len + 1).tolist()) for _ in range(sc.batch_size)]

    async with trio.open_nursery() as nursery:
        # Pipelined like the trainer: every step is queued at once; the
        # training client keeps them in order.
        for _ in range(sc.steps):
            nursery.start_soon(_timed, "forward_backward", training.forward_backward(batch(), "cross_entropy"), t0, samples)
            nursery.start_soon(_timed, "optim_step", training.optim_step(adam), t0, samples)
            await trio.sleep(0)


def _pool_retries(service: Any) -> dict[str, int]:
    runtime = getattr(service, "service", None)
    stats = getattr(runtime, "statistics", None)
    if not callable(stats):
        return {}
    try:
        return {name: int(p.retries) for name, p in stats().pools.items()}
    except Exception:  # statistics are a nicety; a runtime without them still benches
        return {}


async def run_bench(service: Any, scenario: BenchScenario) -> tuple[BenchReport, list[OpSample]]:
    """Run ``scenario`` on ``service`` (a ServiceClient); the report and the raw samples."""
    samples: list[OpSample] = []
    before = _pool_retries(service)
    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        if scenario.kind in ("sampling", "mixed"):
            nursery.start_soon(_sampling, service, scenario, t0, samples)
        if scenario.kind in ("training", "mixed"):
            nursery.start_soon(_training, service, scenario, t0, samples)
    wall = time.monotonic() - t0
    after = _pool_retries(service)
    retries = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    report = build_report(samples, wall_s=wall, meta={"scenario": msgspec.to_builtins(scenario), "pool_retries": retries})
    for op in report.ops:
        op.retries = retries.get(_POOL_OF.get(op.op, ""), 0)
    return report, samples


def write_outputs(report: BenchReport, samples: list[OpSample], out_dir: str | Path, *, plot: bool = True) -> dict[str, str]:
    """bench.json (and bench.png) in ``out_dir``; their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "bench.json")}
    write_json(report, out / "bench.json")
    if plot:
        try:
            write_png(report, samples, out / "bench.png")
            files["png"] = str(out / "bench.png")
        except ImportError:
            log.warning("bench_no_plot", reason="matplotlib is not installed (pip install 'tinker_actors[bench]')")
    return files
