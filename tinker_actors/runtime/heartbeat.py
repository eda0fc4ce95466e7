"""Heartbeat actor: one per session, keeps the session alive and says how it is.

::

    HeartbeatActor.run            (its own task; nothing else shares its schedule)
      every `interval` s (fixed rate, sleeps first):
        POST /api/v1/session_heartbeat {"session_id", "type"}  on the SESSION pool,
        timeout `timeout`, no transport retries (the schedule is the retry)
          2xx  ─▶ SessionHealth(state="healthy")
          error ─▶ SessionHealth(state="degraded", since, failures); loud warning once
                   `warn_after_failures` beats failed in a row or `warn_after_s`
                   passed without success (then on every further failure)
          410  ─▶ SessionHealth(state="expired"); `expired` Event set, callbacks run
                   (the poller fails every pending future with SessionExpiredError); stop
          no success for `dead_after_s` (5xx or timeouts forever, never a 410)
               ─▶ expired the same way, so a dead session does not stay "degraded"

``health`` is readable at any moment. ``expired`` is a ``trio.Event`` for
anything that wants to wait on the end of the session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec
import trio

from .._log import get_logger
from ..errors import GoneError, SessionExpiredError
from .requester import Requester, Resource, options, resource

__all__ = ["SessionHealth", "HeartbeatActor"]

log = get_logger(__name__)


class SessionHealth(msgspec.Struct, frozen=True, kw_only=True):
    """``healthy``, ``degraded`` (failing since ``since``, ``failures`` in a row) or ``expired``."""

    state: Literal["healthy", "degraded", "expired"] = "healthy"
    since: float | None = None
    failures: int = 0
    last_success: float | None = None
    last_error: str | None = None


class HeartbeatActor:
    def __init__(
        self,
        requester: Requester,
        session_id: str,
        *,
        interval: float = 10.0,
        timeout: float = 10.0,
        warn_after_failures: int = 3,
        warn_after_s: float = 120.0,
        dead_after_s: float | None = None,
    ) -> None:
        self._requester = requester
        self.session_id = session_id
        self.interval = interval
        self.timeout = timeout
        self.warn_after_failures = warn_after_failures
        self.warn_after_s = warn_after_s
        self.dead_after_s = dead_after_s
        self.health = SessionHealth(last_success=trio.current_time())
        self.expired = trio.Event()
        self.beats = 0
        self._callbacks: list[Callable[[SessionExpiredError], None]] = []

    def on_expired(self, callback: Callable[[SessionExpiredError], None]) -> None:
        self._callbacks.append(callback)

    def expire(self, reason: str) -> None:
        if self.expired.is_set():
            return
        self.health = msgspec.structs.replace(self.health, state="expired", since=trio.current_time())
        self.expired.set()
        exc = SessionExpiredError(
            f"session {self.session_id} expired: {reason}. Work in flight is lost; open a new "
            "ServiceClient and resume from your last checkpoint (or journal)"
        )
        log.error("session_expired", session_id=self.session_id, reason=reason)
        for callback in self._callbacks:
            callback(exc)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        next_at = trio.current_time() + self.interval
        while not self.expired.is_set():
            await trio.sleep_until(next_at)
            # fixed rate; after a long stall skip missed beats instead of bursting
            next_at = max(next_at + self.interval, trio.current_time())
            await self.beat()

    async def beat(self) -> None:
        self.beats += 1
        now = trio.current_time()
        try:
            with trio.fail_after(self.timeout):
                await self._requester.request(
                    resource(Resource.SESSION),
                    "POST",
                    "/api/v1/session_heartbeat",
                    json={"session_id": self.session_id, "type": "session_heartbeat"},
                    options=options(timeout=self.timeout, max_retries=0),
                )
        except GoneError:
            self.expire("the server answered 410 to a heartbeat")
            return
        except (Exception, trio.TooSlowError) as exc:
            self._failed(now, exc)
            return
        if self.health.state == "degraded":
            log.info("heartbeat_recovered", session_id=self.session_id, after_failures=self.health.failures)
        self.health = SessionHealth(state="healthy", last_success=trio.current_time())

    def _failed(self, now: float, exc: BaseException) -> None:
        prev = self.health
        failures = prev.failures + 1
        since = prev.since if prev.state == "degraded" and prev.since is not None else now
        self.health = SessionHealth(state="degraded", since=since, failures=failures, last_success=prev.last_success, last_error=repr(exc))
        silent_for = now - (prev.last_success if prev.last_success is not None else since)
        if self.dead_after_s is not None and silent_for >= self.dead_after_s:
            self.expire(
                f"no successful heartbeat for {silent_for:.0f} s (session_dead_after_s={self.dead_after_s:g}); "
                f"last error: {exc!r}"
            )
            return
        if failures >= self.warn_after_failures or silent_for >= self.warn_after_s:
            log.warning(
                "heartbeat_failing",
                session_id=self.session_id,
                failures=failures,
                seconds_without_success=round(silent_for, 1),
                error=repr(exc),
            )
        else:
            log.info("heartbeat_failed", session_id=self.session_id, failures=failures, error=repr(exc))
