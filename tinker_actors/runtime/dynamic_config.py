"""Dynamic-config refresh: keep the server's live flags current for the whole session.

::

    DynamicConfigRefresher.run     (supervised, in open_service's nursery)
      loop (sleeps first; start-up already fetched the first answer):
        sleep max(refresh_interval_sec, 10) s      (the interval just in force)
        POST /api/v1/client/dynamic_config {"sdk_version"}  on the SESSION pool,
        timeout 10, no transport retries (the schedule is the retry)
          2xx  ─▶ the answer (fields it leaves out: SDK defaults) replaces the
                  dynamic fields of ``server_flags``; readers see it at once
          404  ─▶ the server has no dynamic config: stop quietly
          error / malformed answer ─▶ keep the last good value; a warning,
                  at most once per ``warn_debounce_s``

Only the dynamic fields (``refresh_interval_sec``, ``sample_cancel_enabled``,
``sample_cancel_max_batch_size``) change; the client/config flags fetched at
start-up stay as they were. The flags live on the owner (``Service.server_flags``),
read and written through the two callables, so every reader that looks them up
per use (the poller's cancel and batched-polling checks, the chunk planner)
follows a change without being told.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import trio

from .._log import get_logger
from ..errors import NotFoundError
from .config import ServerFlags
from .requester import Requester, Resource, options, raw_parts, resource

__all__ = ["DYNAMIC_FIELDS", "MIN_REFRESH_INTERVAL_S", "DynamicConfig", "DynamicConfigRefresher", "apply_dynamic"]

log = get_logger(__name__)

PATH = "/api/v1/client/dynamic_config"
MIN_REFRESH_INTERVAL_S = 10.0


class DynamicConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """One ``client/dynamic_config`` answer; unknown fields are ignored, missing ones are defaults."""

    refresh_interval_sec: float = 300
    sample_cancel_enabled: bool = False
    sample_cancel_max_batch_size: int = 64


DYNAMIC_FIELDS: tuple[str, ...] = DynamicConfig.__struct_fields__


def apply_dynamic(flags: ServerFlags, answer: Any) -> ServerFlags:
    """``flags`` with its dynamic fields taken from ``answer``; raises ``msgspec.ValidationError`` on a bad one."""
    if not isinstance(answer, Mapping):
        raise msgspec.ValidationError(f"expected a JSON object, got {type(answer).__name__}")
    known = {k: v for k, v in answer.items() if k in DYNAMIC_FIELDS}
    dynamic = msgspec.convert(known, DynamicConfig, strict=False)
    return msgspec.structs.replace(flags, **msgspec.structs.asdict(dynamic))


class DynamicConfigRefresher:
    """Re-fetches dynamic config on the server's schedule (see module docstring)."""

    def __init__(
        self,
        requester: Requester,
        *,
        sdk_version: str,
        get_flags: Callable[[], ServerFlags],
        set_flags: Callable[[ServerFlags], None],
        timeout: float = 10.0,
        min_interval: float = MIN_REFRESH_INTERVAL_S,
        warn_debounce_s: float = 900.0,
    ) -> None:
        self._requester = requester
        self._sdk_version = sdk_version
        self._get = get_flags
        self._set = set_flags
        self.timeout = timeout
        self.min_interval = min_interval
        self.warn_debounce_s = warn_debounce_s
        self.fetches = 0
        self.failures = 0  # in a row
        self.last_error: str | None = None
        self.stopped = False  # the server answered 404
        self._last_warned: float | None = None

    def interval(self) -> float:
        return max(float(self._get().refresh_interval_sec), self.min_interval)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while not self.stopped:
            await trio.sleep(self.interval())
            await self.refresh_once()

    async def refresh_once(self) -> None:
        """One fetch; never raises (a failure keeps the flags as they are)."""
        self.fetches += 1
        try:
            with trio.fail_after(self.timeout):
                reply = await self._requester.request(
                    resource(Resource.SESSION),
                    "POST",
                    PATH,
                    json={"sdk_version": self._sdk_version},
                    options=options(timeout=self.timeout, max_retries=0, raw=True),
                )
            answer = _decode(reply)
            current = self._get()
            updated = apply_dynamic(current, answer)
        except NotFoundError:
            self.stopped = True
            log.info("dynamic_config_unavailable", action="refresh stopped")
            return
        except (Exception, trio.TooSlowError) as exc:
            self._failed(exc)
            return
        if self.failures:
            log.info("dynamic_config_recovered", after_failures=self.failures)
        self.failures, self.last_error = 0, None
        changed = {k: getattr(updated, k) for k in DYNAMIC_FIELDS if getattr(updated, k) != getattr(current, k)}
        if changed:
            # set only on a change so a concurrent replace of other fields is not undone
            self._set(msgspec.structs.replace(self._get(), **changed))
            log.info("dynamic_config_changed", **changed)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = repr(exc)
        now = trio.current_time()
        if self._last_warned is None or now - self._last_warned >= self.warn_debounce_s:
            self._last_warned = now
            log.warning("dynamic_config_refresh_failed", failures=self.failures, error=self.last_error, keeping="last good value")
        else:
            log.debug("dynamic_config_refresh_failed", failures=self.failures, error=self.last_error)


def _decode(reply: Any) -> Any:
    if isinstance(reply, (dict, list)) or reply is None:
        return reply
    _, data = raw_parts(reply)
    return msgspec.json.decode(data) if data else None
