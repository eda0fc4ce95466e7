"""``APIFuture``: what every drop-in call returns (``tinker.lib.public_interfaces.APIFuture``).

A future is usable three ways, as in the SDK:

* ``fut.result(timeout)`` from plain code (blocks the calling thread);
* ``await fut`` (or ``await fut.result_async(timeout)``) inside an asyncio
  program: the asyncio loop waits without blocking, the work runs on the
  runtime's trio thread;
* ``fut.future()``: the ``concurrent.futures.Future`` underneath (for
  ``concurrent.futures.wait``, ``add_done_callback``...); cancelling it
  cancels the operation.

:class:`AwaitableConcurrentFuture` wraps any ``concurrent.futures.Future``.
The operations of the drop-in clients return :class:`OperationFuture`, which
also shows the runtime's view of the operation (``state``, ``request_id``,
``time_in_state``: neither the SDK nor its futures have these).
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Generator
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["APIFuture", "AwaitableConcurrentFuture", "OperationFuture"]


class APIFuture(ABC, Generic[T]):
    """A result that plain code waits for with :meth:`result` and asyncio code awaits."""

    @abstractmethod
    async def result_async(self, timeout: float | None = None) -> T:
        """Wait for the result in asyncio code; ``timeout`` raises ``TimeoutError``."""

    @abstractmethod
    def result(self, timeout: float | None = None) -> T:
        """Block until the result is there; ``timeout`` raises ``TimeoutError``."""

    @abstractmethod
    def future(self) -> ConcurrentFuture[T]:
        """The ``concurrent.futures.Future`` of this operation."""

    async def coroutine(self) -> T:
        """This future as a coroutine (for ``asyncio.create_task``)."""
        return await self

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()


class AwaitableConcurrentFuture(APIFuture[T]):
    """An :class:`APIFuture` over a ``concurrent.futures.Future``."""

    def __init__(self, future: ConcurrentFuture[T]) -> None:
        self._future: ConcurrentFuture[T] = future

    def result(self, timeout: float | None = None) -> T:
        return self._future.result(timeout)

    async def result_async(self, timeout: float | None = None) -> T:
        async with asyncio.timeout(timeout):
            return await asyncio.wrap_future(self._future)

    def future(self) -> ConcurrentFuture[T]:
        return self._future


class OperationFuture(AwaitableConcurrentFuture[T]):
    """The future of one runtime operation: a :class:`~tinker_actors.clients.sync.SyncFuture` underneath."""

    def __init__(self, future: ConcurrentFuture[T], loop_thread: threading.Thread | None = None) -> None:
        super().__init__(future)
        self._loop_thread = loop_thread

    def result(self, timeout: float | None = None) -> T:
        if not self._future.done() and threading.current_thread() is self._loop_thread:
            raise RuntimeError(
                "result() on a pending future was called on the tinker_actors runtime's own thread "
                "(from a done callback?), where it would wait on itself forever"
            )
        return self._future.result(timeout)

    @property
    def request_id(self) -> str | None:
        """The server's request id once the request was accepted (None before)."""
        return getattr(self._future, "request_id", None)

    @property
    def state(self) -> Any:
        """Where the operation is now (queued, running, done...; see ``tinker_actors.FutureState``)."""
        return getattr(self._future, "state", None)

    @property
    def time_in_state(self) -> float | None:
        return getattr(self._future, "time_in_state", None)

    def __repr__(self) -> str:
        state = getattr(self.state, "value", self.state)
        return f"<APIFuture state={state} request_id={self.request_id}>"
