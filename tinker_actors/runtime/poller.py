"""Future poller: the only code that polls futures.

::

    client ──register(FutureSpec)──▶ FutureHandle: a small record, no task
                │  (state, queue_state, time in each state, done callbacks)
                ▼
      batched? ─▶ SessionBatch: one retrieve_futures long-poll per sampling session;
                  a completion moves the record on (payload bytes first, if known)
      small expected result and byte budget has room? reserve it, skip complete_metadata
                ▼
      ready (FIFO deque of records) ◀──────────────┬──────────────┐
                │                                  │              │
      poll workers × max_open_polls                │ timers       │ bytes pump
      (one retrieve_future long-poll each)         │ (one task,   │ (one task,
                │                                  │  one heap)   │  FIFO budget)
        try_again ─▶ queue_state tracked; back to the tail (a server that answers
                     at once: a timer, never faster than min_poll_interval)
        complete_metadata ─▶ reserve payload bytes (bytes pump), re-poll
                             allow_metadata_only=false
        408/5xx/429/connection error ─▶ jittered backoff timer (never a tight loop)
        {"error","category"} ─▶ RequestFailedError
        410 ─▶ GoneError (state "expired"; the caller's done callback resubmits)
        no progress for progress_timeout ─▶ FutureTimeoutError(request_id, queue_state)
        result ─▶ DONE: done callbacks run in the worker (e.g. resolve the APIFuture)

    cancel drain: POST cancel_future for cancelled samples when the server supports it

A future waiting for a poll is only its :class:`FutureHandle` (slots, a few
hundred bytes) in the ready deque, the timer heap, the bytes queue or its
session batch: the number of tasks is fixed (``max_open_polls`` workers plus
the timer, the bytes pump, one loop per batched session and the cancel
drain), however many futures are pending. Records are polled FIFO, so with
more futures than workers each gets a long poll in turn; a future that was
answered re-joins the tail. A caller learns the outcome by ``await
handle.result()`` or, without a task of its own, through
:meth:`FutureHandle.add_done_callback` (the sampling client resolves its
APIFuture that way, and resubmits on a 410).

Progress, not wall time, keeps a future alive: a change of queue_state or
reason, an ``active`` report, a metadata or result answer, or (batched) the
server answering the session poll. A future paused with no change and a
server that only errors or times out are not progress. The deadline is
checked when a worker takes the record and bounds its poll; a record still
waiting behind others is failed when its turn comes.

Servers differ: ``retrieve_futures`` is used only when the server flag
``sample_use_retrieve_futures`` is on; a 404 (or any non-transient error) on it
moves every waiter to per-future polling without failing. Cancel is sent
only when the dynamic flag ``sample_cancel_enabled`` is on.

Lifetime: ``run`` lives in the service nursery under the supervisor. Records
live on the poller object (deque, heap, queues, batches), not in its tasks: a
worker cancelled mid-poll puts its record back at the head, so a restarted
poller resumes every live future. ``fail_all`` (session expired, service
closing) ends every pending future with the given error.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from .._log import get_logger
from ..errors import (
    ActorCrashedError,
    APIConnectionError,
    APIStatusError,
    FutureTimeoutError,
    GoneError,
    NotFoundError,
    RateLimitError,
    RequestFailedError,
    ResponseDecodeError,
    ServiceClosedError,
)
from ..wire.futures import CompleteMetadataResponse, RequestFailedResponse, TryAgainResponse
from ..wire.futures import classify_future_response as _classify
from .budget import FifoBudget
from .config import PollSettings, ServerFlags
from .requester import Requester, Resource, options, raw_parts, resource

__all__ = ["FutureState", "FutureSpec", "FutureStatus", "FutureHandle", "FuturePoller", "PollerStatistics"]

log = get_logger(__name__)

PROTO_RESULT_TYPES = frozenset({"SampleResponse", "ForwardBackwardOutput"})


class FutureState(enum.StrEnum):
    QUEUED = "queued"  # registered; the server has not reported a state yet
    ACTIVE = "active"
    PAUSED_CAPACITY = "paused_capacity"
    PAUSED_RATE_LIMIT = "paused_rate_limit"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"  # 410: the server forgot it; resubmit
    CANCELLED = "cancelled"


TERMINAL = frozenset({FutureState.DONE, FutureState.FAILED, FutureState.EXPIRED, FutureState.CANCELLED})
_QUEUE_STATES = {
    "active": FutureState.ACTIVE,
    "paused_capacity": FutureState.PAUSED_CAPACITY,
    "paused_rate_limit": FutureState.PAUSED_RATE_LIMIT,
}


class FutureSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the poller needs to know about one submitted request."""

    request_id: str
    result_type: Any = None
    request_type: str = "Unknown"  # X-Tinker-Request-Type, e.g. Sample, ForwardBackward
    sampling_session_id: str | None = None  # enables batched polling for samples
    cloned_sampler_id: int = 0
    accept_proto: bool | None = None  # None: decide from result_type
    progress_timeout: float | None = None  # None: the poller's setting
    # The caller's upper estimate of the result's size. When it is small and the
    # inflight byte budget has room right now, the bytes are reserved up front
    # and the first poll asks for the payload itself (allow_metadata_only=false),
    # which saves the complete_metadata round trip (protocol §6) for every
    # small result. None: always ask for metadata first.
    expected_bytes: int | None = None


class FutureStatus(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    request_type: str
    state: str
    queue_state: str | None
    queue_state_reason: str | None
    polls: int
    age: float
    since_progress: float
    time_in_state: dict[str, float]
    # failed polls in a row (connection errors, timeouts, 5xx) and the last one's error
    poll_errors: int = 0
    last_poll_error: str | None = None


class PollerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    live: int
    by_state: dict[str, int]
    open_polls: int
    max_open_polls: int
    polls: int
    completed: int
    failed: int
    timed_out: int
    cancelled: int
    batched_available: bool


def _wants_proto(spec: FutureSpec) -> bool:
    if spec.accept_proto is not None:
        return spec.accept_proto
    rt = spec.result_type
    return hasattr(rt, "DESCRIPTOR") or getattr(rt, "__name__", "") in PROTO_RESULT_TYPES


# Where a pending record is; only the poller changes it.
_NEW, _READY, _POLLING, _TIMER, _BYTES, _BATCH = range(6)


class FutureHandle:
    """The observable side of one future: a record, not a task. Await :meth:`result`
    or register a callback with :meth:`add_done_callback`."""

    # Thousands wait at once (every acknowledged sample): slots, and the Event,
    # the time-in-state table and the callback list only once something needs them.
    __slots__ = (
        "spec", "request_id", "progress_timeout", "state", "queue_state", "queue_state_reason",
        "polls", "poll_errors", "last_poll_error", "created_at", "last_progress", "_state_since",
        "_time_in", "_done", "_event", "_value", "_error", "_poller", "_scope", "_callbacks",
        "_bytes_held", "_bytes_wanted", "_where", "_metadata_first", "_backoff", "_bad_requests",
        "__weakref__",
    )

    def __init__(self, spec: FutureSpec, poller: FuturePoller, progress_timeout: float) -> None:
        self.spec = spec
        self.request_id = spec.request_id
        self.progress_timeout = progress_timeout
        self.state = FutureState.QUEUED
        self.queue_state: str | None = None
        self.queue_state_reason: str | None = None
        self.polls = 0
        self.poll_errors = 0  # failed polls in a row; reset by any answer
        self.last_poll_error: str | None = None
        now = trio.current_time()
        self.created_at = now
        self.last_progress = now
        self._state_since = now
        self._time_in: dict[str, float] | None = None
        self._done = False
        self._event: trio.Event | None = None
        self._value: Any = None
        self._error: BaseException | None = None
        self._poller = poller
        self._scope: trio.CancelScope | None = None  # the poll in flight, while a worker holds it
        # None, one callback, or a list of them: most futures have exactly one
        self._callbacks: Callable[[FutureHandle], None] | list[Callable[[FutureHandle], None]] | None = None
        self._bytes_held = 0
        self._bytes_wanted = 0
        self._where = _NEW
        self._metadata_first = True  # allow_metadata_only on the next poll
        self._backoff = 0.0  # the current backoff step; 0: not backing off
        self._bad_requests = 0

    # --- observation -------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done

    @property
    def state_since(self) -> float:
        """When (``trio.current_time()``) the current state began."""
        return self._state_since

    def time_in_state(self) -> dict[str, float]:
        times = dict(self._time_in or {})
        if not self.done:
            times[self.state.value] = times.get(self.state.value, 0.0) + trio.current_time() - self._state_since
        return times

    def status(self) -> FutureStatus:
        now = trio.current_time()
        return FutureStatus(
            request_id=self.request_id,
            request_type=self.spec.request_type,
            state=self.state.value,
            queue_state=self.queue_state,
            queue_state_reason=self.queue_state_reason,
            polls=self.polls,
            age=now - self.created_at,
            since_progress=now - self.last_progress,
            time_in_state=self.time_in_state(),
            poll_errors=self.poll_errors,
            last_poll_error=self.last_poll_error,
        )

    # --- waiting -----------------------------------------------------------
    async def result(self, *, cancel_on_abandon: bool = False) -> Any:
        """Wait for the result; raises the future's typed error.

        With ``cancel_on_abandon``, a caller cancelled while waiting also
        cancels the future (and, where supported, on the server).
        """
        try:
            await self.wait_done()
        except BaseException:
            if cancel_on_abandon and not self.done:
                self.cancel()
            raise
        if self._error is not None:
            raise self._error
        return self._value

    async def wait_done(self) -> None:
        if self._done:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()

    def exception(self) -> BaseException | None:
        return self._error

    def add_done_callback(self, fn: Callable[[FutureHandle], None]) -> None:
        """Call ``fn(handle)`` when the future ends (at once if it already has).

        It runs in whichever task ended the future (a poll worker, a
        ``cancel()`` caller, ``fail_all``): it must not block, and an exception
        from it is logged, not raised.
        """
        if self._done:
            _call(fn, self)
        elif self._callbacks is None:
            self._callbacks = fn
        elif isinstance(self._callbacks, list):
            self._callbacks.append(fn)
        else:
            self._callbacks = [self._callbacks, fn]

    def cancel(self) -> bool:
        """Stop polling; ask the server to cancel when it supports it."""
        if self.done:
            return False
        self._finish(FutureState.CANCELLED, error=RequestFailedError("cancelled by the caller", category="user", request_id=self.request_id))
        self._poller._request_server_cancel(self)
        return True

    # --- transitions (poller only) -----------------------------------------
    def _set_state(self, state: FutureState) -> None:
        if state is self.state:
            return
        now = trio.current_time()
        if self._time_in is None:
            self._time_in = {}
        self._time_in[self.state.value] = self._time_in.get(self.state.value, 0.0) + now - self._state_since
        self.state = state
        self._state_since = now

    def _progress(self) -> None:
        self.last_progress = trio.current_time()

    def _finish(self, state: FutureState, *, value: Any = None, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._set_state(state)
        self._value = value
        self._error = error
        self._done = True
        if self._event is not None:
            self._event.set()
        if self._scope is not None:
            self._scope.cancel()
        self._poller._forget(self)
        callbacks, self._callbacks = self._callbacks, None
        if isinstance(callbacks, list):
            for fn in callbacks:
                _call(fn, self)
        elif callbacks is not None:
            _call(callbacks, self)


def _call(fn: Callable[[FutureHandle], None], handle: FutureHandle) -> None:
    try:
        fn(handle)
    except Exception:
        log.exception("future_callback_failed", request_id=handle.request_id)


def _next_backoff(handle: FutureHandle, settings: PollSettings) -> float:
    """Exponential backoff with jitter in [0.5, 1] × the step (never zero)."""
    step = handle._backoff or settings.backoff_initial
    handle._backoff = min(step * 2, settings.backoff_max)
    return step * random.uniform(0.5, 1.0)


class _Backoff:
    """Exponential backoff with jitter in [0.5, 1] × the step (never zero)."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._step = initial

    def next(self) -> float:
        delay = self._step * random.uniform(0.5, 1.0)
        self._step = min(self._step * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._step = self.initial


class _Batch:
    """State of one sampling session's retrieve_futures poll."""

    def __init__(self, sampling_session_id: str, cloned_sampler_id: int) -> None:
        self.target = {"type": "sampling_session", "sampling_session_id": sampling_session_id, "cloned_sampler_id": cloned_sampler_id}
        self.cursor = 0
        self.waiters: dict[str, FutureHandle] = {}
        # completions seen before their future was registered (the ack and the
        # batch answer race): taken by the register that follows
        self.completions: dict[str, dict[str, Any]] = {}
        self.retrieved: set[str] = set()
        self.running = False


def _decode_error(exc: Exception, content_type: str | None, handle: FutureHandle, raw: Any = None) -> ResponseDecodeError:
    what = getattr(handle.spec.result_type, "__name__", None) or "the result"
    _, body = raw_parts(raw) if raw is not None else (None, None)
    return ResponseDecodeError(
        f"cannot read the answer for {handle.request_id} as {what}: {type(exc).__name__}: {exc}"[:500],
        endpoint="POST /api/v1/retrieve_future",
        content_type=content_type,
        status=getattr(raw, "status", None),
        body=body,
    )


def _queue_state_from_body(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, (bytes, bytearray)):
        try:
            body = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return None, None
    if isinstance(body, dict):
        return body.get("queue_state"), body.get("queue_state_reason")
    return None, None


class FuturePoller:
    def __init__(
        self,
        requester: Requester,
        *,
        settings: PollSettings = PollSettings(),
        max_open_polls: int = 50,
        flags: Callable[[], ServerFlags] = ServerFlags,
        inflight_bytes: int | None = None,
    ) -> None:
        self._requester = requester
        self.settings = settings
        self.max_open_polls = max_open_polls
        self._flags = flags
        # Workers and batch loops hold a token while their poll is open.
        self._open_polls = trio.CapacityLimiter(max_open_polls)
        budget = inflight_bytes if inflight_bytes is not None else flags().inflight_response_bytes_semaphore_size
        self._bytes = FifoBudget(None, budget)
        self._handles: dict[str, FutureHandle] = {}
        self._ready: deque[FutureHandle] = deque()
        self._ready_lot = trio.lowlevel.ParkingLot()
        self._timers: list[tuple[float, int, FutureHandle]] = []
        self._timer_seq = 0
        self._timer_scope: trio.CancelScope | None = None
        self._bytes_queue: deque[FutureHandle] = deque()
        self._bytes_lot = trio.lowlevel.ParkingLot()
        # the actor's own task: handles to place (anything else is a bug and crashes it)
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[FutureHandle](math.inf)
        self._cancel_send, self._cancel_recv = trio.open_memory_channel[str](math.inf)
        self._batches: dict[tuple[str, int], _Batch] = {}
        self._batched_available = True
        self._cancel_available = True
        self._nursery: trio.Nursery | None = None
        self._closed: BaseException | None = None
        self._last_warn: dict[tuple[str, str | None, str | None], float] = {}
        self._polls = 0
        self._counts = {"completed": 0, "failed": 0, "timed_out": 0, "cancelled": 0}

    # --- public ------------------------------------------------------------
    def register(self, spec: FutureSpec, *, on_done: Callable[[FutureHandle], None] | None = None) -> FutureHandle:
        """Start tracking a submitted request; never blocks.

        ``on_done``: called with the handle when it ends (see
        :meth:`FutureHandle.add_done_callback`); at once when the poller is
        closed.
        """
        handle = FutureHandle(spec, self, spec.progress_timeout or self.settings.progress_timeout)
        if on_done is not None:
            handle._callbacks = on_done
        if self._closed is not None:
            handle._finish(FutureState.FAILED, error=self._closed)
            return handle
        self._handles[spec.request_id] = handle
        self._place(handle)
        return handle

    def get(self, request_id: str) -> FutureHandle | None:
        return self._handles.get(request_id)

    def fail_all(self, exc: BaseException) -> int:
        """End every pending future with ``exc`` (session expired, closing); later registers fail at once."""
        self._closed = exc
        pending = list(self._handles.values())
        for handle in pending:
            handle._finish(FutureState.FAILED, error=exc)
        return len(pending)

    @property
    def live(self) -> int:
        return len(self._handles)

    def statistics(self) -> PollerStatistics:
        by_state: dict[str, int] = {}
        for handle in self._handles.values():
            by_state[handle.state.value] = by_state.get(handle.state.value, 0) + 1
        return PollerStatistics(
            live=len(self._handles),
            by_state=by_state,
            open_polls=self._open_polls.borrowed_tokens,
            max_open_polls=self.max_open_polls,
            polls=self._polls,
            batched_available=self._batched_available,
            **self._counts,
        )

    # --- actor -------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._cancel_drain)
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._bytes_pump)
            for i in range(self.max_open_polls):
                nursery.start_soon(self._worker, name=f"poll-worker-{i}")
            for batch in self._batches.values():  # resume after a restart
                batch.running = False
                if batch.waiters:
                    self._ensure_batch(batch)
            task_status.started()
            async for item in self._inbox_recv:
                if not item.done and item._where == _NEW:
                    self._place(item)

    def _forget(self, handle: FutureHandle) -> None:
        if self._handles.get(handle.request_id) is handle:
            del self._handles[handle.request_id]
        key = {FutureState.DONE: "completed", FutureState.CANCELLED: "cancelled"}.get(handle.state, "failed")
        if isinstance(handle._error, FutureTimeoutError):
            key = "timed_out"
        self._counts[key] += 1
        if handle._bytes_held:
            self._bytes.release(slots=0, nbytes=handle._bytes_held)
            handle._bytes_held = 0
        spec = handle.spec
        if spec.sampling_session_id is not None:
            batch = self._batches.get((spec.sampling_session_id, spec.cloned_sampler_id))
            if batch is not None:
                batch.waiters.pop(handle.request_id, None)
                if self._batched_available and handle.state is FutureState.DONE:
                    batch.retrieved.add(handle.request_id)

    # --- where a record waits -----------------------------------------------
    def _place(self, handle: FutureHandle) -> None:
        """A newly registered record: its session batch, or the ready queue."""
        spec = handle.spec
        if spec.sampling_session_id is not None and self._batched_available and self._flags().sample_use_retrieve_futures:
            key = (spec.sampling_session_id, spec.cloned_sampler_id)
            batch = self._batches.get(key)
            if batch is None:
                batch = self._batches[key] = _Batch(*key)
            completion = batch.completions.pop(handle.request_id, None)
            if completion is not None:
                self._completed_in_batch(handle, completion)
                return
            handle._where = _BATCH
            batch.waiters[handle.request_id] = handle
            self._ensure_batch(batch)
            return
        size = spec.expected_bytes
        if size is not None and size <= self.settings.metadata_skip_bytes and self._bytes.try_acquire(slots=0, nbytes=size):
            # a small result and room for it now: ask for the payload at once
            handle._bytes_held = size
            handle._metadata_first = False
        self._push(handle)

    def _push(self, handle: FutureHandle, *, front: bool = False) -> None:
        handle._where = _READY
        if front:
            self._ready.appendleft(handle)
        else:
            self._ready.append(handle)
        self._ready_lot.unpark()

    def _later(self, handle: FutureHandle, delay: float) -> None:
        """Back to the ready queue after ``delay`` s (or at its progress deadline, if sooner)."""
        when = min(trio.current_time() + delay, self._deadline(handle))
        handle._where = _TIMER
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, handle))
        scope = self._timer_scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    def _want_bytes(self, handle: FutureHandle, nbytes: int) -> None:
        """Reserve the payload's bytes (FIFO, by the bytes pump), then poll for it."""
        handle._where = _BYTES
        handle._bytes_wanted = nbytes
        self._bytes_queue.append(handle)
        self._bytes_lot.unpark()

    async def _timer_loop(self) -> None:
        timers = self._timers
        try:
            while True:
                now = trio.current_time()
                while timers and timers[0][0] <= now:
                    handle = heapq.heappop(timers)[2]
                    if not handle.done and handle._where == _TIMER:
                        self._push(handle)
                with trio.CancelScope(deadline=timers[0][0] if timers else math.inf) as scope:
                    self._timer_scope = scope
                    await trio.sleep_forever()
        finally:
            self._timer_scope = None

    async def _bytes_pump(self) -> None:
        queue = self._bytes_queue
        while True:
            while not queue:
                await self._bytes_lot.park()
            handle = queue[0]
            if handle.done:
                queue.popleft()
                continue
            charged = await self._bytes.acquire(slots=0, nbytes=handle._bytes_wanted)
            queue.popleft()
            if handle.done:
                self._bytes.release(slots=0, nbytes=charged)
                continue
            handle._bytes_held += charged
            self._push(handle)

    async def _worker(self) -> None:
        ready = self._ready
        limiter = self._open_polls
        token = object()
        while True:
            if not ready:
                await self._ready_lot.park()
                continue
            handle = ready.popleft()
            if handle.done or handle._where != _READY:
                continue
            if trio.current_time() >= self._deadline(handle):
                self._time_out(handle)
                continue
            handle._where = _POLLING
            try:
                try:
                    limiter.acquire_on_behalf_of_nowait(token)
                except trio.WouldBlock:  # a batch poll holds a token
                    await limiter.acquire_on_behalf_of(token)
                try:
                    await self._poll_once(handle)
                finally:
                    limiter.release_on_behalf_of(token)
            except Exception as exc:  # a bug here must end this future loudly, not hang it
                log.error("future_poll_crashed", request_id=handle.request_id, error=repr(exc))
                handle._finish(FutureState.FAILED, error=exc)
            finally:
                if handle._where == _POLLING and not handle.done:
                    # cancelled mid-poll (the poller is restarting): first in line again
                    self._push(handle, front=True)

    # --- per-future long poll ---------------------------------------------
    def _deadline(self, handle: FutureHandle) -> float:
        return handle.last_progress + handle.progress_timeout

    def _time_out(self, handle: FutureHandle) -> None:
        log.warning("future_no_progress", request_id=handle.request_id, queue_state=handle.queue_state, timeout_s=handle.progress_timeout)
        handle._finish(
            handle.state if handle.state in TERMINAL else FutureState.FAILED,
            error=FutureTimeoutError(
                f"future {handle.request_id} made no progress for {handle.progress_timeout:g} s "
                f"(last queue_state: {handle.queue_state or 'unknown'})",
                request_id=handle.request_id,
                queue_state=handle.queue_state,
            ),
        )

    async def _poll_once(self, handle: FutureHandle) -> None:
        """One retrieve_future long poll for ``handle``, then its next place (or its end)."""
        s = self.settings
        started = trio.current_time()
        raw: Any = None
        spec = handle.spec
        with trio.CancelScope(deadline=self._deadline(handle)) as scope:
            handle._scope = scope
            try:
                self._polls += 1
                raw = await self._requester.request(
                    resource(Resource.FUTURES),
                    "POST",
                    "/api/v1/retrieve_future",
                    json={"request_id": handle.request_id, "allow_metadata_only": handle._metadata_first},
                    accept="application/x-protobuf" if _wants_proto(spec) else None,
                    headers={"X-Tinker-Request-Iteration": str(handle.polls), "X-Tinker-Request-Type": spec.request_type},
                    options=options(timeout=s.poll_timeout, max_retries=0, raw=True),
                )
                handle.polls += 1
            except GoneError as exc:
                handle._finish(FutureState.EXPIRED, error=exc)
                return
            except RateLimitError as exc:
                handle.polls += 1
                hint = exc.retry_after if exc.retry_after and exc.retry_after > 0 else _next_backoff(handle, s)
                self._later(handle, min(hint, s.retry_after_cap))
                return
            except APIStatusError as exc:
                handle.polls += 1
                code = exc.status_code
                if code == 408:
                    queue_state, reason = _queue_state_from_body(exc.body)
                    if queue_state:
                        self._observe(handle, queue_state, reason)
                    # the server is alive: re-poll soon, but never in a tight loop
                    self._later(handle, s.min_poll_interval * random.uniform(0.5, 1.0))
                    return
                if code >= 500 or code == 402:
                    self._poll_failed(handle, exc)
                    self._later(handle, max(_next_backoff(handle, s), 5.0 if code == 402 else 0.0))
                    return
                if code == 400 and handle._bad_requests < s.bad_request_retries:
                    handle._bad_requests += 1
                    self._later(handle, _next_backoff(handle, s))
                    return
                handle._finish(FutureState.FAILED, error=exc)
                return
            except (APIConnectionError, ActorCrashedError, trio.TooSlowError) as exc:
                self._poll_failed(handle, exc)
                self._later(handle, _next_backoff(handle, s))
                return
            except ServiceClosedError as exc:
                handle._finish(FutureState.FAILED, error=exc)
                return
            finally:
                handle._scope = None
        if handle.done:
            return  # ended while its poll was open (cancelled, fail_all)
        if raw is None:
            self._time_out(handle)  # the progress deadline passed mid-poll
            return
        handle.poll_errors = 0
        content_type, body = raw_parts(raw)
        try:
            reply = _classify(content_type, body, spec.result_type)
        except Exception as exc:  # the body came from outside: a typed error naming the endpoint
            handle._finish(FutureState.FAILED, error=_decode_error(exc, content_type, handle, raw))
            return
        handle._backoff = 0.0
        if isinstance(reply, TryAgainResponse):
            self._observe(handle, reply.queue_state, reply.queue_state_reason)
            # a server that answers try_again at once (no long poll) must not make us spin
            wait = s.min_poll_interval * random.uniform(0.75, 1.0) - (trio.current_time() - started)
            if wait > 0:
                self._later(handle, wait)
            else:
                self._push(handle)
        elif isinstance(reply, CompleteMetadataResponse):
            handle._progress()
            if handle._metadata_first:
                handle._metadata_first = False
                if not handle._bytes_held and reply.response_payload_size:
                    self._want_bytes(handle, int(reply.response_payload_size))
                else:
                    self._push(handle)
            else:
                self._later(handle, s.min_poll_interval)
        elif isinstance(reply, RequestFailedResponse):
            handle._finish(
                FutureState.FAILED,
                error=RequestFailedError(reply.error, category=reply.category, request_id=handle.request_id),
            )
        else:
            handle._finish(FutureState.DONE, value=reply)

    def _poll_failed(self, handle: FutureHandle, exc: BaseException) -> None:
        """Record a failed poll; warn (debounced) once a run of them looks like an outage."""
        handle.poll_errors += 1
        handle.last_poll_error = repr(exc)
        log.debug("future_poll_error", request_id=handle.request_id, error=handle.last_poll_error)
        if handle.poll_errors < self.settings.poll_error_warn_after:
            return
        key = (handle.spec.request_type, "poll_failing", None)
        now = trio.current_time()
        if now - self._last_warn.get(key, -math.inf) >= self.settings.warn_debounce_s:
            self._last_warn[key] = now
            log.warning(
                "future_poll_failing",
                request_type=handle.spec.request_type,
                request_id=handle.request_id,
                failed_polls=handle.poll_errors,
                error=handle.last_poll_error,
                gives_up_in_s=round(max(0.0, self._deadline(handle) - now), 1),
            )

    def _observe(self, handle: FutureHandle, queue_state: str | None, reason: str | None) -> None:
        state = _QUEUE_STATES.get(queue_state or "", FutureState.ACTIVE)
        changed = (queue_state, reason) != (handle.queue_state, handle.queue_state_reason)
        if changed or state is FutureState.ACTIVE:
            handle._progress()
        handle.queue_state = queue_state
        handle.queue_state_reason = reason
        handle._set_state(state)
        if state in (FutureState.PAUSED_CAPACITY, FutureState.PAUSED_RATE_LIMIT):
            key = (handle.spec.request_type, queue_state, reason)
            now = trio.current_time()
            if now - self._last_warn.get(key, -math.inf) >= self.settings.warn_debounce_s:
                self._last_warn[key] = now
                log.warning(
                    "future_paused",
                    request_type=handle.spec.request_type,
                    request_id=handle.request_id,
                    queue_state=queue_state,
                    reason=reason,
                )

    # --- batched polling (retrieve_futures) --------------------------------
    def _ensure_batch(self, batch: _Batch) -> None:
        if not batch.running and self._nursery is not None:
            batch.running = True
            self._nursery.start_soon(self._batch_loop, batch)

    def _completed_in_batch(self, handle: FutureHandle, completion: dict[str, Any]) -> None:
        """The session poll says ``handle`` finished: fetch the payload itself (one poll)."""
        handle._progress()
        handle._metadata_first = False
        size = int(completion.get("response_payload_uncompressed_size") or 0)
        if size:
            self._want_bytes(handle, size)
        else:
            self._push(handle)

    def _fall_back(self, batch: _Batch, why: str) -> None:
        log.warning("retrieve_futures_unavailable", reason=why, fallback="retrieve_future per future")
        self._batched_available = False
        waiters = list(batch.waiters.values())
        batch.waiters.clear()
        for handle in waiters:
            if not handle.done:
                handle._where = _NEW
                self._place(handle)

    def _time_out_batch_waiters(self, batch: _Batch) -> None:
        # only a failing session poll can leave its waiters without progress
        now = trio.current_time()
        for handle in [h for h in batch.waiters.values() if now >= self._deadline(h)]:
            self._time_out(handle)

    async def _batch_loop(self, batch: _Batch) -> None:
        s = self.settings
        backoff = _Backoff(s.backoff_initial, s.backoff_max)
        bad_requests = 0
        try:
            while batch.waiters and self._batched_available:
                retrieved = sorted(batch.retrieved)
                try:
                    async with self._open_polls:
                        self._polls += 1
                        raw = await self._requester.request(
                            resource(Resource.FUTURES),
                            "POST",
                            "/api/v1/retrieve_futures",
                            json={"target": batch.target, "prev_cursor": batch.cursor, "timeout": None, "retrieved_request_ids": retrieved},
                            options=options(timeout=s.poll_timeout, max_retries=0, raw=True),
                        )
                except NotFoundError:
                    self._fall_back(batch, "404")
                    return
                except (APIConnectionError, ActorCrashedError, trio.TooSlowError, RateLimitError) as exc:
                    log.debug("retrieve_futures_error", error=repr(exc))
                    self._time_out_batch_waiters(batch)
                    await trio.sleep(backoff.next())
                    continue
                except APIStatusError as exc:
                    if exc.status_code >= 500 or exc.status_code == 408:
                        self._time_out_batch_waiters(batch)
                        await trio.sleep(backoff.next())
                        continue
                    if exc.status_code == 400 and bad_requests < s.bad_request_retries:
                        bad_requests += 1
                        await trio.sleep(backoff.next())
                        continue
                    self._fall_back(batch, f"HTTP {exc.status_code}")
                    return
                backoff.reset()
                bad_requests = 0
                _, body = raw_parts(raw)
                try:
                    data = msgspec.json.decode(body)
                    if not isinstance(data, dict):
                        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
                except (msgspec.DecodeError, TypeError) as exc:
                    # a bad batch answer must not crash the poller: poll each future on its own
                    self._fall_back(batch, f"malformed answer: {exc}")
                    return
                batch.retrieved.difference_update(retrieved)
                batch.cursor = int(data.get("cursor", batch.cursor))
                for waiter in batch.waiters.values():
                    waiter._progress()  # the server is answering for this session
                for completion in data.get("completions") or []:
                    rid = completion.get("request_id")
                    if rid is None:
                        continue
                    handle = batch.waiters.pop(rid, None)
                    if handle is not None:
                        self._completed_in_batch(handle, completion)
                    elif rid not in self._handles:
                        batch.completions[rid] = completion  # its register is still to come
                # an ack-only poll is not worth a connection; but never spin on an empty answer
                if not data.get("completions"):
                    await trio.sleep(s.min_poll_interval * random.uniform(0.5, 1.0))
        finally:
            batch.running = False

    # --- server-side cancel -------------------------------------------------
    def _request_server_cancel(self, handle: FutureHandle) -> None:
        if handle.spec.request_type != "Sample" or not self._cancel_available:
            return
        if not self._flags().sample_cancel_enabled:
            return
        self._cancel_send.send_nowait(handle.request_id)

    async def _cancel_drain(self) -> None:
        limiter = trio.CapacityLimiter(self.settings.cancel_concurrency)
        async with trio.open_nursery() as nursery:
            async for request_id in self._cancel_recv:
                token = object()
                await limiter.acquire_on_behalf_of(token)
                nursery.start_soon(self._send_cancel, request_id, limiter, token)

    async def _send_cancel(self, request_id: str, limiter: trio.CapacityLimiter, token: object) -> None:
        try:
            await self._requester.request(
                resource(Resource.FUTURES),
                "POST",
                "/api/v1/cancel_future",
                json={"request_id": request_id},
                options=options(timeout=self.settings.cancel_timeout, max_retries=0),
            )
        except NotFoundError:
            self._cancel_available = False
            log.info("cancel_future_unavailable")
        except Exception as exc:  # best effort: the server also drops work when heartbeats lapse
            log.debug("cancel_future_failed", request_id=request_id, error=repr(exc))
        finally:
            limiter.release_on_behalf_of(token)
