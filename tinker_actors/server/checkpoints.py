"""The REST side: training runs and checkpoints (list, delete, publish, TTL,
external files, weights info) and the signed links that serve their files."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from .. import wire
from ._state import ServerState
from .http import ApiError, bad
from .records import CheckpointRec, RunRec, now_iso
from .storage import KINDS, BadPath, check_name


class Checkpoints(ServerState):
    """Runs and checkpoints as the REST routes show them, and signed download links."""

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

    def external_files(self, run_id: str, kind: str, name: str) -> list[str]:
        """The file names of an external checkpoint (404 for any other kind)."""
        rec = self.checkpoint(run_id, kind, name)
        if rec.kind != "external_weights":
            raise ApiError(404, f"{rec.tinker_path} is not an external checkpoint (save it with save_weights_external)")
        directory = self.storage.checkpoint_dir(run_id, kind, name)
        return sorted(p.name for p in directory.iterdir() if p.is_file() and not p.is_symlink())

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

    # -- signed links (archives, external files, trace exports) ---------
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
