"""Future poller: the only code that polls futures.

::

    client ──register(FutureSpec)──▶ FutureHandle (state, queue_state, time in each state)
                    │ (inbox channel)
                    ▼
    FuturePoller.run (one nursery)
      ├─ per future: drive(handle)
      │     ├─ batched? wait on SessionBatch (one retrieve_futures long-poll per sampling session)
      │     ├─ small expected result (spec.expected_bytes ≤ metadata_skip_bytes) and the
      │     │  inflight byte budget has room at once: reserve it, poll allow_metadata_only=false
      │     └─ retrieve_future long-polls, at most `max_open_polls` open at once (FIFO slots)
      │          try_again ─▶ queue_state tracked, re-poll (never faster than min_poll_interval)
      │          complete_metadata ─▶ reserve payload bytes, re-poll allow_metadata_only=false
      │          {"error","category"} ─▶ RequestFailedError
      │          408/5xx/429/connection error ─▶ jittered backoff (never a tight loop)
      │          410 ─▶ GoneError (state "expired"; resubmitting is the caller's job)
      │          no progress for progress_timeout ─▶ FutureTimeoutError(request_id, queue_state)
      └─ cancel drain: POST cancel_future for cancelled samples when the server supports it

Progress, not wall time, keeps a future alive: a change of queue_state or
reason, an ``active`` report, a metadata or result answer, or (batched) the
server answering the session poll. A future paused with no change and a
server that only errors or times out are not progress.

Servers differ: ``retrieve_futures`` is used only when the server flag
``sample_use_retrieve_futures`` is on; a 404 (or any non-transient error) on it
switches every waiter to per-future polling without failing. Cancel is sent
only when the dynamic flag ``sample_cancel_enabled`` is on.

Lifetime: ``run`` lives in the service nursery under the supervisor. Handles
live on the poller object, not in the crashed task, so a restarted poller
resumes driving every live future. ``fail_all`` (session expired, service
closing) ends every pending future with the given error.
"""

from __future__ import annotations

import enum
import functools
import math
import random
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
import trio

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
from .budget import FifoBudget
from .config import PollSettings, ServerFlags
from .requester import Requester, Resource, options, raw_parts, resource

__all__ = ["FutureState", "FutureSpec", "FutureStatus", "FutureHandle", "FuturePoller", "PollerStatistics"]

log = structlog.get_logger()

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


class FutureHandle:
    """The observable side of one future. Await :meth:`result`."""

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
        self._time_in: dict[str, float] = {}
        self._done = trio.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._poller = poller
        self._scope: trio.CancelScope | None = None
        self._driven = False
        self._bytes_held = 0

    # --- observation -------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def state_since(self) -> float:
        """When (``trio.current_time()``) the current state began."""
        return self._state_since

    def time_in_state(self) -> dict[str, float]:
        times = dict(self._time_in)
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
            await self._done.wait()
        except BaseException:
            if cancel_on_abandon and not self.done:
                self.cancel()
            raise
        if self._error is not None:
            raise self._error
        return self._value

    async def wait_done(self) -> None:
        await self._done.wait()

    def exception(self) -> BaseException | None:
        return self._error

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
        self._time_in[self.state.value] = self._time_in.get(self.state.value, 0.0) + now - self._state_since
        self.state = state
        self._state_since = now

    def _progress(self) -> None:
        self.last_progress = trio.current_time()

    def _finish(self, state: FutureState, *, value: Any = None, error: BaseException | None = None) -> None:
        if self.done:
            return
        self._set_state(state)
        self._value = value
        self._error = error
        self._done.set()
        if self._scope is not None:
            self._scope.cancel()
        self._poller._forget(self)


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
        self.events: dict[str, trio.Event] = {}
        self.completions: dict[str, dict[str, Any]] = {}
        self.retrieved: set[str] = set()
        self.running = False


_FALLBACK = object()  # batched polling unavailable: poll this future on its own


class _Crash:
    """A bug that escaped a poll loop run in a caller's task, for the poller actor to raise."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


@functools.cache
def _classifier() -> Callable[[str, bytes, Any], Any]:
    try:
        from ..wire.futures import classify_future_response  # type: ignore[import-not-found]
    except ImportError:
        return _local_classify
    return classify_future_response


def _classify(content_type: str, body: bytes, result_type: Any) -> Any:
    return _classifier()(content_type, body, result_type)


class TryAgainResponse(msgspec.Struct, frozen=True):
    queue_state: str | None = None
    queue_state_reason: str | None = None


class CompleteMetadataResponse(msgspec.Struct, frozen=True):
    response_payload_size: int = 0


class RequestFailedResponse(msgspec.Struct, frozen=True):
    error: str = ""
    category: str = "unknown"


def _local_classify(content_type: str, body: bytes, result_type: Any) -> Any:
    """Stand-in for ``wire.futures.classify_future_response`` (same outcomes)."""
    if "application/x-protobuf" in content_type:
        return result_type.FromString(body) if hasattr(result_type, "FromString") else body
    data = msgspec.json.decode(body)
    if isinstance(data, dict):
        if data.get("type") == "try_again":
            return TryAgainResponse(data.get("queue_state"), data.get("queue_state_reason"))
        if data.get("status") == "complete_metadata":
            return CompleteMetadataResponse(int(data.get("response_payload_size") or 0))
        if "error" in data and data.get("error") is not None:
            return RequestFailedResponse(str(data["error"]), str(data.get("category") or "unknown"))
    if result_type is None or result_type is Any:
        return data
    return msgspec.convert(data, result_type)


def _decode_error(exc: Exception, content_type: str | None, handle: FutureHandle) -> ResponseDecodeError:
    what = getattr(handle.spec.result_type, "__name__", None) or "the result"
    return ResponseDecodeError(
        f"cannot read the answer for {handle.request_id} as {what}: {type(exc).__name__}: {exc}"[:500],
        endpoint="POST /api/v1/retrieve_future",
        content_type=content_type,
    )


def _kind(obj: Any) -> str:
    return type(obj).__name__


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
        self._open_polls = trio.CapacityLimiter(max_open_polls)
        budget = inflight_bytes if inflight_bytes is not None else flags().inflight_response_bytes_semaphore_size
        self._bytes = FifoBudget(None, budget)
        self._handles: dict[str, FutureHandle] = {}
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[FutureHandle | _Crash](math.inf)
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
    def register(self, spec: FutureSpec, *, drive: bool = True) -> FutureHandle:
        """Start tracking a submitted request; never blocks.

        ``drive=False``: the caller polls it in its own task with :meth:`wait`
        (no poller task for this future).
        """
        handle = FutureHandle(spec, self, spec.progress_timeout or self.settings.progress_timeout)
        if self._closed is not None:
            handle._finish(FutureState.FAILED, error=self._closed)
            return handle
        self._handles[spec.request_id] = handle
        if drive:
            self._inbox_send.send_nowait(handle)
        return handle

    async def wait(self, handle: FutureHandle) -> Any:
        """Poll ``handle`` to its end in the caller's task, by this poller's rules and limits
        (the same loop as the poller's own tasks), and return its result or raise its error.

        A caller cancelled meanwhile leaves the handle pending: cancel it (or
        await it again) yourself. If another task already drives it (the poller
        resumed it after a restart), this just waits. A bug escaping the poll
        loop is the poller actor's crash, wherever the loop ran: it is raised in
        the actor (whose supervisor restarts it and resumes this future) while
        this caller keeps waiting.
        """
        try:
            await self._drive(handle)
        except Exception as exc:
            self._inbox_send.send_nowait(_Crash(exc))
        return await handle.result()

    def get(self, request_id: str) -> FutureHandle | None:
        return self._handles.get(request_id)

    def fail_all(self, exc: BaseException, *, refuse_new: bool = True) -> int:
        """End every pending future with ``exc`` (session expired, closing)."""
        if refuse_new:
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
            for handle in list(self._handles.values()):  # resume after a restart
                nursery.start_soon(self._drive, handle)
            for batch in self._batches.values():
                batch.running = False
                if batch.waiters:
                    self._ensure_batch(batch)
            task_status.started()
            async for handle in self._inbox_recv:
                if isinstance(handle, _Crash):
                    raise handle.error
                nursery.start_soon(self._drive, handle)

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

    async def _drive(self, handle: FutureHandle) -> None:
        if handle.done or handle._driven:
            return
        handle._driven = True
        try:
            with trio.CancelScope() as scope:
                handle._scope = scope
                allow_metadata_only = True
                spec = handle.spec
                if spec.sampling_session_id is not None and self._batched_available and self._flags().sample_use_retrieve_futures:
                    completion = await self._wait_batched(handle)
                    if completion is not _FALLBACK and completion is not None:
                        size = int(completion.get("response_payload_uncompressed_size") or 0)
                        if size:
                            handle._bytes_held = await self._bytes.acquire(slots=0, nbytes=size)
                        allow_metadata_only = False
                if allow_metadata_only and not handle.done and not handle._bytes_held and self._reserve_expected(spec):
                    handle._bytes_held = spec.expected_bytes or 0
                    allow_metadata_only = False
                if not handle.done:
                    await self._poll_loop(handle, allow_metadata_only)
        except Exception as exc:  # a bug here must end this future loudly, not hang it
            log.error("future_poll_crashed", request_id=handle.request_id, error=repr(exc))
            handle._finish(FutureState.FAILED, error=exc)
        finally:
            handle._driven = False
            handle._scope = None
            if handle.done:
                self._ack_retrieved(handle)

    def _reserve_expected(self, spec: FutureSpec) -> bool:
        """Reserve a small expected result's bytes now, if that needs no waiting."""
        size = spec.expected_bytes
        if size is None or size > self.settings.metadata_skip_bytes:
            return False
        return self._bytes.try_acquire(slots=0, nbytes=size)

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

    async def _sleep_until_or_deadline(self, handle: FutureHandle, delay: float) -> None:
        await trio.sleep_until(min(trio.current_time() + delay, self._deadline(handle)))

    def _headers(self, handle: FutureHandle) -> dict[str, str]:
        return {"X-Tinker-Request-Iteration": str(handle.polls), "X-Tinker-Request-Type": handle.spec.request_type}

    async def _poll_loop(self, handle: FutureHandle, allow_metadata_only: bool) -> None:
        s = self.settings
        backoff = _Backoff(s.backoff_initial, s.backoff_max)
        bad_requests = 0
        accept = "application/x-protobuf" if _wants_proto(handle.spec) else None
        while not handle.done:
            if trio.current_time() >= self._deadline(handle):
                self._time_out(handle)
                return
            started = trio.current_time()
            raw: Any = None
            with trio.move_on_at(self._deadline(handle)):
                try:
                    async with self._open_polls:
                        self._polls += 1
                        raw = await self._requester.request(
                            resource(Resource.FUTURES),
                            "POST",
                            "/api/v1/retrieve_future",
                            json={"request_id": handle.request_id, "allow_metadata_only": allow_metadata_only},
                            accept=accept,
                            headers=self._headers(handle),
                            options=options(timeout=s.poll_timeout, max_retries=0, raw=True),
                        )
                        handle.polls += 1
                except GoneError as exc:
                    handle._finish(FutureState.EXPIRED, error=exc)
                    return
                except RateLimitError as exc:
                    handle.polls += 1
                    hint = exc.retry_after if exc.retry_after and exc.retry_after > 0 else backoff.next()
                    await self._sleep_until_or_deadline(handle, min(hint, s.retry_after_cap))
                    continue
                except APIStatusError as exc:
                    handle.polls += 1
                    code = exc.status_code
                    if code == 408:
                        queue_state, reason = _queue_state_from_body(exc.body)
                        if queue_state:
                            self._observe(handle, queue_state, reason)
                        # the server is alive: re-poll soon, but never in a tight loop
                        await self._sleep_until_or_deadline(handle, s.min_poll_interval * random.uniform(0.5, 1.0))
                        continue
                    if code >= 500 or code == 402:
                        self._poll_failed(handle, exc)
                        await self._sleep_until_or_deadline(handle, max(backoff.next(), 5.0 if code == 402 else 0.0))
                        continue
                    if code == 400 and bad_requests < s.bad_request_retries:
                        bad_requests += 1
                        await self._sleep_until_or_deadline(handle, backoff.next())
                        continue
                    handle._finish(FutureState.FAILED, error=exc)
                    return
                except (APIConnectionError, ActorCrashedError, trio.TooSlowError) as exc:
                    self._poll_failed(handle, exc)
                    await self._sleep_until_or_deadline(handle, backoff.next())
                    continue
                except ServiceClosedError as exc:
                    handle._finish(FutureState.FAILED, error=exc)
                    return
            if raw is None:
                continue  # the progress deadline passed mid-poll; the loop head fails it
            handle.poll_errors = 0
            content_type, body = raw_parts(raw)
            try:
                reply = _classify(content_type, body, handle.spec.result_type)
            except Exception as exc:  # the body came from outside: a typed error naming the endpoint
                handle._finish(FutureState.FAILED, error=_decode_error(exc, content_type, handle))
                return
            kind = _kind(reply)
            backoff.reset()
            if kind == "TryAgainResponse":
                self._observe(handle, reply.queue_state, reply.queue_state_reason)
                # a server that answers try_again at once (no long poll) must not make us spin
                wait = s.min_poll_interval * random.uniform(0.75, 1.0) - (trio.current_time() - started)
                if wait > 0:
                    await self._sleep_until_or_deadline(handle, wait)
            elif kind == "CompleteMetadataResponse":
                handle._progress()
                if allow_metadata_only:
                    allow_metadata_only = False
                    if not handle._bytes_held and reply.response_payload_size:
                        handle._bytes_held = await self._bytes.acquire(slots=0, nbytes=int(reply.response_payload_size))
                else:
                    await self._sleep_until_or_deadline(handle, s.min_poll_interval)
            elif kind == "RequestFailedResponse":
                handle._finish(
                    FutureState.FAILED,
                    error=RequestFailedError(reply.error, category=reply.category, request_id=handle.request_id),
                )
                return
            else:
                handle._finish(FutureState.DONE, value=reply)
                return

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
    async def _wait_batched(self, handle: FutureHandle) -> Any:
        spec = handle.spec
        key = (spec.sampling_session_id or "", spec.cloned_sampler_id)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(*key)
        completion = batch.completions.pop(handle.request_id, None)
        if completion is not None:
            return completion
        event = batch.events.setdefault(handle.request_id, trio.Event())
        batch.waiters[handle.request_id] = handle
        self._ensure_batch(batch)
        try:
            while not event.is_set():
                if trio.current_time() >= self._deadline(handle):
                    self._time_out(handle)
                    return None
                with trio.move_on_at(self._deadline(handle)):
                    await event.wait()
        finally:
            batch.waiters.pop(handle.request_id, None)
            batch.events.pop(handle.request_id, None)
        if not self._batched_available:
            return batch.completions.pop(handle.request_id, _FALLBACK)
        return batch.completions.pop(handle.request_id, _FALLBACK)

    def _ensure_batch(self, batch: _Batch) -> None:
        if not batch.running and self._nursery is not None:
            batch.running = True
            self._nursery.start_soon(self._batch_loop, batch)

    def _ack_retrieved(self, handle: FutureHandle) -> None:
        spec = handle.spec
        batch = self._batches.get((spec.sampling_session_id or "", spec.cloned_sampler_id))
        if batch is not None and self._batched_available and handle.state is FutureState.DONE:
            batch.retrieved.add(handle.request_id)

    def _fall_back(self, batch: _Batch, why: str) -> None:
        log.warning("retrieve_futures_unavailable", reason=why, fallback="retrieve_future per future")
        self._batched_available = False
        for event in batch.events.values():
            event.set()

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
                    await trio.sleep(backoff.next())
                    continue
                except APIStatusError as exc:
                    if exc.status_code >= 500 or exc.status_code == 408:
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
                    batch.completions[rid] = completion
                    event = batch.events.get(rid)
                    if event is not None:
                        event.set()
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
