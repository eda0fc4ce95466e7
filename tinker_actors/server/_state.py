"""What the local server's domain modules share: its state, and the helpers every area uses.

``LocalServer`` (``service.py``) is assembled from one mixin per area:
``sessions``, ``training`` (models, training steps, weights), ``sampling``,
``polling`` (futures) and ``checkpoints`` (the REST listings, checkpoint
management, signed links). Each mixin is a few handlers that take decoded
wire Structs and return JSON-able dicts or raise :class:`~.http.ApiError`;
they share the registries declared here. The helpers below are the ones more
than one area needs: persistence, future creation, who may see what under
``serve --api-keys`` (:mod:`.tenancy`), checkpoint paths and TTLs.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import anyio

from .. import wire
from ..errors import ValidationError
from ..wire.validate import parse_tinker_path
from .engine import Engine
from .config import ServerConfig
from .faults import FaultInjector
from .futures import Future, FuturesStore, Result
from .http import ApiError, bad, dumps
from .idempotency import IdempotencyCache
from .records import CheckpointRec, ModelRuntime, RunRec, SamplerRec, SessionRec, to_doc
from .stats import ServerStats
from .storage import BadPath, Storage, check_name, check_run_id, dir_size
from .tenancy import KeyRing, visible
from .tenancy import current as current_tenant



class UserError(Exception):
    """A request that fails because of its input; reported with category "user"."""


def json_result(obj: dict[str, Any]) -> Result:
    return Result(obj, lambda v, _kind: dumps(v))


def plain(value: Any) -> Any:
    """A decoded Struct as the plain dict it was sent as (for the JSON records)."""
    return None if value is None else wire.codec.to_builtins(value)


class ServerState:
    """The registries and services every area of the server reads and writes."""

    config: ServerConfig
    stats: ServerStats
    faults: FaultInjector
    futures: FuturesStore
    idempotency: IdempotencyCache
    keyring: KeyRing | None
    storage: Storage
    engine: Engine
    limiter: anyio.CapacityLimiter
    archive_secret: bytes
    sessions: dict[str, SessionRec]
    runs: dict[str, RunRec]
    samplers: dict[str, SamplerRec]
    checkpoints: dict[str, CheckpointRec]
    models: dict[str, ModelRuntime]
    sampler_handles: dict[str, Any]
    _create_futures: dict[str, str]  # model_id -> request_id of its create
    _join_counters: dict[str, int]
    _null_samples: dict[tuple[Any, ...], Result]

    # provided by the areas (declared so each reads as a whole)
    def session(self, session_id: str, *, live: bool = True) -> SessionRec:
        raise NotImplementedError

    async def compute(self, fn: Callable[[], Any]) -> Any:
        raise NotImplementedError

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        raise NotImplementedError

    def _register_model(self, run: RunRec) -> ModelRuntime:
        raise NotImplementedError

    # -- persistence and futures ---------------------------------------
    def _save(self, kind: str, key: str, rec: Any) -> None:
        self.storage.put(kind, key, to_doc(rec))

    def _new_future(self, request_type: str, owner: str = "") -> Future:
        fut = self.futures.create(request_type, owner, tenant=current_tenant.get())
        fut.expire_after_s = self.faults.expiry_for_future()
        return fut

    def future_response(self, fut: Future, model_id: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"request_id": fut.request_id}
        if model_id is not None:
            out["model_id"] = model_id
        if fut.sample_sequence_ids is not None:
            out["sample_sequence_ids"] = fut.sample_sequence_ids
        return out

    # -- who sees what (serve --api-keys): runs, samplers and checkpoints
    # belong to the tenant of the session they were made in
    def _run_visible(self, run: RunRec | None) -> bool:
        if run is None:
            return False
        if current_tenant.get() is None:
            return True
        sess = self.sessions.get(run.session_id)
        return sess is not None and visible(sess.owner)

    def _run(self, run_id: str) -> RunRec:
        run = self.runs.get(run_id)
        if not self._run_visible(run):
            raise ApiError(404, f"training run {run_id!r} not found")
        assert run is not None
        return run

    def _sampler_rec(self, sampler_id: str) -> SamplerRec:
        rec = self.samplers.get(sampler_id)
        if rec is None or not self._session_visible(rec.session_id):
            raise ApiError(404, f"unknown sampling session {sampler_id!r}")
        return rec

    def _session_visible(self, session_id: str) -> bool:
        if current_tenant.get() is None:
            return True
        sess = self.sessions.get(session_id)
        return sess is not None and visible(sess.owner)

    # -- checkpoints: paths, TTLs, writing -------------------------------
    def _ttl(self, ttl: int | None) -> float | None:
        if ttl is None:
            return None
        top = self.config.limits.max_ttl_seconds
        if not 0 < ttl <= top:
            raise bad(f"ttl_seconds: must be a positive integer of at most {top}")
        return time.time() + ttl

    def _parse_path(self, path: str, field: str = "path") -> tuple[str, str, str]:
        """A tinker:// path as (run, kind, name), every part safe to use on disk."""
        try:
            tp = parse_tinker_path(path, field)
            return check_run_id(tp.run_id), tp.kind, check_name(tp.name)
        except (ValidationError, BadPath) as exc:
            raise bad(str(exc)) from None

    def _checkpoint_for_load(self, path: str) -> tuple[str, str, str, CheckpointRec]:
        run_id, kind, name = self._parse_path(path)
        rec = self.checkpoints.get(f"{run_id}/{kind}/{name}")
        if (
            rec is None
            or not self._run_visible(self.runs.get(run_id))
            or not self.storage.checkpoint_dir(run_id, kind, name).exists()
        ):
            raise ApiError(404, f"checkpoint {path} not found")
        if rec.expires_at is not None and rec.expires_at < time.time():
            raise ApiError(410, f"checkpoint {path} has expired")
        return run_id, kind, name, rec

    def _add_checkpoint(self, rec: CheckpointRec) -> None:
        path = self.storage.checkpoint_dir(rec.run_id, rec.kind, rec.name)
        rec.size_bytes = dir_size(path)
        self.checkpoints[rec.key] = rec
        self._save("checkpoint", rec.key, rec)

    def _write_dir(self, path: Path, write: Callable[[Path], None]) -> None:
        """Write a checkpoint into a temp dir beside ``path``, then swap it in."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
        try:
            write(tmp)
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
