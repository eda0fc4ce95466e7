"""Adaptive concurrency for sweeps: additive increase, multiplicative decrease.

The sweep starts at its configured ceiling (the server is usually fine) and
backs off only when the server says so: a 429, or a future whose queue state
is ``paused_rate_limit`` / ``paused_capacity``. A burst of such signals is one
event, not fifty: after a decrease, further congestion signals are ignored for
a cool-down window (they mostly come from requests admitted before the cut).
Recovery is slow on purpose: +1 after a full window of successes, that is as
many successes in a row as the current limit, with no congestion in the
cool-down window. This is TCP's congestion avoidance at request granularity.

:class:`AimdState` is the pure state machine (time is an argument, so tests
need no clock). :class:`AdaptiveLimiter` wires it to a ``trio.CapacityLimiter``
whose ``total_tokens`` follows the limit. CapacityLimiter is FIFO, and
lowering ``total_tokens`` below the number of borrowed tokens is allowed: no
one is evicted, new arrivals just wait until enough slots come back.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import trio

from tinker_actors.errors import RateLimitError

from .._log import get_logger

__all__ = ["AimdPolicy", "AimdState", "AdaptiveLimiter", "Slot", "is_congestion", "CONGESTION_QUEUE_STATES"]

log = get_logger(__name__)

CONGESTION_QUEUE_STATES = frozenset({"paused_rate_limit", "paused_capacity"})


class AimdPolicy(msgspec.Struct, frozen=True, kw_only=True):
    ceiling: int
    floor: int = 1
    beta: float = 0.5
    cooldown: float = 5.0
    increase: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.ceiling:
            raise ValueError(f"need 1 <= floor ({self.floor}) <= ceiling ({self.ceiling})")
        if not 0 < self.beta < 1:
            raise ValueError(f"beta must be in (0, 1), got {self.beta}")
        if self.cooldown < 0 or self.increase < 1:
            raise ValueError("cooldown must be >= 0 and increase >= 1")


class AimdState:
    """The controller's state. Every method takes ``now`` and returns whether the limit moved."""

    def __init__(self, policy: AimdPolicy) -> None:
        self.policy = policy
        self.limit = policy.ceiling
        self.decreases = 0
        self.increases = 0
        self._last_decrease = -math.inf
        self._streak = 0

    def on_congestion(self, now: float) -> bool:
        if now - self._last_decrease < self.policy.cooldown:
            return False
        self._last_decrease = now
        self._streak = 0
        new = max(self.policy.floor, math.floor(self.limit * self.policy.beta))
        if new == self.limit:
            return False
        self.limit = new
        self.decreases += 1
        return True

    def on_success(self, now: float) -> bool:
        if now - self._last_decrease < self.policy.cooldown:
            # Completions inside the cool-down were admitted before the cut;
            # they say nothing about the new limit.
            return False
        self._streak += 1
        if self._streak < self.limit or self.limit >= self.policy.ceiling:
            return False
        self._streak = 0
        self.limit = min(self.policy.ceiling, self.limit + self.policy.increase)
        self.increases += 1
        return True


def is_congestion(signal: BaseException | str | None) -> bool:
    """True for a 429 error or a congestion queue state."""
    if isinstance(signal, str):
        return signal in CONGESTION_QUEUE_STATES
    if isinstance(signal, RateLimitError):
        return True
    return getattr(signal, "queue_state", None) in CONGESTION_QUEUE_STATES


class Slot:
    """One admitted request. Report what happened; exiting cleanly counts as success."""

    __slots__ = ("_outcome",)

    def __init__(self) -> None:
        self._outcome: str | None = None

    def congested(self) -> None:
        self._outcome = "congested"

    def succeeded(self) -> None:
        self._outcome = "success"

    def neutral(self) -> None:
        """Neither: e.g. a user error, which says nothing about server load."""
        self._outcome = "neutral"


class AdaptiveLimiter:
    """A FIFO limiter whose size follows an :class:`AimdState`."""

    def __init__(self, policy: AimdPolicy) -> None:
        self.state = AimdState(policy)
        self._limiter = trio.CapacityLimiter(policy.ceiling)

    @property
    def limit(self) -> int:
        return self.state.limit

    @property
    def in_flight(self) -> int:
        return self._limiter.borrowed_tokens

    @property
    def waiting(self) -> int:
        return self._limiter.statistics().tasks_waiting

    def _apply(self) -> None:
        if self._limiter.total_tokens != self.state.limit:
            log.info("sweep_concurrency", limit=self.state.limit, in_flight=self.in_flight)
            self._limiter.total_tokens = self.state.limit

    def signal_congestion(self) -> None:
        """A 429 or paused queue state seen outside a slot (e.g. by the future poller)."""
        if self.state.on_congestion(trio.current_time()):
            self._apply()

    def signal_success(self) -> None:
        if self.state.on_success(trio.current_time()):
            self._apply()

    def set_limit(self, limit: int) -> None:
        """Override the controller (e.g. from a server-pushed config); clamped to policy."""
        p = self.state.policy
        self.state.limit = max(p.floor, min(p.ceiling, limit))
        self._apply()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        token = object()  # CapacityLimiter counts per borrower; one task may hold several slots
        await self._limiter.acquire_on_behalf_of(token)
        slot = Slot()
        try:
            yield slot
        except BaseException as exc:
            if is_congestion(exc):
                slot._outcome = "congested"
            elif slot._outcome is None:
                slot._outcome = "neutral"
            raise
        finally:
            # Adjust before returning the slot: a 429 must shrink the limit
            # before the freed slot lets the next waiter in.
            if slot._outcome == "congested":
                self.signal_congestion()
            elif slot._outcome in (None, "success"):
                self.signal_success()
            self._limiter.release_on_behalf_of(token)

    def statistics(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "decreases": self.state.decreases,
            "increases": self.state.increases,
        }
