"""FIFO budgets: concurrency slots and bytes, granted strictly in arrival order.

Used by sampling admission (slots + estimated request bytes) and by the
future poller (in-flight response bytes). Waiters park on their own
``trio.Event``; a release grants from the head of the queue. Nothing polls, and
a big request at the head is never overtaken by smaller ones behind it (no
starvation). A request larger than the whole budget is clamped to it, so it
runs alone instead of waiting forever.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import trio

__all__ = ["FifoBudget"]


class _Waiter:
    __slots__ = ("slots", "nbytes", "event", "granted")

    def __init__(self, slots: int, nbytes: int) -> None:
        self.slots = slots
        self.nbytes = nbytes
        self.event = trio.Event()
        self.granted = False


class FifoBudget:
    """``slots`` concurrent holders and ``nbytes`` bytes; limits may be dynamic.

    ``limits`` returns the current (max_slots, max_bytes); call :meth:`regrant`
    when it changes (e.g. when a backoff window ends).
    """

    def __init__(self, max_slots: int | None, max_bytes: int | None, *, limits: Callable[[], tuple[int | None, int | None]] | None = None) -> None:
        self._static = (max_slots, max_bytes)
        self._limits = limits or (lambda: self._static)
        self.used_slots = 0
        self.used_bytes = 0
        self._queue: deque[_Waiter] = deque()

    def set_limits(self, max_slots: int | None, max_bytes: int | None) -> None:
        self._static = (max_slots, max_bytes)
        self.regrant()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def _fits(self, waiter: _Waiter) -> bool:
        return self._fits_now(waiter.slots, waiter.nbytes)

    def _fits_now(self, slots: int, nbytes: int) -> bool:
        max_slots, max_bytes = self._limits()
        if max_slots is not None and self.used_slots + slots > max_slots and self.used_slots > 0:
            return False
        if max_bytes is not None and self.used_bytes + nbytes > max_bytes and self.used_bytes > 0:
            return False
        return True

    def regrant(self) -> None:
        while self._queue and self._fits(self._queue[0]):
            waiter = self._queue.popleft()
            self.used_slots += waiter.slots
            self.used_bytes += waiter.nbytes
            waiter.granted = True
            waiter.event.set()

    async def acquire(self, *, slots: int = 1, nbytes: int = 0, wake_at: Callable[[], float] | None = None) -> int:
        """Wait for ``slots`` and ``nbytes``; returns the bytes actually charged.

        ``wake_at`` gives a time at which limits may loosen by themselves; a
        waiter then re-checks once at that time (not a poll loop).
        """
        max_bytes = self._limits()[1]
        if max_bytes is not None:
            nbytes = min(nbytes, max_bytes)
        if not self._queue and self._fits_now(slots, nbytes):
            # Uncontended: take it without a waiter, an Event and a cancel scope.
            self.used_slots += slots
            self.used_bytes += nbytes
            return nbytes
        waiter = _Waiter(slots, nbytes)
        self._queue.append(waiter)
        self.regrant()
        try:
            while not waiter.granted:
                deadline = wake_at() if wake_at is not None else math.inf
                if deadline <= trio.current_time():
                    deadline = math.inf  # nothing will loosen by itself: wait for a release
                if deadline == math.inf:
                    # no cancel scope for a wait without a deadline: thousands of
                    # queued samples each held one (≈ 700 bytes apiece)
                    await waiter.event.wait()
                else:
                    with trio.move_on_at(deadline):
                        await waiter.event.wait()
                self.regrant()
        except BaseException:
            if waiter.granted:
                self.release(slots=slots, nbytes=nbytes)
            else:
                self._queue.remove(waiter)
                self.regrant()
            raise
        return nbytes

    def try_acquire(self, *, slots: int = 1, nbytes: int = 0) -> bool:
        """Take ``slots`` and ``nbytes`` now if nobody waits and they fit; never blocks."""
        if self._queue:
            return False
        max_slots, max_bytes = self._limits()
        if max_slots is not None and self.used_slots + slots > max_slots:
            return False
        if max_bytes is not None and self.used_bytes + nbytes > max_bytes:
            return False
        self.used_slots += slots
        self.used_bytes += nbytes
        return True

    def release(self, *, slots: int = 1, nbytes: int = 0) -> None:
        self.used_slots -= slots
        self.used_bytes -= nbytes
        self.regrant()
