"""Training models: create, load, train in seq_id order, save, copy, unload."""

from __future__ import annotations

import shutil
import time
from typing import Any, Callable

import anyio

from .. import wire
from . import age_export, engine
from ._state import ServerState, UserError, json_result, plain
from .futures import Future, Lookup, Result
from .http import ApiError, bad
from .records import CheckpointRec, ModelRuntime, RunRec, SamplerRec, SessionRec
from .storage import check_name


class Training(ServerState):
    """Models run their requests strictly in seq_id order (``submit_ordered``) on their own worker."""

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
        lora = plain(req.lora_config) or {"rank": 32}
        opt = plain(req.optimizer_config)
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
            return json_result({"model_id": model_id, "type": "create_model"})

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
            return json_result({"model_id": model_id, "type": "unload_model"})

        await rt.send.send((fut, work))
        self.models.pop(model_id, None)
        rt.send.close()
        rt.run.unloaded = True
        self._save("run", model_id, rt.run)
        return self.future_response(fut, model_id)

    # -- training and weights ----------------------------------------
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
            return json_result({"metrics": metrics, "type": "optim_step"})

        return await self.submit_ordered(req.model_id, req.seq_id, "OptimStep", work)

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
            return json_result({"path": rec.tinker_path, "type": "save_weights"})

        return await self.submit_ordered(run_id, req.seq_id, "SaveWeights", work)

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
                return json_result({"path": rec.tinker_path, "type": "save_weights_for_sampler"})
            sampler_id = f"{sess.session_id}:sample:{seq}"
            self.sampler_handles[sampler_id] = self.engine.sampler_from_model(rt.handle)
            srec = SamplerRec(sampler_id, sess.session_id, rt.run.base_model, None, snapshot=True)
            self._commit_sampler(sess, srec)
            return json_result({"sampling_session_id": sampler_id, "type": "save_weights_for_sampler"})

        return await self.submit_ordered(run_id, req.seq_id, "SaveWeightsForSampler", work)

    async def save_weights_external(self, req: wire.SaveWeightsExternalRequest) -> dict[str, Any]:
        """An external checkpoint: the sampler weights' files, fetched through signed URLs."""
        rt = self._model(req.model_id)
        run_id = rt.run.training_run_id
        name = check_name(req.path)
        expires = self._ttl(req.ttl_seconds)
        recipients = age_export.parse_recipients(req.age_encryption_recipients) if req.age_encryption_recipients else []

        def write(d: Any, rt: ModelRuntime) -> None:
            self.engine.save(rt.handle, d, optimizer=False)
            if recipients:
                age_export.encrypt_dir(d, recipients)

        def work(rt: ModelRuntime) -> Result:
            path = self.storage.checkpoint_dir(run_id, "external_weights", name)
            self._write_dir(path, lambda d: write(d, rt))
            rec = CheckpointRec(run_id, "external_weights", name, expires_at=expires)
            self._add_checkpoint(rec)
            return json_result({"path": rec.tinker_path, "size_bytes": rec.size_bytes, "type": "save_weights_external"})

        return await self.submit_ordered(run_id, req.seq_id, "SaveWeightsExternal", work)

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
                return json_result({"path": rec.tinker_path, "type": "load_weights"})

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
        opt = plain(req.optimizer_config) or src_run.optimizer_config
        base_model = req.base_model or src_run.base_model
        run = self._new_run(sess, model_id, base_model, dict(src_run.lora), opt, req.user_metadata)
        self._commit_run(sess, run)
        rt = self._register_model(run)
        fut = self._new_future("LoadWeights", model_id)
        self._create_futures[model_id] = fut.request_id
        src = self.storage.checkpoint_dir(run_id, kind, name)

        def work() -> Result:
            rt.handle = self.engine.load(src, optimizer=with_opt and rec.has_optimizer)
            return json_result({"path": rec.tinker_path, "model_id": model_id, "type": "load_weights"})

        await rt.send.send((fut, work))
        return self.future_response(fut, model_id)
