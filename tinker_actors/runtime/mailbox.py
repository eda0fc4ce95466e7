"""Mailboxes: how a caller hands a message to an actor and gets an answer.

::

    caller task                         actor task
    -----------                         ----------
    call(mailbox, msg) ──Envelope──▶ [bounded channel] ──▶ mailbox.receive()
         │   (msg, reply slot)                                   │
         ◀──────── outcome.Outcome over a size-1 channel ────────┘ envelope.reply(...)

* The message is a frozen ``msgspec.Struct``; the reply slot travels beside it in
  an :class:`Envelope`, never inside a wire Struct.
* The mailbox channel is bounded: when the actor falls behind, ``call`` waits
  instead of piling work up in memory.
* The actor answers with ``send_nowait`` on a size-1 channel, so a caller that
  has gone away can never block the actor.
* A caller that leaves (cancelled, timed out) *abandons* its envelope: if the
  actor is already working on it, the work's cancel scope is cancelled.
* The mailbox remembers every envelope an actor has taken and not yet answered.
  When the actor crashes, the supervisor calls :meth:`Mailbox.fail_in_flight`,
  so each waiting caller gets a clear error instead of waiting forever; queued
  envelopes stay for the restarted actor. :meth:`Mailbox.close` fails the
  queued ones too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import outcome
import trio

from ..errors import ServiceClosedError

__all__ = ["Envelope", "Mailbox", "call"]

M = TypeVar("M")
R = TypeVar("R")


class Envelope(Generic[M, R]):
    """A message plus the slot its answer goes into."""

    __slots__ = ("message", "_reply_send", "_reply_recv", "_mailbox", "_scope", "abandoned", "answered")

    def __init__(self, message: M) -> None:
        self.message = message
        self._reply_send, self._reply_recv = trio.open_memory_channel[outcome.Outcome](1)
        self._mailbox: Mailbox[Any] | None = None
        self._scope: trio.CancelScope | None = None
        self.abandoned = False
        self.answered = False

    def reply(self, result: outcome.Outcome) -> None:
        """Answer once; later answers and departed callers are ignored."""
        if self.answered:
            return
        self.answered = True
        if self._mailbox is not None:
            self._mailbox._in_flight.discard(self)
        try:
            self._reply_send.send_nowait(result)
        except (trio.BrokenResourceError, trio.WouldBlock, trio.ClosedResourceError):
            pass

    def fail(self, exc: BaseException) -> None:
        self.reply(outcome.Error(exc))

    @contextmanager
    def work_scope(self) -> Iterator[trio.CancelScope]:
        """The actor runs the work inside this scope; abandoning cancels it."""
        with trio.CancelScope() as scope:
            self._scope = scope
            if self.abandoned:
                scope.cancel()
            try:
                yield scope
            finally:
                self._scope = None

    def abandon(self) -> None:
        self.abandoned = True
        if self._scope is not None:
            self._scope.cancel()

    async def wait(self) -> R:
        result = await self._reply_recv.receive()
        return result.unwrap()


class Mailbox(Generic[M]):
    """A bounded channel of envelopes that tracks which ones are being worked on."""

    def __init__(self, capacity: int | float, *, name: str) -> None:
        self.name = name
        self._send, self._recv = trio.open_memory_channel[Envelope[M, Any]](capacity if capacity != math.inf else math.inf)
        self._in_flight: set[Envelope[M, Any]] = set()
        self._closed_error: BaseException | None = None

    async def put(self, envelope: Envelope[M, Any]) -> None:
        if self._closed_error is not None:
            raise ServiceClosedError(f"{self.name} is closed") from self._closed_error
        try:
            await self._send.send(envelope)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ServiceClosedError(f"{self.name} is closed") from None

    async def receive(self) -> Envelope[M, Any]:
        """Take the next envelope; it counts as in flight until answered."""
        while True:
            envelope = await self._recv.receive()
            if envelope.abandoned:
                # the caller left before we got to it; don't do the work
                envelope.fail(ServiceClosedError("caller abandoned the request"))
                continue
            envelope._mailbox = self
            self._in_flight.add(envelope)
            return envelope

    @property
    def closed_error(self) -> BaseException | None:
        """Why the mailbox was closed (None while open)."""
        return self._closed_error

    @property
    def queued(self) -> int:
        stats = self._send.statistics()
        return stats.current_buffer_used + stats.tasks_waiting_send

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def fail_in_flight(self, exc: BaseException) -> int:
        """Answer every taken-but-unanswered envelope with ``exc``; returns how many."""
        pending = list(self._in_flight)
        for envelope in pending:
            envelope.fail(exc)
        return len(pending)

    def close(self, exc: BaseException) -> int:
        """Refuse new work and fail everything queued or in flight."""
        self._closed_error = exc
        count = self.fail_in_flight(exc)
        while True:
            try:
                envelope = self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            envelope.fail(exc)
            count += 1
        return count


async def call(mailbox: Mailbox[M], message: M, *, timeout: float | None = None) -> Any:
    """Send ``message`` to the actor behind ``mailbox`` and wait for its answer.

    On timeout raises ``trio.TooSlowError``; leaving early (timeout or
    cancellation) abandons the envelope so the actor stops working on it.
    """
    envelope: Envelope[M, Any] = Envelope(message)
    try:
        with trio.fail_after(timeout) if timeout is not None else _nullscope():
            await mailbox.put(envelope)
            return await envelope.wait()
    except BaseException:
        if not envelope.answered:
            envelope.abandon()
        raise


@contextmanager
def _nullscope() -> Iterator[None]:
    yield None
