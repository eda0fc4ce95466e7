"""Models that skip the math (``--null-compute``): same interface, fixed-shape answers.

Benchmarks use them to measure the client and the HTTP path, not numpy.
Answers: logprobs and elementwise losses are zeros of the input's length,
metrics are ``loss:sum = 0``; ``optim_step`` only counts steps; samples are
``max_tokens`` tokens cycling through b"abc...z" with zero logprobs and
``stop_reason = "length"``. Inputs are checked only as far as it costs nothing
(loss name, required keys). The saved state is a valid (freshly initialised)
adapter state, so a null run's checkpoints load anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .config import BASE_MODEL_NAME, AdamConfig, LoraConfig, ModelConfig, get_model_config
from .losses import LOSS_INPUTS, check_loss_fn, loss_config
from .network import init_lora
from .persistence import read_state, write_state
from .sampling import DEFAULT_MAX_TOKENS, SampledSequence, SampleResult, TopK
from .trainable import Datum, FBResult

__all__ = ["NullModel", "NullSampler"]

_PATTERN = np.arange(ord("a"), ord("z") + 1, dtype=np.int64)


class NullSampler:
    def __init__(self, model_config: ModelConfig, lora_config: LoraConfig | None = None) -> None:
        self.model_config = model_config
        self.lora_config = lora_config

    @classmethod
    def for_base_model(cls, model_config: ModelConfig) -> "NullSampler":
        return cls(model_config)

    @property
    def base_model(self) -> str:
        return self.model_config.name

    def compute_prompt_logprobs(self, prompt_tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        out = np.zeros(len(prompt_tokens), dtype=np.float32)
        if out.size:
            out[0] = np.nan
        return out

    def sample(
        self,
        prompt_tokens: Sequence[int] | np.ndarray,
        *,
        num_samples: int = 1,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        **_: Any,
    ) -> SampleResult:
        n_tok = DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens)
        tokens = np.resize(_PATTERN, n_tok)
        zeros = np.zeros(n_tok, dtype=np.float32)
        topk = None
        if topk_sample_logprobs:
            topk = TopK(np.zeros((n_tok, topk_sample_logprobs), np.int64), np.zeros((n_tok, topk_sample_logprobs), np.float32))
        seqs = [SampledSequence(tokens, zeros, "length", topk) for _ in range(int(num_samples))]
        plen = len(prompt_tokens)
        prompt_lp = self.compute_prompt_logprobs(prompt_tokens) if include_prompt_logprobs else None
        prompt_topk = None
        if topk_prompt_logprobs:
            prompt_topk = TopK(np.zeros((plen, topk_prompt_logprobs), np.int64), np.zeros((plen, topk_prompt_logprobs), np.float32))
        return SampleResult(seqs, prompt_lp, prompt_topk)


class NullModel:
    """``TrainableModel``'s interface without the arithmetic."""

    def __init__(
        self,
        lora: LoraConfig | None = None,
        base_model: str = BASE_MODEL_NAME,
        *,
        model_config: ModelConfig | None = None,
    ) -> None:
        self.model_config = model_config or get_model_config(base_model)
        self.lora_config = lora or LoraConfig()
        self._step = 0

    @property
    def base_model(self) -> str:
        return self.model_config.name

    @property
    def step(self) -> int:
        return self._step

    def forward_backward(
        self,
        data: Sequence[Datum | tuple[Any, Mapping[str, Any]]],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None,
        forward_only: bool = False,
    ) -> FBResult:
        check_loss_fn(loss_fn)
        loss_config(loss_fn, loss_fn_config)
        outputs = []
        for i, (tokens, inputs) in enumerate(data):
            for key in LOSS_INPUTS[loss_fn]:
                if key not in inputs:
                    raise ValueError(f"data[{i}]: loss_fn {loss_fn!r} needs loss_fn_inputs[{key!r}]")
            zeros = np.zeros(len(tokens), dtype=np.float32)
            outputs.append({"logprobs": zeros, "elementwise_loss": zeros})
        return FBResult(outputs, {"loss:sum": 0.0}, None)

    def forward(self, data: Sequence[Datum | tuple[Any, Mapping[str, Any]]], loss_fn: str = "cross_entropy", loss_fn_config: Mapping[str, float | str] | None = None) -> FBResult:
        return self.forward_backward(data, loss_fn, loss_fn_config, forward_only=True)

    def optim_step(self, adam: AdamConfig) -> dict[str, float]:
        self._step += 1
        return {"grad_norm:mean": 0.0, "grad_norm_clipped:mean": 0.0, "learning_rate:mean": adam.learning_rate, "step:max": float(self._step)}

    def sampler(self) -> NullSampler:
        return NullSampler(self.model_config, self.lora_config)

    def _write(self, directory: str | os.PathLike[str], kind: str, optimizer: bool) -> None:
        params = init_lora(self.model_config, self.lora_config)
        moments = ({k: np.zeros_like(v) for k, v in params.items()},) * 2 if optimizer else None
        write_state(
            directory, kind=kind, model_config=self.model_config, lora_config=self.lora_config,
            params=params, step=self._step, moments=moments,
        )

    def save(self, directory: str | os.PathLike[str], optimizer: bool = True) -> None:
        self._write(directory, "training", optimizer)

    def save_sampler(self, directory: str | os.PathLike[str]) -> None:
        self._write(directory, "sampler", False)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], optimizer: bool = False) -> "NullModel":
        state = read_state(directory, with_optimizer=optimizer)
        model = cls(state.lora_config or LoraConfig(), model_config=state.model_config)
        if optimizer:
            model._step = state.step
        return model


def load_null_sampler(directory: str | os.PathLike[str]) -> NullSampler:
    state = read_state(directory, with_optimizer=False)
    return NullSampler(state.model_config, state.lora_config)
