"""Sampling admission: how many samples may be on their way to the server at once.

::

    submit(post, estimated_bytes)
      ├─ FifoBudget.acquire(1 slot, cost)    FIFO; waiters park, nobody spins
      │     normal:    ≤ max_concurrent slots, cost = bytes,      ≤ byte_budget
      │     tightened: ≤ 10 slots,             cost = 20 × bytes  (for 10 s after a 429)
      ├─ post()  ─ the asample POST; returns the server's ack {"request_id", ...}
      ├─ release slot + bytes AS SOON AS THE ACK ARRIVES (not while the future is polled)
      └─ 429 ─▶ tighten for `backoff_window` s, release, sleep 1 s (≤128 KiB) or 5 s,
               resubmit the SAME body (same seq_id) — the caller's closure does not change

Limits come from the server flags ``sample_max_concurrent_requests`` and
``sample_dispatch_bytes_semaphore_size`` (config may lower the first).
Estimated bytes are tokens × 10, as the official SDK estimates them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import structlog
import trio

from ..errors import RateLimitError
from .budget import FifoBudget

__all__ = ["SamplingAdmission", "AdmissionStatistics", "estimate_bytes"]

log = structlog.get_logger()
T = TypeVar("T")
SMALL_REQUEST_BYTES = 128 * 1024


def estimate_bytes(num_tokens: int) -> int:
    return num_tokens * 10


class AdmissionStatistics(msgspec.Struct, frozen=True, kw_only=True):
    in_flight: int
    bytes_in_flight: int
    waiting: int
    max_concurrent: int
    byte_budget: int
    tightened: bool
    rate_limited: int
    admitted: int


class SamplingAdmission:
    def __init__(
        self,
        *,
        max_concurrent: int = 2000,
        byte_budget: int = 10 * 1024 * 1024,
        backoff_concurrent: int = 10,
        backoff_byte_multiplier: int = 20,
        backoff_window: float = 10.0,
        max_resubmits: int | None = None,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.byte_budget = byte_budget
        self.backoff_concurrent = backoff_concurrent
        self.backoff_byte_multiplier = backoff_byte_multiplier
        self.backoff_window = backoff_window
        self.max_resubmits = max_resubmits
        self._backoff_until = -float("inf")
        self._budget = FifoBudget(None, None, limits=self._limits)
        self._rate_limited = 0
        self._admitted = 0

    @property
    def tightened(self) -> bool:
        return trio.current_time() < self._backoff_until

    def _limits(self) -> tuple[int | None, int | None]:
        if self.tightened:
            return min(self.backoff_concurrent, self.max_concurrent), self.byte_budget
        return self.max_concurrent, self.byte_budget

    def _wake_at(self) -> float:
        return self._backoff_until

    def configure(self, *, max_concurrent: int | None = None, byte_budget: int | None = None) -> None:
        """Apply server flags; waiters that now fit are admitted."""
        if max_concurrent is not None:
            self.max_concurrent = max_concurrent
        if byte_budget is not None:
            self.byte_budget = byte_budget
        self._budget.regrant()

    def note_rate_limited(self) -> None:
        self._rate_limited += 1
        self._backoff_until = trio.current_time() + self.backoff_window

    async def submit(self, post: Callable[[], Awaitable[T]], *, estimated_bytes: int) -> T:
        """Admit, send, and release on the ack; resubmit the same request after a 429."""
        attempts = 0
        while True:
            cost = estimated_bytes * (self.backoff_byte_multiplier if self.tightened else 1)
            charged = await self._budget.acquire(slots=1, nbytes=cost, wake_at=self._wake_at)
            try:
                self._admitted += 1
                return await post()
            except RateLimitError as exc:
                self.note_rate_limited()
                attempts += 1
                if self.max_resubmits is not None and attempts > self.max_resubmits:
                    raise
                log.info("sample_backpressure", estimated_bytes=estimated_bytes, attempt=attempts, retry_after=exc.retry_after)
            finally:
                self._budget.release(slots=1, nbytes=charged)
            await trio.sleep(1.0 if estimated_bytes <= SMALL_REQUEST_BYTES else 5.0)

    def statistics(self) -> AdmissionStatistics:
        return AdmissionStatistics(
            in_flight=self._budget.used_slots,
            bytes_in_flight=self._budget.used_bytes,
            waiting=self._budget.waiting,
            max_concurrent=self.max_concurrent,
            byte_budget=self.byte_budget,
            tightened=self.tightened,
            rate_limited=self._rate_limited,
            admitted=self._admitted,
        )
