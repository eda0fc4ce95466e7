"""Training-model bodies: create_model, get_info, unload_model, LoRA and optimizer config."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from ._base import WireStruct, sent

__all__ = [
    "LoraConfig",
    "AdamOptimizerConfig",
    "DimuonOptimizerConfig",
    "OptimizerConfig",
    "CreateModelRequest",
    "CreateModelResponse",
    "GetInfoRequest",
    "ModelData",
    "GetInfoResponse",
    "UnloadModelRequest",
    "UnloadModelResponse",
]


class LoraConfig(WireStruct, frozen=True, kw_only=True):
    rank: int
    seed: int | None = None
    train_unembed: bool = sent(True)
    train_mlp: bool = sent(True)
    train_attn: bool = sent(True)


class AdamOptimizerConfig(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="adamw"):
    pass


class DimuonOptimizerConfig(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="dimuon"):
    version: Literal[1] = sent(1)


OptimizerConfig: TypeAlias = AdamOptimizerConfig | DimuonOptimizerConfig


def _adam() -> Any:
    return sent(AdamOptimizerConfig())


class CreateModelRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="create_model"):
    session_id: str
    model_seq_id: int
    base_model: str
    user_metadata: dict[str, Any] | None = None
    lora_config: LoraConfig | None = None
    optimizer_config: OptimizerConfig = _adam()


class CreateModelResponse(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="create_model"):
    model_id: str


class GetInfoRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="get_info"):
    model_id: str


class ModelData(WireStruct, frozen=True, kw_only=True):
    arch: str | None = None
    model_name: str | None = None
    tokenizer_id: str | None = None


class GetInfoResponse(WireStruct, frozen=True, kw_only=True):
    type: Literal["get_info"] | None = None
    model_data: ModelData
    model_id: str
    optimizer_config: OptimizerConfig = _adam()
    is_lora: bool | None = None
    lora_rank: int | None = None
    model_name: str | None = None


class UnloadModelRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="unload_model"):
    """Legacy (SDK <= 0.2.x)."""

    model_id: str


class UnloadModelResponse(WireStruct, frozen=True, kw_only=True):
    model_id: str
    type: Literal["unload_model"] | None = None
