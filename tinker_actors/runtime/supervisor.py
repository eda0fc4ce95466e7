"""Supervisor: restart a crashed actor with backoff, escalate when it keeps crashing.

::

    run_supervised(actor_fn, name=..., policy=RestartPolicy(...))
        loop:
          actor_fn(task_status) ──returns──▶ done (the actor chose to stop)
             │ raises Exception (a crash)
             ▼
          on_crash(exc)            e.g. fail the crashed actor's in-flight envelopes
          crashes in the last within_s > max_restarts ?  ──yes──▶ raise ActorCrashedError
             │ no
          sleep(backoff)  (doubles up to backoff_max; reset after a healthy run)
          restart

* Started with ``await nursery.start(run_supervised, ...)``: ``started()`` is
  reported when the actor first reports it is ready (``task_status.started``),
  so the owner knows the actor is serving before it sends work.
* Cancellation is never a crash: ``trio.Cancelled`` and ``KeyboardInterrupt``
  are BaseExceptions and pass straight through, as does an exception group
  holding one.
* Escalation raises :class:`~tinker_actors.errors.ActorCrashedError` into the
  owning nursery, which is ``open_service``'s: the service shuts down and the
  error leaves the ``async with`` block.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from .._log import get_logger
from ..errors import ActorCrashedError

__all__ = ["RestartPolicy", "run_supervised"]

log = get_logger(__name__)


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How often an actor may crash before its supervisor gives up.

    More than ``max_restarts`` crashes within ``within_s`` seconds escalate.
    Backoff between restarts starts at ``backoff_initial`` and doubles up to
    ``backoff_max`` (with up to 10 % jitter); a run that lasted at least
    ``healthy_after_s`` resets it.
    """

    max_restarts: int = 5
    within_s: float = 60.0
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    healthy_after_s: float = 30.0


class _StartedOnce:
    """Passes the first ``started()`` to the real task_status; later ones are no-ops."""

    def __init__(self, task_status: Any) -> None:
        self._task_status = task_status
        self.started_yet = False

    def started(self, value: Any = None) -> None:
        if not self.started_yet:
            self.started_yet = True
            self._task_status.started(value)


async def run_supervised(
    actor_fn: Callable[..., Awaitable[Any]],
    *,
    name: str,
    policy: RestartPolicy = RestartPolicy(),
    on_crash: Callable[[BaseException], None] | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``actor_fn(task_status=...)`` and restart it when it raises."""
    status = _StartedOnce(task_status)
    crashes: deque[float] = deque()
    delay = policy.backoff_initial
    restarts = 0
    while True:
        started_at = trio.current_time()
        try:
            await actor_fn(task_status=status)
            status.started()  # an actor that returns without reporting still releases the starter
            return
        except Exception as exc:
            now = trio.current_time()
            if on_crash is not None:
                on_crash(exc)
            crashes.append(now)
            while crashes and crashes[0] < now - policy.within_s:
                crashes.popleft()
            if now - started_at >= policy.healthy_after_s:
                delay = policy.backoff_initial
            if len(crashes) > policy.max_restarts:
                log.error("actor_gave_up", actor=name, crashes=len(crashes), within_s=policy.within_s, error=repr(exc))
                raise ActorCrashedError(
                    f"crashed {len(crashes)} times within {policy.within_s:g} s; last error: {exc!r}", actor=name
                ) from exc
            restarts += 1
            log.warning("actor_crashed", actor=name, restart=restarts, backoff_s=round(delay, 3), error=repr(exc))
            await trio.sleep(delay * (1 + 0.1 * random.random()))
            delay = min(delay * 2, policy.backoff_max)
