"""ServiceClient: the entry point that makes training, sampling and REST clients.

::

    async with open_service_client(base_url=..., api_key=...) as service:
        caps = await service.get_server_capabilities()
        training = await service.create_lora_training_client(base_model, rank=8)
        sampler = await service.create_sampling_client(base_model=base_model)

Method names and arguments follow the official SDK 0.38. Every method
returns an :class:`~tinker_actors.clients.futures.APIFuture` (``await`` it,
read ``.state``, ``.cancel()`` it) and takes the per-call options described in
``clients._base``. The service's runtime (session, heartbeat, poller, pools)
lives as long as the ``async with`` block.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import trio

from .._log import get_logger
from ..errors import BadRequestError, NotFoundError, UnprocessableError
from ..wire import types as wt
from ._base import ClientContext, RawView, take_options
from .futures import APIFuture

__all__ = ["ServiceClient", "open_service_client", "LossHandle", "FUTURE_KINDS"]

log = get_logger(__name__)


class LossHandle:
    """A custom loss for ``TrainingClient.forward_backward_custom``, run client-side.

    ``fn(logprobs, **inputs) -> (loss, dloss_dlogprobs, metrics)`` runs once
    per datum on numpy arrays: ``logprobs`` are the datum's target logprobs and
    ``inputs`` its ``loss_fn_inputs`` named in ``input_ranks``. The per-datum
    losses are summed; metrics keys should carry a ``:sum`` or ``:mean`` suffix.
    """

    def __init__(self, fn: Callable[..., Any], input_ranks: Mapping[str, int], *, session_id: str) -> None:
        for name, rank in input_ranks.items():
            if rank not in (0, 1, 2):
                raise ValueError(f"input {name!r}: rank must be 0, 1 or 2, got {rank!r}")
        self.fn = fn
        self.name = getattr(fn, "__name__", "custom_loss")
        self.input_ranks = dict(input_ranks)
        self.session_id = session_id
        self.loss_id: str | None = None  # set only for server-side losses (not supported yet)

    def __repr__(self) -> str:
        return f"LossHandle({self.name!r}, inputs={sorted(self.input_ranks)})"


class ServiceClient:
    """Creates the other clients; see the module docstring. Build with :func:`open_service_client`."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx

    @property
    def session_id(self) -> str:
        return self._ctx.session_id

    @property
    def service(self) -> Any:
        """The runtime service (statistics, flags, heartbeat health)."""
        return self._ctx.service

    @property
    def with_raw_response(self) -> RawView:
        return RawView(self)

    def __repr__(self) -> str:
        return f"ServiceClient(session_id={self.session_id!r}, base_url={self._ctx.base_url!r})"

    # -- plain calls -------------------------------------------------------------------

    def _call(self, name: str, call: Callable[[Any], Any], raw_response: bool) -> APIFuture[Any]:
        async def run(fut: APIFuture[Any]) -> Any:
            return await call(raw_response)

        return self._ctx.start(name, run)

    def get_server_capabilities(self, *, raw_response: bool = False, **options: Any) -> APIFuture[wt.GetServerCapabilitiesResponse]:
        """The models the server can train and sample."""
        opts = take_options("get_server_capabilities", options)
        svc = self._ctx.api.service
        return self._call(
            "get_server_capabilities",
            lambda raw: (svc.with_raw_response if raw else svc).get_server_capabilities(**opts),
            raw_response,
        )

    def health_check(self, *, raw_response: bool = False, **options: Any) -> APIFuture[wt.HealthResponse]:
        """``GET /api/v1/healthz``: resolves to ``HealthResponse(status="ok")`` when the server is up."""
        opts = take_options("health_check", options)
        svc = self._ctx.api.service
        return self._call(
            "health_check", lambda raw: (svc.with_raw_response if raw else svc).health_check(**opts), raw_response
        )

    def get_info(self, model_id: str, *, raw_response: bool = False, **options: Any) -> APIFuture[wt.GetInfoResponse]:
        """Describe a training model (base model, LoRA rank, tokenizer id)."""
        opts = take_options("get_info", options)
        models = self._ctx.api.models
        return self._call(
            "get_info",
            lambda raw: (models.with_raw_response if raw else models).get_info(
                wt.GetInfoRequest(model_id=model_id), **opts
            ),
            raw_response,
        )

    def unload_model(self, model_id: str, *, raw_response: bool = False, **options: Any) -> APIFuture[wt.UnloadModelResponse]:
        """Unload a training model and free its server resources."""
        opts = take_options("unload_model", options)
        ctx = self._ctx

        async def run(fut: APIFuture[Any]) -> Any:
            models = ctx.api.models
            if raw_response:
                return await models.with_raw_response.unload(wt.UnloadModelRequest(model_id=model_id), **opts)
            ack = await models.unload(wt.UnloadModelRequest(model_id=model_id), **opts)
            return await ctx.resolve(fut, ack.request_id, wt.UnloadModelResponse, "UnloadModel")

        return ctx.start("unload_model", run)

    def get_telemetry(self) -> Any:
        """The runtime's telemetry batcher (``log_event``, ``log_exception``, ``statistics()``).

        None when telemetry is off (``telemetry=False`` or ``TINKER_TELEMETRY=0``),
        as in the SDK.
        """
        batcher = getattr(self._ctx.service, "telemetry", None)
        if batcher is None or not getattr(batcher, "enabled", True):
            return None
        return batcher

    # -- futures by id ---------------------------------------------------------------------

    def retrieve_future(
        self,
        request_id: str,
        result_type: Any = None,
        *,
        request_type: str | None = None,
        sampling_session_id: str | None = None,
    ) -> APIFuture[Any]:
        """Re-attach to a server future by its id: poll it through the runtime's poller.

        A process that recorded ``fut.request_id`` (say, in a journal) can
        wait on that request after a restart instead of sending it again.
        ``result_type`` is the kind of operation (a key of
        :data:`FUTURE_KINDS`, e.g. ``"sample"`` or ``"forward_backward"``) or
        a wire Struct; None gives the finished result as plain JSON values.
        Resolves like the original future would have, or raises
        ``NotFoundError`` (404: the server never had it, or restarted) or
        ``GoneError`` (410: the result expired): the caller then sends the
        request again, under the same idempotency key.
        """
        kind, rtype = _future_kind(result_type, request_type)
        ctx = self._ctx

        async def run(fut: APIFuture[Any]) -> Any:
            result = await ctx.resolve(fut, request_id, rtype, kind, sampling_session_id=sampling_session_id)
            if rtype is wt.SaveWeightsForSamplerResponseInternal and result.path:
                return wt.SaveWeightsForSamplerResponse(path=result.path)
            if rtype is wt.SaveWeightsExternalResponseInternal and result.path:
                return wt.SaveWeightsExternalResponse(path=result.path)
            return result

        fut = ctx.start("retrieve_future", run)
        fut.set_request_id(request_id)
        return fut

    # -- weights copies --------------------------------------------------------------------

    def copy_weights(
        self,
        path: str,
        *,
        ttl_seconds: int | None = None,
        weights_access_token: str | None = None,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[str]:
        """Copy a checkpoint into this client's project; resolves to the copy's tinker path.

        Storage is shared with the source (no bytes are duplicated) and the
        copy keeps the source's kind. With a ``project_id`` configured the copy
        goes to that project (as in the SDK); without one it is made in this
        session (``session_id`` + a new ``model_seq_id``).
        """
        opts = take_options("copy_weights", options)
        ctx = self._ctx
        project_id = getattr(getattr(ctx.service, "config", None), "project_id", None)
        if project_id:
            request = wt.CopyWeightsRequest(source_path=path, destination_project_id=project_id,
                                            ttl_seconds=ttl_seconds, weights_access_token=weights_access_token)
        else:
            request = wt.CopyWeightsRequest(source_path=path, session_id=ctx.session_id,
                                            model_seq_id=ctx.next_model_seq_id(), ttl_seconds=ttl_seconds,
                                            weights_access_token=weights_access_token)

        async def run(fut: APIFuture[Any]) -> Any:
            rest = ctx.api.rest
            if raw_response:
                return await rest.with_raw_response.copy_weights(request, **opts)
            return (await rest.copy_weights(request, **opts)).tinker_path

        return ctx.start("copy_weights", run)

    # -- training clients ------------------------------------------------------------------

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: Mapping[str, str] | None = None,
        optimizer: Any = None,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[Any]:
        """Create a LoRA model on ``base_model``; resolves to a :class:`TrainingClient`."""
        from .training import TrainingClient

        opts = take_options("create_lora_training_client", options)
        ctx = self._ctx
        request = wt.CreateModelRequest(
            session_id=ctx.session_id,
            model_seq_id=ctx.next_model_seq_id(),
            base_model=base_model,
            user_metadata=dict(user_metadata) if user_metadata else None,
            lora_config=wt.LoraConfig(
                rank=rank, seed=seed, train_mlp=train_mlp, train_attn=train_attn, train_unembed=train_unembed
            ),
            **({"optimizer_config": optimizer} if optimizer is not None else {}),
        )

        async def run(fut: APIFuture[Any]) -> Any:
            if raw_response:
                return await ctx.api.models.with_raw_response.create(request, **opts)
            ack = await ctx.api.models.create(request, **opts)
            result = await ctx.resolve(fut, ack.request_id, wt.CreateModelResponse, "CreateModel")
            return TrainingClient(ctx, result.model_id, base_model=base_model)

        return ctx.start("create_lora_training_client", run)

    def _from_state(
        self,
        name: str,
        path: str,
        *,
        optimizer: bool,
        base_model: str | None,
        user_metadata: Mapping[str, str] | None,
        weights_access_token: str | None,
        optimizer_config: Any,
        raw_response: bool,
        options: Mapping[str, Any],
    ) -> APIFuture[Any]:
        from .training import TrainingClient

        opts = take_options(name, options)
        ctx = self._ctx
        model_seq_id = ctx.next_model_seq_id()
        request = wt.LoadWeightsRequest(
            session_id=ctx.session_id,
            model_seq_id=model_seq_id,
            base_model=base_model,
            user_metadata=dict(user_metadata) if user_metadata else None,
            path=path,
            optimizer=optimizer,
            optimizer_config=optimizer_config,
            weights_access_token=weights_access_token,
        )

        async def run(fut: APIFuture[Any]) -> Any:
            if raw_response:
                return await ctx.api.weights.with_raw_response.load(request, **opts)
            info = None
            try:
                ack = await ctx.api.weights.load(request, **opts)
            except (BadRequestError, UnprocessableError, NotFoundError) as exc:
                # An older server without create-via-load: create the model
                # from the checkpoint's description, then load into it.
                log.info("create_via_load_unsupported", error=type(exc).__name__)
                info = await ctx.api.rest.weights_info(wt.WeightsInfoRequest(tinker_path=path), **opts)
                created = await self.create_lora_training_client(
                    base_model or info.base_model,
                    rank=info.lora_rank or 32,
                    train_mlp=info.train_mlp if info.train_mlp is not None else True,
                    train_attn=info.train_attn if info.train_attn is not None else True,
                    train_unembed=info.train_unembed if info.train_unembed is not None else True,
                    user_metadata=user_metadata,
                )
                load = created.load_state_with_optimizer if optimizer else created.load_state
                await load(path, weights_access_token=weights_access_token)
                return created
            result = await ctx.resolve(fut, ack.request_id, wt.LoadWeightsResponse, "LoadWeights")
            model_id = result.model_id or ack.model_id or f"{ctx.session_id}:train:{model_seq_id}"
            return TrainingClient(ctx, model_id, base_model=base_model, first_seq_id=1)

        return ctx.start(name, run)

    def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: Any = None,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[Any]:
        """A new TrainingClient with the checkpoint's weights (optimizer state starts fresh)."""
        return self._from_state(
            "create_training_client_from_state", path, optimizer=False, base_model=base_model,
            user_metadata=user_metadata, weights_access_token=weights_access_token,
            optimizer_config=optimizer, raw_response=raw_response, options=options,
        )

    def create_training_client_from_state_with_optimizer(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
        weights_access_token: str | None = None,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[Any]:
        """A new TrainingClient with the checkpoint's weights *and* optimizer state (exact resume)."""
        return self._from_state(
            "create_training_client_from_state_with_optimizer", path, optimizer=True, base_model=base_model,
            user_metadata=user_metadata, weights_access_token=weights_access_token,
            optimizer_config=None, raw_response=raw_response, options=options,
        )

    # -- sampling, REST, custom losses -----------------------------------------------------

    def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
        *,
        raw_response: bool = False,
        **options: Any,
    ) -> APIFuture[Any]:
        """A SamplingClient on a base model or on saved sampler weights (``tinker://...``)."""
        from .sampling import SamplingClient

        if (model_path is None) == (base_model is None):
            raise ValueError("pass exactly one of model_path and base_model")
        opts = take_options("create_sampling_client", options)
        ctx = self._ctx
        request = wt.CreateSamplingSessionRequest(
            session_id=ctx.session_id,
            sampling_session_seq_id=ctx.next_sampling_session_seq_id(),
            base_model=base_model,
            model_path=model_path,
        )

        async def run(fut: APIFuture[Any]) -> Any:
            if raw_response:
                return await ctx.api.service.with_raw_response.create_sampling_session(request, **opts)
            created = await ctx.api.service.create_sampling_session(request, **opts)
            known_base = base_model
            if known_base is None:
                with contextlib.suppress(NotFoundError):
                    sampler = await ctx.api.rest.get_sampler(sampler_id=created.sampling_session_id)
                    known_base = sampler.base_model
            return SamplingClient(
                ctx,
                created.sampling_session_id,
                base_model=known_base,
                model_path=model_path,
                record_stability_info=record_stability_info,
            )

        return ctx.start("create_sampling_client", run)

    def create_rest_client(self) -> Any:
        """A RestClient sharing this service's session and pools."""
        from .rest import RestClient

        return RestClient(self._ctx)

    def create_custom_loss(self, fn: Callable[..., Any], input_ranks: Mapping[str, int]) -> APIFuture[LossHandle]:
        """A :class:`LossHandle` for ``forward_backward_custom`` (runs client-side, on numpy)."""
        if "logprobs" not in input_ranks:
            raise ValueError("input_ranks must give the rank of 'logprobs'")
        return APIFuture.completed(LossHandle(fn, input_ranks, session_id=self.session_id), name="create_custom_loss")


#: ``ServiceClient.retrieve_future`` kinds: (X-Tinker-Request-Type, result Struct).
FUTURE_KINDS: dict[str, tuple[str, Any]] = {
    "sample": ("Sample", wt.SampleResponse),
    "forward": ("Forward", wt.ForwardBackwardOutput),
    "forward_backward": ("ForwardBackward", wt.ForwardBackwardOutput),
    "optim_step": ("OptimStep", wt.OptimStepResponse),
    "save_state": ("SaveWeights", wt.SaveWeightsResponse),
    "save_weights_for_sampler": ("SaveWeightsForSampler", wt.SaveWeightsForSamplerResponseInternal),
    "save_weights_external": ("SaveWeightsExternal", wt.SaveWeightsExternalResponseInternal),
    "load_state": ("LoadWeights", wt.LoadWeightsResponse),
    "create_model": ("CreateModel", wt.CreateModelResponse),
    "unload_model": ("UnloadModel", wt.UnloadModelResponse),
}


def _future_kind(result_type: Any, request_type: str | None) -> tuple[str, Any]:
    if result_type is None:
        return request_type or "Unknown", Any
    if isinstance(result_type, str):
        try:
            kind, rtype = FUTURE_KINDS[result_type]
        except KeyError:
            raise ValueError(
                f"unknown future kind {result_type!r}; expected one of {', '.join(FUTURE_KINDS)} or a wire Struct"
            ) from None
        return request_type or kind, rtype
    for kind, rtype in FUTURE_KINDS.values():
        if rtype is result_type:
            return request_type or kind, rtype
    return request_type or "Unknown", result_type


@contextlib.asynccontextmanager
async def open_service_client(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    user_metadata: Mapping[str, str] | None = None,
    project_id: str | None = None,
    display_name: str | None = None,
    transport: Any = None,
    **config: Any,
) -> AsyncIterator[ServiceClient]:
    """Open the runtime (session, heartbeat, poller, pools) and yield a :class:`ServiceClient`.

    Arguments not given come from the environment as in the SDK
    (``TINKER_API_KEY``, ``TINKER_BASE_URL``, ...); ``config`` passes any
    other ``runtime.ServiceConfig`` field (pool limits, telemetry, ...).
    ``transport`` runs the runtime over an already-open transport instead of
    its own (tests drive an in-process server this way).
    Pending futures end with ServiceClosedError when the block exits.
    """
    from ..runtime import open_service
    from ..runtime.config import ServiceConfig
    from .sampling import register_context

    cfg = ServiceConfig.from_env(
        api_key=api_key,
        base_url=base_url,
        user_metadata=dict(user_metadata) if user_metadata else None,
        project_id=project_id,
        display_name=display_name,
        **config,
    )
    async with open_service(cfg, transport=transport) as service:
        async with trio.open_nursery() as nursery:
            ctx = ClientContext(service, nursery, base_url=cfg.base_url)
            register_context(ctx)
            try:
                yield ServiceClient(ctx)
            finally:
                ctx.closed = True
                nursery.cancel_scope.cancel()
