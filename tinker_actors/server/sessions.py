"""Sessions: create, heartbeat, finish, list, search, project, trace export."""

from __future__ import annotations

import uuid
from typing import Any

import anyio

from .. import wire
from ._state import ServerState, current_tenant, visible
from .http import ApiError, bad
from .records import SessionRec, now_iso, to_doc


class Sessions(ServerState):
    """A session is what every other record hangs off (and what a tenant owns)."""

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
