"""Sampling bodies: SamplingParams, SampleRequest, SampleResponse, sampling sessions.

``SampleResponse`` is protobuf-only on the current service; its JSON form
here mirrors the SDK's list view (``prompt_logprobs`` with null where not
scored, ``topk_*`` as rows of ``[token, logprob]`` pairs or null).

Representation of decoded arrays: the protobuf decoder (``wire.protobuf``)
fills ``SampledSequence.tokens`` with an int32 array, ``logprobs`` with a
float32 array, ``topk_logprobs`` / ``SampleResponse.topk_prompt_logprobs``
with ``TopkLogprobs`` matrices and ``prompt_logprobs`` with a float32 array
where NaN means "not scored"; all are ``np.frombuffer`` views. A JSON decode
gives lists instead. The ``*_np`` properties always give arrays and the
``*_list`` properties always give the SDK's list form, whichever way the
object was built.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from ._base import WireStruct, sent
from .model_input import ModelInput
from .tensor_data import TensorData, TopkLogprobs, topk_from_lists, topk_to_lists

__all__ = [
    "StopReason",
    "SamplingParams",
    "SampleRequest",
    "SampledSequence",
    "PromptAltTokens",
    "SampleResponse",
    "CreateSamplingSessionRequest",
    "CreateSamplingSessionResponse",
    "JoinSamplingSessionRequest",
    "JoinSamplingSessionResponse",
    "GetSamplerResponse",
]

StopReason: TypeAlias = Literal["stop", "length"]
TopkRows: TypeAlias = list[list[tuple[int, float]] | None]


class SamplingParams(WireStruct, frozen=True, kw_only=True):
    max_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str | int] | None = None
    temperature: float = sent(1.0)
    top_k: int = sent(-1)
    top_p: float = sent(1.0)


class SampleRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="sample"):
    num_samples: int = sent(1)
    prompt: ModelInput
    sampling_params: SamplingParams
    base_model: str | None = None
    model_path: str | None = None
    sampling_session_id: str | None = None
    seq_id: int | None = None
    prompt_logprobs: bool | None = None
    topk_prompt_logprobs: int = sent(0)
    topk_sample_logprobs: int = sent(0)
    target_prompt_logprobs: TensorData | None = None
    prompt_alt_tokens_k: int = sent(0)
    prompt_logprobs_last_n: int | None = None
    record_stability_info: bool | None = None


def _topk_np(value: Any) -> TopkLogprobs | None:
    if value is None or isinstance(value, TopkLogprobs):
        return value
    return topk_from_lists(value)


def _topk_list(value: Any) -> TopkRows | None:
    if value is None:
        return None
    if isinstance(value, TopkLogprobs):
        return topk_to_lists(value)
    return [None if row is None else [(int(t), float(lp)) for t, lp in row] for row in value]


def _eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return bool(np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True))


class SampledSequence(WireStruct, frozen=True, kw_only=True, eq=False):
    stop_reason: StopReason
    tokens: list[int]
    logprobs: list[float] | None = None
    topk_logprobs: TopkRows | None = None
    sequence_id: str | None = None

    @property
    def tokens_np(self) -> npt.NDArray[np.int32]:
        return np.asarray(self.tokens, dtype=np.int32)

    @property
    def logprobs_np(self) -> npt.NDArray[np.float32] | None:
        return None if self.logprobs is None else np.asarray(self.logprobs, dtype=np.float32)

    @property
    def topk_logprobs_np(self) -> TopkLogprobs | None:
        return _topk_np(self.topk_logprobs)

    @property
    def tokens_list(self) -> list[int]:
        return np.asarray(self.tokens).tolist() if isinstance(self.tokens, np.ndarray) else list(self.tokens)

    @property
    def logprobs_list(self) -> list[float] | None:
        if self.logprobs is None:
            return None
        return np.asarray(self.logprobs).tolist() if isinstance(self.logprobs, np.ndarray) else list(self.logprobs)

    @property
    def topk_logprobs_list(self) -> TopkRows | None:
        return _topk_list(self.topk_logprobs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampledSequence):
            return NotImplemented
        return (
            self.stop_reason == other.stop_reason
            and self.sequence_id == other.sequence_id
            and _eq(self.tokens, other.tokens)
            and _eq(self.logprobs, other.logprobs)
            and self.topk_logprobs_list == other.topk_logprobs_list
        )

    __hash__ = None  # type: ignore[assignment]


class PromptAltTokens(WireStruct, frozen=True, kw_only=True):
    """``k`` draws per prompt position after the first: int64 and float32 ``[len-1, k]``."""

    tokens: TensorData
    logprobs: TensorData


class SampleResponse(WireStruct, frozen=True, kw_only=True, eq=False):
    sequences: list[SampledSequence]
    prompt_logprobs: list[float | None] | None = None
    topk_prompt_logprobs: TopkRows | None = None
    target_prompt_logprobs: TensorData | None = None
    prompt_cache_hit_tokens: int = sent(0)
    prompt_alt_tokens: PromptAltTokens | None = None
    type: Literal["sample"] | None = None

    @property
    def prompt_logprobs_np(self) -> npt.NDArray[np.float32] | None:
        """float32 array, NaN where not scored."""
        if self.prompt_logprobs is None:
            return None
        if isinstance(self.prompt_logprobs, np.ndarray):
            return self.prompt_logprobs
        return np.array([np.nan if v is None else v for v in self.prompt_logprobs], dtype=np.float32)

    @property
    def prompt_logprobs_list(self) -> list[float | None] | None:
        """The SDK's list form: None where not scored."""
        if self.prompt_logprobs is None:
            return None
        if isinstance(self.prompt_logprobs, np.ndarray):
            arr = self.prompt_logprobs
            out: list[float | None] = arr.tolist()
            for i in np.flatnonzero(np.isnan(arr)):
                out[i] = None
            return out
        return list(self.prompt_logprobs)

    @property
    def topk_prompt_logprobs_np(self) -> TopkLogprobs | None:
        return _topk_np(self.topk_prompt_logprobs)

    @property
    def topk_prompt_logprobs_list(self) -> TopkRows | None:
        return _topk_list(self.topk_prompt_logprobs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleResponse):
            return NotImplemented
        return (
            list(self.sequences) == list(other.sequences)
            and self.prompt_logprobs_list == other.prompt_logprobs_list
            and self.topk_prompt_logprobs_list == other.topk_prompt_logprobs_list
            and self.target_prompt_logprobs == other.target_prompt_logprobs
            and self.prompt_cache_hit_tokens == other.prompt_cache_hit_tokens
            and self.prompt_alt_tokens == other.prompt_alt_tokens
        )

    __hash__ = None  # type: ignore[assignment]


class CreateSamplingSessionRequest(
    WireStruct, frozen=True, kw_only=True, tag_field="type", tag="create_sampling_session"
):
    session_id: str
    sampling_session_seq_id: int
    base_model: str | None = None
    model_path: str | None = None


class CreateSamplingSessionResponse(
    WireStruct, frozen=True, kw_only=True, tag_field="type", tag="create_sampling_session"
):
    sampling_session_id: str


class JoinSamplingSessionRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="join_sampling_session"):
    sampling_session_id: str


class JoinSamplingSessionResponse(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="join_sampling_session"):
    client_counter: int


class GetSamplerResponse(WireStruct, frozen=True, kw_only=True):
    sampler_id: str
    base_model: str
    model_path: str | None = None
