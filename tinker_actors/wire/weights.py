"""Weights bodies: save_weights, save_weights_for_sampler, save_weights_external,
load_weights (create-via-load and legacy forms), weights_info, copy_weights."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from ._base import WireStruct, sent
from .model import AdamOptimizerConfig, OptimizerConfig

__all__ = [
    "SamplingClientKind",
    "SaveWeightsRequest",
    "SaveWeightsResponse",
    "SaveWeightsForSamplerRequest",
    "SaveWeightsForSamplerResponse",
    "SaveWeightsForSamplerResponseInternal",
    "SaveWeightsExternalRequest",
    "SaveWeightsExternalResponse",
    "SaveWeightsExternalResponseInternal",
    "LoadWeightsRequest",
    "LoadWeightsResponse",
    "WeightsInfoRequest",
    "WeightsInfoResponse",
    "CopyWeightsRequest",
    "CopyWeightsResponse",
]

SamplingClientKind: TypeAlias = Literal["snapshot", "inflight"]


class SaveWeightsRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="save_weights"):
    model_id: str
    path: str | None = None
    seq_id: int | None = None
    ttl_seconds: int | None = None
    overwrite: bool = sent(False)
    user_metadata: dict[str, str] | None = None


class SaveWeightsResponse(WireStruct, frozen=True, kw_only=True):
    path: str
    type: Literal["save_weights"] | None = None


class SaveWeightsForSamplerRequest(
    WireStruct, frozen=True, kw_only=True, tag_field="type", tag="save_weights_for_sampler"
):
    model_id: str
    path: str | None = None
    sampling_session_seq_id: int | None = None
    kind: SamplingClientKind = sent("snapshot")
    seq_id: int | None = None
    ttl_seconds: int | None = None
    user_metadata: dict[str, str] | None = None


class SaveWeightsForSamplerResponseInternal(WireStruct, frozen=True, kw_only=True):
    """What the server answers: a ``path`` for named saves, a ``sampling_session_id`` otherwise."""

    path: str | None = None
    sampling_session_id: str | None = None
    type: Literal["save_weights_for_sampler"] | None = None


class SaveWeightsForSamplerResponse(WireStruct, frozen=True, kw_only=True):
    path: str
    type: Literal["save_weights_for_sampler"] | None = None


class SaveWeightsExternalRequest(
    WireStruct, frozen=True, kw_only=True, tag_field="type", tag="save_weights_external"
):
    model_id: str
    path: str
    seq_id: int | None = None
    ttl_seconds: int | None = None
    age_encryption_recipients: list[str] | None = None


class SaveWeightsExternalResponseInternal(WireStruct, frozen=True, kw_only=True):
    path: str | None = None
    size_bytes: int | None = None
    type: Literal["save_weights_external"] | None = None


class SaveWeightsExternalResponse(WireStruct, frozen=True, kw_only=True):
    path: str
    type: Literal["save_weights_external"] | None = None


class LoadWeightsRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="load_weights"):
    """Create-via-load (``session_id`` + ``model_seq_id``) or legacy (``model_id`` + ``seq_id``)."""

    model_id: str | None = None
    seq_id: int | None = None
    session_id: str | None = None
    model_seq_id: int | None = None
    base_model: str | None = None
    user_metadata: dict[str, Any] | None = None
    path: str
    optimizer: bool
    optimizer_config: OptimizerConfig | None = None
    weights_access_token: str | None = None

    @property
    def is_create_via_load(self) -> bool:
        return self.session_id is not None


class LoadWeightsResponse(WireStruct, frozen=True, kw_only=True):
    path: str | None = None
    model_id: str | None = None
    type: Literal["load_weights"] | None = None


class WeightsInfoRequest(WireStruct, frozen=True, kw_only=True):
    tinker_path: str


class WeightsInfoResponse(WireStruct, frozen=True, kw_only=True):
    base_model: str
    optimizer_config: OptimizerConfig = sent(AdamOptimizerConfig())
    is_lora: bool
    lora_rank: int | None = None
    train_unembed: bool | None = None
    train_mlp: bool | None = None
    train_attn: bool | None = None


class CopyWeightsRequest(WireStruct, frozen=True, kw_only=True):
    session_id: str | None = None
    model_seq_id: int | None = None
    destination_project_id: str | None = None
    source_path: str
    ttl_seconds: int | None = None
    weights_access_token: str | None = None


class CopyWeightsResponse(WireStruct, frozen=True, kw_only=True):
    tinker_path: str
