"""A blocking facade for scripts and notebooks, and the bridge for asyncio code.

::

    from tinker_actors.clients.sync import ServiceClient

    with ServiceClient(base_url=..., api_key=...) as service:
        training = service.create_lora_training_client(base_model, rank=8).result()
        fb = training.forward_backward(batch, "cross_entropy")
        opt = training.optim_step(AdamParams(learning_rate=1e-3))
        print(fb.result(timeout=60).metrics, opt.result())

The whole runtime (session, heartbeat, poller, pools) runs on **one** thread
that runs ``trio.run``; the caller's thread only hands work over through the
loop's ``TrioToken``. So a caller that blocks (CPU-bound training code, a
notebook cell) never starves heartbeats or polls, and no user code ever runs
on the loop thread.

Every operation returns a :class:`SyncFuture`, a real
``concurrent.futures.Future``: ``.result(timeout)``, ``.cancel()``,
``.add_done_callback`` work as usual, and asyncio code bridges with
``await asyncio.wrap_future(fut)``. ``fut.state``, ``fut.request_id`` and
``fut.time_in_state`` show where the operation is.

The loop thread stops on ``with`` exit or ``close()``; there is no
``__del__`` magic (the thread is a daemon so a forgotten ``close()`` cannot
hang interpreter exit). Calling a blocking method from the loop thread itself
(for instance from a done callback) raises RuntimeError instead of deadlocking.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

import trio

from .futures import APIFuture, FutureState

__all__ = ["ServiceClient", "TrainingClient", "SamplingClient", "RestClient", "SyncFuture"]


class _LoopThread:
    """One thread running trio.run, with the async ServiceClient open on it."""

    def __init__(self, open_client: Callable[[], Any]) -> None:
        self._open_client = open_client
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self.client: Any = None
        self.closed = False
        self._thread = threading.Thread(target=self._thread_main, name="tinker-actors-loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to whoever waits
            if not self._ready.is_set():
                self._error = exc
        finally:
            self.closed = True
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        try:
            async with self._open_client() as client:
                self.client = client
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
                return
            raise

    def _check_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "a blocking tinker_actors call was made on the runtime's own loop thread; "
                "use the trio clients (tinker_actors.clients) there, or call from another thread"
            )
        if self.closed or self._token is None:
            raise RuntimeError("this ServiceClient is closed")

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run sync ``fn`` on the loop thread and return its result."""
        self._check_thread()
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def run(self, afn: Callable[..., Any], *args: Any) -> Any:
        """Run async ``afn`` on the loop thread and return its result."""
        self._check_thread()
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def close(self) -> None:
        if self.closed or self._stop is None:
            self._thread.join()
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError("close() cannot be called from the runtime's loop thread")
        try:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        except trio.RunFinishedError:
            pass
        self._thread.join()


class SyncFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` mirroring an :class:`APIFuture` on the loop thread."""

    def __init__(
        self,
        loop: _LoopThread,
        afut: APIFuture[Any],
        wrap: Callable[[Any], Any],
        wrap_error: Callable[[BaseException], BaseException] | None = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._afut = afut
        self._wrap = wrap
        # the drop-in SDK (tinker_actors.sdk) renames errors to the SDK's classes here
        self._wrap_error = wrap_error

    def _settle(self, afut: APIFuture[Any]) -> None:
        # Runs on the loop thread; the concurrent Future does its own locking.
        if self.done():
            return
        try:
            error = afut.exception()
            if error is not None:
                if isinstance(error, concurrent.futures.CancelledError):
                    super().cancel()
                    self.set_running_or_notify_cancel()
                else:
                    self.set_exception(self._wrap_error(error) if self._wrap_error is not None else error)
            else:
                try:
                    value = self._wrap(afut.result_nowait())
                except Exception as exc:  # a failed conversion fails the future, never the loop
                    self.set_exception(exc)
                else:
                    self.set_result(value)
        except concurrent.futures.InvalidStateError:
            pass

    @property
    def state(self) -> FutureState:
        return self._afut.state

    @property
    def request_id(self) -> str | None:
        return self._afut.request_id

    @property
    def time_in_state(self) -> float:
        return self._afut.time_in_state

    @property
    def history(self) -> list[Any]:
        return self._afut.history

    def cancel(self) -> bool:
        """Cancel the operation on the loop (and on the server where supported)."""
        if self.done():
            return super().cancel()
        if not self._loop.closed and threading.current_thread() is not self._loop._thread:
            self._loop.call(self._afut.cancel)
        elif threading.current_thread() is self._loop._thread:
            self._afut.cancel()
        return super().cancel()

    def __repr__(self) -> str:
        return f"<SyncFuture {self._afut.name} state={self.state.value} request_id={self.request_id}>"


class _SyncClient:
    """Base of the blocking wrappers: each listed method runs on the loop thread."""

    _future_methods: tuple[str, ...] = ()
    _plain_methods: tuple[str, ...] = ()
    # async methods that resolve to an APIFuture once the server accepted the
    # request (tinkex *_future): blocking here until then, then a SyncFuture
    _submitted_methods: tuple[str, ...] = ()
    # SDK *_async names, for asyncio code: ``name_async`` -> (sync name, await the result?)
    _asyncio_aliases: dict[str, tuple[str, bool]] = {}
    # async iterators of the trio client: plain generators here
    _iter_methods: tuple[str, ...] = ()

    def __init__(self, loop: _LoopThread, inner: Any) -> None:
        self._loop = loop
        self._inner = inner

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls._future_methods:
            if name not in cls.__dict__:
                setattr(cls, name, _future_method(name))
        for name in cls._plain_methods:
            if name not in cls.__dict__:
                setattr(cls, name, _plain_method(name))
        for name in cls._submitted_methods:
            if name not in cls.__dict__:
                setattr(cls, name, _submitted_method(name))
        for name, (target, resolve) in cls._asyncio_aliases.items():
            if name not in cls.__dict__:
                setattr(cls, name, _asyncio_alias(name, target, resolve))
        for name in cls._iter_methods:
            if name not in cls.__dict__:
                setattr(cls, name, _iter_method(name))

    def _submit(self, start: Callable[[], Any]) -> SyncFuture:
        loop = self._loop

        def begin() -> SyncFuture:
            afut = start()
            fut = SyncFuture(loop, afut, lambda value: _wrap(loop, value))
            afut.add_done_callback(fut._settle)
            return fut

        return loop.call(begin)  # type: ignore[no-any-return]

    @property
    def with_raw_response(self) -> Any:
        from ._base import RawView

        return RawView(self)

    def __repr__(self) -> str:
        return f"sync.{self._inner!r}"


def _future_method(name: str) -> Callable[..., SyncFuture]:
    def method(self: _SyncClient, *args: Any, **kwargs: Any) -> SyncFuture:
        bound = getattr(self._inner, name)
        return self._submit(lambda: bound(*args, **kwargs))

    method.__name__ = name
    method.__doc__ = f"Blocking-facade ``{name}``: returns a :class:`SyncFuture` (see the async client's docs)."
    return method


def _plain_method(name: str) -> Callable[..., Any]:
    def method(self: _SyncClient, *args: Any, **kwargs: Any) -> Any:
        bound = getattr(self._inner, name)
        return _wrap(self._loop, self._loop.call(lambda: bound(*args, **kwargs)))

    method.__name__ = name
    return method


def _submitted_method(name: str) -> Callable[..., SyncFuture]:
    def method(self: _SyncClient, *args: Any, **kwargs: Any) -> SyncFuture:
        loop = self._loop
        bound = getattr(self._inner, name)

        async def submit() -> SyncFuture:
            afut = await bound(*args, **kwargs)
            fut = SyncFuture(loop, afut, lambda value: _wrap(loop, value))
            afut.add_done_callback(fut._settle)
            return fut

        return loop.run(submit)  # type: ignore[no-any-return]

    method.__name__ = name
    method.__doc__ = (
        f"Blocking-facade ``{name}``: blocks until the server accepted the request, then returns a "
        ":class:`SyncFuture` whose ``request_id`` is set (its result is not awaited)."
    )
    return method


def _asyncio_alias(name: str, target: str, resolve: bool) -> Callable[..., Any]:
    async def method(self: _SyncClient, *args: Any, **kwargs: Any) -> Any:
        fut = getattr(self, target)(*args, **kwargs)
        if not resolve:
            return fut
        import asyncio

        return await asyncio.wrap_future(fut)

    method.__name__ = name
    what = "its result" if resolve else "the :class:`SyncFuture`"
    method.__doc__ = f"SDK-compatible ``{name}`` for asyncio code: ``await`` it for {what} of ``{target}``."
    return method


def _iter_method(name: str) -> Callable[..., Any]:
    def method(self: _SyncClient, *args: Any, **kwargs: Any) -> Any:
        loop = self._loop
        agen = loop.call(lambda: getattr(self._inner, name)(*args, **kwargs))

        async def step() -> Any:
            return await agen.__anext__()

        async def close() -> None:
            await agen.aclose()

        try:
            while True:
                try:
                    yield loop.run(step)
                except StopAsyncIteration:
                    return
        finally:
            if not loop.closed:
                loop.run(close)

    method.__name__ = name
    method.__doc__ = f"Blocking-facade ``{name}``: a generator over the same items, page by page."
    return method


class _SyncTelemetry:
    """The runtime's telemetry batcher, driven from the caller's thread."""

    def __init__(self, loop: _LoopThread, batcher: Any) -> None:
        self._loop = loop
        self._batcher = batcher

    @property
    def enabled(self) -> bool:
        return bool(self._batcher.enabled)

    def log_event(self, name: str, data: dict[str, Any] | None = None, *, severity: str = "INFO") -> bool:
        return bool(self._loop.call(lambda: self._batcher.log_event(name, data, severity=severity)))

    def log_exception(self, exc: BaseException, *, severity: str = "ERROR") -> bool:
        return bool(self._loop.call(lambda: self._batcher.log_exception(exc, severity=severity)))

    def statistics(self) -> Any:
        return self._loop.call(self._batcher.statistics)

    def flush(self) -> None:
        self._loop.run(self._batcher.flush)


def _wrap(loop: _LoopThread, value: Any) -> Any:
    """Async clients in results become their blocking wrappers."""
    from .rest import RestClient as AsyncRest
    from .sampling import SamplingClient as AsyncSampling
    from .training import TrainingClient as AsyncTraining

    if isinstance(value, AsyncTraining):
        return TrainingClient(loop, value)
    if isinstance(value, AsyncSampling):
        return SamplingClient(loop, value)
    if isinstance(value, AsyncRest):
        return RestClient(loop, value)
    return value


class TrainingClient(_SyncClient):
    _future_methods = (
        "forward", "forward_backward", "forward_backward_custom", "optim_step", "save_state", "load_state",
        "load_state_with_optimizer", "save_weights_for_sampler", "save_weights_and_get_sampling_client",
        "create_sampling_client", "get_info", "save_weights_external", "save_weights_typed", "load_weights_typed",
        "save_weights_for_sampler_typed",
    )
    _plain_methods = ("get_tokenizer",)
    _submitted_methods = ("forward_future", "forward_backward_future", "optim_step_future")
    _asyncio_aliases = {
        "forward_async": ("forward", False),
        "forward_backward_async": ("forward_backward", False),
        "optim_step_async": ("optim_step", False),
    }

    @property
    def model_id(self) -> str:
        return str(self._inner.model_id)


class SamplingClient(_SyncClient):
    _future_methods = ("sample", "compute_logprobs")
    _plain_methods = ("get_tokenizer", "get_base_model", "get_sampler_handle")
    _asyncio_aliases = {"sample_async": ("sample", True), "compute_logprobs_async": ("compute_logprobs", True)}

    @property
    def sampling_session_id(self) -> str:
        return str(self._inner.sampling_session_id)

    @staticmethod
    def from_sampler_handle(handle: str, service_client: ServiceClient | None = None) -> SamplingClient:
        """A blocking client for the sampler behind ``handle``.

        Without ``service_client``, this process's implicit ServiceClient for
        the handle's base URL is used (opened on first need from the
        environment's ``TINKER_API_KEY``; closed at interpreter exit).
        """
        import base64
        import json

        from .sampling import SamplingClient as AsyncSampling

        if service_client is None:
            base_url = json.loads(base64.urlsafe_b64decode(handle.encode())).get("base_url")
            service_client = _implicit_service(base_url)
        loop = service_client._loop
        inner = loop.call(lambda: AsyncSampling.from_sampler_handle(handle, service_client._inner))
        return SamplingClient(loop, inner)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (SamplingClient.from_sampler_handle, (self._inner.get_sampler_handle(),))


class RestClient(_SyncClient):
    _future_methods = (
        "get_training_run", "get_training_run_by_tinker_path", "list_training_runs", "get_weights_info_by_tinker_path",
        "list_checkpoints", "list_user_checkpoints", "delete_checkpoint", "delete_checkpoint_from_tinker_path",
        "publish_checkpoint_from_tinker_path", "unpublish_checkpoint_from_tinker_path",
        "set_checkpoint_ttl_from_tinker_path", "get_checkpoint_archive_url",
        "get_checkpoint_archive_url_from_tinker_path", "get_external_weights_urls", "get_session", "list_sessions",
        "get_sampler", "assign_session_project", "get_server_capabilities", "search_sessions",
        "export_session_trace", "whoami", "copy_weights", "get_audit_log", "get_billing_usage",
        "get_current_checkpoint_storage_usage",
    )
    _iter_methods = ("iter_training_runs", "iter_user_checkpoints", "iter_sessions")


class ServiceClient(_SyncClient):
    """Blocking ServiceClient: opens the runtime on its own loop thread (see module docstring).

    Arguments are those of :func:`tinker_actors.clients.open_service_client`.
    """

    _future_methods = (
        "get_server_capabilities", "health_check", "get_info", "unload_model", "create_lora_training_client",
        "create_training_client_from_state", "create_training_client_from_state_with_optimizer",
        "create_sampling_client", "create_custom_loss", "retrieve_future", "copy_weights",
    )
    _plain_methods = ("create_rest_client",)

    def get_telemetry(self) -> _SyncTelemetry | None:
        """The runtime's telemetry batcher, usable from this thread; None when telemetry is off."""
        batcher = self._loop.call(self._inner.get_telemetry)
        return None if batcher is None else _SyncTelemetry(self._loop, batcher)

    def __init__(self, base_url: str | None = None, api_key: str | None = None, **kwargs: Any) -> None:
        from .service import open_service_client

        loop = _LoopThread(lambda: open_service_client(base_url, api_key, **kwargs))
        super().__init__(loop, loop.client)

    @property
    def session_id(self) -> str:
        return str(self._inner.session_id)

    def statistics(self) -> Any:
        """The runtime's statistics (pools, poller, admission, heartbeat health)."""
        return self._loop.call(self._inner.service.statistics)

    def close(self) -> None:
        """End the session and stop the loop thread (idempotent)."""
        self._loop.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_IMPLICIT: dict[str | None, ServiceClient] = {}
_IMPLICIT_LOCK = threading.Lock()


def _implicit_service(base_url: str | None) -> ServiceClient:
    with _IMPLICIT_LOCK:
        client = _IMPLICIT.get(base_url)
        if client is None or client._loop.closed:
            client = _IMPLICIT[base_url] = ServiceClient(base_url=base_url)
            atexit.register(client.close)
        return client
