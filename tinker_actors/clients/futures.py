"""The future object every asynchronous client operation returns.

An :class:`APIFuture` is a handle on one operation (a forward_backward, a
sample, a checkpoint save...). It lives on the service's trio loop:

* ``await fut`` (or ``await fut.result(timeout)``) gives the result or raises
  the operation's typed error;
* ``fut.state`` is where the operation is *now* (``queued``,
  ``paused_capacity``, ``paused_rate_limit``, ``running``, ``done``,
  ``failed``, ``cancelled``) and ``fut.time_in_state`` how long it has been
  there; ``fut.history`` keeps every transition, so a status page can tell a
  slow server from a stuck client (user-needs: TF#20, TF#46);
* ``fut.request_id`` is the server's id once the submit POST returned;
* ``fut.cancel()`` stops the local work and, where the server supports it,
  asks the server to drop the request too.

The work behind a future runs as a task in the service's nursery, so a future
never outlives the service that made it. A task may also *detach* (return
``DETACHED``): the future then waits without a task, and whoever finishes the
work (a poll worker's callback) resolves it with :func:`settle`; sampling does
this from the server's ack on, so pending samples cost records, not tasks. While the server still holds the
request, the runtime's poller reports queue states; the future mirrors them
through a *tracker* (any object with a ``state`` and optionally a
``queue_state`` attribute), so there is one source of truth for queue state.
"""

from __future__ import annotations

import concurrent.futures
import enum
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, NamedTuple, TypeVar

import outcome
import trio

from .._log import get_logger
from ..errors import FutureTimeoutError, ServiceClosedError

__all__ = [
    "FutureState", "StateChange", "APIFuture", "start_future", "start_later", "fail_unstarted",
    "detach", "DETACHED", "settle", "CancelledError",
]

T = TypeVar("T")
U = TypeVar("U")

log = get_logger(__name__)

# What awaiting a cancelled future raises: the stdlib's, so the sync facade's
# concurrent.futures.Future and the trio future agree.
CancelledError = concurrent.futures.CancelledError


class FutureState(enum.StrEnum):
    """Where an operation is. The last three are final."""

    QUEUED = "queued"
    PAUSED_CAPACITY = "paused_capacity"
    PAUSED_RATE_LIMIT = "paused_rate_limit"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({FutureState.DONE, FutureState.FAILED, FutureState.CANCELLED})

# Names the server and the runtime use for the same places.
_ALIASES = {
    "active": FutureState.RUNNING,
    "running": FutureState.RUNNING,
    "pending": FutureState.QUEUED,
    "queued": FutureState.QUEUED,
    "submitted": FutureState.QUEUED,
    "waiting": FutureState.QUEUED,
    "paused_capacity": FutureState.PAUSED_CAPACITY,
    "paused_rate_limit": FutureState.PAUSED_RATE_LIMIT,
    "done": FutureState.DONE,
    "finished": FutureState.DONE,
    "complete": FutureState.DONE,
    "failed": FutureState.FAILED,
    "cancelled": FutureState.CANCELLED,
}


def as_state(value: Any) -> FutureState | None:
    """A FutureState for a runtime or server state name (enum or str); None if unknown."""
    if value is None:
        return None
    if isinstance(value, FutureState):
        return value
    name = getattr(value, "value", value)
    return _ALIASES.get(str(name).lower())


class StateChange(NamedTuple):
    state: FutureState
    at: float  # time.monotonic(), so any thread can read it


class APIFuture(Generic[T]):
    """A handle on one asynchronous operation; see the module docstring.

    Construct through :func:`start_future` (or :meth:`completed`); the
    constructor alone makes a future nobody will resolve.
    """

    # Thousands may wait queued at once (sampling admission): slots, and the
    # Event, CancelScope and callback list only once something needs them.
    __slots__ = (
        "name", "_request_id", "_on_cancel", "_event", "_outcome", "_history",
        "_scope", "_callbacks", "_tracker", "_cancel_requested", "__weakref__",
    )

    def __init__(
        self,
        *,
        name: str,
        request_id: str | None = None,
        on_cancel: Callable[[APIFuture[Any]], None] | None = None,
    ) -> None:
        self.name = name
        self._request_id = request_id
        self._on_cancel = on_cancel
        self._event: trio.Event | None = None
        self._outcome: outcome.Outcome[T] | None = None
        self._history: list[StateChange] = [StateChange(FutureState.QUEUED, time.monotonic())]
        # Set when the operation's task starts; None while it waits unstarted.
        self._scope: trio.CancelScope | None = None
        self._callbacks: list[Callable[[APIFuture[T]], None]] | None = None
        self._tracker: Any = None
        self._cancel_requested = False

    # -- construction ----------------------------------------------------------------

    @classmethod
    def completed(cls, value: U, *, name: str = "completed") -> APIFuture[U]:
        """A future that already holds ``value``."""
        fut: APIFuture[U] = APIFuture(name=name)
        fut._resolve(outcome.Value(value))
        return fut

    @classmethod
    def failed(cls, error: BaseException, *, name: str = "failed") -> APIFuture[Any]:
        """A future that already holds ``error``."""
        fut: APIFuture[Any] = APIFuture(name=name)
        fut._resolve(outcome.Error(error))
        return fut

    # -- what a caller reads -----------------------------------------------------------

    @property
    def request_id(self) -> str | None:
        """The server's request id, once the submit POST has returned."""
        if self._request_id is None and self._tracker is not None:
            rid = getattr(self._tracker, "request_id", None)
            if isinstance(rid, str):
                return rid
        return self._request_id

    @property
    def state(self) -> FutureState:
        """The current state; while the server holds the request, its queue state."""
        own = self._history[-1].state
        if own.final or self._tracker is None:
            return own
        tracked = as_state(getattr(self._tracker, "queue_state", None)) or as_state(
            getattr(self._tracker, "state", None)
        )
        if tracked is not None and not tracked.final and tracked is not own:
            # The tracker does not call us back, so a change is recorded when
            # first seen; history is as fine-grained as its readers.
            self._set_state(tracked)
            return tracked
        return own

    @property
    def time_in_state(self) -> float:
        """Seconds since :attr:`state` last changed (as the runtime saw it, when it tracks the future)."""
        state = self.state  # refresh from the tracker first
        since = getattr(self._tracker, "state_since", None)
        if since is not None and not state.final:
            # The runtime saw the change when the server reported it; this
            # future only records it when first read, which can be much later.
            try:
                return max(0.0, trio.current_time() - float(since))
            except RuntimeError:  # read from outside the trio thread (sync facade)
                pass
        return time.monotonic() - self._history[-1].at

    @property
    def history(self) -> list[StateChange]:
        """Every state this future went through, oldest first."""
        return list(self._history)

    def done(self) -> bool:
        return self._outcome is not None

    def cancelled(self) -> bool:
        return self._history[-1].state is FutureState.CANCELLED

    def exception(self) -> BaseException | None:
        """The error the operation ended with (None if it succeeded). Only valid when done."""
        if self._outcome is None:
            raise RuntimeError(f"future {self.name} is not done")
        return self._outcome.error if isinstance(self._outcome, outcome.Error) else None

    def result_nowait(self) -> T:
        """The result if done; raises ``trio.WouldBlock`` otherwise."""
        if self._outcome is None:
            raise trio.WouldBlock
        return self._unwrap()

    async def result(self, timeout: float | None = None) -> T:
        """Wait for the result. ``timeout`` (seconds) raises FutureTimeoutError but keeps the work going."""
        event = self._event
        if event is None:
            event = self._event = trio.Event()
            if self._outcome is not None:
                event.set()
        if timeout is None:
            await event.wait()
        else:
            with trio.move_on_after(timeout):
                await event.wait()
            if self._outcome is None:
                raise FutureTimeoutError(
                    f"{self.name}: no result after {timeout} s (state {self.state.value})",
                    request_id=self.request_id,
                    queue_state=self.state.value,
                )
        return self._unwrap()

    def __await__(self) -> Generator[Any, None, T]:
        return self.result().__await__()

    def add_done_callback(self, fn: Callable[[APIFuture[T]], None]) -> None:
        """Call ``fn(self)`` on the loop thread when done (at once if already done)."""
        if self._outcome is not None:
            fn(self)
        elif self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)

    def cancel(self) -> bool:
        """Stop the operation. Returns False when it had already finished.

        The local work stops at its next checkpoint. If the operation's
        submitter registered a server-side cancel (sampling, when the server
        advertises ``cancel_future``), it is sent in the background.
        """
        if self._outcome is not None or self._cancel_requested:
            return self._cancel_requested and self.cancelled()
        self._cancel_requested = True
        self._set_state(FutureState.CANCELLED)
        if self._scope is not None:
            self._scope.cancel()
        else:
            # No task to stop: a sample still waiting for admission, or one
            # detached from its task (see detach) whose tracker is the work.
            self._cancel_untasked()
        if self._on_cancel is not None:
            try:
                self._on_cancel(self)
            except Exception:  # a failed best-effort cancel must not break the caller
                log.warning("future_cancel_hook_failed", future=self.name, request_id=self.request_id)
        return True

    def _cancel_untasked(self) -> None:
        """End a future with no task as cancelled, and cancel what it tracks."""
        tracker = self._tracker
        self._resolve(outcome.Error(CancelledError(f"{self.name} was cancelled")))
        if tracker is None:
            return
        try:
            tracker.cancel()
        except Exception:  # a failed best-effort cancel must not break the caller
            log.warning("future_cancel_hook_failed", future=self.name, request_id=self.request_id)

    def __repr__(self) -> str:
        rid = f" request_id={self.request_id}" if self.request_id else ""
        return f"<APIFuture {self.name}{rid} state={self.state.value}>"

    # -- what the operation's task calls -----------------------------------------------------

    def set_request_id(self, request_id: str | None) -> None:
        if request_id:
            self._request_id = request_id

    def track(self, tracker: Any) -> None:
        """Mirror ``tracker.state`` / ``tracker.queue_state`` while the server holds the request."""
        self._tracker = tracker

    def set_state(self, state: FutureState | str) -> None:
        new = as_state(state)
        if new is not None and not new.final:
            self._set_state(new)

    def _set_state(self, state: FutureState) -> None:
        current = self._history[-1].state
        if current.final or current is state:
            return
        self._history.append(StateChange(state, time.monotonic()))

    def _resolve(self, result: outcome.Outcome[T]) -> None:
        if self._outcome is not None:
            return
        self._outcome = result
        if isinstance(result, outcome.Value):
            self._set_state(FutureState.DONE)
        elif isinstance(result.error, CancelledError):
            self._set_state(FutureState.CANCELLED)
        else:
            self._set_state(FutureState.FAILED)
        self._tracker = None
        if self._event is not None:
            self._event.set()
        callbacks, self._callbacks = self._callbacks, None
        for fn in callbacks or ():
            try:
                fn(self)
            except Exception:
                log.exception("future_callback_failed", future=self.name)

    def _unwrap(self) -> T:
        assert self._outcome is not None
        if isinstance(self._outcome, outcome.Error):
            # Re-raising the same exception object from several awaiters is
            # fine, but its traceback would grow with every raise; copy it out.
            error = self._outcome.error
            raise error.with_traceback(error.__traceback__)
        return self._outcome.value


def start_future(
    nursery: trio.Nursery,
    fn: Callable[[APIFuture[T]], Awaitable[T]],
    *,
    name: str,
    on_cancel: Callable[[APIFuture[Any]], None] | None = None,
) -> APIFuture[T]:
    """Run ``fn(fut)`` in ``nursery`` and return ``fut`` at once.

    ``fn`` may call ``fut.set_request_id``, ``fut.set_state`` and ``fut.track``.
    An exception from ``fn`` becomes the future's error; ``fut.cancel()``
    cancels ``fn``; the nursery closing resolves the future with
    ServiceClosedError.
    """
    fut: APIFuture[T] = APIFuture(name=name, on_cancel=on_cancel)
    start_later(fut, nursery, fn)
    return fut


def start_later(fut: APIFuture[T], nursery: trio.Nursery, fn: Callable[[APIFuture[T]], Awaitable[T]]) -> bool:
    """Start ``fn(fut)`` for a future made without a task (one that waited queued).

    Returns False, starting nothing, when ``fut`` already ended (cancelled or
    failed while it waited).
    """
    if fut._outcome is not None or fut._scope is not None:
        return False
    fut._scope = trio.CancelScope()
    nursery.start_soon(_drive, fut, fn, name=f"future:{fut.name}")
    return True


def fail_unstarted(fut: APIFuture[Any], error: BaseException) -> None:
    """End a future whose task never started (e.g. the service closed while it waited)."""
    fut._resolve(outcome.Error(error))


class _Detached:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DETACHED"


# What a future's task returns to end itself WITHOUT resolving the future:
# someone else (a poll worker's callback) resolves it later with settle().
DETACHED: Any = _Detached()


def detach(fut: APIFuture[Any]) -> Any:
    """Let ``fut``'s task end while the operation goes on elsewhere; return the result to ``return``.

    Once the task returned it, ``fut`` has no task: :func:`settle` resolves
    it, and ``fut.cancel()`` resolves it at once and calls ``cancel()`` on
    what it tracks (see :meth:`APIFuture.track`; e.g. the poller's record).
    :func:`start_later` may give it a task again.
    """
    return DETACHED


def settle(fut: APIFuture[T], result: outcome.Outcome[T]) -> None:
    """Resolve a detached future (a no-op if it already ended, e.g. cancelled)."""
    fut._resolve(result)


async def _drive(fut: APIFuture[T], fn: Callable[[APIFuture[T]], Awaitable[T]]) -> None:
    assert fut._scope is not None
    try:
        with fut._scope:
            value = await fn(fut)
            if value is DETACHED:
                fut._scope = None
                if fut._cancel_requested and fut._outcome is None:
                    # cancelled in the instant it detached: no checkpoint let the scope act
                    fut._cancel_untasked()
                return
            fut._resolve(outcome.Value(value))
            return
    except trio.Cancelled:
        # The service is shutting down around us.
        fut._resolve(outcome.Error(ServiceClosedError(f"{fut.name}: the service closed before it finished")))
        raise
    except Exception as exc:
        fut._resolve(outcome.Error(exc))
        return
    # Only our own scope's cancel lands here: the user called fut.cancel().
    fut._resolve(outcome.Error(CancelledError(f"{fut.name} was cancelled")))
