"""Telemetry batcher: ships client events to the service without slowing real work.

::

    any task ──log_event()/log_exception() (sync, never blocks)──▶ deque (bounded;
                                                    full: drop OLDEST, count it)
    TelemetryBatcher.run:
        wake when `batch_size` events wait, or every `flush_interval` s
        flush(): take ≤ batch_size events ─▶ POST /api/v1/telemetry (TELEMETRY pool)
                   2xx ─▶ count as sent
                   error ─▶ retry (1 s × 2^n, jittered, `max_attempts` in all), then drop + count
    close(grace): SESSION_END, then flush everything left within `grace` seconds

Body per the protocol: ``{"events", "platform", "sdk_version", "session_id",
"process_uuid"}``; every event has ``event``, ``event_id``,
``event_session_index``, ``severity``, ``timestamp``. The API key is never part
of a payload (exception text is passed through ``errors.redact``).
Disabled (every call a no-op) when ``TINKER_TELEMETRY=0`` (``ServiceConfig.telemetry``).
"""

from __future__ import annotations

import platform
import random
import traceback
import uuid
from collections import deque
from datetime import datetime, timezone
from typing import Any

import msgspec
import trio

from .._log import get_logger
from ..errors import redact
from .requester import Requester, Resource, options, resource

__all__ = ["TelemetryBatcher", "TelemetryStatistics"]

log = get_logger(__name__)
_PROCESS_UUID = str(uuid.uuid4())


class TelemetryStatistics(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool
    queued: int
    sent: int
    batches_sent: int
    dropped_overflow: int
    dropped_failed: int
    send_failures: int


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class TelemetryBatcher:
    def __init__(
        self,
        requester: Requester,
        *,
        session_id: str,
        sdk_version: str,
        enabled: bool = True,
        max_queue: int = 10_000,
        batch_size: int = 100,
        flush_interval: float = 10.0,
        send_timeout: float = 5.0,
        max_attempts: int = 3,
        retry_initial: float = 1.0,
        secrets: tuple[str | None, ...] = (),
    ) -> None:
        self._requester = requester
        self.session_id = session_id
        self.sdk_version = sdk_version
        self.enabled = enabled
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.send_timeout = send_timeout
        self.max_attempts = max_attempts
        self.retry_initial = retry_initial
        self._secrets = secrets
        self._queue: deque[dict[str, Any]] = deque()
        self._index = 0
        self._wake = trio.Event()
        self._flush_lock = trio.Lock()
        self._started_at = datetime.now(timezone.utc)
        self._sent = 0
        self._batches = 0
        self._dropped_overflow = 0
        self._dropped_failed = 0
        self._send_failures = 0

    # --- producers (sync, non-blocking) -------------------------------------
    def _enqueue(self, event: str, severity: str, **fields: Any) -> bool:
        if not self.enabled:
            return False
        record = {
            "event": event,
            "event_id": uuid.uuid4().hex,
            "event_session_index": self._index,
            "severity": severity,
            "timestamp": _now_iso(),
            **fields,
        }
        self._index += 1
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()  # the newest events say more about what is happening now
            self._dropped_overflow += 1
        self._queue.append(record)
        if len(self._queue) >= self.batch_size:
            self._wake.set()
        return True

    def log_event(self, name: str, data: dict[str, Any] | None = None, *, severity: str = "INFO") -> bool:
        return self._enqueue("GENERIC_EVENT", severity, event_name=name, event_data=data or {})

    def log_exception(self, exc: BaseException, *, severity: str = "ERROR") -> bool:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc.__traceback__ else None
        return self._enqueue(
            "UNHANDLED_EXCEPTION",
            severity,
            error_type=type(exc).__name__,
            error_message=redact(str(exc), *self._secrets),
            traceback=redact(tb, *self._secrets) if tb else None,
        )

    def session_start(self) -> bool:
        return self._enqueue("SESSION_START", "INFO")

    def session_end(self) -> bool:
        return self._enqueue("SESSION_END", "INFO", duration=str(datetime.now(timezone.utc) - self._started_at))

    # --- actor -------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self.enabled:
            await trio.sleep_forever()
        while True:
            with trio.move_on_after(self.flush_interval):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Send everything queued now, batch by batch."""
        async with self._flush_lock:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                await self._send(batch)

    async def _send(self, events: list[dict[str, Any]]) -> None:
        body = {
            "events": events,
            "platform": platform.system(),
            "sdk_version": self.sdk_version,
            "session_id": self.session_id,
            "process_uuid": _PROCESS_UUID,
        }
        delay = self.retry_initial
        for attempt in range(1, self.max_attempts + 1):
            try:
                with trio.fail_after(self.send_timeout + 1):
                    await self._requester.request(
                        resource(Resource.TELEMETRY),
                        "POST",
                        "/api/v1/telemetry",
                        json=body,
                        options=options(timeout=self.send_timeout, max_retries=0),
                    )
            except Exception as exc:
                self._send_failures += 1
                if attempt == self.max_attempts:
                    self._dropped_failed += len(events)
                    log.info("telemetry_batch_dropped", events=len(events), error=repr(exc))
                    return
                await trio.sleep(delay * random.uniform(1.0, 1.1))
                delay *= 2
                continue
            self._sent += len(events)
            self._batches += 1
            return

    async def close(self, grace: float = 30.0) -> None:
        """Queue SESSION_END and flush what is left, giving up after ``grace`` seconds."""
        if not self.enabled:
            return
        self.session_end()
        with trio.move_on_after(grace) as scope:
            await self.flush()
        if scope.cancelled_caught:
            left = len(self._queue)
            self._dropped_failed += left
            self._queue.clear()
            log.info("telemetry_close_timeout", dropped=left)

    def statistics(self) -> TelemetryStatistics:
        return TelemetryStatistics(
            enabled=self.enabled,
            queued=len(self._queue),
            sent=self._sent,
            batches_sent=self._batches,
            dropped_overflow=self._dropped_overflow,
            dropped_failed=self._dropped_failed,
            send_failures=self._send_failures,
        )
