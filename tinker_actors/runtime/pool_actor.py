"""Pool actor: one per resource type, the only door to that resource's pool.

::

    call(actor.mailbox, HttpCall) ─▶ Mailbox (bounded, e.g. 2× concurrency)
                                                 │
                              PoolActor.run: take envelope, wait for a slot
                                                 │ (at most `concurrency` at once)
                                 worker task: Requester.request(...) ─▶ Transport pool
                                                 │
                                       envelope.reply(outcome)

    service.request(resource, ...) ─▶ PoolActor.request: the same slots, in the caller's task

Messages: :class:`HttpCall` (a frozen Struct with the request's arguments).
Replies: the transport's return value, or its typed error, as an ``Outcome``.

The hot path skips the mailbox: :meth:`PoolActor.request` (what
:class:`ActorRequester` and so every client request uses) waits for one of the
same slots in the caller's own task (the FIFO ``CapacityLimiter``) and calls
the transport there. Measured on the sample path, the envelope, its two
memory channels, the worker task and the outcome round trip cost more than a
tenth of a sample's client CPU, and bought nothing the limiter does not give:
at most ``concurrency`` requests in flight, FIFO, every other caller parked
(a flood waits in the callers, never in a queue of its own), and a caller who
leaves simply cancels its own request. Mailbox messages and direct calls
share the slots.

* The mailbox is bounded, so a flood of submissions waits in the callers
  instead of piling up; the actor never starts more requests than the pool has
  connections, which keeps httpcore's queue scan short.
* A caller that leaves abandons its envelope and the request is cancelled.
* Lifetime: ``run`` is started under the supervisor in the service nursery and
  ends when the nursery is cancelled. A crash fails the in-flight envelopes
  (the supervisor's ``on_crash``); queued ones wait for the restarted actor.
* ``statistics()`` at any time: in-flight, queued, completed, errors, retries
  (as reported by the transport, when it reports them) and latency.
"""

from __future__ import annotations

from typing import Any

import msgspec
import outcome
import trio

from ..errors import ServiceClosedError
from .mailbox import Mailbox
from .requester import Requester
from .stats import LatencyRecorder, PoolStatistics

__all__ = ["HttpCall", "PoolActor", "ActorRequester"]


class HttpCall(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP request for a pool actor; fields mirror ``Transport.request``."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    accept: str | None = None
    headers: dict[str, str] | None = None
    options: Any = None
    decode: Any = None


class PoolActor:
    def __init__(self, resource: Any, requester: Requester, *, concurrency: int, mailbox_size: int | None = None) -> None:
        self.resource = resource
        self.concurrency = concurrency
        self._requester = requester
        self.mailbox: Mailbox[HttpCall] = Mailbox(mailbox_size if mailbox_size is not None else 2 * concurrency, name=f"pool:{resource}")
        self._slots = trio.CapacityLimiter(concurrency)
        self._latency = LatencyRecorder()
        self._completed = 0
        self._errors = 0
        self._waiting_for_slot = 0
        self._changed: trio.Event | None = None

    async def wait_idle(self) -> None:
        """Return once nothing is queued or in flight."""
        while self._slots.borrowed_tokens or self.mailbox.queued or self._slots.statistics().tasks_waiting:
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    def _notify(self) -> None:
        # only wait_idle listens; don't make an Event per request for nobody
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One HTTP request in the caller's task, under one of the actor's slots (see module docstring)."""
        if self.mailbox.closed_error is not None:
            raise ServiceClosedError(f"{self.mailbox.name} is closed") from self.mailbox.closed_error
        async with self._slots:
            started = trio.current_time()
            try:
                result = await self._requester.request(self.resource, method, path, **kwargs)
            except trio.Cancelled:
                raise
            except BaseException:
                self._completed += 1
                self._errors += 1
                raise
            else:
                self._completed += 1
                return result
            finally:
                self._latency.record(trio.current_time() - started)
                self._notify()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as workers:
            task_status.started()
            while True:
                envelope = await self.mailbox.receive()
                self._waiting_for_slot = 1
                try:
                    await self._slots.acquire_on_behalf_of(envelope)
                finally:
                    self._waiting_for_slot = 0
                workers.start_soon(self._work, envelope)

    async def _work(self, envelope: Any) -> None:
        msg: HttpCall = envelope.message
        started = trio.current_time()
        try:
            with envelope.work_scope():
                result = await outcome.acapture(
                    self._requester.request,
                    self.resource,
                    msg.method,
                    msg.path,
                    json=msg.json,
                    content=msg.content,
                    content_type=msg.content_type,
                    accept=msg.accept,
                    headers=msg.headers,
                    options=msg.options,
                    decode=msg.decode,
                )
            if isinstance(result, outcome.Error) and isinstance(result.error, trio.Cancelled):
                if not envelope.abandoned:
                    # The actor itself is going down (crash or close), not the caller:
                    # leave the envelope unanswered so on_crash / close fails it with
                    # the real reason instead of "abandoned".
                    result.unwrap()
                result = None  # abandoned: the caller is gone
        finally:
            self._slots.release_on_behalf_of(envelope)
            self._notify()
        self._latency.record(trio.current_time() - started)
        if result is None:
            envelope.fail(trio.TooSlowError("request abandoned by its caller"))
            return
        self._completed += 1
        if isinstance(result, outcome.Error):
            self._errors += 1
        envelope.reply(result)

    def statistics(self) -> PoolStatistics:
        retries = 0
        # the transport owns retries; read its count for this pool when it keeps one
        transport_stats = getattr(self._requester, "statistics", None)
        if callable(transport_stats):
            try:
                retries = int(transport_stats()[str(self.resource)].retries)
            except (KeyError, AttributeError, TypeError, RuntimeError):
                retries = 0
        return PoolStatistics(
            resource=str(self.resource),
            concurrency=self.concurrency,
            in_flight=self._slots.borrowed_tokens,
            queued=self.mailbox.queued + self._slots.statistics().tasks_waiting,
            completed=self._completed,
            errors=self._errors,
            retries=retries,
            latency=self._latency.snapshot(),
        )


class ActorRequester:
    """A :class:`Requester` that routes each call through the pool actors."""

    def __init__(self, actors: dict[str, PoolActor]) -> None:
        self._actors = actors

    async def request(self, resource: Any, method: str, path: str, **kwargs: Any) -> Any:
        return await self._actors[str(resource)].request(method, path, **kwargs)

