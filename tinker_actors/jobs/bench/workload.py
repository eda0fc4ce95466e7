"""What a bench run does: a workload (TOML or JSON file, or built from the CLI's flags).

A workload is a **load** (how requests arrive) and a weighted **mix of
operations** (what each request is)::

    name = "chat-mix"
    model = "tinker-actors/byte-lm-tiny"   # the default for every op
    seed = 0

    [load]
    mode = "open"            # open: arrivals at a rate; closed: N workers back to back
    rate = 50                # arrivals per second (open)
    arrivals = "poisson"     # or "constant"
    duration_s = 20          # measured time (open; closed loops may give count instead)
    warmup_s = 2             # run, but left out of every figure

    [[ops]]
    kind = "sample"          # sample | compute_logprobs | train_step | save
    weight = 8
    prompt_len = { dist = "lognormal", median = 64, sigma = 0.5, max = 512 }
    output_len = 32

    [[ops]]
    kind = "train_step"      # forward_backward + optim_step, pipelined
    weight = 1
    batch_size = 4

A ``[load.ramp]`` table replaces ``rate``/``duration_s`` with steps of rising
rate (to find the knee); see docs/bench.md for every field.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

__all__ = [
    "Length", "Ramp", "Load", "OpSpec", "Workload", "Phase", "WorkloadError",
    "load_workload", "workload_from_dict", "phases", "preset", "read_prompts", "OP_KINDS",
]

OP_KINDS = ("sample", "compute_logprobs", "train_step", "save")
DEFAULT_MODEL = "tinker-actors/byte-lm-tiny"


class WorkloadError(ValueError):
    """A workload file or flag is wrong; the message says which field and why."""


class Length(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A token count drawn per request: fixed, uniform, lognormal or a weighted choice."""

    dist: str = "fixed"  # fixed | uniform | lognormal | choice
    value: int = 32  # fixed
    min: int = 1  # uniform (inclusive); a floor for every distribution
    max: int | None = None  # uniform (inclusive); a cap for lognormal
    median: float = 32.0  # lognormal
    sigma: float = 0.5  # lognormal
    values: list[int] = msgspec.field(default_factory=list)  # choice
    weights: list[float] | None = None  # choice

    def check(self, where: str) -> None:
        if self.dist not in ("fixed", "uniform", "lognormal", "choice"):
            raise WorkloadError(f"{where}.dist: unknown distribution {self.dist!r} (fixed, uniform, lognormal, choice)")
        if self.dist == "fixed" and self.value < 1:
            raise WorkloadError(f"{where}: must be at least 1")
        if self.dist == "uniform" and (self.max is None or self.max < self.min or self.min < 1):
            raise WorkloadError(f"{where}: uniform needs 1 <= min <= max")
        if self.dist == "lognormal" and (self.median <= 0 or self.sigma < 0):
            raise WorkloadError(f"{where}: lognormal needs median > 0 and sigma >= 0")
        if self.dist == "choice":
            if not self.values or any(v < 1 for v in self.values):
                raise WorkloadError(f"{where}: choice needs values, each at least 1")
            if self.weights is not None and (len(self.weights) != len(self.values) or min(self.weights) < 0 or sum(self.weights) <= 0):
                raise WorkloadError(f"{where}: choice weights must match values and be non-negative")

    def draw(self, rng: np.random.Generator) -> int:
        if self.dist == "fixed":
            return self.value
        if self.dist == "uniform":
            return int(rng.integers(self.min, (self.max or self.min) + 1))
        if self.dist == "lognormal":
            n = int(round(float(rng.lognormal(math.log(self.median), self.sigma))))
            return max(self.min, min(n, self.max) if self.max else n)
        p = None
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=float)
            p = w / w.sum()
        return int(rng.choice(self.values, p=p))


class Ramp(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Rate steps from ``start`` to ``stop``, ``step_s`` seconds each."""

    start: float
    stop: float
    steps: int = 5
    step_s: float = 5.0
    spacing: str = "geometric"  # geometric | linear
    # A step is within capacity when it completed >= 95 % of its arrivals and
    # its p99 is at most this many times the first step's p99.
    knee_p99_factor: float = 10.0
    # Stop the ramp after the first step that completed under 95 % of its
    # arrivals: later steps would only pile up a backlog.
    stop_past_knee: bool = True

    def rates(self) -> list[float]:
        if self.steps == 1:
            return [self.start]
        if self.spacing == "linear":
            return [float(x) for x in np.linspace(self.start, self.stop, self.steps)]
        return [float(x) for x in np.geomspace(self.start, self.stop, self.steps)]


class Load(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mode: str = "closed"  # closed | open
    # open loop
    rate: float | None = None
    arrivals: str = "constant"  # constant | poisson
    duration_s: float | None = None
    ramp: Ramp | None = None
    # closed loop
    concurrency: int = 32
    count: int | None = None
    # both
    warmup_s: float = 0.0
    max_in_flight: int = 10_000


class OpSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kind: str
    name: str | None = None  # the label in every figure; default: kind
    weight: float = 1.0
    model: str | None = None  # default: the workload's model
    # sample / compute_logprobs
    prompt_len: Length | int = 32
    output_len: Length | int = 16
    num_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    prompts: str | None = None  # JSONL of {"prompt": text} / {"tokens": [...]} (optional "max_tokens")
    # train_step / save
    batch_size: int = 8
    seq_len: int = 64
    rank: int = 8
    learning_rate: float = 1e-4

    @property
    def label(self) -> str:
        return self.name or self.kind

    def length(self, field: str) -> Length:
        v = getattr(self, field)
        return Length(value=v) if isinstance(v, int) else v


class Workload(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = "workload"
    model: str = DEFAULT_MODEL
    seed: int = 0
    load: Load = msgspec.field(default_factory=Load)
    ops: list[OpSpec] = msgspec.field(default_factory=list)
    # Filled in by load_workload for prompt files; not part of the file format.
    source: str | None = None

    def check(self) -> Workload:
        where = self.source or "workload"
        ld = self.load
        if ld.mode not in ("open", "closed"):
            raise WorkloadError(f"{where}: load.mode must be 'open' or 'closed', not {ld.mode!r}")
        if ld.arrivals not in ("constant", "poisson"):
            raise WorkloadError(f"{where}: load.arrivals must be 'constant' or 'poisson', not {ld.arrivals!r}")
        if ld.warmup_s < 0:
            raise WorkloadError(f"{where}: load.warmup_s must be >= 0")
        if ld.max_in_flight < 1:
            raise WorkloadError(f"{where}: load.max_in_flight must be at least 1")
        if ld.mode == "open":
            if ld.ramp is not None:
                r = ld.ramp
                if r.start <= 0 or r.stop < r.start or r.steps < 1 or r.step_s <= 0:
                    raise WorkloadError(f"{where}: load.ramp needs 0 < start <= stop, steps >= 1, step_s > 0")
                if r.spacing not in ("geometric", "linear"):
                    raise WorkloadError(f"{where}: load.ramp.spacing must be 'geometric' or 'linear'")
                if r.knee_p99_factor <= 1:
                    raise WorkloadError(f"{where}: load.ramp.knee_p99_factor must be > 1")
            else:
                if ld.rate is None or not ld.rate > 0:
                    raise WorkloadError(f"{where}: an open loop needs load.rate > 0 (or a load.ramp)")
                if ld.duration_s is None or not ld.duration_s > 0:
                    raise WorkloadError(f"{where}: an open loop needs load.duration_s > 0")
        else:
            if ld.ramp is not None or ld.rate is not None:
                raise WorkloadError(f"{where}: load.rate and load.ramp are for open loops (set load.mode = 'open')")
            if ld.concurrency < 1:
                raise WorkloadError(f"{where}: load.concurrency must be at least 1")
            if (ld.count is None) == (ld.duration_s is None):
                raise WorkloadError(f"{where}: a closed loop needs exactly one of load.count or load.duration_s")
            if ld.count is not None and ld.count < 1:
                raise WorkloadError(f"{where}: load.count must be at least 1")
            if ld.duration_s is not None and not ld.duration_s > 0:
                raise WorkloadError(f"{where}: load.duration_s must be > 0")
        if not self.ops:
            raise WorkloadError(f"{where}: no [[ops]]")
        seen: set[str] = set()
        for i, op in enumerate(self.ops):
            at = f"{where}: ops[{i}]"
            if op.kind not in OP_KINDS:
                raise WorkloadError(f"{at}.kind: unknown operation {op.kind!r} ({', '.join(OP_KINDS)})")
            if op.label in seen:
                raise WorkloadError(f"{at}: two operations are labelled {op.label!r}; give each a distinct name")
            seen.add(op.label)
            if not op.weight >= 0:
                raise WorkloadError(f"{at}.weight: must be >= 0")
            for f in ("num_samples", "batch_size", "seq_len", "rank"):
                if getattr(op, f) < 1:
                    raise WorkloadError(f"{at}.{f}: must be at least 1")
            op.length("prompt_len").check(f"{at}.prompt_len")
            op.length("output_len").check(f"{at}.output_len")
        if sum(op.weight for op in self.ops) <= 0:
            raise WorkloadError(f"{where}: the operations' weights add up to 0")
        return self

    def model_of(self, op: OpSpec) -> str:
        return op.model or self.model

    def weights(self) -> np.ndarray:
        w = np.asarray([op.weight for op in self.ops], dtype=float)
        return w / w.sum()


class Phase(msgspec.Struct, frozen=True, kw_only=True):
    """A stretch of the run with one target rate; ``measured`` phases make the figures."""

    name: str
    start: float  # seconds from the start of the run
    duration: float | None  # None: until the closed loop's count is done
    rate: float | None  # arrivals per second (open loop)
    measured: bool = True


def phases(load: Load) -> list[Phase]:
    """The run's phases in order: warm-up (if any), then the main phase or the ramp's steps."""
    out: list[Phase] = []
    t = 0.0
    if load.mode == "open" and load.ramp is not None:
        rates = load.ramp.rates()
        if load.warmup_s > 0:
            out.append(Phase(name="warmup", start=0.0, duration=load.warmup_s, rate=rates[0], measured=False))
            t = load.warmup_s
        for i, r in enumerate(rates):
            out.append(Phase(name=f"step{i + 1}", start=t, duration=load.ramp.step_s, rate=r))
            t += load.ramp.step_s
        return out
    rate = load.rate if load.mode == "open" else None
    if load.warmup_s > 0:
        out.append(Phase(name="warmup", start=0.0, duration=load.warmup_s, rate=rate, measured=False))
        t = load.warmup_s
    out.append(Phase(name="main", start=t, duration=load.duration_s, rate=rate))
    return out


def _error_path(exc: msgspec.ValidationError) -> str:
    return str(exc).replace("$.", "")


def workload_from_dict(data: dict[str, Any], source: str = "workload") -> Workload:
    try:
        wl = msgspec.convert(data, Workload, strict=False)
    except msgspec.ValidationError as exc:
        raise WorkloadError(f"{source}: {_error_path(exc)}") from None
    wl.source = source
    return wl.check()


def load_workload(path: str | Path) -> Workload:
    """Read a workload from TOML (``.toml``) or JSON; relative prompt files resolve beside it."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"{p}: cannot read the workload: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode()) if p.suffix != ".json" else json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise WorkloadError(f"{p}: the workload must be a table/object")
    for op in data.get("ops", []) if isinstance(data.get("ops"), list) else []:
        if isinstance(op, dict) and isinstance(op.get("prompts"), str) and not Path(op["prompts"]).is_absolute():
            op["prompts"] = str(p.parent / op["prompts"])
    return workload_from_dict(data, source=str(p))


def read_prompts(path: str, where: str) -> list[dict[str, Any]]:
    """The lines of a prompts JSONL: each {"prompt": text} or {"tokens": [ints]}, optional "max_tokens"."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise WorkloadError(f"{where}.prompts: cannot read {path}: {exc.strerror or exc}") from None
    out: list[dict[str, Any]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}:{n}: invalid JSON: {exc.msg}") from None
        ok = isinstance(obj, dict) and (
            isinstance(obj.get("prompt"), str)
            or (isinstance(obj.get("tokens"), list) and obj["tokens"] and all(isinstance(t, int) for t in obj["tokens"]))
        )
        if not ok:
            raise WorkloadError(f'{path}:{n}: expected {{"prompt": "text"}} or {{"tokens": [ints]}}')
        mt = obj.get("max_tokens")
        if mt is not None and (not isinstance(mt, int) or mt < 1):
            raise WorkloadError(f"{path}:{n}: max_tokens must be a positive integer")
        out.append(obj)
    if not out:
        raise WorkloadError(f"{path}: no prompts")
    return out


def preset(
    kind: str,
    *,
    rate: float | None = None,
    duration_s: float | None = None,
    arrivals: str = "constant",
    warmup_s: float | None = None,
    count: int | None = None,
    concurrency: int = 32,
    prompt_len: int = 32,
    output_len: int = 16,
    batch_size: int = 8,
    seq_len: int = 64,
    model: str = DEFAULT_MODEL,
    max_in_flight: int = 10_000,
    seed: int = 0,
) -> Workload:
    """The CLI's scenarios as workloads: ``sampling``, ``training`` or ``mixed`` (8 samples : 1 step).

    With ``rate`` the load is an open loop for ``duration_s`` (default 10 s,
    warm-up 1 s); without, a closed loop of ``count`` requests (default 200)
    or ``duration_s`` seconds, ``concurrency`` workers.
    """
    ops = {
        "sampling": [OpSpec(kind="sample", prompt_len=prompt_len, output_len=output_len)],
        "training": [OpSpec(kind="train_step", batch_size=batch_size, seq_len=seq_len)],
        "mixed": [OpSpec(kind="sample", weight=8, prompt_len=prompt_len, output_len=output_len),
                  OpSpec(kind="train_step", weight=1, batch_size=batch_size, seq_len=seq_len)],
    }.get(kind)
    if ops is None:
        raise WorkloadError(f"unknown scenario {kind!r} (sampling, training, mixed)")
    if rate is not None:
        load = Load(mode="open", rate=rate, arrivals=arrivals, duration_s=duration_s or 10.0,
                    warmup_s=1.0 if warmup_s is None else warmup_s, max_in_flight=max_in_flight)
        if count is not None:
            raise WorkloadError("--count is for closed loops; an open loop (--rate) runs for --duration")
    else:
        if count is not None and duration_s is not None:
            raise WorkloadError("give --count or --duration for a closed loop, not both")
        load = Load(mode="closed", concurrency=concurrency, count=None if duration_s else (count or 200),
                    duration_s=duration_s, warmup_s=warmup_s or 0.0, max_in_flight=max_in_flight)
    return Workload(name=kind, model=model, seed=seed, load=load, ops=ops, source="flags").check()
