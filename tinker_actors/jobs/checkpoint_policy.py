"""When a trainer saves, what it deletes, and what it writes down to resume.

Pure decisions, no I/O except :func:`save_loop_state` / :func:`load_loop_state`:

* :func:`should_save` — save every ``every_steps`` steps or every
  ``every_seconds`` seconds, whichever comes first, never twice for one step;
* :func:`plan_cleanup` — rolling clean-up: keep the newest ``keep_last``
  checkpoints of a kind, plus "milestones" (every ``keep_every_steps``-th
  step) forever; the newest checkpoint is never deleted. Checkpoints whose
  TTL already ran out are left alone (the server drops them);
* :class:`LoopState` — the loop's resume record (step, data position, last
  checkpoint, RNG state, request ids still in flight), JSON via msgspec, written
  atomically next to the run.

The loop state is written *after* the checkpoint it names has been saved, so
on resume the record never points at a checkpoint that does not exist; the
data position is that of the next batch to train on, so a resume never
replays a batch whose optim_step already ran (the cookbook's TC#935).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from tinker_actors.errors import ConfigError

__all__ = [
    "CheckpointPolicy",
    "CheckpointRecord",
    "DataPosition",
    "LoopState",
    "should_save",
    "plan_cleanup",
    "encode_loop_state",
    "decode_loop_state",
    "save_loop_state",
    "load_loop_state",
    "numpy_rng_state",
    "restore_numpy_rng",
]

LOOP_STATE_VERSION = 1


class CheckpointPolicy(msgspec.Struct, frozen=True, kw_only=True):
    every_steps: int | None = 20
    every_seconds: float | None = None
    ttl_seconds: int | None = 7 * 24 * 3600  # the cookbook's default
    keep_last: int | None = None  # None: keep everything
    keep_every_steps: int | None = None  # milestones kept forever

    def __post_init__(self) -> None:
        for name in ("every_steps", "every_seconds", "ttl_seconds", "keep_last", "keep_every_steps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"checkpoint policy: {name} must be > 0 or unset, got {value}")


class CheckpointRecord(msgspec.Struct, frozen=True, kw_only=True):
    path: str  # tinker://...
    step: int
    created_at: float  # wall clock, seconds since the epoch
    kind: str = "state"  # "state" (weights + optimizer) or "sampler"
    expires_at: float | None = None


class DataPosition(msgspec.Struct, frozen=True, kw_only=True):
    epoch: int = 0
    index: int = 0  # the next batch to train on


class LoopState(msgspec.Struct, kw_only=True):
    step: int  # optimizer steps completed
    data: DataPosition = msgspec.field(default_factory=DataPosition)
    last_checkpoint: str | None = None
    last_save_step: int | None = None
    last_save_time: float | None = None
    checkpoints: list[CheckpointRecord] = msgspec.field(default_factory=list)
    rng_state: dict[str, Any] | None = None
    pending_request_ids: list[str] = msgspec.field(default_factory=list)
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    version: int = LOOP_STATE_VERSION


def should_save(
    policy: CheckpointPolicy,
    *,
    step: int,
    now: float,
    last_save_step: int | None,
    last_save_time: float | None,
    run_started: float,
) -> bool:
    """Whether to save after ``step`` (steps count from 1).

    The step rule counts from the last save (so a resumed run keeps its
    rhythm); the time rule counts from the last save or, before the first,
    from ``run_started``.
    """
    if last_save_step is not None and step <= last_save_step:
        return False
    if policy.every_steps is not None:
        since = step - (last_save_step or 0)
        if since >= policy.every_steps:
            return True
    if policy.every_seconds is not None:
        ref = last_save_time if last_save_time is not None else run_started
        if now - ref >= policy.every_seconds:
            return True
    return False


def expiry(policy: CheckpointPolicy, created_at: float) -> float | None:
    return None if policy.ttl_seconds is None else created_at + policy.ttl_seconds


def plan_cleanup(
    checkpoints: Iterable[CheckpointRecord], policy: CheckpointPolicy, *, now: float, kind: str = "state"
) -> list[CheckpointRecord]:
    """The checkpoints of ``kind`` to delete now, oldest first."""
    if policy.keep_last is None:
        return []
    mine = sorted((c for c in checkpoints if c.kind == kind), key=lambda c: (c.step, c.created_at))
    live = [c for c in mine if c.expires_at is None or c.expires_at > now]
    keep = {c.path for c in live[-policy.keep_last :]}
    if mine:
        keep.add(mine[-1].path)  # the newest, even if expired: resume points at it
    if policy.keep_every_steps:
        keep |= {c.path for c in live if c.step % policy.keep_every_steps == 0}
    return [c for c in live if c.path not in keep]


def encode_loop_state(state: LoopState) -> bytes:
    return msgspec.json.encode(state)


def decode_loop_state(data: bytes) -> LoopState:
    try:
        state = msgspec.json.decode(data, type=LoopState)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"unreadable loop state: {exc}") from None
    if state.version > LOOP_STATE_VERSION:
        raise ConfigError(f"loop state version {state.version} is newer than this client ({LOOP_STATE_VERSION})")
    return state


def save_loop_state(state: LoopState, path: str | Path) -> None:
    """Write atomically: a crash leaves the old record or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(encode_loop_state(state))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_loop_state(path: str | Path) -> LoopState | None:
    """The saved record, or None when the run has never saved one."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    return decode_loop_state(data)


def numpy_rng_state(rng: Any) -> dict[str, Any]:
    """A JSON-safe copy of a ``numpy.random.Generator``'s state.

    PCG64's state holds 128-bit integers, beyond what JSON numbers carry
    faithfully, so every int is stored as a decimal string.
    """

    def conv(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return {"int": str(v)}
        return v

    return conv(rng.bit_generator.state)


def restore_numpy_rng(rng: Any, state: dict[str, Any]) -> None:
    def conv(v: Any) -> Any:
        if isinstance(v, dict):
            if set(v) == {"int"}:
                return int(v["int"])
            return {k: conv(x) for k, x in v.items()}
        return v

    rng.bit_generator.state = conv(state)
