"""The local server's behaviour, independent of HTTP framing.

``LocalServer`` owns the registries (sessions, runs, samplers, checkpoints),
the futures store, per-model ordered queues and the bounded compute worker.
Handlers take parsed JSON dicts and return JSON-able dicts (or raise
:class:`~.http.ApiError`); ``app.py`` maps them onto routes.
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
import structlog

from . import engine
from .config import ServerConfig
from .faults import FaultInjector
from .futures import Future, FuturesStore, Lookup, Result
from .http import ApiError, bad, field
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
from .storage import KINDS, BadPath, Storage, check_name, dir_size, parse_tinker_path

log = structlog.get_logger()


class UserError(Exception):
    """A request that fails because of its input; reported with category "user"."""


def _json_result(obj: dict[str, Any]) -> Result:
    import json

    return Result(obj, lambda v, _kind: json.dumps(v, separators=(",", ":")).encode())


class LocalServer:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.stats = ServerStats()
        self.faults = FaultInjector(config.faults)
        self.futures = FuturesStore(ttl_s=config.future_result_ttl_s)
        self.idempotency = IdempotencyCache()
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
    def session(self, session_id: Any, *, live: bool = True) -> SessionRec:
        if not isinstance(session_id, str) or not session_id:
            raise bad("missing required field 'session_id'")
        rec = self.sessions.get(session_id)
        if rec is None:
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

    def create_session(self, body: dict[str, Any]) -> dict[str, Any]:
        sid = f"sess-{uuid.uuid4().hex[:16]}"
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad("field 'tags' must be a list of strings")
        rec = SessionRec(
            session_id=sid,
            tags=tags,
            user_metadata=body.get("user_metadata") or None,
            display_name=body.get("display_name"),
            project_id=body.get("project_id"),
        )
        rec.last_heartbeat = anyio.current_time()
        self.sessions[sid] = rec
        self._save("session", sid, rec)
        return {"session_id": sid, "type": "create_session"}

    def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        rec = self.session(body.get("session_id"))
        rec.last_heartbeat = anyio.current_time()
        return {"type": "session_heartbeat"}

    def finish_session(self, sid: str, body: dict[str, Any]) -> dict[str, Any]:
        rec = self.session(sid, live=False)
        reason = body.get("reason") if isinstance(body.get("reason"), dict) else {}
        rec.finished = str(reason.get("type") or "success")
        self._save("session", sid, rec)
        return {}

    def list_sessions(self, limit: int, offset: int) -> dict[str, Any]:
        ids = list(self.sessions)
        return {"sessions": ids[offset : offset + limit]}

    def get_session(self, sid: str) -> dict[str, Any]:
        rec = self.session(sid, live=False)
        out: dict[str, Any] = {"training_run_ids": rec.training_run_ids, "sampler_ids": rec.sampler_ids}
        if rec.user_metadata:
            out["user_metadata"] = rec.user_metadata
        if rec.display_name:
            out["display_name"] = rec.display_name
        return out

    # -- futures plumbing ----------------------------------------------
    def _new_future(self, request_type: str, owner: str = "") -> Future:
        fut = self.futures.create(request_type, owner)
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
        """Run one job: an injected pause, then ``work`` on the compute thread."""
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
            except (ValueError, KeyError, BadPath) as exc:
                self.futures.fail(fut, str(exc), "user")
            except Exception as exc:  # a bug in the model: report it, keep serving
                log.exception("local_server.job_failed", request_type=fut.request_type)
                self.futures.fail(fut, f"{type(exc).__name__}: {exc}", "server")
            else:
                self.stats.work_done[fut.request_type] += 1
                self.futures.complete(fut, result)
        fut.cancel_scope = None

    async def compute(self, fn: Callable[[], Any]) -> Any:
        """Run blocking numpy work off the event loop (bounded by the limiter)."""
        if self.config.compute_inline:
            await anyio.lowlevel.checkpoint()
            return fn()
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    async def _model_worker(self, rt: ModelRuntime, receive: Any) -> None:
        async with receive:
            async for fut, work in receive:
                await self._execute(fut, work)

    def _register_model(self, run: RunRec) -> ModelRuntime:
        send, receive = anyio.create_memory_object_stream[tuple[Future, Callable[[], Result]]](10_000)
        rt = ModelRuntime(run=run, handle=None, send=send)
        self.models[run.training_run_id] = rt
        self.task_group.start_soon(self._model_worker, rt, receive)
        return rt

    def _model(self, model_id: Any) -> ModelRuntime:
        if not isinstance(model_id, str) or not model_id:
            raise bad("missing required field 'model_id'")
        rt = self.models.get(model_id)
        if rt is None:
            if model_id in self.runs:
                raise ApiError(404, f"model {model_id!r} is not loaded on this server (restarted?): load it from a checkpoint")
            raise ApiError(404, f"unknown model {model_id!r}")
        self.session(rt.run.session_id)
        rt.run.last_request_time = time.time()
        return rt

    async def submit_ordered(
        self, model_id: Any, seq_id: Any, request_type: str, work: Callable[[ModelRuntime], Result]
    ) -> dict[str, Any]:
        """Queue ``work`` on the model in seq_id order; answer its future at once."""
        rt = self._model(model_id)
        if not isinstance(seq_id, int) or isinstance(seq_id, bool) or seq_id < 1:
            raise bad("field 'seq_id' must be an integer >= 1 (0 is the model's creation)")
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
    def _model_id(self, body: dict[str, Any]) -> tuple[SessionRec, str]:
        sess = self.session(body.get("session_id"))
        seq = field(body, "model_seq_id", int)
        if seq < 0:
            raise bad("field 'model_seq_id' must be >= 0")
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

    def _new_run(self, sess: SessionRec, model_id: str, base_model: str, lora: dict[str, Any], opt: dict[str, Any], user_metadata: Any) -> RunRec:
        run = RunRec(
            training_run_id=model_id,
            session_id=sess.session_id,
            base_model=base_model,
            lora_rank=lora.get("rank"),
            lora=lora,
            optimizer_config=opt,
            user_metadata=user_metadata if isinstance(user_metadata, dict) and user_metadata else None,
        )
        return run

    def _commit_run(self, sess: SessionRec, run: RunRec) -> None:
        self.runs[run.training_run_id] = run
        self._save("run", run.training_run_id, run)
        if run.training_run_id not in sess.training_run_ids:
            sess.training_run_ids.append(run.training_run_id)
            self._save("session", sess.session_id, sess)

    async def create_model(self, body: dict[str, Any]) -> dict[str, Any]:
        sess, model_id = self._model_id(body)
        existing = self._existing_create(model_id)
        if existing is not None:
            return existing
        base_model = field(body, "base_model", str)
        lora = field(body, "lora_config", dict, default={"rank": 32})
        opt = field(body, "optimizer_config", dict, default={"type": "adamw"})
        try:
            self.engine.check_create(base_model, lora, opt)
        except ValueError as exc:
            raise bad(str(exc)) from None
        run = self._new_run(sess, model_id, base_model, lora, opt, body.get("user_metadata"))
        self._commit_run(sess, run)
        rt = self._register_model(run)
        fut = self._new_future("CreateModel", model_id)
        self._create_futures[model_id] = fut.request_id

        def work() -> Result:
            rt.handle = self.engine.create(base_model, lora, opt)
            return _json_result({"model_id": model_id, "type": "create_model"})

        await rt.send.send((fut, work))
        return self.future_response(fut, model_id)

    def get_info(self, body: dict[str, Any]) -> dict[str, Any]:
        model_id = body.get("model_id")
        run = self.runs.get(model_id) if isinstance(model_id, str) else None
        if run is None:
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

    async def unload_model(self, body: dict[str, Any]) -> dict[str, Any]:
        rt = self._model(body.get("model_id"))
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

    async def optim_step(self, body: dict[str, Any]) -> dict[str, Any]:
        params = body.get("adam_params") or body.get("optimizer_params") or {}
        if not isinstance(params, dict):
            raise bad("field 'adam_params' must be an object")

        def work(rt: ModelRuntime) -> Result:
            metrics = self.engine.optim_step(rt.handle, params)
            return _json_result({"metrics": metrics, "type": "optim_step"})

        return await self.submit_ordered(body.get("model_id"), body.get("seq_id"), "OptimStep", work)

    def _add_checkpoint(self, rec: CheckpointRec) -> None:
        path = self.storage.checkpoint_dir(rec.run_id, rec.kind, rec.name)
        rec.size_bytes = dir_size(path)
        self.checkpoints[rec.key] = rec
        self._save("checkpoint", rec.key, rec)

    def _ttl(self, body: dict[str, Any]) -> float | None:
        ttl = body.get("ttl_seconds")
        if ttl is None:
            return None
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
            raise bad("field 'ttl_seconds' must be a positive integer")
        return time.time() + ttl

    async def save_weights(self, body: dict[str, Any]) -> dict[str, Any]:
        rt = self._model(body.get("model_id"))
        name = check_name(field(body, "path", str))
        expires = self._ttl(body)
        overwrite = bool(body.get("overwrite", False))
        run_id = rt.run.training_run_id
        meta = body.get("user_metadata") if isinstance(body.get("user_metadata"), dict) else None

        def work(rt: ModelRuntime) -> Result:
            path = self.storage.checkpoint_dir(run_id, "weights", name)
            if path.exists() and not overwrite:
                raise UserError(f"checkpoint tinker://{run_id}/weights/{name} exists; pass overwrite=true to replace it")
            self._write_dir(path, lambda d: self.engine.save(rt.handle, d, optimizer=True))
            rec = CheckpointRec(run_id, "weights", name, user_metadata=meta, expires_at=expires, has_optimizer=True)
            self._add_checkpoint(rec)
            return _json_result({"path": rec.tinker_path, "type": "save_weights"})

        return await self.submit_ordered(run_id, body.get("seq_id"), "SaveWeights", work)

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

    async def save_weights_for_sampler(self, body: dict[str, Any]) -> dict[str, Any]:
        rt = self._model(body.get("model_id"))
        run_id = rt.run.training_run_id
        name = body.get("path")
        seq = body.get("sampling_session_seq_id")
        expires = self._ttl(body)
        meta = body.get("user_metadata") if isinstance(body.get("user_metadata"), dict) else None
        if name is None and seq is None:
            raise bad("save_weights_for_sampler needs 'path' or 'sampling_session_seq_id'")
        if name is not None:
            check_name(field(body, "path", str))
        else:
            field(body, "sampling_session_seq_id", int)
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
            srec = SamplerRec(sampler_id, sess.session_id, rt.run.base_model, None)
            self._commit_sampler(sess, srec)
            return _json_result({"sampling_session_id": sampler_id, "type": "save_weights_for_sampler"})

        return await self.submit_ordered(run_id, body.get("seq_id"), "SaveWeightsForSampler", work)

    def _checkpoint_for_load(self, path: Any) -> tuple[str, str, str, CheckpointRec]:
        if not isinstance(path, str):
            raise bad("field 'path' must be a tinker:// path")
        try:
            run_id, kind, name = parse_tinker_path(path)
        except BadPath as exc:
            raise bad(str(exc)) from None
        rec = self.checkpoints.get(f"{run_id}/{kind}/{name}")
        if rec is None or not self.storage.checkpoint_dir(run_id, kind, name).exists():
            raise ApiError(404, f"checkpoint {path} not found")
        if rec.expires_at is not None and rec.expires_at < time.time():
            raise ApiError(410, f"checkpoint {path} has expired")
        return run_id, kind, name, rec

    async def load_weights(self, body: dict[str, Any]) -> dict[str, Any]:
        with_opt = bool(body.get("optimizer", False))
        if "model_id" in body and "session_id" not in body:
            # legacy: load into an existing model, in seq order
            run_id, kind, name, rec = self._checkpoint_for_load(body.get("path"))
            src = self.storage.checkpoint_dir(run_id, kind, name)

            def load_into(rt: ModelRuntime) -> Result:
                rt.handle = self.engine.load(src, optimizer=with_opt and rec.has_optimizer, like=rt.handle)
                return _json_result({"path": rec.tinker_path, "type": "load_weights"})

            return await self.submit_ordered(body.get("model_id"), body.get("seq_id"), "LoadWeights", load_into)
        sess, model_id = self._model_id(body)
        existing = self._existing_create(model_id)
        if existing is not None:
            return existing
        run_id, kind, name, rec = self._checkpoint_for_load(body.get("path"))
        if kind != "weights":
            raise bad("only training checkpoints (tinker://<run>/weights/<name>) can be loaded into a training model")
        src_run = self.runs.get(run_id)
        if src_run is None:
            raise ApiError(404, f"training run {run_id!r} not found")
        opt = body.get("optimizer_config") or src_run.optimizer_config
        base_model = body.get("base_model") or src_run.base_model
        run = self._new_run(sess, model_id, base_model, dict(src_run.lora), opt, body.get("user_metadata"))
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

    async def create_sampling_session(self, body: dict[str, Any]) -> dict[str, Any]:
        sess = self.session(body.get("session_id"))
        seq = field(body, "sampling_session_seq_id", int)
        sampler_id = f"{sess.session_id}:sample:{seq}"
        if sampler_id in self.sampler_handles:
            return {"sampling_session_id": sampler_id, "type": "create_sampling_session"}
        model_path = body.get("model_path")
        base_model = body.get("base_model")
        if model_path is not None:
            run_id, kind, name, _rec = self._checkpoint_for_load(model_path)
            src = self.storage.checkpoint_dir(run_id, kind, name)
            run = self.runs.get(run_id)
            base_model = run.base_model if run else (base_model or "")
            handle = await self.compute(lambda: self.engine.sampler_from_dir(src))
        elif isinstance(base_model, str):
            try:
                handle = await self.compute(lambda: self.engine.base_sampler(base_model))
            except ValueError as exc:
                raise bad(str(exc)) from None
        else:
            raise bad("create_sampling_session needs 'base_model' or 'model_path'")
        self.sampler_handles[sampler_id] = handle
        self._commit_sampler(sess, SamplerRec(sampler_id, sess.session_id, base_model, model_path))
        return {"sampling_session_id": sampler_id, "type": "create_sampling_session"}

    def join_sampling_session(self, body: dict[str, Any]) -> dict[str, Any]:
        sid = field(body, "sampling_session_id", str)
        if sid not in self.samplers:
            raise ApiError(404, f"unknown sampling session {sid!r}")
        n = self._join_counters.get(sid, 0) + 1
        self._join_counters[sid] = n
        return {"client_counter": n, "type": "join_sampling_session"}

    def get_sampler(self, sampler_id: str) -> dict[str, Any]:
        rec = self.samplers.get(sampler_id)
        if rec is None:
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
        srec = self.samplers.get(req.sampling_session_id)
        if srec is None:
            raise ApiError(404, f"unknown sampling session {req.sampling_session_id!r}")
        self.session(srec.session_id)
        handle = self._sampler_handle(req.sampling_session_id)
        fut = self._new_future("Sample", req.sampling_session_id)
        clone = (req.seq_id or 0) // 1_000_000_000
        self.futures.track(fut, f"{req.sampling_session_id}#{clone}")
        if self.config.sample_sequence_ids:
            fut.sample_sequence_ids = [f"{fut.request_id}:{i}" for i in range(req.num_samples)]

        def work() -> Result:
            return Result(self.engine.sample(handle, req), engine.encode_sample_response, proto=True)

        self.task_group.start_soon(self._execute, fut, work)
        return self.future_response(fut)

    # -- futures --------------------------------------------------------
    def lookup_future(self, request_id: Any) -> Future:
        if not isinstance(request_id, str) or not request_id:
            raise bad("missing required field 'request_id'")
        fut = self.futures.get(request_id)
        if fut is Lookup.EXPIRED:
            self.stats.faults["future_expired"] += 1
            raise ApiError(410, f"future {request_id!r} has expired")
        if fut is Lookup.UNKNOWN:
            raise ApiError(404, f"unknown future {request_id!r}")
        assert isinstance(fut, Future)
        return fut

    async def retrieve_future(self, body: dict[str, Any], accept: str) -> tuple[bytes, str]:
        """Long-poll one future; returns (body, content type)."""
        import json

        fut = self.lookup_future(body.get("request_id"))
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
            return json.dumps(out).encode(), "application/json"
        if fut.result is None:
            err = {"error": fut.error or "failed", "category": fut.category}
            self.futures.mark_retrieved(fut)
            return json.dumps(err).encode(), "application/json"
        kind = "proto" if fut.result.proto and "application/x-protobuf" in accept else "json"
        payload = await anyio.to_thread.run_sync(lambda: fut.result.body(kind)) if fut.result.proto else fut.result.body(kind)
        if body.get("allow_metadata_only") and (kind == "proto" or len(payload) > self.config.metadata_only_threshold):
            meta = {"status": "complete_metadata", "response_payload_size": len(payload)}
            return json.dumps(meta).encode(), "application/json"
        self.futures.mark_retrieved(fut)
        return payload, ("application/x-protobuf" if kind == "proto" else "application/json")

    async def retrieve_futures(self, body: dict[str, Any]) -> dict[str, Any]:
        target = field(body, "target", dict)
        sid = field(target, "sampling_session_id", str)
        if sid not in self.samplers:
            raise ApiError(404, f"unknown sampling session {sid!r}")
        clone = target.get("cloned_sampler_id") or 0
        key = f"{sid}#{clone}"
        cursor = body.get("prev_cursor") or 0
        if not isinstance(cursor, int) or cursor < 0:
            raise bad("field 'prev_cursor' must be a non-negative integer")
        timeout = body.get("timeout")
        wait_s = self.config.futures_batch_timeout_s if timeout is None else min(float(timeout), self.config.futures_batch_timeout_s)
        self.futures._completions.setdefault(key, [])
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

    def cancel_future(self, body: dict[str, Any]) -> dict[str, Any]:
        fut = self.lookup_future(body.get("request_id"))
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
        runs = list(self.runs.values())
        page = runs[offset : offset + limit]
        return {
            "training_runs": [self._run_api(r) for r in page],
            "cursor": {"offset": offset, "limit": limit, "total_count": len(runs)},
        }

    def get_run(self, run_id: str) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            raise ApiError(404, f"training run {run_id!r} not found")
        return self._run_api(run)

    def _live_checkpoints(self) -> list[CheckpointRec]:
        now = time.time()
        return [c for c in self.checkpoints.values() if c.expires_at is None or c.expires_at > now]

    def run_checkpoints(self, run_id: str) -> dict[str, Any]:
        if run_id not in self.runs:
            raise ApiError(404, f"training run {run_id!r} not found")
        cks = [c.to_api() for c in self._live_checkpoints() if c.run_id == run_id]
        return {"checkpoints": cks}

    def user_checkpoints(self, limit: int, offset: int) -> dict[str, Any]:
        cks = sorted(self._live_checkpoints(), key=lambda c: c.time, reverse=True)
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
        if rec is None:
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

    def set_ttl(self, run_id: str, kind: str, name: str, body: dict[str, Any]) -> None:
        rec = self.checkpoint(run_id, kind, name)
        rec.expires_at = self._ttl(body)
        self._save("checkpoint", rec.key, rec)

    def weights_info(self, body: dict[str, Any]) -> dict[str, Any]:
        path = body.get("tinker_path")
        if not isinstance(path, str):
            raise bad("missing required field 'tinker_path'")
        try:
            run_id, kind, name = parse_tinker_path(path)
        except BadPath as exc:
            raise bad(str(exc)) from None
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
        if not hmac.compare_digest(self.sign(path, exp), sig or ""):
            raise ApiError(403, "invalid archive link signature")
        if exp < time.time():
            raise ApiError(403, "archive link has expired")
