"""Admin endpoints of the local server: the audit log, billing usage and checkpoint storage usage.

All three are read from what the server already keeps (sessions, training
runs, checkpoint records), so they need no bookkeeping of their own; under
``serve --api-keys`` each key sees only its own sessions' records:

* ``GET /api/v1/audit?event_type=&day=``: ``checkpoint.created`` events (event
  type ``checkpoints``) and ``session.project_assigned`` events (``projects``)
  of one UTC day, today by default; ``teams`` and ``organizations`` have no
  events on a local server.
* ``GET /api/v1/billing/usage/events?starting_on=&ending_before=``: hourly
  buckets of checkpoint saves (``checkpoint`` events) and checkpoint storage
  (``storage`` events, gigabyte-hours of each live checkpoint in the bucket).
  A local server bills nothing: costs are None, storage is ``free``. Training
  and sampling tokens are not metered here and have no events.
* ``GET /api/v1/billing/usage/checkpoints/current?project_id=``: live
  checkpoints grouped by the project of the session that made them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..wire.admin import AUDIT_EVENT_TYPES
from .http import bad

if TYPE_CHECKING:
    from .service import LocalServer

__all__ = ["audit_log", "billing_usage", "checkpoint_storage_usage"]

_HOUR = 3600.0
_MAX_WINDOW_HOURS = 24 * 31  # a month of hourly buckets per request


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _parse_time(value: str | None, name: str) -> float:
    if not value:
        raise bad(f"{name} is required (an RFC 3339 time)")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad(f"{name}: {value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _run_session(srv: LocalServer) -> dict[str, Any]:
    """Training run -> its session, for the runs the request's tenant may see."""
    return {run_id: run.session_id for run_id, run in srv.runs.items() if srv._run_visible(run)}


def _checkpoints(srv: LocalServer) -> list[Any]:
    return [ck for ck in srv.checkpoints.values() if srv._run_visible(srv.runs.get(ck.run_id))]


def audit_log(srv: LocalServer, event_type: str | None, day: str | None) -> dict[str, Any]:
    event_type = event_type or "all"
    if event_type not in AUDIT_EVENT_TYPES:
        raise bad(f"event_type must be one of {', '.join(AUDIT_EVENT_TYPES)}, got {event_type!r}")
    try:
        wanted = date.fromisoformat(day) if day else datetime.now(timezone.utc).date()
    except ValueError:
        raise bad(f"day: {day!r} is not a date (YYYY-MM-DD)") from None
    start = datetime(wanted.year, wanted.month, wanted.day, tzinfo=timezone.utc).timestamp()
    end = start + 24 * _HOUR
    entries: list[tuple[float, dict[str, Any]]] = []
    if event_type in ("all", "checkpoints"):
        for ck in _checkpoints(srv):
            if start <= ck.time < end:
                entries.append((ck.time, {
                    "timestamp": _iso(ck.time), "event": "checkpoint.created",
                    "event_details": {"checkpoint_id": ck.checkpoint_id, "size_bytes": ck.size_bytes},
                    "model_id": ck.run_id, "tinker_path": f"tinker://{ck.key}",
                }))
    if event_type in ("all", "projects"):
        for sess in srv.sessions.values():
            if srv._session_visible(sess.session_id) and sess.project_id and start <= sess.created < end:
                entries.append((sess.created, {
                    "timestamp": _iso(sess.created), "event": "session.project_assigned",
                    "event_details": {"session_id": sess.session_id, "project_id": sess.project_id},
                }))
    return {"entries": [entry for _, entry in sorted(entries, key=lambda e: e[0])]}


def billing_usage(srv: LocalServer, starting_on: str | None, ending_before: str | None) -> dict[str, Any]:
    start, end = _parse_time(starting_on, "starting_on"), _parse_time(ending_before, "ending_before")
    if end <= start:
        raise bad("ending_before must be after starting_on")
    if end - start > _MAX_WINDOW_HOURS * _HOUR:
        raise bad(f"the window is at most {_MAX_WINDOW_HOURS} hours")
    first_bucket = start - start % _HOUR
    run_session = _run_session(srv)
    now = time.time()
    saves: dict[tuple[float, str, str | None], int] = defaultdict(int)
    storage: dict[tuple[float, str, str | None], float] = defaultdict(float)
    for ck in _checkpoints(srv):
        run = srv.runs.get(ck.run_id)
        base = run.base_model if run is not None else ""
        session = run_session.get(ck.run_id)
        if start <= ck.time < end:
            saves[(ck.time - ck.time % _HOUR, base, session)] += 1
        alive_until = min(end, ck.expires_at or now, now)
        bucket = max(first_bucket, ck.time - ck.time % _HOUR)
        while bucket < alive_until:
            overlap = min(bucket + _HOUR, alive_until) - max(bucket, ck.time, start)
            if overlap > 0:
                storage[(bucket, base, session)] += (ck.size_bytes or 0) / 1e9 * overlap / _HOUR
            bucket += _HOUR
    events: list[dict[str, Any]] = []

    def envelope(bucket: float, base: str, session: str | None, info: dict[str, Any]) -> dict[str, Any]:
        project = srv.sessions[session].project_id if session in srv.sessions else None
        return {"bucket_start": _iso(bucket), "bucket_end": _iso(bucket + _HOUR), "base_model": base or None,
                "session_id": session, "project_id": project, "event_info": info}

    for (bucket, base, session), count in sorted(saves.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        events.append(envelope(bucket, base, session, {"type": "checkpoint", "count": count}))
    for (bucket, base, session), gbh in sorted(storage.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        events.append(envelope(bucket, base, session, {"type": "storage", "gigabyte_hours": gbh, "free": True}))
    sessions = {
        sid: {"user_metadata": srv.sessions[sid].user_metadata}
        for sid in {e["session_id"] for e in events if e["session_id"] in srv.sessions}
    }
    return {"data": events, "sessions": sessions}


def checkpoint_storage_usage(srv: LocalServer, project_id: str | None) -> dict[str, Any]:
    run_session = _run_session(srv)
    groups: dict[str | None, list[int]] = defaultdict(lambda: [0, 0])
    for ck in srv._live_checkpoints():
        if ck.run_id not in run_session:
            continue
        session = srv.sessions.get(run_session.get(ck.run_id, ""))
        project = session.project_id if session is not None else None
        if project_id is not None and project != project_id:
            continue
        groups[project][0] += 1
        groups[project][1] += ck.size_bytes or 0
    data = [
        {"project_id": project, "checkpoint_count": count, "size_bytes": size, "size_gigabytes": size / 1e9}
        for project, (count, size) in sorted(groups.items(), key=lambda kv: kv[0] or "")
    ]
    return {"data": data}
