"""TrainingClient: forward/backward, optimizer steps, checkpoints of one LoRA model.

Every operation returns at once with an :class:`APIFuture`; its place in the
model's order is taken *when the method is called*, and the runtime's training
sequencer sends the POSTs strictly in that order (each getting the next
seq_id when it leaves), each as soon as the previous POST returned (not its
result). So::

    fb = training.forward_backward(batch, "cross_entropy")
    opt = training.optim_step(AdamParams(learning_rate=1e-3))
    await fb; await opt

puts both requests on the same server clock cycle (user-needs priority 5).

forward_backward larger than the server's chunk limits (1024 datums, ~5 MB)
is split into chunks with consecutive seq_ids; outputs are concatenated and
metrics combined by their ``name:reduction`` suffix (``clients.chunking``).
With the server's ``parallel_fwdbwd_chunks`` flag (the default) the chunks are
POSTed concurrently in one sequencer turn, the first chunk last (see
:func:`_post_parallel` and docs/clients.md).

Every POST is retried by the transport under its seq_id and idempotency key
for the whole retry budget. One that still fails breaks the model's order:
that operation raises its own error, and every later call of this client
fails at once with :class:`~tinker_actors.errors.TrainingOrderError` (see
``runtime.sequencer``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import numpy as np
import trio

from .._log import get_logger
from ..errors import GoneError
from ..wire import types as wt
from ._base import ClientContext, RawView, take_options
from .chunking import combine_outputs, plan_chunks
from .futures import APIFuture
from .tokenizer import load_tokenizer

__all__ = ["TrainingClient"]

log = get_logger(__name__)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


async def _resolve_ordered(ctx: ClientContext, fut: APIFuture[Any], request_id: str, result_type: Any, request_type: str) -> Any:
    """``ctx.resolve`` for a training request; a 410 says what to do about it.

    A sample may be resubmitted after a 410; a training request may not: the
    model may already have applied it, and its seq_id is spent.
    """
    try:
        return await ctx.resolve(fut, request_id, result_type, request_type)
    except GoneError as exc:
        raise GoneError(
            f"the server no longer has the result of {request_type} {request_id} (it expired before it was "
            "read). A training step cannot be resubmitted safely. Restore your last checkpoint with "
            "ServiceClient.create_training_client_from_state_with_optimizer(path) and redo the steps after it",
            status_code=410,
            endpoint=exc.endpoint,
            body=exc.body,
            request_id=request_id,
        ) from exc


def _first_error(group: BaseExceptionGroup) -> BaseException:
    errors = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
    return errors[0] if errors else group


def _training_slots(ctx: ClientContext) -> int:
    config = getattr(ctx.service, "config", None)
    pool_size = getattr(config, "pool_size", None)
    try:
        return int(pool_size("training")) if callable(pool_size) else 5
    except (TypeError, ValueError):
        return 5


async def _post_parallel(n: int, post: Callable[[int], Any], window: int) -> list[Any]:
    """POST chunks 1..n-1 concurrently, chunk 0 last; all answers, in chunk order.

    The service queues a model's requests by seq_id, so chunk 0 arriving
    last lets it take the whole batch at once (as the SDK does). A server
    may instead hold a later chunk's POST open until its predecessor
    arrives; chunk 0 therefore never waits for the others' *answers*, only
    for them to be started, and at most ``window`` later chunks go out
    before it, so they can never take every training connection from it.
    """
    answers: list[Any] = [None] * n
    ahead = trio.CapacityLimiter(window)
    first_started = trio.Event()

    async def later(i: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        if first_started.is_set():
            task_status.started()
            answers[i] = await post(i)
            return
        async with ahead:
            task_status.started()
            answers[i] = await post(i)

    async def first() -> None:
        first_started.set()
        answers[0] = await post(0)

    async with trio.open_nursery() as nursery:
        for i in range(1, min(n, window + 1)):
            await nursery.start(later, i)
        await trio.lowlevel.checkpoint()  # let the started POSTs reach the pool first
        nursery.start_soon(first)
        for i in range(window + 1, n):
            nursery.start_soon(later, i)
    return answers


class TrainingClient:
    """One model's training operations (see module docstring)."""

    def __init__(
        self,
        ctx: ClientContext,
        model_id: str,
        *,
        base_model: str | None = None,
        first_seq_id: int = 1,
    ) -> None:
        self._ctx = ctx
        self.model_id = model_id
        self.base_model = base_model
        self._sequencer = ctx.sequencer(model_id, first_seq_id=first_seq_id)
        self._info: wt.GetInfoResponse | None = None

    def __repr__(self) -> str:
        return f"TrainingClient(model_id={self.model_id!r}, base_model={self.base_model!r})"

    @property
    def with_raw_response(self) -> RawView:
        return RawView(self)

    # -- the ordered submit -----------------------------------------------------------------

    def _reserve(self, count: int = 1) -> list[int]:
        """Tickets in the model's order; TrainingOrderError at once when an earlier request broke it."""
        return self._sequencer.reserve(count)

    def _ordered(
        self,
        name: str,
        request_type: str,
        result_type: Any,
        build: Callable[[int], Any],
        send: Callable[[Any, bool], Any],
        raw_response: bool,
        on_submitted: Callable[[], None] | None = None,
    ) -> APIFuture[Any]:
        """One non-chunked ordered operation: take a ticket now, POST in turn (seq_id given then), poll."""
        ticket = self._reserve(1)[0]
        ctx = self._ctx

        async def run(fut: APIFuture[Any]) -> Any:
            answer = await self._sequencer.submit(ticket, build, lambda request: send(request, raw_response), operation=name)
            if not raw_response:
                fut.set_request_id(answer.request_id)
            if on_submitted is not None:
                on_submitted()
            if raw_response:
                return answer
            return await _resolve_ordered(ctx, fut, answer.request_id, result_type, request_type)

        try:
            return ctx.start(name, run)
        except BaseException:
            self._sequencer.abandon(ticket)
            raise

    # -- forward / backward -------------------------------------------------------------------

    def _fwdbwd(
        self,
        name: str,
        data: Sequence[wt.Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None,
        *,
        forward_only: bool,
        raw_response: bool,
        options: Mapping[str, Any],
        tickets: list[int] | None = None,
        chunks: list[list[wt.Datum]] | None = None,
        on_submitted: Callable[[], None] | None = None,
    ) -> APIFuture[Any]:
        opts = take_options(name, options)
        if loss_fn not in wt.LOSS_FN_TYPES:
            raise ValueError(f"unknown loss_fn {loss_fn!r}; expected one of {', '.join(wt.LOSS_FN_TYPES)}")
        flags = self._ctx.flags
        if chunks is None:
            chunks = plan_chunks(
                list(data), max_len=flags.fwdbwd_max_chunk_len, max_bytes=flags.fwdbwd_max_chunk_bytes_count
            )
        if tickets is None:
            tickets = self._reserve(len(chunks))
        ctx = self._ctx
        config = dict(loss_fn_config) if loss_fn_config else None
        training = ctx.api.training

        def build(seq_id: int, chunk: list[wt.Datum]) -> Any:
            inner = wt.ForwardBackwardInput(data=chunk, loss_fn=loss_fn, loss_fn_config=config)  # type: ignore[arg-type]
            if forward_only:
                return wt.ForwardRequest(forward_input=inner, model_id=self.model_id, seq_id=seq_id)
            return wt.ForwardBackwardRequest(forward_backward_input=inner, model_id=self.model_id, seq_id=seq_id)

        def post(request: Any) -> Any:
            resource = training.with_raw_response if raw_response else training
            method = resource.forward if forward_only else resource.forward_backward
            return method(request, **opts)

        parallel = flags.parallel_fwdbwd_chunks and len(chunks) > 1
        # How many later chunks may be on the wire before the first one: one
        # training connection is always left for chunk 0 (see _post_parallel).
        window = max(1, _training_slots(ctx) - 1)

        async def submit_all() -> list[Any]:
            if not parallel:
                answers: list[Any] = [None] * len(chunks)

                async def serial(i: int) -> None:
                    answers[i] = await self._sequencer.submit(
                        tickets[i], lambda seq_id: build(seq_id, chunks[i]), post, operation=name
                    )

                async with trio.open_nursery() as nursery:
                    for i in range(len(chunks)):
                        nursery.start_soon(serial, i)
                return answers

            async def group(requests: list[Any]) -> list[Any]:
                return await _post_parallel(len(requests), lambda i: post(requests[i]), window)

            # The whole group goes out in the first ticket's turn, with consecutive
            # seq_ids; the other tickets are used up, so the next operation may follow.
            for ticket in tickets[1:]:
                self._sequencer.abandon(ticket)
            return await self._sequencer.submit(  # type: ignore[no-any-return]
                tickets[0], lambda seq_id: [build(seq_id + i, c) for i, c in enumerate(chunks)], group,
                ids=len(chunks), operation=name,
            )

        async def run(fut: APIFuture[Any]) -> Any:
            request_type = "Forward" if forward_only else "ForwardBackward"
            try:
                answers = await submit_all()
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
            if not raw_response:
                fut.set_request_id(answers[0].request_id)
            if on_submitted is not None:
                on_submitted()
            if raw_response:
                return answers[0] if len(answers) == 1 else answers
            results: list[Any] = [None] * len(chunks)

            async def resolve(i: int) -> None:
                target = fut if i == 0 else APIFuture(name=f"{name}[{i}]")
                results[i] = await _resolve_ordered(ctx, target, answers[i].request_id,
                                                    wt.ForwardBackwardOutput, request_type)

            try:
                async with trio.open_nursery() as nursery:
                    for i in range(len(chunks)):
                        nursery.start_soon(resolve, i)
            except BaseExceptionGroup as group:
                # The caller awaits one operation: it gets the failing chunk's
                # typed error (the first, if several failed), never a group.
                raise _first_error(group) from None
            return combine_outputs(results)

        try:
            return ctx.start(name, run)
        except BaseException:
            for ticket in tickets:
                self._sequencer.abandon(ticket)
            raise

    def forward(
        self,
        data: Sequence[wt.Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[wt.ForwardBackwardOutput]:
        """Forward pass only: per-datum outputs (``logprobs``...) and the loss metrics, no gradients."""
        return self._fwdbwd("forward", data, loss_fn, loss_fn_config, forward_only=True,
                            raw_response=raw_response, options=options)

    def forward_backward(
        self,
        data: Sequence[wt.Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[wt.ForwardBackwardOutput]:
        """Forward and backward: gradients accumulate on the server until :meth:`optim_step`."""
        return self._fwdbwd("forward_backward", data, loss_fn, loss_fn_config, forward_only=False,
                            raw_response=raw_response, options=options)

    def forward_backward_custom(
        self, data: Sequence[wt.Datum], loss_fn: Any, **options: Any
    ) -> APIFuture[wt.ForwardBackwardOutput]:
        """forward_backward with a loss computed here, over per-token logprobs.

        ``loss_fn(data, logprobs_list)`` gets the datums and one float array of
        target logprobs per datum and returns either
        ``(loss, grads, metrics)`` with numpy ``grads`` (d loss / d logprobs, one
        array per datum), or, when torch is installed, ``(loss, metrics)`` with a
        torch ``loss`` that autograd differentiates (the SDK's convention). A
        :class:`LossHandle` from ``ServiceClient.create_custom_loss`` works too.

        It costs two passes: a forward-only pass for the logprobs, then a
        cross_entropy backward with ``weights = -grads`` (which has the same
        gradient as the custom loss). Both passes' seq_ids are reserved now, so
        later operations stay in order. The result's ``loss:sum`` is the custom
        loss; the surrogate's is kept as ``surrogate_loss:sum``.
        """
        opts = take_options("forward_backward_custom", options)
        data = list(data)
        flags = self._ctx.flags
        chunks = plan_chunks(data, max_len=flags.fwdbwd_max_chunk_len, max_bytes=flags.fwdbwd_max_chunk_bytes_count)
        fwd_ids = self._reserve(len(chunks))
        bwd_ids = self._reserve(len(chunks))
        forward_data = [_forward_datum(d) for d in data]
        fwd_chunks = _same_cuts(forward_data, chunks)
        forward = self._fwdbwd("forward_backward_custom.forward", forward_data, "cross_entropy", None,
                               forward_only=True, raw_response=False, options=opts,
                               tickets=fwd_ids, chunks=fwd_chunks)
        ctx = self._ctx

        async def run(fut: APIFuture[Any]) -> Any:
            try:
                fwd = await forward
                logprobs = [np.asarray(out["logprobs"].to_numpy(), dtype=np.float64) for out in fwd.loss_fn_outputs]
                loss_sum, grads, metrics = _run_custom_loss(loss_fn, data, logprobs)
            except BaseException:
                for ticket in bwd_ids:
                    self._sequencer.abandon(ticket)
                raise
            backward_data = [
                wt.Datum(
                    model_input=d.model_input,
                    loss_fn_inputs={
                        "target_tokens": d.loss_fn_inputs["target_tokens"],
                        "weights": wt.TensorData.from_numpy(
                            (-np.asarray(g, dtype=np.float32)).reshape(d.loss_fn_inputs["target_tokens"].to_numpy().shape)
                        ),
                    },
                    model_input_spans=d.model_input_spans,
                    loss_fn_input_spans=d.loss_fn_input_spans,
                )
                for d, g in zip(data, grads, strict=True)
            ]
            backward = self._fwdbwd("forward_backward_custom.backward", backward_data, "cross_entropy", None,
                                    forward_only=False, raw_response=False, options=opts,
                                    tickets=bwd_ids, chunks=_same_cuts(backward_data, chunks))
            result = await backward
            fut.set_request_id(backward.request_id)
            new_metrics = dict(result.metrics)
            surrogate = new_metrics.pop("loss:sum", None)
            new_metrics.update(metrics)
            new_metrics["loss:sum"] = float(loss_sum)
            if surrogate is not None:
                new_metrics["surrogate_loss:sum"] = float(surrogate)
            return msgspec.structs.replace(result, metrics=new_metrics)

        return ctx.start("forward_backward_custom", run)

    # -- optimizer ----------------------------------------------------------------------------

    def optim_step(
        self,
        optim_params: Any = None,
        *,
        adam_params: wt.AdamParams | None = None,
        raw_response: bool = False,
        _on_submitted: Callable[[], None] | None = None,
        **options: Any,
    ) -> APIFuture[wt.OptimStepResponse]:
        """Apply the accumulated gradients (AdamParams, or DimuonParams for a dimuon model)."""
        if optim_params is not None and adam_params is not None:
            raise ValueError("pass optim_params or adam_params, not both")
        params = optim_params if optim_params is not None else (adam_params or wt.AdamParams())
        opts = take_options("optim_step", options)
        training = self._ctx.api.training

        def build(seq_id: int) -> Any:
            if isinstance(params, wt.DimuonParams):
                return wt.OptimStepRequest(optimizer_params=params, model_id=self.model_id, seq_id=seq_id)
            return wt.OptimStepRequest(adam_params=params, model_id=self.model_id, seq_id=seq_id)

        return self._ordered(
            "optim_step", "OptimStep", wt.OptimStepResponse, build,
            lambda req, raw: (training.with_raw_response if raw else training).optim_step(req, **opts),
            raw_response, _on_submitted,
        )

    # -- checkpoints --------------------------------------------------------------------------

    def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: Mapping[str, str] | None = None,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[wt.SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<run>/weights/<name>``."""
        opts = take_options("save_state", options)
        weights = self._ctx.api.weights
        return self._ordered(
            "save_state", "SaveWeights", wt.SaveWeightsResponse,
            lambda seq_id: wt.SaveWeightsRequest(
                model_id=self.model_id, path=name, seq_id=seq_id, ttl_seconds=ttl_seconds,
                overwrite=overwrite, user_metadata=dict(user_metadata) if user_metadata else None,
            ),
            lambda req, raw: (weights.with_raw_response if raw else weights).save(req, **opts),
            raw_response,
        )

    def _load(self, name: str, path: str, optimizer: bool, weights_access_token: str | None,
              raw_response: bool, options: Mapping[str, Any]) -> APIFuture[wt.LoadWeightsResponse]:
        opts = take_options(name, options)
        weights = self._ctx.api.weights
        return self._ordered(
            name, "LoadWeights", wt.LoadWeightsResponse,
            lambda seq_id: wt.LoadWeightsRequest(
                model_id=self.model_id, seq_id=seq_id, path=path, optimizer=optimizer,
                weights_access_token=weights_access_token,
            ),
            lambda req, raw: (weights.with_raw_response if raw else weights).load(req, **opts),
            raw_response,
        )

    def load_state(self, path: str, weights_access_token: str | None = None, *,
                   raw_response: bool = False, **options: Any) -> APIFuture[wt.LoadWeightsResponse]:
        """Load a checkpoint's weights into this model (optimizer state is not restored)."""
        return self._load("load_state", path, False, weights_access_token, raw_response, options)

    def load_state_with_optimizer(self, path: str, weights_access_token: str | None = None, *,
                                  raw_response: bool = False, **options: Any) -> APIFuture[wt.LoadWeightsResponse]:
        """Load a checkpoint's weights and its optimizer state (Adam moments): an exact resume."""
        return self._load("load_state_with_optimizer", path, True, weights_access_token, raw_response, options)

    def save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: Mapping[str, str] | None = None,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[wt.SaveWeightsForSamplerResponse]:
        """Save sampler weights as ``tinker://<run>/sampler_weights/<name>``."""
        opts = take_options("save_weights_for_sampler", options)
        weights = self._ctx.api.weights

        async def send(req: Any, raw: bool) -> Any:
            return await (weights.with_raw_response if raw else weights).save_for_sampler(req, **opts)

        fut = self._ordered(
            "save_weights_for_sampler", "SaveWeightsForSampler", wt.SaveWeightsForSamplerResponseInternal,
            lambda seq_id: wt.SaveWeightsForSamplerRequest(
                model_id=self.model_id, path=name, seq_id=seq_id, ttl_seconds=ttl_seconds,
                user_metadata=dict(user_metadata) if user_metadata else None,
            ),
            send, raw_response,
        )
        if raw_response:
            return fut

        async def public(f: APIFuture[Any]) -> Any:
            internal = await fut
            f.set_request_id(fut.request_id)
            return wt.SaveWeightsForSamplerResponse(path=internal.path or "")

        return self._ctx.start("save_weights_for_sampler", public, on_cancel=lambda _: fut.cancel())

    def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
        kind: str = "snapshot",
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[Any]:
        """Snapshot the current weights into a new sampler and resolve to its SamplingClient.

        ``name`` is ignored (as in the SDK): the save is unnamed and ephemeral.
        """
        from .sampling import SamplingClient

        opts = take_options("save_weights_and_get_sampling_client", options)
        ctx = self._ctx
        weights = ctx.api.weights
        sampling_seq = ctx.next_sampling_session_seq_id()

        async def send(req: Any, raw: bool) -> Any:
            return await (weights.with_raw_response if raw else weights).save_for_sampler(req, **opts)

        saved = self._ordered(
            "save_weights_and_get_sampling_client", "SaveWeightsForSampler",
            wt.SaveWeightsForSamplerResponseInternal,
            lambda seq_id: wt.SaveWeightsForSamplerRequest(
                model_id=self.model_id, sampling_session_seq_id=sampling_seq, kind=kind, seq_id=seq_id,  # type: ignore[arg-type]
            ),
            send, raw_response,
        )
        if raw_response:
            return saved

        async def run(f: APIFuture[Any]) -> Any:
            internal = await saved
            f.set_request_id(saved.request_id)
            if internal.sampling_session_id:
                return SamplingClient(ctx, internal.sampling_session_id, base_model=self.base_model,
                                      record_stability_info=record_stability_info)
            if internal.path:
                return await self.create_sampling_client(internal.path, record_stability_info=record_stability_info)
            raise ValueError("save_weights_for_sampler answered with neither a sampler id nor a path")

        return ctx.start("save_weights_and_get_sampling_client", run, on_cancel=lambda _: saved.cancel())

    def create_sampling_client(self, model_path: str, retry_config: Any = None,
                               record_stability_info: bool = False, **kwargs: Any) -> APIFuture[Any]:
        """A SamplingClient on saved sampler weights."""
        from .service import ServiceClient

        return ServiceClient(self._ctx).create_sampling_client(
            model_path=model_path, record_stability_info=record_stability_info, **kwargs
        )

    def save_weights_external(
        self,
        name: str,
        ttl_seconds: int | None = None,
        age_encryption_recipients: list[str] | None = None,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[wt.SaveWeightsExternalResponse]:
        """Export the weights in an external (Hugging Face) layout as ``tinker://<run>/external_weights/<name>``.

        ``age_encryption_recipients`` (at most 10 ``age1...`` or SSH public
        keys) encrypts every exported file to them. Download the files with
        ``RestClient.get_external_weights_urls(path)``.
        """
        if age_encryption_recipients is not None and len(age_encryption_recipients) > 10:
            raise ValueError("at most 10 age_encryption_recipients")
        opts = take_options("save_weights_external", options)
        weights = self._ctx.api.weights
        fut = self._ordered(
            "save_weights_external", "SaveWeightsExternal", wt.SaveWeightsExternalResponseInternal,
            lambda seq_id: wt.SaveWeightsExternalRequest(
                model_id=self.model_id, path=name, seq_id=seq_id, ttl_seconds=ttl_seconds,
                age_encryption_recipients=list(age_encryption_recipients) if age_encryption_recipients else None,
            ),
            lambda req, raw: (weights.with_raw_response if raw else weights).save_external(req, **opts),
            raw_response,
        )
        if raw_response:
            return fut

        async def public(f: APIFuture[Any]) -> Any:
            internal = await fut
            f.set_request_id(fut.request_id)
            if not internal.path:
                raise ValueError("save_weights_external answered without a path")
            return wt.SaveWeightsExternalResponse(path=internal.path)

        return self._ctx.start("save_weights_external", public, on_cancel=lambda _: fut.cancel())

    # -- SDK-compatible *_async aliases ------------------------------------------------------------
    # The SDK 0.38 keeps these (deprecated) for code that awaited them to get
    # the future: ``fut = await training.forward_backward_async(...)``.

    async def forward_async(self, data: Sequence[wt.Datum], loss_fn: str,
                            loss_fn_config: Mapping[str, float | str] | None = None,
                            **options: Any) -> APIFuture[wt.ForwardBackwardOutput]:
        """SDK alias: ``await`` it to get the :meth:`forward` future (nothing is awaited but the call)."""
        return self.forward(data, loss_fn, loss_fn_config, **options)

    async def forward_backward_async(self, data: Sequence[wt.Datum], loss_fn: str,
                                     loss_fn_config: Mapping[str, float | str] | None = None,
                                     **options: Any) -> APIFuture[wt.ForwardBackwardOutput]:
        """SDK alias: ``await`` it to get the :meth:`forward_backward` future."""
        return self.forward_backward(data, loss_fn, loss_fn_config, **options)

    async def optim_step_async(self, optim_params: Any = None, **options: Any) -> APIFuture[wt.OptimStepResponse]:
        """SDK alias: ``await`` it to get the :meth:`optim_step` future."""
        return self.optim_step(optim_params, **options)

    # -- tinkex *_future: wait for the submit, return the handle ----------------------------------

    @staticmethod
    async def _after_submit(fut: APIFuture[Any], submitted: trio.Event) -> APIFuture[Any]:
        fut.add_done_callback(lambda _: submitted.set())
        await submitted.wait()
        if fut.done() and fut.exception() is not None:
            await fut  # the submit itself failed: raise its typed error here
        return fut

    async def forward_future(self, data: Sequence[wt.Datum], loss_fn: str,
                             loss_fn_config: Mapping[str, float | str] | None = None,
                             **options: Any) -> APIFuture[wt.ForwardBackwardOutput]:
        """tinkex ``forward_future``: returns once the server accepted the request.

        The returned future's ``request_id`` is set (record it to re-attach
        later with ``ServiceClient.retrieve_future``); its result is not
        awaited. A refused submit raises here.
        """
        submitted = trio.Event()
        fut = self._fwdbwd("forward", data, loss_fn, loss_fn_config, forward_only=True, raw_response=False,
                           options=options, on_submitted=submitted.set)
        return await self._after_submit(fut, submitted)

    async def forward_backward_future(self, data: Sequence[wt.Datum], loss_fn: str,
                                      loss_fn_config: Mapping[str, float | str] | None = None,
                                      **options: Any) -> APIFuture[wt.ForwardBackwardOutput]:
        """tinkex ``forward_backward_future``: as :meth:`forward_future`, with gradients."""
        submitted = trio.Event()
        fut = self._fwdbwd("forward_backward", data, loss_fn, loss_fn_config, forward_only=False,
                           raw_response=False, options=options, on_submitted=submitted.set)
        return await self._after_submit(fut, submitted)

    async def optim_step_future(self, optim_params: Any = None, *, adam_params: wt.AdamParams | None = None,
                                **options: Any) -> APIFuture[wt.OptimStepResponse]:
        """tinkex ``optim_step_future``: returns once the server accepted the step (``request_id`` set)."""
        submitted = trio.Event()
        fut = self.optim_step(optim_params, adam_params=adam_params, _on_submitted=submitted.set, **options)
        return await self._after_submit(fut, submitted)

    # -- tinkex *_typed: the parsed result Struct --------------------------------------------------
    # Every method here already resolves to a typed Struct; these names exist
    # so tinkex code ports unchanged.

    def save_weights_typed(self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
                           user_metadata: Mapping[str, str] | None = None,
                           **options: Any) -> APIFuture[wt.SaveWeightsResponse]:
        """tinkex ``save_weights_typed``: :meth:`save_state`, resolving to a ``SaveWeightsResponse``."""
        return self.save_state(name, ttl_seconds, overwrite, user_metadata, **options)

    def load_weights_typed(self, path: str, optimizer: bool = False, weights_access_token: str | None = None,
                           **options: Any) -> APIFuture[wt.LoadWeightsResponse]:
        """tinkex ``load_weights_typed``: :meth:`load_state` (``optimizer=True``: with optimizer state)."""
        name = "load_weights_typed"
        return self._load(name, path, optimizer, weights_access_token, False, options)

    def save_weights_for_sampler_typed(self, name: str, ttl_seconds: int | None = None,
                                       user_metadata: Mapping[str, str] | None = None,
                                       **options: Any) -> APIFuture[wt.SaveWeightsForSamplerResponse]:
        """tinkex ``save_weights_for_sampler_typed``: :meth:`save_weights_for_sampler`, typed result."""
        return self.save_weights_for_sampler(name, ttl_seconds, user_metadata, **options)

    # -- info -----------------------------------------------------------------------------------

    def get_info(self, *, raw_response: bool = False, **options: Any) -> APIFuture[wt.GetInfoResponse]:
        """The model's description (cached after the first successful call)."""
        if self._info is not None and not raw_response and not options:
            return APIFuture.completed(self._info, name="get_info")
        opts = take_options("get_info", options)
        models = self._ctx.api.models

        async def run(fut: APIFuture[Any]) -> Any:
            if raw_response:
                return await models.with_raw_response.get_info(wt.GetInfoRequest(model_id=self.model_id), **opts)
            info = await models.get_info(wt.GetInfoRequest(model_id=self.model_id), **opts)
            self._info = info
            if self.base_model is None:
                self.base_model = info.model_data.model_name or info.model_name
            return info

        return self._ctx.start("get_info", run)

    def get_tokenizer(self) -> Any:
        """The model's tokenizer: the byte tokenizer for local models, else Hugging Face's."""
        info = self._info
        tokenizer_id = info.model_data.tokenizer_id if info is not None else None
        model_name = self.base_model or (info.model_data.model_name if info is not None else None)
        return load_tokenizer(tokenizer_id, model_name)


def _forward_datum(datum: wt.Datum) -> wt.Datum:
    """The datum as the forward-only pass of forward_backward_custom sends it."""
    target = datum.loss_fn_inputs.get("target_tokens")
    if target is None:
        raise ValueError("forward_backward_custom needs target_tokens in every datum")
    weights = datum.loss_fn_inputs.get("weights")
    if weights is None:
        weights = wt.TensorData.from_numpy(np.zeros(target.to_numpy().shape, dtype=np.float32))
    return wt.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={"target_tokens": target, "weights": weights},
        model_input_spans=datum.model_input_spans,
        loss_fn_input_spans=datum.loss_fn_input_spans,
    )


def _same_cuts(data: list[wt.Datum], chunks: list[list[wt.Datum]]) -> list[list[wt.Datum]]:
    out, start = [], 0
    for chunk in chunks:
        out.append(data[start:start + len(chunk)])
        start += len(chunk)
    return out


def _run_custom_loss(loss_fn: Any, data: list[wt.Datum], logprobs: list[np.ndarray]) -> tuple[float, list[np.ndarray], dict[str, float]]:
    """Run a user loss; returns (loss, d loss / d logprobs per datum, metrics)."""
    from .service import LossHandle

    if isinstance(loss_fn, LossHandle):
        total, grads, metrics = 0.0, [], {}
        for datum, lp in zip(data, logprobs, strict=True):
            inputs = {k: datum.loss_fn_inputs[k].to_numpy() for k in loss_fn.input_ranks if k != "logprobs"}
            loss, grad, m = loss_fn.fn(lp, **inputs)
            total += float(loss)
            grads.append(np.asarray(grad, dtype=np.float64))
            for key, value in (m or {}).items():
                metrics[key] = metrics.get(key, 0.0) + float(value)
        return total, grads, metrics
    out = loss_fn(data, [lp.copy() for lp in logprobs])
    if isinstance(out, tuple) and len(out) == 3:
        loss, grads, metrics = out
        return float(np.sum(loss)), [np.asarray(g, dtype=np.float64) for g in grads], dict(metrics or {})
    if isinstance(out, tuple) and len(out) == 2:
        return _torch_loss(loss_fn, data, logprobs)
    raise TypeError("a custom loss returns (loss, grads, metrics) or, with torch, (loss, metrics)")


def _torch_loss(loss_fn: Any, data: list[wt.Datum], logprobs: list[np.ndarray]) -> tuple[float, list[np.ndarray], dict[str, float]]:
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TypeError(
            "this custom loss returned (loss, metrics), which needs torch to differentiate; "
            "install torch or return (loss, grads, metrics) with numpy grads"
        ) from exc
    tensors = [torch.tensor(lp, dtype=torch.float32, requires_grad=True) for lp in logprobs]
    loss, metrics = loss_fn(data, tensors)
    loss.backward()
    grads = [t.grad.detach().numpy().astype(np.float64) if t.grad is not None else np.zeros_like(lp)
             for t, lp in zip(tensors, logprobs, strict=True)]
    return float(loss.detach().sum().item()), grads, {k: float(v) for k, v in (metrics or {}).items()}
