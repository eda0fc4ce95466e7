"""The local server's behaviour, independent of HTTP framing.

``LocalServer`` owns the registries (sessions, runs, samplers, checkpoints),
the futures store, per-model ordered queues and the bounded compute worker.
Handlers take decoded wire Structs (``tinker_actors.wire``) and return
JSON-able dicts (or raise :class:`~.http.ApiError`); ``app.py`` decodes the
bodies and maps the handlers onto routes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import anyio
import anyio.lowlevel

from .._log import get_logger
from .. import wire
from ..errors import ValidationError
from ..wire.validate import parse_tinker_path
from . import engine
from .config import ServerConfig
from .faults import FaultInjector
from .futures import Future, FuturesStore, FutureState, Lookup, Result
from .http import ApiError, bad, dumps
from .idempotency import IdempotencyCache
from .records import (
    CheckpointRec,
    ModelRuntime,
    RunRec,
    SamplerRec,
    SessionRec,
    from_doc,
    now_iso,
    to_doc,
)
from .stats import ServerStats
from .tenancy import KeyRing
from .tenancy import current as current_tenant
from .tenancy import visible
from .storage import KINDS, BadPath, Storage, check_name, check_run_id, dir_size

log = get_logger(__name__)


class UserError(Exception):
    """A request that fails because of its input; reported with category "user"."""


def _json_result(obj: dict[str, Any]) -> Result:
    return Result(obj, lambda v, _kind: dumps(v))


def _builtins(value: Any) -> Any:
    """A decoded Struct as the plain dict it was sent as (for the JSON records)."""
    return None if value is None else wire.codec.to_builtins(value)


class LocalServer:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.stats = ServerStats()
        self.faults = FaultInjector(config.faults)
        self.futures = FuturesStore(ttl_s=config.future_result_ttl_s)
        self.idempotency = IdempotencyCache()
        self.keyring = KeyRing(config.api_keys) if config.api_keys else None
        self._tmp: str | None = None
        if config.data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="tinker-actors-server-")
            data_dir = Path(self._tmp)
        else:
            data_dir = Path(config.data_dir)
        self.storage = Storage(data_dir)
        self.engine = engine.Engine(null_compute=config.null_compute)
        self.limiter = anyio.CapacityLimiter(max(1, config.compute_threads))
        self.archive_secret = secrets.token_bytes(32)
        self.sessions: dict[str, SessionRec] = {}
        self.runs: dict[str, RunRec] = {}
        self.samplers: dict[str, SamplerRec] = {}
        self.checkpoints: dict[str, CheckpointRec] = {}
        self.models: dict[str, ModelRuntime] = {}
        self.sampler_handles: dict[str, Any] = {}
        self._create_futures: dict[str, str] = {}  # model_id -> request_id of its create
        self._join_counters: dict[str, int] = {}
        # null compute: one Result per answer shape, so its bytes are encoded once
        self._null_samples: dict[tuple[Any, ...], Result] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._load()

    # -- lifetime -------------------------------------------------------
    def _load(self) -> None:
        for sid, doc in self.storage.load("session"):
            self.sessions[sid] = from_doc(SessionRec, doc)
        for rid, doc in self.storage.load("run"):
            self.runs[rid] = from_doc(RunRec, doc)
        for sid, doc in self.storage.load("sampler"):
            self.samplers[sid] = from_doc(SamplerRec, doc)
        for key, doc in self.storage.load("checkpoint"):
            self.checkpoints[key] = from_doc(CheckpointRec, doc)

    async def run(self, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the task group that runs model workers and sample jobs."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            self.close()

    def close(self) -> None:
        self.storage.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise ApiError(503, "server is not running (ASGI lifespan not started)")
        return self._tg

    def _save(self, kind: str, key: str, rec: Any) -> None:
        self.storage.put(kind, key, to_doc(rec))

    # -- sessions -------------------------------------------------------
    def session(self, session_id: str, *, live: bool = True) -> SessionRec:
        rec = self.sessions.get(session_id)
        if rec is None or not visible(rec.owner):
            raise ApiError(404, f"unknown session {session_id!r}")
        if live:
            expiry = self.config.faults.session_expiry_s
            if rec.finished is not None:
                raise ApiError(410, f"session {session_id!r} is finished")
            now = anyio.current_time()
            if rec.last_heartbeat is None:
                rec.last_heartbeat = now
            if expiry is not None and now - rec.last_heartbeat > expiry:
                self.stats.faults["session_expired"] += 1
                raise ApiError(410, f"session {session_id!r} expired: no heartbeat for {expiry} s")
        return rec

    def create_session(self, req: wire.CreateSessionRequest) -> dict[str, Any]:
        sid = f"sess-{uuid.uuid4().hex[:16]}"
        rec = SessionRec(
            session_id=sid,
            tags=list(req.tags),
            user_metadata=req.user_metadata or None,
            display_name=req.display_name,
            project_id=req.project_id,
            owner=current_tenant.get(),
        )
        rec.last_heartbeat = anyio.current_time()
        self.sessions[sid] = rec
        self._save("session", sid, rec)
        return {"session_id": sid, "type": "create_session"}

    def heartbeat(self, req: wire.SessionHeartbeatRequest) -> dict[str, Any]:
        rec = self.session(req.session_id)
        rec.last_heartbeat = anyio.current_time()
        return {"type": "session_heartbeat"}

    def finish_session(self, sid: str, req: wire.SessionFinishRequest) -> dict[str, Any]:
        rec = self.session(sid, live=False)
        rec.finished = req.reason.type or "success"
        self._save("session", sid, rec)
        return {}

    def list_sessions(self, limit: int, offset: int) -> dict[str, Any]:
        ids = [sid for sid, rec in self.sessions.items() if visible(rec.owner)]
        return {"sessions": ids[offset : offset + limit]}

    def get_session(self, sid: str) -> dict[str, Any]:
        rec = self.session(sid, live=False)
        out: dict[str, Any] = {"training_run_ids": rec.training_run_ids, "sampler_ids": rec.sampler_ids}
        if rec.user_metadata:
            out["user_metadata"] = rec.user_metadata
        if rec.display_name:
            out["display_name"] = rec.display_name
        return out

    def set_project(self, sid: str, req: wire.SetSessionProjectRequest) -> None:
        rec = self.session(sid, live=False)
        if not req.project_id:
            raise bad("project_id: must not be empty")
        rec.project_id = req.project_id
        self._save("session", sid, rec)

    def _session_status(self, rec: SessionRec) -> dict[str, Any]:
        if rec.finished is None:
            return {"type": "active"}
        reason = rec.finished if rec.finished in ("success", "errored", "interrupted") else "success"
        return {"type": "client_finished", "reason": {"type": reason}}

    def search_sessions(self, req: wire.SessionSearchRequest) -> dict[str, Any]:
        """Newest first; filters: session id, projects, metadata subset, display name, status."""
        if not 1 <= req.limit <= 1000:
            raise bad("limit: must be in [1, 1000]")
        wanted = {type(q).__struct_config__.tag for q in req.statuses or ()}
        recs = sorted(
            (r for r in self.sessions.values() if visible(r.owner)), key=lambda r: (r.created, r.session_id), reverse=True
        )
        if req.cursor is not None:
            # resume after the cursor's session (its timestamp went through ISO
            # text and lost precision; the id did not)
            ids = [r.session_id for r in recs]
            if req.cursor.last_session_id in ids:
                recs = recs[ids.index(req.cursor.last_session_id) + 1 :]
            else:
                after = req.cursor.last_created_at.timestamp()
                recs = [r for r in recs if r.created < after]
        found: list[tuple[SessionRec, dict[str, Any]]] = []
        for rec in recs:
            status = self._session_status(rec)
            if req.session_id is not None and rec.session_id != req.session_id:
                continue
            if req.project_ids is not None and rec.project_id not in req.project_ids:
                continue
            meta = rec.user_metadata or {}
            if any(meta.get(k) != v for k, v in req.user_metadata.items()):
                continue
            if req.display_name is not None and req.display_name.lower() not in (rec.display_name or "").lower():
                continue
            if wanted and status["type"] not in wanted:
                continue
            found.append((rec, status))
            if len(found) > req.limit:
                break
        page = found[: req.limit]
        sessions = []
        for rec, status in page:
            item: dict[str, Any] = {
                "session_id": rec.session_id,
                "created_at": now_iso(rec.created),
                "owner": "local",
                "project_id": rec.project_id or "default",
                "status": status,
                "checkpoints_count": sum(1 for c in self.checkpoints.values() if c.run_id in rec.training_run_ids),
            }
            if rec.display_name:
                item["display_name"] = rec.display_name
            if rec.user_metadata:
                item["user_metadata"] = rec.user_metadata
            sessions.append(item)
        answer: dict[str, Any] = {"sessions": sessions}
        if len(found) > req.limit:
            last = page[-1][0]
            answer["next_cursor"] = {"last_created_at": now_iso(last.created), "last_session_id": last.session_id}
        return answer

    def trace_export(self, sid: str) -> dict[str, Any]:
        """What a trace export holds here: the session's records, as one JSON document."""
        rec = self.session(sid, live=False)
        return {
            "session": to_doc(rec),
            "training_runs": [to_doc(self.runs[r]) for r in rec.training_run_ids if r in self.runs],
            "samplers": [to_doc(self.samplers[s]) for s in rec.sampler_ids if s in self.samplers],
            "checkpoints": [
                c.to_api() for c in self.checkpoints.values() if c.run_id in rec.training_run_ids
            ],
        }

    # -- futures plumbing ----------------------------------------------
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

    async def _execute(self, fut: Future, work: Callable[[], Result]) -> None:
        """Run one job; whatever goes wrong fails its future, never the server."""
        try:
            await self._run_job(fut, work)
        except Exception as exc:
            log.exception("local_server.job_crashed", request_id=fut.request_id, request_type=fut.request_type)
            fut.cancel_scope = None
            self.futures.fail(fut, f"internal server error ({type(exc).__name__}); see the server log for {fut.request_id}", "server")

    async def _run_job(self, fut: Future, work: Callable[[], Result]) -> None:
        """An injected pause, then ``work`` on the compute thread."""
        pause = self.faults.pause_for_future()
        if pause:
            self.stats.faults["pause"] += 1
            fut.queue_state = self.config.faults.pause_kind
            fut.queue_state_reason = "injected pause (local server fault)"
            await anyio.sleep(pause)
        if fut.finished:  # cancelled while queued
            return
        self.futures.start(fut)
        with anyio.CancelScope() as scope:
            fut.cancel_scope = scope
            try:
                result = await self.compute(work)
            except UserError as exc:
                self.futures.fail(fut, str(exc), "user")
            except (ValueError, KeyError, BadPath, ValidationError) as exc:
                self.futures.fail(fut, str(exc), "user")
            except Exception as exc:  # a bug in the model: report it, keep serving
                log.exception("local_server.job_failed", request_id=fut.request_id, request_type=fut.request_type)
                self.futures.fail(fut, f"{type(exc).__name__}: {exc}", "server")
            else:
                self.stats.work_done[fut.request_type] += 1
                self.futures.complete(fut, result)
        fut.cancel_scope = None

    @property
    def inline(self) -> bool:
        """Work runs on the event loop: null compute (no math, so a thread hop
        would be pure overhead) or tests on a virtual clock (a busy thread
        would let an autojump clock leap ahead)."""
        return self.config.compute_inline or self.engine.null_compute

    async def compute(self, fn: Callable[[], Any]) -> Any:
        """Run blocking numpy work off the event loop (bounded by the limiter)."""
        if self.inline:
            await anyio.lowlevel.checkpoint()
            return fn()
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    async def _model_worker(self, receive: Any) -> None:
        async with receive:
            async for fut, work in receive:
                await self._execute(fut, work)

    def _register_model(self, run: RunRec) -> ModelRuntime:
        send, receive = anyio.create_memory_object_stream[tuple[Future, Callable[[], Result]]](10_000)
        rt = ModelRuntime(run=run, handle=None, send=send)
        self.models[run.training_run_id] = rt
        self.task_group.start_soon(self._model_worker, receive)
        return rt

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

    def _model(self, model_id: str) -> ModelRuntime:
        rt = self.models.get(model_id)
        if rt is None or not self._run_visible(rt.run):
            run = self.runs.get(model_id)
            if run is not None and self._run_visible(run):
                raise ApiError(404, self._not_loaded(run))
            raise ApiError(404, f"unknown model {model_id!r}")
        self.session(rt.run.session_id)
        rt.run.last_request_time = time.time()
        return rt

    def _not_loaded(self, run: RunRec) -> str:
        msg = f"model {run.training_run_id!r} is not loaded on this server"
        if run.unloaded:
            return msg + " (it was unloaded, or holds copied weights)"
        saved = [c for c in self.checkpoints.values() if c.run_id == run.training_run_id and c.kind == "weights"]
        hint = f"; its latest checkpoint is {max(saved, key=lambda c: c.time).tinker_path}" if saved else ""
        return (
            msg + ": models live when the server stopped are not restored on restart; "
            "reload it from a checkpoint (create a training client from a tinker://<run>/weights/<name> path)" + hint
        )

    async def submit_ordered(
        self, model_id: str, seq_id: int | None, request_type: str, work: Callable[[ModelRuntime], Result]
    ) -> dict[str, Any]:
        """Queue ``work`` on the model in seq_id order; answer its future at once."""
        rt = self._model(model_id)
        if seq_id is None or seq_id < 1:
            raise bad("seq_id: must be an integer >= 1 (0 is the model's creation)")
        ahead = self.config.limits.max_seq_ahead
        if seq_id > rt.next_seq + ahead:
            raise bad(f"seq_id: {seq_id} is more than {ahead} ahead of the model's next ({rt.next_seq})")
        with anyio.move_on_after(self.config.seq_wait_timeout_s):
            while rt.next_seq < seq_id:
                await rt.seq_changed.wait()
        if rt.next_seq < seq_id:
            raise bad(f"seq_id {seq_id} never became next for model {model_id!r} (waiting for {rt.next_seq})")
        if seq_id < rt.next_seq:
            # a resubmission of an accepted seq_id: answer the same future
            rid = rt.by_seq.get(seq_id)
            existing = self.futures.get(rid) if rid else Lookup.UNKNOWN
            if isinstance(existing, Future) and existing.request_type == request_type:
                self.stats.requests["resubmitted_seq"] += 1
                return self.future_response(existing)
            if existing is Lookup.EXPIRED:
                raise ApiError(
                    410,
                    f"seq_id {seq_id} already ran on model {model_id!r} and its result has expired; training "
                    "requests never run twice: reload the model from its last checkpoint to continue",
                )
            raise bad(f"seq_id {seq_id} was already used for model {model_id!r} (next is {rt.next_seq})")
        fut = self._new_future(request_type, model_id)
        rt.by_seq[seq_id] = fut.request_id
        if len(rt.by_seq) > 4096:
            for old in sorted(rt.by_seq)[:1024]:
                del rt.by_seq[old]
        await rt.send.send((fut, lambda: work(rt)))
        rt.bump()
        return self.future_response(fut)

    # -- models -------------------------------------------------------
    def _model_id(self, session_id: str, seq: int) -> tuple[SessionRec, str]:
        sess = self.session(session_id)
        if seq < 0:
            raise bad("model_seq_id: must be >= 0")
        return sess, f"{sess.session_id}:train:{seq}"

    def _existing_create(self, model_id: str) -> dict[str, Any] | None:
        rid = self._create_futures.get(model_id)
        if rid is not None:
            fut = self.futures.get(rid)
            if isinstance(fut, Future):
                return self.future_response(fut, model_id)
        if model_id in self.models:
            raise bad(f"model {model_id!r} already exists")
        return None

    def _new_run(self, sess: SessionRec, model_id: str, base_model: str, lora: dict[str, Any], opt: dict[str, Any], user_metadata: dict[str, Any] | None) -> RunRec:
        return RunRec(
            training_run_id=model_id,
            session_id=sess.session_id,
            base_model=base_model,
            lora_rank=lora.get("rank"),
            lora=lora,
            optimizer_config=opt,
            user_metadata=user_metadata or None,
        )

    def _commit_run(self, sess: SessionRec, run: RunRec) -> None:
        self.runs[run.training_run_id] = run
        self._save("run", run.training_run_id, run)
        if run.training_run_id not in sess.training_run_ids:
            sess.training_run_ids.append(run.training_run_id)
            self._save("session", sess.session_id, sess)

    async def create_model(self, req: wire.CreateModelRequest) -> dict[str, Any]:
        sess, model_id = self._model_id(req.session_id, req.model_seq_id)
        existing = self._existing_create(model_id)
        if existing is not None:
            return existing
        base_model = req.base_model
        lora = _builtins(req.lora_config) or {"rank": 32}
        opt = _builtins(req.optimizer_config)
        try:
            self.engine.check_create(base_model, lora, opt)
        except ValueError as exc:
            raise bad(str(exc)) from None
        run = self._new_run(sess, model_id, base_model, lora, opt, req.user_metadata)
        self._commit_run(sess, run)
        rt = self._register_model(run)
        fut = self._new_future("CreateModel", model_id)
        self._create_futures[model_id] = fut.request_id

        def work() -> Result:
            rt.handle = self.engine.create(base_model, lora)
            return _json_result({"model_id": model_id, "type": "create_model"})

        await rt.send.send((fut, work))
        return self.future_response(fut, model_id)

    def get_info(self, req: wire.GetInfoRequest) -> dict[str, Any]:
        model_id = req.model_id
        run = self.runs.get(model_id)
        if run is None or not self._run_visible(run):
            raise ApiError(404, f"unknown model {model_id!r}")
        return {
            "type": "get_info",
            "model_id": model_id,
            "model_data": {"arch": "byte-transformer", "model_name": run.base_model, "tokenizer_id": engine.TOKENIZER_ID},
            "optimizer_config": run.optimizer_config,
            "is_lora": True,
            "lora_rank": run.lora_rank,
            "model_name": run.base_model,
        }

    async def unload_model(self, req: wire.UnloadModelRequest) -> dict[str, Any]:
        rt = self._model(req.model_id)
        fut = self._new_future("UnloadModel", rt.run.training_run_id)
        model_id = rt.run.training_run_id

        def work() -> Result:
            rt.handle = None
            return _json_result({"model_id": model_id, "type": "unload_model"})

        await rt.send.send((fut, work))
        self.models.pop(model_id, None)
        rt.send.close()
        rt.run.unloaded = True
        self._save("run", model_id, rt.run)
        return self.future_response(fut, model_id)

    # -- training -------------------------------------------------------
    async def forward_backward(self, req: engine.FBRequest, request_type: str) -> dict[str, Any]:
        def work(rt: ModelRuntime) -> Result:
            out = self.engine.forward_backward(rt.handle, req)
            return Result(out, engine.encode_fb_output, proto=True)

        return await self.submit_ordered(req.model_id, req.seq_id, request_type, work)

    async def optim_step(self, req: wire.OptimStepRequest) -> dict[str, Any]:
        if req.optimizer_params is not None:
            raise bad("optimizer_params: this server trains with adamw only; send adam_params")
        params = req.adam_params or wire.AdamParams()

        def work(rt: ModelRuntime) -> Result:
            metrics = self.engine.optim_step(rt.handle, params)
            return _json_result({"metrics": metrics, "type": "optim_step"})

        return await self.submit_ordered(req.model_id, req.seq_id, "OptimStep", work)

    def _add_checkpoint(self, rec: CheckpointRec) -> None:
        path = self.storage.checkpoint_dir(rec.run_id, rec.kind, rec.name)
        rec.size_bytes = dir_size(path)
        self.checkpoints[rec.key] = rec
        self._save("checkpoint", rec.key, rec)

    def _ttl(self, ttl: int | None) -> float | None:
        if ttl is None:
            return None
        top = self.config.limits.max_ttl_seconds
        if not 0 < ttl <= top:
            raise bad(f"ttl_seconds: must be a positive integer of at most {top}")
        return time.time() + ttl

    async def save_weights(self, req: wire.SaveWeightsRequest) -> dict[str, Any]:
        rt = self._model(req.model_id)
        if req.path is None:
            raise bad("path: a checkpoint name is required")
        name = check_name(req.path)
        expires = self._ttl(req.ttl_seconds)
        overwrite = req.overwrite
        run_id = rt.run.training_run_id
        meta = req.user_metadata

        def work(rt: ModelRuntime) -> Result:
            path = self.storage.checkpoint_dir(run_id, "weights", name)
            if path.exists() and not overwrite:
                raise UserError(f"checkpoint tinker://{run_id}/weights/{name} exists; pass overwrite=true to replace it")
            self._write_dir(path, lambda d: self.engine.save(rt.handle, d, optimizer=True))
            rec = CheckpointRec(run_id, "weights", name, user_metadata=meta, expires_at=expires, has_optimizer=True)
            self._add_checkpoint(rec)
            return _json_result({"path": rec.tinker_path, "type": "save_weights"})

        return await self.submit_ordered(run_id, req.seq_id, "SaveWeights", work)

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

    async def save_weights_for_sampler(self, req: wire.SaveWeightsForSamplerRequest) -> dict[str, Any]:
        rt = self._model(req.model_id)
        run_id = rt.run.training_run_id
        name = req.path
        seq = req.sampling_session_seq_id
        expires = self._ttl(req.ttl_seconds)
        meta = req.user_metadata
        if name is None and seq is None:
            raise bad("save_weights_for_sampler needs 'path' or 'sampling_session_seq_id'")
        if name is not None:
            check_name(name)
        sess = self.sessions[rt.run.session_id]

        def work(rt: ModelRuntime) -> Result:
            if name is not None:
                path = self.storage.checkpoint_dir(run_id, "sampler_weights", name)
                self._write_dir(path, lambda d: self.engine.save(rt.handle, d, optimizer=False))
                rec = CheckpointRec(run_id, "sampler_weights", name, user_metadata=meta, expires_at=expires)
                self._add_checkpoint(rec)
                return _json_result({"path": rec.tinker_path, "type": "save_weights_for_sampler"})
            sampler_id = f"{sess.session_id}:sample:{seq}"
            self.sampler_handles[sampler_id] = self.engine.sampler_from_model(rt.handle)
            srec = SamplerRec(sampler_id, sess.session_id, rt.run.base_model, None, snapshot=True)
            self._commit_sampler(sess, srec)
            return _json_result({"sampling_session_id": sampler_id, "type": "save_weights_for_sampler"})

        return await self.submit_ordered(run_id, req.seq_id, "SaveWeightsForSampler", work)

    async def save_weights_external(self, req: wire.SaveWeightsExternalRequest) -> dict[str, Any]:
        """An external checkpoint: the sampler weights' files, fetched through signed URLs."""
        rt = self._model(req.model_id)
        run_id = rt.run.training_run_id
        name = check_name(req.path)
        expires = self._ttl(req.ttl_seconds)
        if req.age_encryption_recipients:
            raise bad("age_encryption_recipients: this server does not encrypt external checkpoints")

        def work(rt: ModelRuntime) -> Result:
            path = self.storage.checkpoint_dir(run_id, "external_weights", name)
            self._write_dir(path, lambda d: self.engine.save(rt.handle, d, optimizer=False))
            rec = CheckpointRec(run_id, "external_weights", name, expires_at=expires)
            self._add_checkpoint(rec)
            return _json_result({"path": rec.tinker_path, "size_bytes": rec.size_bytes, "type": "save_weights_external"})

        return await self.submit_ordered(run_id, req.seq_id, "SaveWeightsExternal", work)

    def external_files(self, run_id: str, kind: str, name: str) -> list[str]:
        """The file names of an external checkpoint (404 for any other kind)."""
        rec = self.checkpoint(run_id, kind, name)
        if rec.kind != "external_weights":
            raise ApiError(404, f"{rec.tinker_path} is not an external checkpoint (save it with save_weights_external)")
        directory = self.storage.checkpoint_dir(run_id, kind, name)
        return sorted(p.name for p in directory.iterdir() if p.is_file() and not p.is_symlink())

    def copy_weights(self, req: wire.CopyWeightsRequest) -> dict[str, Any]:
        """Copy a checkpoint into a new training run (of a new session unless one is named)."""
        run_id, kind, name, src_rec = self._checkpoint_for_load(req.source_path)
        src_run = self.runs.get(run_id)
        if src_run is None:
            raise ApiError(404, f"training run {run_id!r} not found")
        if req.session_id is not None:
            sess, new_run_id = self._model_id(req.session_id, req.model_seq_id or 0)
            if new_run_id in self.runs:
                raise bad(f"training run {new_run_id!r} already exists")
        else:
            reply = self.create_session(
                wire.CreateSessionRequest(tags=["copy_weights"], sdk_version="", project_id=req.destination_project_id)
            )
            sess, new_run_id = self._model_id(reply["session_id"], 0)
        run = self._new_run(sess, new_run_id, src_run.base_model, dict(src_run.lora), src_run.optimizer_config, None)
        run.unloaded = True  # a copy holds weights; it is not trained on
        self._commit_run(sess, run)
        dest = self.storage.checkpoint_dir(new_run_id, kind, name)
        src = self.storage.checkpoint_dir(run_id, kind, name)
        self._write_dir(dest, lambda d: shutil.copytree(src, d, dirs_exist_ok=True))
        rec = CheckpointRec(
            new_run_id, kind, name, user_metadata=src_rec.user_metadata,
            expires_at=self._ttl(req.ttl_seconds), has_optimizer=src_rec.has_optimizer,
        )
        self._add_checkpoint(rec)
        return {"tinker_path": rec.tinker_path}

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

    async def load_weights(self, req: wire.LoadWeightsRequest) -> dict[str, Any]:
        with_opt = req.optimizer
        if not req.is_create_via_load:
            # legacy: load into an existing model, in seq order
            if req.model_id is None:
                raise bad("load_weights needs session_id + model_seq_id, or model_id + seq_id")
            run_id, kind, name, rec = self._checkpoint_for_load(req.path)
            src = self.storage.checkpoint_dir(run_id, kind, name)

            def load_into(rt: ModelRuntime) -> Result:
                rt.handle = self.engine.load(src, optimizer=with_opt and rec.has_optimizer)
                return _json_result({"path": rec.tinker_path, "type": "load_weights"})

            return await self.submit_ordered(req.model_id, req.seq_id, "LoadWeights", load_into)
        if req.model_seq_id is None:
            raise bad("model_seq_id: is required with session_id")
        sess, model_id = self._model_id(req.session_id, req.model_seq_id)  # type: ignore[arg-type]
        existing = self._existing_create(model_id)
        if existing is not None:
            return existing
        run_id, kind, name, rec = self._checkpoint_for_load(req.path)
        if kind != "weights":
            raise bad("only training checkpoints (tinker://<run>/weights/<name>) can be loaded into a training model")
        src_run = self.runs.get(run_id)
        if src_run is None:
            raise ApiError(404, f"training run {run_id!r} not found")
        opt = _builtins(req.optimizer_config) or src_run.optimizer_config
        base_model = req.base_model or src_run.base_model
        run = self._new_run(sess, model_id, base_model, dict(src_run.lora), opt, req.user_metadata)
        self._commit_run(sess, run)
        rt = self._register_model(run)
        fut = self._new_future("LoadWeights", model_id)
        self._create_futures[model_id] = fut.request_id
        src = self.storage.checkpoint_dir(run_id, kind, name)

        def work() -> Result:
            rt.handle = self.engine.load(src, optimizer=with_opt and rec.has_optimizer)
            return _json_result({"path": rec.tinker_path, "model_id": model_id, "type": "load_weights"})

        await rt.send.send((fut, work))
        return self.future_response(fut, model_id)

    # -- sampling -------------------------------------------------------
    def _commit_sampler(self, sess: SessionRec, srec: SamplerRec) -> None:
        self.samplers[srec.sampler_id] = srec
        self._save("sampler", srec.sampler_id, srec)
        if srec.sampler_id not in sess.sampler_ids:
            sess.sampler_ids.append(srec.sampler_id)
            self._save("session", sess.session_id, sess)

    async def create_sampling_session(self, req: wire.CreateSamplingSessionRequest) -> dict[str, Any]:
        sess = self.session(req.session_id)
        seq = req.sampling_session_seq_id
        sampler_id = f"{sess.session_id}:sample:{seq}"
        if sampler_id in self.sampler_handles:
            return {"sampling_session_id": sampler_id, "type": "create_sampling_session"}
        model_path = req.model_path
        base_model = req.base_model
        if model_path is not None:
            run_id, kind, name, _rec = self._checkpoint_for_load(model_path)
            src = self.storage.checkpoint_dir(run_id, kind, name)
            run = self.runs.get(run_id)
            base_model = run.base_model if run else (base_model or "")
            handle = await self.compute(lambda: self.engine.sampler_from_dir(src))
        elif base_model is not None:
            try:
                handle = await self.compute(lambda: self.engine.base_sampler(base_model))
            except ValueError as exc:
                raise bad(str(exc)) from None
        else:
            raise bad("create_sampling_session needs 'base_model' or 'model_path'")
        self.sampler_handles[sampler_id] = handle
        self._commit_sampler(sess, SamplerRec(sampler_id, sess.session_id, base_model, model_path))
        return {"sampling_session_id": sampler_id, "type": "create_sampling_session"}

    def join_sampling_session(self, req: wire.JoinSamplingSessionRequest) -> dict[str, Any]:
        sid = req.sampling_session_id
        self._sampler_rec(sid)
        n = self._join_counters.get(sid, 0) + 1
        self._join_counters[sid] = n
        return {"client_counter": n, "type": "join_sampling_session"}

    def get_sampler(self, sampler_id: str) -> dict[str, Any]:
        rec = self.samplers.get(sampler_id)
        if rec is None or not self._session_visible(rec.session_id):
            raise ApiError(404, f"unknown sampler {sampler_id!r}")
        out: dict[str, Any] = {"sampler_id": rec.sampler_id, "base_model": rec.base_model}
        if rec.model_path:
            out["model_path"] = rec.model_path
        return out

    def _sampler_handle(self, sampler_id: str) -> Any:
        handle = self.sampler_handles.get(sampler_id)
        if handle is not None:
            return handle
        rec = self.samplers.get(sampler_id)
        if rec is None:
            raise ApiError(404, f"unknown sampling session {sampler_id!r}")
        # known from before a restart: rebuild it from its checkpoint or base model
        if rec.model_path:
            run_id, kind, name, _ = self._checkpoint_for_load(rec.model_path)
            handle = self.engine.sampler_from_dir(self.storage.checkpoint_dir(run_id, kind, name))
        else:
            handle = self.engine.base_sampler(rec.base_model)
        self.sampler_handles[sampler_id] = handle
        return handle

    async def asample(self, req: engine.SampleRequest) -> dict[str, Any]:
        if req.sampling_session_id is None:
            raise bad("field 'sampling_session_id' is required (create a sampling session first)")
        srec = self._sampler_rec(req.sampling_session_id)
        self.session(srec.session_id)
        handle = self._sampler_handle(req.sampling_session_id)
        fut = self._new_future("Sample", req.sampling_session_id)
        clone = (req.seq_id or 0) // 1_000_000_000
        self.futures.track(fut, f"{req.sampling_session_id}#{clone}")
        if self.config.sample_sequence_ids:
            fut.sample_sequence_ids = [f"{fut.request_id}:{i}" for i in range(req.num_samples)]

        if self.engine.null_compute:
            # the answer depends only on the request's shape: share one Result
            # (and so its encoded bytes) between every request of that shape
            key = req.shape_key()
            cached = self._null_samples.get(key)
            if cached is None:
                if len(self._null_samples) > 1024:
                    self._null_samples.clear()
                cached = Result(self.engine.sample(handle, req), engine.encode_sample_response, proto=True)
                self._null_samples[key] = cached
            shared = cached

            def work() -> Result:
                return shared

        else:

            def work() -> Result:
                return Result(self.engine.sample(handle, req), engine.encode_sample_response, proto=True)

        self.task_group.start_soon(self._execute, fut, work)
        return self.future_response(fut)

    def sampler_identity(self, sampler_id: str) -> str | None:
        """The model behind a sampling session, for idempotency fingerprints (None: unknown)."""
        rec = self.samplers.get(sampler_id)
        if rec is None:
            return None
        if rec.snapshot or (rec.model_path is None and not rec.base_model):
            return f"snapshot:{rec.sampler_id}"
        if rec.model_path is not None:
            try:
                run_id, kind, name = self._parse_path(rec.model_path)
            except ApiError:
                return f"path:{rec.model_path}"
            ck = self.checkpoints.get(f"{run_id}/{kind}/{name}")
            # a checkpoint overwritten under the same path is another model
            return f"path:{rec.model_path}@{ck.time if ck else ''}"
        return f"base:{rec.base_model}"

    # -- futures --------------------------------------------------------
    def future_is_gone(self, request_id: str) -> bool:
        """True when nobody can collect this future's result any more.

        Expired or swept (410), unknown (issued before a restart), cancelled,
        or failed on the server's side: a resend with its idempotency key
        deserves fresh work rather than this id.
        """
        fut = self.futures.get(request_id)
        if not isinstance(fut, Future):
            return True
        if fut.state == FutureState.CANCELLED:
            return True
        return fut.state == FutureState.FAILED and fut.category == "server"

    def lookup_future(self, request_id: str) -> Future:
        fut = self.futures.get(request_id)
        if fut is Lookup.EXPIRED and visible(self.futures.expired_tenant(request_id)):
            self.stats.faults["future_expired"] += 1
            raise ApiError(410, f"future {request_id!r} has expired")
        if not isinstance(fut, Future) or not visible(fut.tenant):
            raise ApiError(404, f"unknown future {request_id!r}")
        return fut

    async def retrieve_future(self, req: wire.FutureRetrieveRequest, accept: str) -> tuple[bytes, str]:
        """Long-poll one future; returns (body, content type)."""
        fut = self.lookup_future(req.request_id)
        if not fut.finished:
            self.stats.long_poll_started()
            try:
                await self.futures.wait(fut, self.config.long_poll_timeout_s)
            finally:
                self.stats.long_poll_ended()
        fut = self.lookup_future(fut.request_id)  # may have expired meanwhile
        if not fut.finished:
            out: dict[str, Any] = {"type": "try_again", "request_id": fut.request_id, "queue_state": fut.queue_state}
            if fut.queue_state_reason:
                out["queue_state_reason"] = fut.queue_state_reason
            return dumps(out), "application/json"
        if fut.result is None:
            err = {"error": fut.error or "failed", "category": fut.category}
            self.futures.mark_retrieved(fut)
            return dumps(err), "application/json"
        result = fut.result
        kind = "proto" if result.proto and "application/x-protobuf" in accept else "json"
        if result.proto and not self.inline and not result.encoded(kind):
            # encoding a large numpy result is real work: keep it off the loop
            payload = await anyio.to_thread.run_sync(result.body, kind)
        else:
            payload = result.body(kind)
        if req.allow_metadata_only and len(payload) > self.config.metadata_threshold_bytes:
            meta = {"status": "complete_metadata", "response_payload_size": len(payload)}
            return dumps(meta), "application/json"
        self.futures.mark_retrieved(fut)
        return payload, ("application/x-protobuf" if kind == "proto" else "application/json")

    async def retrieve_futures(self, req: wire.FuturesRetrieveRequest) -> dict[str, Any]:
        sid = req.target.sampling_session_id
        self._sampler_rec(sid)
        key = f"{sid}#{req.target.cloned_sampler_id}"
        cursor = req.prev_cursor
        if cursor < 0:
            raise bad("prev_cursor: must be a non-negative integer")
        timeout = req.timeout
        wait_s = self.config.futures_batch_timeout_s if timeout is None else min(timeout, self.config.futures_batch_timeout_s)
        if wait_s > 0:
            self.stats.long_poll_started()
            try:
                await self.futures.wait_completion(key, cursor, wait_s)
            finally:
                self.stats.long_poll_ended()
        done, new_cursor = self.futures.completions_since(key, cursor)
        completions: list[dict[str, Any]] = []
        for fut in done:
            if fut.result is not None:
                item: dict[str, Any] = {"state": "finished", "request_id": fut.request_id}
                completions.append(item)
            else:
                completions.append({"state": "failed", "request_id": fut.request_id})
        return {"completions": completions, "cursor": new_cursor}

    def cancel_future(self, req: wire.CancelFutureRequest) -> dict[str, Any]:
        fut = self.lookup_future(req.request_id)
        if fut.request_type != "Sample":
            raise bad("only sampling futures can be cancelled")
        self.futures.cancel(fut)
        return {}

    # -- REST -----------------------------------------------------------
    def _run_api(self, run: RunRec) -> dict[str, Any]:
        cks = [c for c in self.checkpoints.values() if c.run_id == run.training_run_id]
        train = [c for c in cks if c.kind == "weights"]
        samp = [c for c in cks if c.kind == "sampler_weights"]
        out: dict[str, Any] = {
            "training_run_id": run.training_run_id,
            "base_model": run.base_model,
            "model_owner": run.model_owner,
            "is_lora": run.is_lora,
            "corrupted": run.corrupted,
            "lora_rank": run.lora_rank,
            "last_request_time": now_iso(run.last_request_time),
        }
        if train:
            out["last_checkpoint"] = max(train, key=lambda c: c.time).to_api()
        if samp:
            out["last_sampler_checkpoint"] = max(samp, key=lambda c: c.time).to_api()
        if run.user_metadata:
            out["user_metadata"] = run.user_metadata
        return out

    def list_runs(self, limit: int, offset: int) -> dict[str, Any]:
        runs = [r for r in self.runs.values() if self._run_visible(r)]
        page = runs[offset : offset + limit]
        return {
            "training_runs": [self._run_api(r) for r in page],
            "cursor": {"offset": offset, "limit": limit, "total_count": len(runs)},
        }

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._run_api(self._run(run_id))

    def _live_checkpoints(self) -> list[CheckpointRec]:
        now = time.time()
        return [c for c in self.checkpoints.values() if c.expires_at is None or c.expires_at > now]

    def run_checkpoints(self, run_id: str) -> dict[str, Any]:
        self._run(run_id)
        cks = [c.to_api() for c in self._live_checkpoints() if c.run_id == run_id]
        return {"checkpoints": cks}

    def user_checkpoints(self, limit: int, offset: int) -> dict[str, Any]:
        cks = sorted(
            (c for c in self._live_checkpoints() if self._run_visible(self.runs.get(c.run_id))),
            key=lambda c: c.time,
            reverse=True,
        )
        return {
            "checkpoints": [c.to_api() for c in cks[offset : offset + limit]],
            "cursor": {"offset": offset, "limit": limit, "total_count": len(cks)},
        }

    def checkpoint(self, run_id: str, kind: str, name: str) -> CheckpointRec:
        if kind not in KINDS:
            raise bad(f"invalid checkpoint id {kind}/{name}")
        try:
            check_name(name)
        except BadPath as exc:
            raise bad(str(exc)) from None
        rec = self.checkpoints.get(f"{run_id}/{kind}/{name}")
        if rec is None or not self._run_visible(self.runs.get(run_id)):
            raise ApiError(404, f"checkpoint tinker://{run_id}/{kind}/{name} not found")
        return rec

    def delete_checkpoint(self, run_id: str, kind: str, name: str) -> None:
        rec = self.checkpoint(run_id, kind, name)
        self.storage.remove_checkpoint(run_id, kind, name)
        del self.checkpoints[rec.key]
        self.storage.delete("checkpoint", rec.key)

    def set_public(self, run_id: str, kind: str, name: str, public: bool) -> None:
        rec = self.checkpoint(run_id, kind, name)
        rec.public = public
        self._save("checkpoint", rec.key, rec)

    def set_ttl(self, run_id: str, kind: str, name: str, req: wire.CheckpointTtlRequest) -> None:
        rec = self.checkpoint(run_id, kind, name)
        rec.expires_at = self._ttl(req.ttl_seconds)
        self._save("checkpoint", rec.key, rec)

    def _parse_path(self, path: str, field: str = "path") -> tuple[str, str, str]:
        """A tinker:// path as (run, kind, name), every part safe to use on disk."""
        try:
            tp = parse_tinker_path(path, field)
            return check_run_id(tp.run_id), tp.kind, check_name(tp.name)
        except (ValidationError, BadPath) as exc:
            raise bad(str(exc)) from None

    def weights_info(self, req: wire.WeightsInfoRequest) -> dict[str, Any]:
        run_id, kind, name = self._parse_path(req.tinker_path, "tinker_path")
        self.checkpoint(run_id, kind, name)
        run = self.runs.get(run_id)
        if run is None:
            raise ApiError(404, f"training run {run_id!r} not found")
        return {
            "base_model": run.base_model,
            "optimizer_config": run.optimizer_config,
            "is_lora": True,
            "lora_rank": run.lora_rank,
            "train_unembed": run.lora.get("train_unembed", True),
            "train_mlp": run.lora.get("train_mlp", True),
            "train_attn": run.lora.get("train_attn", True),
        }

    # -- signed archive URLs ------------------------------------------
    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self.archive_secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def check_signature(self, path: str, expires: str, sig: str) -> None:
        try:
            exp = int(expires)
        except ValueError:
            raise ApiError(403, "invalid archive link") from None
        # bytes: compare_digest refuses non-ASCII str, and a sig is hex
        if not hmac.compare_digest(self.sign(path, exp).encode(), (sig or "").encode("utf-8", "replace")):
            raise ApiError(403, "invalid archive link signature")
        if exp < time.time():
            raise ApiError(403, "archive link has expired")
