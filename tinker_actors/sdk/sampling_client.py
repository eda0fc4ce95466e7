"""``tinker.SamplingClient`` of the drop-in: samples through our runtime's sampling path.

``sample`` returns an :class:`~tinker_actors.sdk.api_future.APIFuture` of a
:class:`~tinker_actors.sdk.types.SampleResponse` whose ``tokens`` are lists
of ints; ``sample_async`` awaits it. A SamplingClient pickles, and has a
credential-free handle (``get_sampler_handle`` / ``from_sampler_handle``);
in another process it opens that process's own runtime, with its
``TINKER_API_KEY``.
"""

from __future__ import annotations

from typing import Any

from . import types
from ._convert import sample_from_wire, tensor_to_wire
from ._runtime import Runtime
from .api_future import APIFuture

__all__ = ["SamplingClient"]


class SamplingClient:
    """Sampling from one sampler (a base model or saved weights)."""

    def __init__(self, runtime: Runtime, inner: Any) -> None:
        self._rt = runtime
        self._inner = inner  # tinker_actors.clients.SamplingClient

    def __repr__(self) -> str:
        return f"SamplingClient(sampling_session_id={self._inner.sampling_session_id!r})"

    def sample(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: types.TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> APIFuture[types.SampleResponse]:
        """Generate ``num_samples`` continuations of ``prompt``."""
        target = None if target_prompt_logprobs is None else tensor_to_wire(target_prompt_logprobs)
        return self._rt.op(
            lambda: self._inner.sample(
                prompt, num_samples, sampling_params, include_prompt_logprobs, topk_prompt_logprobs,
                topk_sample_logprobs, target, prompt_alt_tokens_k, prompt_logprobs_last_n,
            ),
            sample_from_wire,
        )

    async def sample_async(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: types.TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> types.SampleResponse:
        return await self.sample(
            prompt, num_samples, sampling_params, include_prompt_logprobs, topk_prompt_logprobs,
            topk_sample_logprobs, target_prompt_logprobs, prompt_alt_tokens_k, prompt_logprobs_last_n,
        )

    def compute_logprobs(self, prompt: types.ModelInput,
                         prompt_logprobs_last_n: int | None = None) -> APIFuture[list[float | None]]:
        """Logprob of every prompt token given the ones before it (the first is None)."""
        return self._rt.op(lambda: self._inner.compute_logprobs(prompt, prompt_logprobs_last_n))

    async def compute_logprobs_async(self, prompt: types.ModelInput,
                                     prompt_logprobs_last_n: int | None = None) -> list[float | None]:
        return await self.compute_logprobs(prompt, prompt_logprobs_last_n)

    def get_base_model(self) -> str:
        return str(self._inner.get_base_model() or "")

    async def get_base_model_async(self) -> str:
        return self.get_base_model()

    def get_tokenizer(self) -> Any:
        return self._inner.get_tokenizer()

    def get_telemetry(self) -> Any:
        return self._rt._sync.get_telemetry()

    def on_queue_state_change(self, queue_state: Any, queue_state_reason: str | None) -> None:
        """The SDK's hook for queue-state changes. The runtime shows them on every future
        (``fut.state``), so nothing is logged here."""

    # -- handles and pickling ------------------------------------------------------------------

    def get_sampler_handle(self) -> str:
        """A credential-free string naming this sampler; any process can sample with it."""
        return str(self._inner.get_sampler_handle())

    @staticmethod
    def from_sampler_handle(handle: str, *, api_key: str | None = None) -> SamplingClient:
        """A client for the sampler behind ``handle``, on a runtime of this process."""
        from ..clients.sampling import SamplingClient as TrioSampling
        from ._runtime import shared_runtime

        rt = shared_runtime(handle, api_key)
        inner = rt.call(lambda: TrioSampling.from_sampler_handle(handle, rt.service))
        return SamplingClient(rt, inner)

    @staticmethod
    def create(holder: Any, *, model_path: str | None = None, base_model: str | None = None,
               sampling_session_id: str | None = None, retry_config: Any = None,
               record_stability_info: bool = False) -> APIFuture[SamplingClient]:
        """A future of a SamplingClient; ``holder`` is a drop-in ServiceClient (or its runtime)."""
        rt: Runtime = getattr(holder, "_runtime", holder)
        if sampling_session_id is not None:
            from ..clients.sampling import SamplingClient as TrioSampling

            inner = TrioSampling(rt.service._ctx, sampling_session_id, base_model=base_model, model_path=model_path,
                                 record_stability_info=record_stability_info)
            from .api_future import AwaitableConcurrentFuture
            import concurrent.futures

            done: concurrent.futures.Future[SamplingClient] = concurrent.futures.Future()
            done.set_result(SamplingClient(rt, inner))
            return AwaitableConcurrentFuture(done)
        return rt.op(
            lambda: rt.service.create_sampling_client(model_path=model_path, base_model=base_model,
                                                      record_stability_info=record_stability_info),
            lambda inner: SamplingClient(rt, inner),
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_from_handle, (self.get_sampler_handle(),))


def _from_handle(handle: str) -> SamplingClient:
    return SamplingClient.from_sampler_handle(handle)
