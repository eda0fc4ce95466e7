"""``tinker.ServiceClient`` of the drop-in: the entry point, on our runtime.

::

    import tinker   # with tinker_actors.sdk.install() (or python -m tinker_actors.sdk script.py)

    with tinker.ServiceClient(base_url=..., api_key=...) as service:
        training = service.create_lora_training_client(base_model, rank=8).result()
        # asyncio code: training = await service.create_lora_training_client(base_model, rank=8)

Constructing one opens the runtime (session, heartbeat, poller, pools) on one
loop thread; ``close(status)`` (or leaving the ``with`` block) finishes the
session with that status and stops the thread. The client-creation methods
return futures that can also stand in for the client (deprecated in the SDK,
accepted here with the same ``FutureWarning``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal

from ..clients.console import session_console_url
from ..runtime.config import ServiceConfig
from ..wire import types as wt
from . import types
from ._backcompat import BackcompatSamplingClientFuture, BackcompatTrainingClientFuture
from ._runtime import Runtime
from .api_future import APIFuture, AwaitableConcurrentFuture
from .rest_client import RestClient
from .sampling_client import SamplingClient
from .training_client import TrainingClient

__all__ = ["ServiceClient"]

_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(ServiceConfig))
# keyword names the SDK's HTTP client takes, mapped to ours (the rest have no meaning here)
_SDK_KWARGS = {"timeout": "request_timeout", "max_retries": "max_retries"}


def _config(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _SDK_KWARGS:
            if isinstance(value, (int, float)):
                out[_SDK_KWARGS[key]] = value
        elif key in _CONFIG_FIELDS:
            out[key] = value
    return out


def _done(value: Any) -> AwaitableConcurrentFuture[Any]:
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
    fut.set_result(value)
    return AwaitableConcurrentFuture(fut)


class ServiceClient:
    """Makes training, sampling and REST clients that share one runtime (see module docstring)."""

    def __init__(
        self,
        user_metadata: dict[str, str] | None = None,
        project_id: str | None = None,
        *,
        display_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        default_headers_overrides: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._runtime = Runtime(
            base_url=base_url, api_key=api_key, user_metadata=user_metadata, project_id=project_id,
            display_name=display_name, **_config(kwargs),
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"ServiceClient(session_id={self._runtime.service.session_id!r})"

    @property
    def holder(self) -> Runtime:
        """The runtime the clients of this ServiceClient share."""
        return self._runtime

    # -- lifetime ---------------------------------------------------------------------------------

    def __enter__(self) -> ServiceClient:
        if self._closed:
            raise RuntimeError("ServiceClient is closed")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc_type is None:
            status: Literal["success", "errored", "interrupted"] = "success"
        elif issubclass(exc_type, Exception):
            status = "errored"
        else:
            status = "interrupted"
        self.close(status).result()

    def close(self, status: Literal["success", "errored", "interrupted"],
              detail: str | None = None) -> APIFuture[None]:
        """Finish the session with ``status`` and stop the runtime; later calls do nothing."""
        if self._closed:
            return _done(None)
        self._closed = True
        rt = self._runtime
        service = rt.service
        request = wt.SessionFinishRequest(reason=wt.SessionFinishReason(type=status), detail=detail)

        async def finish() -> None:
            await service._ctx.api.service.finish_session(request, session_id=service.session_id)

        try:
            rt.run(finish)
        except Exception:
            pass  # the session ends anyway when its heartbeats stop; closing must not fail
        finally:
            rt.close()
        return _done(None)

    # -- training clients ---------------------------------------------------------------------------

    def _training(self, name: str, create: Callable[[Any], Any]) -> BackcompatTrainingClientFuture:
        rt = self._runtime
        service = rt.service

        def start() -> Any:
            created = create(service)

            async def run(fut: Any) -> Any:
                client = await created
                return client, await client.get_info()

            return service._ctx.start(name, run, on_cancel=lambda _: created.cancel())

        return BackcompatTrainingClientFuture(rt.op(start, lambda pair: TrainingClient(rt, pair[0], info=pair[1])))

    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None, train_mlp: bool = True,
        train_attn: bool = True, train_unembed: bool = True, user_metadata: dict[str, str] | None = None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> BackcompatTrainingClientFuture:
        """A new LoRA model on ``base_model``: a future of its TrainingClient."""
        return self._training("create_lora_training_client", lambda s: s.create_lora_training_client(
            base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata, optimizer))

    async def create_lora_training_client_async(
        self, base_model: str, rank: int = 32, seed: int | None = None, train_mlp: bool = True,
        train_attn: bool = True, train_unembed: bool = True, user_metadata: dict[str, str] | None = None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> TrainingClient:
        return await self.create_lora_training_client(base_model, rank, seed, train_mlp, train_attn, train_unembed,
                                                      user_metadata, optimizer)

    def create_training_client_from_state(
        self, path: str, base_model: str | None = None, user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None, optimizer: types.OptimizerConfig | None = None,
    ) -> BackcompatTrainingClientFuture:
        """A new model with a checkpoint's weights (optimizer state starts fresh)."""
        return self._training("create_training_client_from_state", lambda s: s.create_training_client_from_state(
            path, base_model, user_metadata, weights_access_token, optimizer))

    async def create_training_client_from_state_async(
        self, path: str, base_model: str | None = None, user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None, optimizer: types.OptimizerConfig | None = None,
    ) -> TrainingClient:
        return await self.create_training_client_from_state(path, base_model, user_metadata, weights_access_token,
                                                            optimizer)

    def create_training_client_from_state_with_optimizer(
        self, path: str, base_model: str | None = None, user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> BackcompatTrainingClientFuture:
        """A new model with a checkpoint's weights and optimizer state (exact resume)."""
        return self._training(
            "create_training_client_from_state_with_optimizer",
            lambda s: s.create_training_client_from_state_with_optimizer(path, base_model, user_metadata,
                                                                         weights_access_token),
        )

    async def create_training_client_from_state_with_optimizer_async(
        self, path: str, base_model: str | None = None, user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> TrainingClient:
        return await self.create_training_client_from_state_with_optimizer(path, base_model, user_metadata,
                                                                           weights_access_token)

    # -- sampling, REST, losses -------------------------------------------------------------------------

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None, retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> BackcompatSamplingClientFuture:
        """A future of a SamplingClient on a base model or on saved sampler weights."""
        return BackcompatSamplingClientFuture(SamplingClient.create(
            self._runtime, model_path=model_path, base_model=base_model, retry_config=retry_config,
            record_stability_info=record_stability_info))

    async def create_sampling_client_async(
        self, model_path: str | None = None, base_model: str | None = None, retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> SamplingClient:
        return await self.create_sampling_client(model_path, base_model, retry_config, record_stability_info)

    def create_rest_client(self) -> RestClient:
        """A RestClient on this client's runtime."""
        return RestClient(self._runtime)

    def get_server_capabilities(self) -> types.GetServerCapabilitiesResponse:
        """The models the server can train and sample (blocks; see RestClient for a future)."""
        return self._runtime.op(lambda: self._runtime.service.get_server_capabilities()).result()

    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        return await self._runtime.op(lambda: self._runtime.service.get_server_capabilities())

    def copy_weights(self, path: str, *, ttl_seconds: int | None = None,
                     weights_access_token: str | None = None) -> APIFuture[str]:
        """Copy a checkpoint into this client's project; a future of the copy's tinker path."""
        return self._runtime.op(lambda: self._runtime.service.copy_weights(
            path, ttl_seconds=ttl_seconds, weights_access_token=weights_access_token))

    def create_custom_loss(self, fn: Any, input_ranks: Mapping[str, int]) -> APIFuture[Any]:
        """A LossHandle for ``TrainingClient.forward_backward_custom``."""
        return self._runtime.op(lambda: self._runtime.service.create_custom_loss(fn, input_ranks))

    def get_console_url(self) -> str:
        """This session's page in the Tinker console."""
        return session_console_url(self._runtime.service.session_id)

    def get_telemetry(self) -> Any:
        return self._runtime._sync.get_telemetry()
