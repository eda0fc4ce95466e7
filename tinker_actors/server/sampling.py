"""Sampling sessions and samples."""

from __future__ import annotations

from typing import Any

from .. import wire
from . import engine
from ._state import ServerState
from .futures import Result
from .http import ApiError, bad
from .records import SamplerRec, SessionRec


class Sampling(ServerState):
    """Sampling sessions (from a base model, a checkpoint or a training snapshot) and samples."""

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
