"""``tinker.TrainingClient`` of the drop-in: one LoRA model's operations on our runtime.

Every operation returns an :class:`~tinker_actors.sdk.api_future.APIFuture`
at once; the runtime's training sequencer sends them in call order, so
``forward_backward`` then ``optim_step`` land on the same server clock cycle
as with the SDK. ``*_async`` variants exist for every operation, with the
SDK's return values. The class is plain Python: tracing code may patch its
methods with ``setattr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..clients.console import training_run_console_url
from ..wire import types as wt
from . import types
from ._convert import data_to_wire, fwdbwd_from_wire
from ._runtime import Runtime
from .api_future import APIFuture

if TYPE_CHECKING:
    from .sampling_client import SamplingClient

__all__ = ["TrainingClient"]


class TrainingClient:
    """Training operations of one model (``model_id``); see the module docstring."""

    def __init__(self, runtime: Runtime, inner: Any, *, info: wt.GetInfoResponse | None = None) -> None:
        self._rt = runtime
        self._inner = inner  # tinker_actors.clients.TrainingClient, lives on the loop thread
        self._info = info
        self.model_id: str = inner.model_id

    def __repr__(self) -> str:
        return f"TrainingClient(model_id={self.model_id!r})"

    # -- forward / backward -----------------------------------------------------------------

    def forward(
        self, data: list[types.Datum], loss_fn: types.LossFnType, loss_fn_config: Mapping[str, float | str] | None = None
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Forward pass only: per-datum outputs and the loss metrics, no gradients."""
        wire = data_to_wire(data)
        return self._rt.op(lambda: self._inner.forward(wire, loss_fn, loss_fn_config), fwdbwd_from_wire)

    async def forward_async(
        self, data: list[types.Datum], loss_fn: types.LossFnType, loss_fn_config: Mapping[str, float | str] | None = None
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward(data, loss_fn, loss_fn_config)

    def forward_backward(
        self, data: list[types.Datum], loss_fn: types.LossFnType, loss_fn_config: Mapping[str, float | str] | None = None
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Forward and backward; gradients accumulate on the server until :meth:`optim_step`."""
        wire = data_to_wire(data)
        return self._rt.op(lambda: self._inner.forward_backward(wire, loss_fn, loss_fn_config), fwdbwd_from_wire)

    async def forward_backward_async(
        self, data: list[types.Datum], loss_fn: types.LossFnType, loss_fn_config: Mapping[str, float | str] | None = None
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward_backward(data, loss_fn, loss_fn_config)

    def forward_backward_custom(
        self, data: list[types.Datum], loss_fn: Any, *, loss_type_input: Literal["logprobs"] | None = None
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """forward_backward with a loss computed here from per-token logprobs.

        ``loss_fn(data, logprobs)`` gets the datums and one torch tensor of
        target logprobs per datum and returns ``(loss, metrics)`` with a torch
        loss (the SDK's convention); a ``LossHandle`` from
        ``ServiceClient.create_custom_loss`` works too.
        """
        data = list(data)
        wire = data_to_wire(data)
        handle_cls = _loss_handle_class()
        fn = loss_fn if isinstance(loss_fn, handle_cls) else _TorchLoss(loss_fn, data)
        return self._rt.op(lambda: self._inner.forward_backward_custom(wire, fn), fwdbwd_from_wire)

    async def forward_backward_custom_async(
        self, data: list[types.Datum], loss_fn: Any, *, loss_type_input: Literal["logprobs"] | None = None
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward_backward_custom(data, loss_fn, loss_type_input=loss_type_input)

    def optim_step(
        self, optim_params: types.OptimParams | None = None, *, adam_params: types.AdamParams | None = None
    ) -> APIFuture[types.OptimStepResponse]:
        """One optimizer step with the gradients accumulated since the last one."""
        return self._rt.op(lambda: self._inner.optim_step(optim_params, adam_params=adam_params))

    async def optim_step_async(
        self, optim_params: types.OptimParams | None = None, *, adam_params: types.AdamParams | None = None
    ) -> APIFuture[types.OptimStepResponse]:
        return self.optim_step(optim_params, adam_params=adam_params)

    # -- checkpoints ------------------------------------------------------------------------------

    def save_state(self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
                   user_metadata: dict[str, str] | None = None) -> APIFuture[types.SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<run>/weights/<name>``."""
        return self._rt.op(lambda: self._inner.save_state(name, ttl_seconds, overwrite, user_metadata))

    async def save_state_async(self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
                               user_metadata: dict[str, str] | None = None) -> APIFuture[types.SaveWeightsResponse]:
        return self.save_state(name, ttl_seconds, overwrite, user_metadata)

    def load_state(self, path: str, weights_access_token: str | None = None) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights (optimizer state starts fresh)."""
        return self._rt.op(lambda: self._inner.load_state(path, weights_access_token))

    async def load_state_async(self, path: str,
                               weights_access_token: str | None = None) -> APIFuture[types.LoadWeightsResponse]:
        return self.load_state(path, weights_access_token)

    def load_state_with_optimizer(self, path: str,
                                  weights_access_token: str | None = None) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights and optimizer state (exact resume)."""
        return self._rt.op(lambda: self._inner.load_state_with_optimizer(path, weights_access_token))

    async def load_state_with_optimizer_async(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[types.LoadWeightsResponse]:
        return self.load_state_with_optimizer(path, weights_access_token)

    def save_weights_for_sampler(self, name: str, ttl_seconds: int | None = None,
                                 user_metadata: dict[str, str] | None = None
                                 ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        """Save sampler weights as ``tinker://<run>/sampler_weights/<name>``."""
        return self._rt.op(lambda: self._inner.save_weights_for_sampler(name, ttl_seconds, user_metadata))

    async def save_weights_for_sampler_async(self, name: str, ttl_seconds: int | None = None,
                                             user_metadata: dict[str, str] | None = None
                                             ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        return self.save_weights_for_sampler(name, ttl_seconds, user_metadata)

    def save_weights_external(self, name: str, ttl_seconds: int | None = None,
                              age_encryption_recipients: list[str] | None = None
                              ) -> APIFuture[types.SaveWeightsExternalResponse]:
        """Export the weights as ``tinker://<run>/external_weights/<name>`` (optionally age-encrypted)."""
        return self._rt.op(lambda: self._inner.save_weights_external(name, ttl_seconds, age_encryption_recipients))

    async def save_weights_external_async(self, name: str, ttl_seconds: int | None = None,
                                          age_encryption_recipients: list[str] | None = None
                                          ) -> APIFuture[types.SaveWeightsExternalResponse]:
        return self.save_weights_external(name, ttl_seconds, age_encryption_recipients)

    # -- sampling clients -------------------------------------------------------------------------------

    def _sampling(self, start: Any) -> Any:
        from ._backcompat import SamplingClientFuture
        from .sampling_client import SamplingClient

        rt = self._rt
        return SamplingClientFuture(rt.op(start, lambda inner: SamplingClient(rt, inner)))

    def save_weights_and_get_sampling_client(self, name: str | None = None, retry_config: Any = None,
                                             record_stability_info: bool = False,
                                             kind: types.SamplingClientKind = "snapshot") -> Any:
        """Snapshot the current weights into a sampler; a future of its SamplingClient."""
        return self._sampling(lambda: self._inner.save_weights_and_get_sampling_client(
            name, retry_config, record_stability_info, kind))

    async def save_weights_and_get_sampling_client_async(self, name: str | None = None, retry_config: Any = None,
                                                         record_stability_info: bool = False,
                                                         kind: types.SamplingClientKind = "snapshot"
                                                         ) -> SamplingClient:
        return await self.save_weights_and_get_sampling_client(name, retry_config, record_stability_info, kind)

    def create_sampling_client(self, model_path: str, retry_config: Any = None,
                               record_stability_info: bool = False) -> Any:
        """A future of a SamplingClient on saved sampler weights."""
        return self._sampling(lambda: self._inner.create_sampling_client(
            model_path, record_stability_info=record_stability_info))

    async def create_sampling_client_async(self, model_path: str, retry_config: Any = None,
                                           record_stability_info: bool = False) -> SamplingClient:
        return await self.create_sampling_client(model_path, retry_config, record_stability_info)

    # -- facts -------------------------------------------------------------------------------------------

    def get_info(self) -> types.GetInfoResponse:
        """The model's description, fetched when the client was made."""
        if self._info is None:
            self._info = self._rt.op(lambda: self._inner.get_info()).result()
        return self._info

    async def get_info_async(self) -> types.GetInfoResponse:
        if self._info is None:
            self._info = await self._rt.op(lambda: self._inner.get_info())
        return self._info

    def get_tokenizer(self) -> Any:
        """The base model's tokenizer (the byte tokenizer for local models; Hugging Face's otherwise)."""
        return self._inner.get_tokenizer()

    def get_console_url(self) -> str:
        """This training run's page in the Tinker console."""
        return training_run_console_url(self.model_id)

    def get_telemetry(self) -> Any:
        return self._rt._sync.get_telemetry()


def _loss_handle_class() -> type:
    from ..clients.service import LossHandle

    return LossHandle


class _TorchLoss:
    """An SDK custom loss ``fn(data, logprobs) -> (loss, metrics)`` as the runtime's numpy convention.

    The runtime calls it with the wire datums and numpy logprobs; the user's
    function gets the SDK datums it was given and torch tensors, and autograd
    gives ``d loss / d logprobs``.
    """

    def __init__(self, fn: Any, data: Sequence[types.Datum]) -> None:
        self.fn = fn
        self.data = list(data)

    def __call__(self, _wire_data: Any, logprobs: list[np.ndarray]) -> tuple[float, list[np.ndarray], dict[str, float]]:
        import torch

        tensors = [torch.tensor(np.asarray(lp, dtype=np.float32), requires_grad=True) for lp in logprobs]
        loss, metrics = self.fn(self.data, tensors)
        loss.backward()
        grads = [np.zeros(t.shape, dtype=np.float64) if t.grad is None else t.grad.detach().numpy().astype(np.float64)
                 for t in tensors]
        return float(loss.detach().sum().item()), grads, {k: float(v) for k, v in (metrics or {}).items()}
