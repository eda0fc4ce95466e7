"""Training sequencer: one model's requests leave strictly in seq_id order, pipelined.

::

    reserve(n) ─▶ [k, k+1, ..., k+n-1]      (sync; seq 0 is the create, first id is 1)
    submit(seq_id, post) :
        wait until the POST for seq_id-1 has RETURNED (not its result)
        run post()  ─▶ its answer (usually {"request_id"}) goes back to the caller
        let seq_id+1 go

So ``forward_backward(); optim_step()`` sends the optim_step POST as soon as the
forward_backward POST returned, while the forward_backward result is still
being computed: both land on the same server clock cycle.

A reserved id whose POST fails, or whose caller is cancelled before it is
sent, still passes the turn on (otherwise the model would stall forever); the
server then sees a gap, which it reports on the next request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import trio

__all__ = ["TrainingSequencer", "SequencerStatistics"]

T = TypeVar("T")


class SequencerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    next_seq_id: int
    next_to_send: int
    waiting: int
    sent: int


class TrainingSequencer:
    def __init__(self, model_id: str, *, first_seq_id: int = 1) -> None:
        self.model_id = model_id
        self._next_id = first_seq_id
        self._next_to_send = first_seq_id
        self._turns: dict[int, trio.Event] = {}
        self._finished: set[int] = set()
        self._sent = 0

    def reserve(self, count: int = 1) -> list[int]:
        """Allocate ``count`` consecutive seq_ids (chunked requests take several)."""
        first = self._next_id
        self._next_id += count
        return list(range(first, first + count))

    async def submit(self, seq_id: int, post: Callable[[], Awaitable[T]]) -> T:
        """Run ``post`` once every lower seq_id has been sent; returns its answer."""
        if seq_id < self._next_to_send or seq_id >= self._next_id or seq_id in self._finished:
            raise ValueError(f"seq_id {seq_id} was not reserved or was already used")
        try:
            if seq_id != self._next_to_send:
                event = self._turns.setdefault(seq_id, trio.Event())
                await event.wait()
            result = await post()
            self._sent += 1
            return result
        finally:
            self._turns.pop(seq_id, None)
            self._finished.add(seq_id)
            self._advance()

    def _advance(self) -> None:
        while self._next_to_send in self._finished:
            self._finished.discard(self._next_to_send)
            self._next_to_send += 1
        event = self._turns.get(self._next_to_send)
        if event is not None:
            event.set()

    def statistics(self) -> SequencerStatistics:
        return SequencerStatistics(
            model_id=self.model_id,
            next_seq_id=self._next_id,
            next_to_send=self._next_to_send,
            waiting=len(self._turns),
            sent=self._sent,
        )

    def abandon(self, seq_id: int) -> None:
        """Give up a reserved id that will never be submitted, so later ids can go."""
        if self._next_to_send <= seq_id < self._next_id and seq_id not in self._finished:
            self._turns.pop(seq_id, None)
            self._finished.add(seq_id)
            self._advance()
