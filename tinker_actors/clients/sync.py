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

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import trio

from .futures import APIFuture, FutureState

if TYPE_CHECKING:
    from ..transport.options import SignedURL
    from ..wire import types as wt
    from .service import LossHandle

T = TypeVar("T")
AccessScope = Literal["owned", "accessible"]

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


class SyncFuture(concurrent.futures.Future, Generic[T]):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` mirroring an :class:`APIFuture` on the loop thread.

    ``SyncFuture[X]``: ``.result()`` returns an ``X``.
    """

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
    """Base of the blocking wrappers: every method runs its trio counterpart on the loop thread.

    The methods are written out (not generated) so ``help()`` and IDEs show their
    real signatures; each takes the trio method's per-call options too
    (``timeout``, ``max_retries``, ``idempotency_key``, ``extra_headers``,
    ``extra_query``, ``extra_body``, ``raw_response``).
    """

    def __init__(self, loop: _LoopThread, inner: Any) -> None:
        self._loop = loop
        self._inner = inner

    def _submit(self, start: Callable[[], Any]) -> Any:
        """A SyncFuture of the trio future ``start()`` returns (``start`` runs on the loop)."""
        loop = self._loop

        def begin() -> SyncFuture[Any]:
            afut = start()
            fut: SyncFuture[Any] = SyncFuture(loop, afut, lambda value: _wrap(loop, value))
            afut.add_done_callback(fut._settle)
            return fut

        return loop.call(begin)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the loop thread, its result wrapped."""
        return _wrap(self._loop, self._loop.call(fn))

    def _submitted(self, start: Callable[[], Any]) -> Any:
        """For tinkex ``*_future``: wait until the server accepted, then a SyncFuture with ``request_id`` set."""
        loop = self._loop

        async def submit() -> SyncFuture[Any]:
            afut = await start()
            fut: SyncFuture[Any] = SyncFuture(loop, afut, lambda value: _wrap(loop, value))
            afut.add_done_callback(fut._settle)
            return fut

        return loop.run(submit)

    def _iterate(self, start: Callable[[], Any]) -> Iterator[Any]:
        """A generator over a trio async iterator, one item at a time through the loop."""
        loop = self._loop
        agen = loop.call(start)

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

    @property
    def with_raw_response(self) -> Any:
        from ._base import RawView

        return RawView(self)

    def __repr__(self) -> str:
        return f"sync.{self._inner!r}"


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
    """Blocking TrainingClient: see :class:`tinker_actors.clients.TrainingClient` for each method."""

    @property
    def model_id(self) -> str:
        return str(self._inner.model_id)

    def forward(
        self, data: Sequence[wt.Datum], loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None, *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.ForwardBackwardOutput]:
        """Forward pass only: per-datum outputs (``logprobs``...) and the loss metrics, no gradients."""
        return self._submit(
            lambda: self._inner.forward(data, loss_fn, loss_fn_config, raw_response=raw_response, **options)
        )

    def forward_backward(
        self, data: Sequence[wt.Datum], loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None, *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.ForwardBackwardOutput]:
        """Forward and backward: gradients accumulate on the server until :meth:`optim_step`."""
        return self._submit(
            lambda: self._inner.forward_backward(
                data, loss_fn, loss_fn_config, raw_response=raw_response, **options
            )
        )

    def forward_backward_custom(
        self, data: Sequence[wt.Datum], loss_fn: Any, **options: Any
    ) -> SyncFuture[wt.ForwardBackwardOutput]:
        """forward_backward with a loss computed here, over per-token logprobs."""
        return self._submit(lambda: self._inner.forward_backward_custom(data, loss_fn, **options))

    def optim_step(
        self, optim_params: Any = None, *, adam_params: wt.AdamParams | None = None,
        raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.OptimStepResponse]:
        """Apply the accumulated gradients (AdamParams, or DimuonParams for a dimuon model)."""
        return self._submit(
            lambda: self._inner.optim_step(
                optim_params, adam_params=adam_params, raw_response=raw_response, **options
            )
        )

    def save_state(
        self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
        user_metadata: Mapping[str, str] | None = None, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<run>/weights/<name>``."""
        return self._submit(
            lambda: self._inner.save_state(
                name, ttl_seconds, overwrite, user_metadata, raw_response=raw_response, **options
            )
        )

    def load_state(
        self, path: str, weights_access_token: str | None = None, *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.LoadWeightsResponse]:
        """Load a checkpoint's weights into this model (optimizer state is not restored)."""
        return self._submit(
            lambda: self._inner.load_state(path, weights_access_token, raw_response=raw_response, **options)
        )

    def load_state_with_optimizer(
        self, path: str, weights_access_token: str | None = None, *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.LoadWeightsResponse]:
        """Load a checkpoint's weights and its optimizer state (Adam moments): an exact resume."""
        return self._submit(
            lambda: self._inner.load_state_with_optimizer(
                path, weights_access_token, raw_response=raw_response, **options
            )
        )

    def save_weights_for_sampler(
        self, name: str, ttl_seconds: int | None = None, user_metadata: Mapping[str, str] | None = None, *,
        raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.SaveWeightsForSamplerResponse]:
        """Save sampler weights as ``tinker://<run>/sampler_weights/<name>``."""
        return self._submit(
            lambda: self._inner.save_weights_for_sampler(
                name, ttl_seconds, user_metadata, raw_response=raw_response, **options
            )
        )

    def save_weights_and_get_sampling_client(
        self, name: str | None = None, retry_config: Any = None, record_stability_info: bool = False,
        kind: str = 'snapshot', *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[SamplingClient]:
        """Snapshot the current weights into a new sampler and resolve to its SamplingClient."""
        return self._submit(
            lambda: self._inner.save_weights_and_get_sampling_client(
                name, retry_config, record_stability_info, kind, raw_response=raw_response, **options
            )
        )

    def create_sampling_client(
        self, model_path: str, retry_config: Any = None, record_stability_info: bool = False, **kwargs: Any
    ) -> SyncFuture[SamplingClient]:
        """A SamplingClient on saved sampler weights."""
        return self._submit(
            lambda: self._inner.create_sampling_client(
                model_path, retry_config, record_stability_info, **kwargs
            )
        )

    def get_info(self, *, raw_response: bool = False, **options: Any) -> SyncFuture[wt.GetInfoResponse]:
        """The model's description (cached after the first successful call)."""
        return self._submit(lambda: self._inner.get_info(raw_response=raw_response, **options))

    def save_weights_external(
        self, name: str, ttl_seconds: int | None = None, age_encryption_recipients: list[str] | None = None,
        *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.SaveWeightsExternalResponse]:
        """Export the weights in an external (Hugging Face) layout as ``tinker://<run>/external_weights/<name>``."""
        return self._submit(
            lambda: self._inner.save_weights_external(
                name, ttl_seconds, age_encryption_recipients, raw_response=raw_response, **options
            )
        )

    def save_weights_typed(
        self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
        user_metadata: Mapping[str, str] | None = None, **options: Any
    ) -> SyncFuture[wt.SaveWeightsResponse]:
        """tinkex ``save_weights_typed``: :meth:`save_state`, resolving to a ``SaveWeightsResponse``."""
        return self._submit(
            lambda: self._inner.save_weights_typed(name, ttl_seconds, overwrite, user_metadata, **options)
        )

    def load_weights_typed(
        self, path: str, optimizer: bool = False, weights_access_token: str | None = None, **options: Any
    ) -> SyncFuture[wt.LoadWeightsResponse]:
        """tinkex ``load_weights_typed``: :meth:`load_state` (``optimizer=True``: with optimizer state)."""
        return self._submit(
            lambda: self._inner.load_weights_typed(path, optimizer, weights_access_token, **options)
        )

    def save_weights_for_sampler_typed(
        self, name: str, ttl_seconds: int | None = None, user_metadata: Mapping[str, str] | None = None,
        **options: Any
    ) -> SyncFuture[wt.SaveWeightsForSamplerResponse]:
        """tinkex ``save_weights_for_sampler_typed``: :meth:`save_weights_for_sampler`, typed result."""
        return self._submit(
            lambda: self._inner.save_weights_for_sampler_typed(name, ttl_seconds, user_metadata, **options)
        )

    def get_tokenizer(self) -> Any:
        """The model's tokenizer: the byte tokenizer for local models, else Hugging Face's."""
        return self._call(lambda: self._inner.get_tokenizer())

    def forward_future(
        self, data: Sequence[wt.Datum], loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None, **options: Any
    ) -> SyncFuture[wt.ForwardBackwardOutput]:
        """tinkex ``forward_future``: returns once the server accepted the request. Blocks until the server accepted the request."""
        return self._submitted(lambda: self._inner.forward_future(data, loss_fn, loss_fn_config, **options))

    def forward_backward_future(
        self, data: Sequence[wt.Datum], loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None, **options: Any
    ) -> SyncFuture[wt.ForwardBackwardOutput]:
        """tinkex ``forward_backward_future``: as :meth:`forward_future`, with gradients. Blocks until the server accepted the request."""
        return self._submitted(
            lambda: self._inner.forward_backward_future(data, loss_fn, loss_fn_config, **options)
        )

    def optim_step_future(
        self, optim_params: Any = None, *, adam_params: wt.AdamParams | None = None, **options: Any
    ) -> SyncFuture[wt.OptimStepResponse]:
        """tinkex ``optim_step_future``: returns once the server accepted the step (``request_id`` set). Blocks until the server accepted the request."""
        return self._submitted(
            lambda: self._inner.optim_step_future(optim_params, adam_params=adam_params, **options)
        )

    async def forward_async(
        self, data: Sequence[wt.Datum], loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None, *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.ForwardBackwardOutput]:
        """SDK-compatible ``forward_async`` for asyncio code: ``await`` it for the future of :meth:`forward`."""
        return self.forward(data, loss_fn, loss_fn_config, raw_response=raw_response, **options)

    async def forward_backward_async(
        self, data: Sequence[wt.Datum], loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None, *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.ForwardBackwardOutput]:
        """SDK-compatible ``forward_backward_async`` for asyncio code: ``await`` it for the future of :meth:`forward_backward`."""
        return self.forward_backward(data, loss_fn, loss_fn_config, raw_response=raw_response, **options)

    async def optim_step_async(
        self, optim_params: Any = None, *, adam_params: wt.AdamParams | None = None,
        raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.OptimStepResponse]:
        """SDK-compatible ``optim_step_async`` for asyncio code: ``await`` it for the future of :meth:`optim_step`."""
        return self.optim_step(optim_params, adam_params=adam_params, raw_response=raw_response, **options)


class SamplingClient(_SyncClient):
    """Blocking SamplingClient: see :class:`tinker_actors.clients.SamplingClient`."""

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

    def sample(
        self, prompt: wt.ModelInput, num_samples: int, sampling_params: wt.SamplingParams,
        include_prompt_logprobs: bool = False, topk_prompt_logprobs: int = 0, topk_sample_logprobs: int = 0,
        target_prompt_logprobs: wt.TensorData | None = None, prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.SampleResponse]:
        """Generate ``num_samples`` continuations of ``prompt``."""
        return self._submit(
            lambda: self._inner.sample(
                prompt, num_samples, sampling_params, include_prompt_logprobs, topk_prompt_logprobs,
                topk_sample_logprobs, target_prompt_logprobs, prompt_alt_tokens_k, prompt_logprobs_last_n,
                raw_response=raw_response, **options
            )
        )

    def compute_logprobs(
        self, prompt: wt.ModelInput, prompt_logprobs_last_n: int | None = None, **options: Any
    ) -> SyncFuture[list[float | None]]:
        """Logprob of every prompt token given the ones before it (element 0 is None)."""
        return self._submit(lambda: self._inner.compute_logprobs(prompt, prompt_logprobs_last_n, **options))

    def get_tokenizer(self) -> Any:
        """The tokenizer of the base model (byte tokenizer for local models)."""
        return self._call(lambda: self._inner.get_tokenizer())

    def get_base_model(self) -> str | None:
        """"""
        return self._call(lambda: self._inner.get_base_model())

    def get_sampler_handle(self) -> str:
        """A credential-free string naming this sampler; any process can sample with it."""
        return self._call(lambda: self._inner.get_sampler_handle())

    async def sample_async(
        self, prompt: wt.ModelInput, num_samples: int, sampling_params: wt.SamplingParams,
        include_prompt_logprobs: bool = False, topk_prompt_logprobs: int = 0, topk_sample_logprobs: int = 0,
        target_prompt_logprobs: wt.TensorData | None = None, prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None, *, raw_response: bool = False, **options: Any
    ) -> wt.SampleResponse:
        """SDK-compatible ``sample_async`` for asyncio code: ``await`` it for the result of :meth:`sample`."""
        return await asyncio.wrap_future(self.sample(prompt, num_samples, sampling_params, include_prompt_logprobs, topk_prompt_logprobs, topk_sample_logprobs, target_prompt_logprobs, prompt_alt_tokens_k, prompt_logprobs_last_n, raw_response=raw_response, **options))

    async def compute_logprobs_async(
        self, prompt: wt.ModelInput, prompt_logprobs_last_n: int | None = None, **options: Any
    ) -> list[float | None]:
        """SDK-compatible ``compute_logprobs_async`` for asyncio code: ``await`` it for the result of :meth:`compute_logprobs`."""
        return await asyncio.wrap_future(self.compute_logprobs(prompt, prompt_logprobs_last_n, **options))


class RestClient(_SyncClient):
    """Blocking RestClient: see :class:`tinker_actors.clients.RestClient`."""

    def get_training_run(
        self, training_run_id: str, access_scope: AccessScope = 'owned', *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.TrainingRun]:
        """One training run (``corrupted`` tells a poisoned run apart)."""
        return self._submit(
            lambda: self._inner.get_training_run(
                training_run_id, access_scope, raw_response=raw_response, **options
            )
        )

    def get_training_run_by_tinker_path(
        self, tinker_path: str, access_scope: AccessScope = 'owned', *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.TrainingRun]:
        """The training run a checkpoint path belongs to."""
        return self._submit(
            lambda: self._inner.get_training_run_by_tinker_path(
                tinker_path, access_scope, raw_response=raw_response, **options
            )
        )

    def list_training_runs(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = 'owned',
        project_id: str | None = None, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.TrainingRunsResponse]:
        """A page of training runs; ``response.cursor`` says where the next page starts."""
        return self._submit(
            lambda: self._inner.list_training_runs(
                limit, offset, access_scope, project_id, raw_response=raw_response, **options
            )
        )

    def get_weights_info_by_tinker_path(
        self, tinker_path: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.WeightsInfoResponse]:
        """Base model, LoRA rank and trained parts of a checkpoint."""
        return self._submit(
            lambda: self._inner.get_weights_info_by_tinker_path(
                tinker_path, raw_response=raw_response, **options
            )
        )

    def list_checkpoints(
        self, training_run_id: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.CheckpointsListResponse]:
        """A training run's checkpoints."""
        return self._submit(
            lambda: self._inner.list_checkpoints(training_run_id, raw_response=raw_response, **options)
        )

    def list_user_checkpoints(
        self, limit: int = 100, offset: int = 0, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.CheckpointsListResponse]:
        """A page of all your checkpoints, newest first."""
        return self._submit(
            lambda: self._inner.list_user_checkpoints(limit, offset, raw_response=raw_response, **options)
        )

    def delete_checkpoint(
        self, training_run_id: str, checkpoint_id: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[None]:
        """Delete one checkpoint (``checkpoint_id`` is ``weights/<name>`` or ``sampler_weights/<name>``)."""
        return self._submit(
            lambda: self._inner.delete_checkpoint(
                training_run_id, checkpoint_id, raw_response=raw_response, **options
            )
        )

    def delete_checkpoint_from_tinker_path(
        self, tinker_path: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[None]:
        """"""
        return self._submit(
            lambda: self._inner.delete_checkpoint_from_tinker_path(
                tinker_path, raw_response=raw_response, **options
            )
        )

    def publish_checkpoint_from_tinker_path(
        self, tinker_path: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[None]:
        """Make a checkpoint readable by others."""
        return self._submit(
            lambda: self._inner.publish_checkpoint_from_tinker_path(
                tinker_path, raw_response=raw_response, **options
            )
        )

    def unpublish_checkpoint_from_tinker_path(
        self, tinker_path: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[None]:
        """"""
        return self._submit(
            lambda: self._inner.unpublish_checkpoint_from_tinker_path(
                tinker_path, raw_response=raw_response, **options
            )
        )

    def set_checkpoint_ttl_from_tinker_path(
        self, tinker_path: str, ttl_seconds: int | None, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[None]:
        """Expire a checkpoint ``ttl_seconds`` from now (None: never)."""
        return self._submit(
            lambda: self._inner.set_checkpoint_ttl_from_tinker_path(
                tinker_path, ttl_seconds, raw_response=raw_response, **options
            )
        )

    def get_checkpoint_archive_url(
        self, training_run_id: str, checkpoint_id: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[SignedURL]:
        """A signed URL to download the checkpoint as a tar, with ``expires_at``."""
        return self._submit(
            lambda: self._inner.get_checkpoint_archive_url(
                training_run_id, checkpoint_id, raw_response=raw_response, **options
            )
        )

    def get_checkpoint_archive_url_from_tinker_path(
        self, tinker_path: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[SignedURL]:
        """"""
        return self._submit(
            lambda: self._inner.get_checkpoint_archive_url_from_tinker_path(
                tinker_path, raw_response=raw_response, **options
            )
        )

    def get_external_weights_urls(
        self, tinker_path: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.ExternalWeightsUrlsResponse]:
        """"""
        return self._submit(
            lambda: self._inner.get_external_weights_urls(tinker_path, raw_response=raw_response, **options)
        )

    def get_session(
        self, session_id: str, access_scope: AccessScope = 'owned', *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.GetSessionResponse]:
        """The training runs and samplers a session created."""
        return self._submit(
            lambda: self._inner.get_session(session_id, access_scope, raw_response=raw_response, **options)
        )

    def list_sessions(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = 'owned', *,
        raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.ListSessionsResponse]:
        """"""
        return self._submit(
            lambda: self._inner.list_sessions(
                limit, offset, access_scope, raw_response=raw_response, **options
            )
        )

    def get_sampler(
        self, sampler_id: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.GetSamplerResponse]:
        """A sampler's base model and weights path."""
        return self._submit(lambda: self._inner.get_sampler(sampler_id, raw_response=raw_response, **options))

    def assign_session_project(
        self, session_id: str, project_id: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[None]:
        """"""
        return self._submit(
            lambda: self._inner.assign_session_project(
                session_id, project_id, raw_response=raw_response, **options
            )
        )

    def get_server_capabilities(
        self, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.GetServerCapabilitiesResponse]:
        """"""
        return self._submit(lambda: self._inner.get_server_capabilities(raw_response=raw_response, **options))

    def search_sessions(
        self, request: wt.SessionSearchRequest | None = None, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.SessionSearchResponse]:
        """One page of your organisation's sessions, newest first (experimental in the SDK)."""
        return self._submit(
            lambda: self._inner.search_sessions(request, raw_response=raw_response, **options)
        )

    def export_session_trace(
        self, session_id: str, *, poll_interval: float = 5.0, raw_response: bool = False, **options: Any
    ) -> SyncFuture[str]:
        """A signed URL of the session's Perfetto trace (``.pftrace``), once the server built it."""
        return self._submit(
            lambda: self._inner.export_session_trace(
                session_id, poll_interval=poll_interval, raw_response=raw_response, **options
            )
        )

    def whoami(self) -> SyncFuture[wt.WhoamiResponse]:
        """Who the credential is: user URN, organisation URN, email (if user-backed)."""
        return self._submit(lambda: self._inner.whoami())

    def copy_weights(
        self, path: str, destination_project_id: str | None = None, *, ttl_seconds: int | None = None,
        weights_access_token: str | None = None, raw_response: bool = False, **options: Any
    ) -> SyncFuture[str]:
        """Copy a checkpoint into ``destination_project_id`` (default: TINKER_PROJECT_ID); the copy's path."""
        return self._submit(
            lambda: self._inner.copy_weights(
                path, destination_project_id, ttl_seconds=ttl_seconds,
                weights_access_token=weights_access_token, raw_response=raw_response, **options
            )
        )

    def get_audit_log(
        self, event_type: Literal['all', 'checkpoints', 'projects', 'teams', 'organizations'] = 'all',
        day: date | None = None, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.AuditLogResponse]:
        """Audit events of one UTC ``day`` (today by default) of ``event_type``."""
        return self._submit(
            lambda: self._inner.get_audit_log(event_type, day, raw_response=raw_response, **options)
        )

    def get_billing_usage(
        self, starting_on: datetime | str, ending_before: datetime | str, *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[wt.BillingUsageResponse]:
        """Hourly usage buckets from ``starting_on`` to ``ending_before`` (datetimes or RFC 3339 strings)."""
        return self._submit(
            lambda: self._inner.get_billing_usage(
                starting_on, ending_before, raw_response=raw_response, **options
            )
        )

    def get_current_checkpoint_storage_usage(
        self, project_id: str | None = None, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.CurrentCheckpointStorageUsageResponse]:
        """Checkpoint storage in use now, per project (one project with ``project_id``)."""
        return self._submit(
            lambda: self._inner.get_current_checkpoint_storage_usage(
                project_id, raw_response=raw_response, **options
            )
        )

    def iter_training_runs(
        self, page_size: int = 20, access_scope: AccessScope = 'owned', **options: Any
    ) -> Iterator[wt.TrainingRun]:
        """Every training run, page by page, following the cursor. (a generator, page by page)"""
        yield from self._iterate(lambda: self._inner.iter_training_runs(page_size, access_scope, **options))

    def iter_user_checkpoints(self, page_size: int = 100, **options: Any) -> Iterator[wt.Checkpoint]:
        """Every checkpoint you own, following the cursor. (a generator, page by page)"""
        yield from self._iterate(lambda: self._inner.iter_user_checkpoints(page_size, **options))

    def iter_sessions(
        self, request: wt.SessionSearchRequest | None = None, **options: Any
    ) -> Iterator[wt.SessionSummary]:
        """Every session :meth:`search_sessions` finds, following ``next_cursor``. (a generator, page by page)"""
        yield from self._iterate(lambda: self._inner.iter_sessions(request, **options))


class ServiceClient(_SyncClient):
    """Blocking ServiceClient: opens the runtime on its own loop thread (see module docstring).

    Arguments are those of :func:`tinker_actors.clients.open_service_client`.
    """

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

    def get_server_capabilities(
        self, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.GetServerCapabilitiesResponse]:
        """The models the server can train and sample."""
        return self._submit(lambda: self._inner.get_server_capabilities(raw_response=raw_response, **options))

    def health_check(self, *, raw_response: bool = False, **options: Any) -> SyncFuture[wt.HealthResponse]:
        """``GET /api/v1/healthz``: resolves to ``HealthResponse(status="ok")`` when the server is up."""
        return self._submit(lambda: self._inner.health_check(raw_response=raw_response, **options))

    def get_info(
        self, model_id: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.GetInfoResponse]:
        """Describe a training model (base model, LoRA rank, tokenizer id)."""
        return self._submit(lambda: self._inner.get_info(model_id, raw_response=raw_response, **options))

    def unload_model(
        self, model_id: str, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[wt.UnloadModelResponse]:
        """Unload a training model and free its server resources."""
        return self._submit(lambda: self._inner.unload_model(model_id, raw_response=raw_response, **options))

    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None, train_mlp: bool = True,
        train_attn: bool = True, train_unembed: bool = True, user_metadata: Mapping[str, str] | None = None,
        optimizer: Any = None, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[TrainingClient]:
        """Create a LoRA model on ``base_model``; resolves to a :class:`TrainingClient`."""
        return self._submit(
            lambda: self._inner.create_lora_training_client(
                base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata, optimizer,
                raw_response=raw_response, **options
            )
        )

    def create_training_client_from_state(
        self, path: str, base_model: str | None = None, user_metadata: Mapping[str, str] | None = None,
        weights_access_token: str | None = None, optimizer: Any = None, *, raw_response: bool = False,
        **options: Any
    ) -> SyncFuture[TrainingClient]:
        """A new TrainingClient with the checkpoint's weights (optimizer state starts fresh)."""
        return self._submit(
            lambda: self._inner.create_training_client_from_state(
                path, base_model, user_metadata, weights_access_token, optimizer, raw_response=raw_response,
                **options
            )
        )

    def create_training_client_from_state_with_optimizer(
        self, path: str, base_model: str | None = None, user_metadata: Mapping[str, str] | None = None,
        weights_access_token: str | None = None, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[TrainingClient]:
        """A new TrainingClient with the checkpoint's weights *and* optimizer state (exact resume)."""
        return self._submit(
            lambda: self._inner.create_training_client_from_state_with_optimizer(
                path, base_model, user_metadata, weights_access_token, raw_response=raw_response, **options
            )
        )

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None, retry_config: Any = None,
        record_stability_info: bool = False, *, raw_response: bool = False, **options: Any
    ) -> SyncFuture[SamplingClient]:
        """A SamplingClient on a base model or on saved sampler weights (``tinker://...``)."""
        return self._submit(
            lambda: self._inner.create_sampling_client(
                model_path, base_model, retry_config, record_stability_info, raw_response=raw_response,
                **options
            )
        )

    def create_custom_loss(
        self, fn: Callable[..., Any], input_ranks: Mapping[str, int]
    ) -> SyncFuture[LossHandle]:
        """A :class:`LossHandle` for ``forward_backward_custom`` (runs client-side, on numpy)."""
        return self._submit(lambda: self._inner.create_custom_loss(fn, input_ranks))

    def retrieve_future(
        self, request_id: str, result_type: Any = None, *, request_type: str | None = None,
        sampling_session_id: str | None = None
    ) -> SyncFuture[Any]:
        """Re-attach to a server future by its id: poll it through the runtime's poller."""
        return self._submit(
            lambda: self._inner.retrieve_future(
                request_id, result_type, request_type=request_type, sampling_session_id=sampling_session_id
            )
        )

    def copy_weights(
        self, path: str, *, ttl_seconds: int | None = None, weights_access_token: str | None = None,
        raw_response: bool = False, **options: Any
    ) -> SyncFuture[str]:
        """Copy a checkpoint into this client's project; resolves to the copy's tinker path."""
        return self._submit(
            lambda: self._inner.copy_weights(
                path, ttl_seconds=ttl_seconds, weights_access_token=weights_access_token,
                raw_response=raw_response, **options
            )
        )

    def create_rest_client(self) -> RestClient:
        """A RestClient sharing this service's session and pools."""
        return self._call(lambda: self._inner.create_rest_client())


_IMPLICIT: dict[str | None, ServiceClient] = {}
_IMPLICIT_LOCK = threading.Lock()


def _implicit_service(base_url: str | None) -> ServiceClient:
    with _IMPLICIT_LOCK:
        client = _IMPLICIT.get(base_url)
        if client is None or client._loop.closed:
            client = _IMPLICIT[base_url] = ServiceClient(base_url=base_url)
            atexit.register(client.close)
        return client
