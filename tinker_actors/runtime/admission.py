"""Sampling admission: how many samples may be on their way to the server at once.

::

    submit(post, estimated_bytes)
      ├─ FifoBudget.acquire(1 slot, cost)    FIFO; waiters park, nobody spins
      │     normal:    ≤ max_concurrent slots, cost = bytes,      ≤ byte_budget
      │     tightened: ≤ 10 slots,             cost = 20 × bytes  (for 10 s after a 429)
      ├─ post()  ─ the asample POST; returns the server's ack {"request_id", ...}
      ├─ release slot + bytes AS SOON AS THE ACK ARRIVES (not while the future is polled)
      └─ 429 ─▶ tighten for `backoff_window` s, release, sleep max(Retry-After, 1 s (≤128 KiB)
               or 5 s), resubmit the SAME body (same seq_id, same key) — until the deadline

Thousands of samples may be requested at once. A sample that cannot be
admitted at once waits as a small *ticket* (its arguments and its future; no
task, no request body) in one FIFO backlog; one ``pump`` task admits tickets
from its head as slots free up, and only then does a sample get its task and
encode its request::

    admit_now(bytes) ─ free slot and nobody queued? ─▶ charged bytes: start the task now
    enqueue(ticket)  ─▶ backlog (FIFO) ─ pump: acquire, ticket.admit(charged) ─▶ task
                                          ticket.abandoned (cancelled): skipped
                                          pump cancelled (service closing): ticket.close(error)

Limits come from the server flags ``sample_max_concurrent_requests`` and
``sample_dispatch_bytes_semaphore_size`` (config may lower the first).
Estimated bytes are tokens × 10, as the official SDK estimates them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import msgspec
import trio

from .._log import get_logger
from ..errors import RateLimitError, ServiceClosedError, gave_up
from .budget import FifoBudget

__all__ = ["SamplingAdmission", "AdmissionStatistics", "AdmissionTicket", "estimate_bytes"]

log = get_logger(__name__)
T = TypeVar("T")
SMALL_REQUEST_BYTES = 128 * 1024
MAX_RETRY_AFTER = 60.0  # a server's Retry-After is honoured up to this many seconds


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


class AdmissionTicket(Protocol):
    """A request waiting in the backlog (see module docstring)."""

    estimated_bytes: int

    @property
    def abandoned(self) -> bool: ...  # e.g. its future was cancelled: skip it

    def admit(self, charged: int) -> None: ...  # holds a slot and ``charged`` bytes now; must not block

    def close(self, error: BaseException) -> None: ...  # never admitted: end it with ``error``


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
        self._backlog: deque[AdmissionTicket] = deque()
        self._pumping = False
        self._pump_parked = False

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

    def _cost(self, estimated_bytes: int) -> int:
        cost = estimated_bytes * (self.backoff_byte_multiplier if self.tightened else 1)
        return min(cost, self.byte_budget)  # one bigger than the budget runs alone

    def admit_now(self, estimated_bytes: int) -> int | None:
        """A slot now, if nobody is queued and one is free: the bytes charged, else None.

        The caller then holds the slot and passes ``charged`` to :meth:`submit`.
        """
        if self._backlog:
            return None
        cost = self._cost(estimated_bytes)
        return cost if self._budget.try_acquire(slots=1, nbytes=cost) else None

    def release(self, charged: int) -> None:
        """Give back a slot taken by :meth:`admit_now` or a ticket's admit and never used."""
        self._budget.release(slots=1, nbytes=charged)

    def enqueue(self, ticket: AdmissionTicket) -> bool:
        """Queue ``ticket`` behind every earlier one; True: the caller must start :meth:`pump`."""
        self._backlog.append(ticket)
        if self._pumping:
            return False
        self._pumping = True
        return True

    async def pump(self) -> None:
        """Admit backlog tickets in FIFO order as slots free up; returns when the backlog is empty.

        Cancelled (the service is closing), it ends every ticket still waiting
        with ServiceClosedError.
        """
        backlog = self._backlog
        budget = self._budget
        try:
            while backlog:
                ticket = backlog[0]
                if ticket.abandoned:
                    backlog.popleft()
                    continue
                cost = self._cost(ticket.estimated_bytes)
                if budget.try_acquire(slots=1, nbytes=cost):
                    charged = cost
                else:
                    self._pump_parked = True  # the head ticket, counted once in statistics()
                    try:
                        charged = await budget.acquire(slots=1, nbytes=cost, wake_at=self._wake_at)
                    finally:
                        self._pump_parked = False
                # only this task pops, so the head is still ``ticket``
                backlog.popleft()
                if ticket.abandoned:
                    budget.release(slots=1, nbytes=charged)
                    continue
                try:
                    ticket.admit(charged)
                except BaseException:
                    budget.release(slots=1, nbytes=charged)
                    raise
        except BaseException:
            error = ServiceClosedError("the service closed before this request was sent")
            while backlog:
                ticket = backlog.popleft()
                if not ticket.abandoned:
                    ticket.close(error)
            raise
        finally:
            self._pumping = False

    def note_rate_limited(self) -> None:
        self._rate_limited += 1
        self._backoff_until = trio.current_time() + self.backoff_window

    async def submit(
        self,
        post: Callable[[], Awaitable[T]],
        *,
        estimated_bytes: int,
        charged: int | None = None,
        deadline: float | None = None,
    ) -> T:
        """Admit, send, and release on the ack; resubmit the same request after a 429.

        ``charged``: the caller already holds a slot and these bytes
        (:meth:`admit_now`, or a ticket's admit); they are released here.
        After a 429 the slot is freed and the request waits the server's
        Retry-After, but never less than 1 s (5 s above 128 KiB), as the
        official SDK does. ``deadline`` (trio time): no resubmit would start
        after it; the last RateLimitError is raised instead.
        """
        attempts = 0
        started = trio.current_time()
        while True:
            if charged is None:
                cost = estimated_bytes * (self.backoff_byte_multiplier if self.tightened else 1)
                charged = await self._budget.acquire(slots=1, nbytes=cost, wake_at=self._wake_at)
            try:
                self._admitted += 1
                return await post()
            except RateLimitError as exc:
                self.note_rate_limited()
                attempts += 1
                floor = 1.0 if estimated_bytes <= SMALL_REQUEST_BYTES else 5.0
                wait = min(max(exc.retry_after or 0.0, floor), MAX_RETRY_AFTER)
                over_budget = deadline is not None and trio.current_time() + wait > deadline
                if over_budget or (self.max_resubmits is not None and attempts > self.max_resubmits):
                    raise gave_up(exc, attempts=attempts, elapsed=trio.current_time() - started,
                                  budget=None if deadline is None else deadline - started) from None
                log.info("sample_backpressure", estimated_bytes=estimated_bytes, attempt=attempts, wait=wait)
            finally:
                self._budget.release(slots=1, nbytes=charged)
                charged = None
            await trio.sleep(wait)

    def statistics(self) -> AdmissionStatistics:
        return AdmissionStatistics(
            in_flight=self._budget.used_slots,
            bytes_in_flight=self._budget.used_bytes,
            waiting=self._budget.waiting + len(self._backlog) - self._pump_parked,
            max_concurrent=self.max_concurrent,
            byte_budget=self.byte_budget,
            tightened=self.tightened,
            rate_limited=self._rate_limited,
            admitted=self._admitted,
        )
