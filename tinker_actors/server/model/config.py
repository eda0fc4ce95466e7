"""Configuration records of the numpy model: base architecture, LoRA, Adam.

The base model is named (``BASE_MODEL_NAME`` and friends in ``BASE_MODELS``);
its weights are a pure function of its ``ModelConfig`` (the seed included), so
they are regenerated rather than stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ...byte_tokenizer import VOCAB_SIZE

__all__ = [
    "BASE_MODEL_NAME",
    "BASE_MODELS",
    "ModelConfig",
    "LoraConfig",
    "AdamConfig",
    "get_model_config",
    "MAX_LORA_RANK",
    "MAX_CONTEXT",
]

BASE_MODEL_NAME = "tinker-actors/byte-lm-tiny"
MAX_LORA_RANK = 256
# Longest token sequence a forward or a sample may reach; attention is O(T^2).
MAX_CONTEXT = 4096


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Shape of the base network and the seed of its weights.

    ``dtype`` is the compute dtype; float64 exists for gradient checks.
    ``lora_alpha`` scales every adapter by ``lora_alpha / rank``.
    """

    name: str = BASE_MODEL_NAME
    vocab_size: int = VOCAB_SIZE
    d_model: int = 64
    d_ff: int = 256
    base_seed: int = 0
    lora_alpha: float = 32.0
    dtype: str = "float32"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ModelConfig":
        return cls(**obj)


BASE_MODELS: dict[str, ModelConfig] = {
    BASE_MODEL_NAME: ModelConfig(),
    "tinker-actors/byte-lm-small": ModelConfig(name="tinker-actors/byte-lm-small", d_model=128, d_ff=512, base_seed=1),
}


def get_model_config(base_model: str) -> ModelConfig:
    """The config of a named base model; ValueError names the known ones."""
    try:
        return BASE_MODELS[base_model]
    except KeyError:
        known = ", ".join(sorted(BASE_MODELS))
        raise ValueError(f"unknown base model {base_model!r}; this server serves: {known}") from None


@dataclass(frozen=True, kw_only=True)
class LoraConfig:
    """Which adapters exist and how they start (A from ``seed``, B zero)."""

    rank: int = 32
    seed: int | None = None
    train_unembed: bool = True
    train_mlp: bool = True
    train_attn: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or not 1 <= self.rank <= MAX_LORA_RANK:
            raise ValueError(f"lora rank must be an integer in [1, {MAX_LORA_RANK}], got {self.rank!r}")
        if not (self.train_unembed or self.train_mlp or self.train_attn):
            raise ValueError("at least one of train_unembed, train_mlp, train_attn must be true")

    @property
    def effective_seed(self) -> int:
        # A missing seed means 0, so two runs created alike start alike.
        return 0 if self.seed is None else int(self.seed)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "LoraConfig":
        return cls(**obj)


@dataclass(frozen=True, kw_only=True)
class AdamConfig:
    """The SDK's AdamParams: decoupled weight decay, global-norm clipping (<= 0 = off)."""

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0

    def __post_init__(self) -> None:
        if not self.learning_rate >= 0:
            raise ValueError(f"learning_rate must be >= 0, got {self.learning_rate!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
