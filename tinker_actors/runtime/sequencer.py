"""Training sequencer: one model's requests leave strictly in call order, pipelined.

::

    reserve(n) ─▶ n tickets, in call order (sync)
    submit(ticket, build, send) :
        wait until the POST of the previous ticket has RETURNED (not its result)
        seq_id = the model's next wire seq_id;  request = build(seq_id)
        send(request) ─▶ its answer (usually {"request_id"}) goes back to the caller
        let the next ticket go

So ``forward_backward(); optim_step()`` sends the optim_step POST as soon as the
forward_backward POST returned, while the forward_backward result is still
being computed: both land on the same server clock cycle.

A seq_id is given at the turn, not at reservation, so a ticket that never
sends (cancelled while it waited, or its request could not be built) leaves no
gap for the server to wait on. A POST that fails for good after it got its
seq_id (every retry of the transport spent, or cancelled mid-send) leaves the
server's order in an unknown state: it may wait for that seq_id forever. The
sequencer is then *broken*: every waiting ticket and every later submit fails
at once with :class:`~tinker_actors.errors.TrainingOrderError`, naming the
lost operation and how to continue, instead of sending a request the server
would hold for minutes and refuse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import trio

from ..errors import TrainingOrderError

__all__ = ["TrainingSequencer", "SequencerStatistics"]

T = TypeVar("T")
R = TypeVar("R")


class SequencerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    next_seq_id: int  # the seq_id the next sent request gets
    next_ticket: int
    next_to_send: int  # the ticket whose turn it is
    waiting: int
    sent: int
    broken: bool


class TrainingSequencer:
    def __init__(self, model_id: str, *, first_seq_id: int = 1) -> None:
        self.model_id = model_id
        self._next_ticket = first_seq_id
        self._next_turn = first_seq_id
        self._next_seq = first_seq_id
        self._turns: dict[int, trio.Event] = {}
        self._finished: set[int] = set()
        self._sent = 0
        self._broken: tuple[str, int, BaseException] | None = None  # operation, seq_id, cause

    def reserve(self, count: int = 1) -> list[int]:
        """``count`` tickets in call order (chunked requests take several)."""
        self.check()
        first = self._next_ticket
        self._next_ticket += count
        return list(range(first, first + count))

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def check(self) -> None:
        """Raise TrainingOrderError when an earlier request broke the order."""
        if self._broken is not None:
            operation, seq_id, cause = self._broken
            raise TrainingOrderError(model_id=self.model_id, operation=operation, seq_id=seq_id, cause=cause)

    async def submit(
        self,
        ticket: int,
        build: Callable[[int], R],
        send: Callable[[R], Awaitable[T]],
        *,
        ids: int = 1,
        operation: str = "request",
    ) -> T:
        """In ``ticket``'s turn: ``build`` the request with its seq_id (``ids``
        consecutive ones for a parallel chunk group get the first), ``send`` it,
        return the answer. A failed ``send`` breaks the order (module docstring)."""
        if ticket < self._next_turn or ticket >= self._next_ticket or ticket in self._finished:
            raise ValueError(f"ticket {ticket} was not reserved or was already used")
        try:
            if ticket != self._next_turn:
                event = self._turns.setdefault(ticket, trio.Event())
                await event.wait()
            self.check()
            seq_id = self._next_seq
            request = build(seq_id)  # a failure here sent nothing: the seq_id stays free
            self._next_seq += ids
            try:
                result = await send(request)
            except BaseException as exc:
                self._break(operation, seq_id, exc)
                raise
            self._sent += 1
            return result
        finally:
            self._turns.pop(ticket, None)
            self._finished.add(ticket)
            self._advance()

    def abandon(self, ticket: int) -> None:
        """Give up a ticket that will never be submitted, so later ones can go."""
        if self._next_turn <= ticket < self._next_ticket and ticket not in self._finished:
            self._turns.pop(ticket, None)
            self._finished.add(ticket)
            self._advance()

    def _break(self, operation: str, seq_id: int, cause: BaseException) -> None:
        if self._broken is None:
            self._broken = (operation, seq_id, _plain_cause(cause))
        for event in self._turns.values():
            event.set()  # every waiter fails at once (check() after its wait)

    def _advance(self) -> None:
        while self._next_turn in self._finished:
            self._finished.discard(self._next_turn)
            self._next_turn += 1
        event = self._turns.get(self._next_turn)
        if event is not None:
            event.set()

    def statistics(self) -> SequencerStatistics:
        return SequencerStatistics(
            model_id=self.model_id,
            next_seq_id=self._next_seq,
            next_ticket=self._next_ticket,
            next_to_send=self._next_turn,
            waiting=len(self._turns),
            sent=self._sent,
            broken=self.broken,
        )


def _plain_cause(exc: BaseException) -> Any:
    # a Cancelled must not be re-raised from another task: keep what it was
    if isinstance(exc, trio.Cancelled):
        return RuntimeError("cancelled while its request was being sent")
    return exc
