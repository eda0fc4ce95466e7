"""In-memory records of sessions, training runs, samplers and checkpoints.

They are persisted as JSON documents through :class:`~.storage.Storage`;
``to_doc``/``from_doc`` are the only (de)serialisers.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import anyio


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc).isoformat()


_CHECKPOINT_TYPES = {"weights": "training", "sampler_weights": "sampler", "external_weights": "external"}


@dataclass
class SessionRec:
    session_id: str
    tags: list[str] = field(default_factory=list)
    user_metadata: dict[str, str] | None = None
    display_name: str | None = None
    project_id: str | None = None
    created: float = field(default_factory=time.time)
    finished: str | None = None
    training_run_ids: list[str] = field(default_factory=list)
    sampler_ids: list[str] = field(default_factory=list)
    # the tenant (a digest of the API key, never the key) under serve --api-keys
    owner: str | None = None
    # runtime only
    # on the event loop's clock (anyio.current_time); None until first seen
    last_heartbeat: float | None = field(default=None, metadata={"runtime": True})


@dataclass
class RunRec:
    training_run_id: str
    session_id: str
    base_model: str
    lora_rank: int | None
    lora: dict[str, Any]
    optimizer_config: dict[str, Any]
    user_metadata: dict[str, str] | None = None
    is_lora: bool = True
    corrupted: bool = False
    last_request_time: float = field(default_factory=time.time)
    model_owner: str = "local"
    unloaded: bool = False


@dataclass
class SamplerRec:
    sampler_id: str
    session_id: str
    base_model: str
    model_path: str | None = None
    # an in-memory copy of a training model's weights (save_weights_for_sampler
    # with a sampling_session_seq_id): its own model, equal to no other sampler
    snapshot: bool = False


@dataclass
class CheckpointRec:
    run_id: str
    kind: str  # weights | sampler_weights | external_weights
    name: str
    time: float = field(default_factory=time.time)
    size_bytes: int | None = None
    public: bool = False
    user_metadata: dict[str, str] | None = None
    expires_at: float | None = None
    has_optimizer: bool = False

    @property
    def key(self) -> str:
        return f"{self.run_id}/{self.kind}/{self.name}"

    @property
    def checkpoint_id(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def tinker_path(self) -> str:
        return f"tinker://{self.run_id}/{self.kind}/{self.name}"

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "checkpoint_id": self.checkpoint_id,
            "checkpoint_type": _CHECKPOINT_TYPES[self.kind],
            "time": now_iso(self.time),
            "tinker_path": self.tinker_path,
            "public": self.public,
        }
        if self.size_bytes is not None:
            out["size_bytes"] = self.size_bytes
        if self.user_metadata is not None:
            out["user_metadata"] = self.user_metadata
        if self.expires_at is not None:
            out["expires_at"] = now_iso(self.expires_at)
        return out


def to_doc(rec: Any) -> dict[str, Any]:
    return {
        f.name: getattr(rec, f.name)
        for f in dataclasses.fields(rec)
        if not f.metadata.get("runtime")
    }


def from_doc(cls: type, doc: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("runtime")}
    return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass
class ModelRuntime:
    """A loaded training model: its numpy state and its ordered request queue."""

    run: RunRec
    handle: Any
    next_seq: int = 1
    seq_changed: anyio.Event = field(default_factory=anyio.Event)
    by_seq: dict[int, str] = field(default_factory=dict)  # seq_id -> request_id
    send: Any = None  # anyio MemoryObjectSendStream of jobs

    def bump(self) -> None:
        self.next_seq += 1
        self.seq_changed.set()
        self.seq_changed = anyio.Event()
