"""The runtime under the drop-in clients: one loop thread, one trio ServiceClient on it.

A :class:`Runtime` is the blocking facade's :class:`~tinker_actors.clients.sync.ServiceClient`
(``trio.run`` on one thread; the session, heartbeat, poller and pools live
there). Every drop-in client made from one ``tinker.ServiceClient`` shares
it. :meth:`Runtime.op` starts a trio operation from the caller's thread and
returns an :class:`~tinker_actors.sdk.api_future.OperationFuture`; the value
is converted to the SDK's types and errors to the SDK's classes on the loop
thread, once, when the operation ends.
"""

from __future__ import annotations

import atexit
import base64
import json
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ..clients import sync
from ..clients.futures import APIFuture as TrioFuture
from ._exceptions import translate
from .api_future import OperationFuture

T = TypeVar("T")

__all__ = ["Runtime", "identity", "shared_runtime"]

# Open runtimes by base URL, so an unpickled SamplingClient samples through one
# this process already has instead of opening another session.
_OPEN: "weakref.WeakValueDictionary[int, Runtime]" = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()


def identity(value: Any) -> Any:
    return value


class Runtime:
    """The loop thread and the trio ServiceClient shared by one drop-in ServiceClient's clients."""

    def __init__(self, *, base_url: str | None, api_key: str | None, **config: Any) -> None:
        self._sync = sync.ServiceClient(base_url=base_url, api_key=api_key, **config)
        self._loop = self._sync._loop
        self.service = self._sync._inner  # the trio ServiceClient
        self.base_url = self.service._ctx.base_url
        self._lock = threading.Lock()
        self.closed = False
        with _OPEN_LOCK:
            _OPEN[id(self)] = self

    @property
    def loop_thread(self) -> threading.Thread:
        return self._loop._thread

    def _error(self, exc: BaseException) -> BaseException:
        return translate(exc, self.base_url)

    def _reraise(self, exc: BaseException) -> Any:
        new = self._error(exc)
        if new is exc:
            raise exc
        raise new from exc

    def op(self, start: Callable[[], TrioFuture[Any]], convert: Callable[[Any], Any] = identity) -> OperationFuture[Any]:
        """Run ``start`` (which returns a trio APIFuture) on the loop; the future of its converted result."""
        loop = self._loop

        def begin() -> sync.SyncFuture:
            afut = start()
            fut = sync.SyncFuture(loop, afut, convert, self._error)
            afut.add_done_callback(fut._settle)
            return fut

        try:
            future = loop.call(begin)
        except BaseException as exc:
            self._reraise(exc)
        return OperationFuture(future, self.loop_thread)

    def call(self, fn: Callable[[], T]) -> T:
        """Run sync ``fn`` on the loop thread; its result, or its error under the SDK's name."""
        try:
            return self._loop.call(fn)  # type: ignore[no-any-return]
        except BaseException as exc:
            self._reraise(exc)

    def run(self, afn: Callable[[], Any]) -> Any:
        """Run async ``afn`` on the loop thread and wait for it."""
        try:
            return self._loop.run(afn)
        except BaseException as exc:
            self._reraise(exc)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self._sync.close()


def shared_runtime(handle: str, api_key: str | None = None) -> Runtime:
    """An open runtime for the base URL a sampler handle names; one is opened (and closed
    at interpreter exit) when this process has none."""
    base_url = json.loads(base64.urlsafe_b64decode(handle.encode())).get("base_url")
    with _OPEN_LOCK:
        for rt in list(_OPEN.values()):
            if not rt.closed and (base_url is None or rt.base_url == base_url):
                return rt
    rt = Runtime(base_url=base_url, api_key=api_key)
    _KEEP.append(rt)
    atexit.register(rt.close)
    return rt


_KEEP: list[Runtime] = []
