"""A LoRA training model: forward/backward with gradient accumulation, Adam, save/load.

Gradients of ``forward_backward`` calls add up until ``optim_step`` consumes
them, as on Tinker; losses are sums over tokens and data (no averaging), so
splitting a batch over several calls gives the same step as one call.
Gradients still pending at ``save`` time are not stored: a state is meant to be
saved between optimizer steps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .config import BASE_MODEL_NAME, MAX_CONTEXT, AdamConfig, LoraConfig, ModelConfig, get_model_config
from .losses import check_inputs, check_loss_fn, loss_config, token_loss
from .network import Params, backward, base_params, forward, init_lora, lora_scale
from .optimizer import AdamState
from .persistence import read_state, write_state
from .sampling import Sampler, check_tokens

__all__ = ["Datum", "FBResult", "TrainableModel"]


class Datum(NamedTuple):
    """One sequence: input tokens (length T) and loss inputs (arrays of length T)."""

    tokens: np.ndarray | Sequence[int]
    loss_fn_inputs: Mapping[str, np.ndarray]


@dataclass(slots=True)
class FBResult:
    """Per-datum outputs (``logprobs``, ``elementwise_loss``), batch metrics, this call's gradients."""

    loss_fn_outputs: list[dict[str, np.ndarray]]
    metrics: dict[str, float]
    grads: Params | None = None  # None for forward-only calls


def _prepare(data: Sequence[Datum | tuple[Any, Mapping[str, Any]]], loss_fn: str, vocab: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Check every datum before any work, so a bad one leaves no half-added gradient."""
    if len(data) == 0:
        raise ValueError("forward_backward needs at least one datum")
    prepared = []
    for i, datum in enumerate(data):
        tokens_in, inputs_in = datum
        where = f"data[{i}]"
        tokens = check_tokens(tokens_in, vocab, f"{where}.model_input")
        if tokens.size == 0:
            raise ValueError(f"{where}.model_input is empty")
        if tokens.size > MAX_CONTEXT:
            raise ValueError(f"{where}.model_input has {tokens.size} tokens; the context is {MAX_CONTEXT}")
        inputs = {k: np.asarray(v) for k, v in inputs_in.items()}
        check_inputs(loss_fn, inputs, tokens.size, where)
        inputs["target_tokens"] = check_tokens(inputs["target_tokens"], vocab, f"{where}.loss_fn_inputs['target_tokens']")
        prepared.append((tokens, inputs))
    return prepared


class TrainableModel:
    """Base weights (fixed by the base model's seed) plus trainable LoRA adapters."""

    def __init__(
        self,
        lora: LoraConfig | None = None,
        base_model: str = BASE_MODEL_NAME,
        *,
        model_config: ModelConfig | None = None,
    ) -> None:
        self.model_config = model_config or get_model_config(base_model)
        self.lora_config = lora or LoraConfig()
        self.params: Params = init_lora(self.model_config, self.lora_config)
        self.adam = AdamState(self.params)
        self._grads: Params = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._base = base_params(self.model_config)
        self._scale = lora_scale(self.model_config, self.lora_config.rank)

    @property
    def base_model(self) -> str:
        return self.model_config.name

    @property
    def step(self) -> int:
        """Optimizer steps taken so far."""
        return self.adam.step

    @property
    def pending_grads(self) -> Params:
        """Gradients accumulated since the last ``optim_step`` (copies)."""
        return {k: v.copy() for k, v in self._grads.items()}

    def forward_backward(
        self,
        data: Sequence[Datum | tuple[Any, Mapping[str, Any]]],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None,
        forward_only: bool = False,
    ) -> FBResult:
        """Loss, per-datum outputs and (unless ``forward_only``) accumulated gradients."""
        check_loss_fn(loss_fn)
        cfg = loss_config(loss_fn, loss_fn_config)
        mc = self.model_config
        prepared = _prepare(data, loss_fn, mc.vocab_size)
        dtype = np.dtype(mc.dtype)
        grads = None if forward_only else {k: np.zeros_like(v) for k, v in self.params.items()}
        outputs: list[dict[str, np.ndarray]] = []
        loss_sum = 0.0
        ratios: list[np.ndarray] = []
        clipped: list[np.ndarray] = []
        for tokens, inputs in prepared:
            fw = forward(mc, self._base, self.params, self._scale, tokens)
            logits = fw.logits
            targets = inputs["target_tokens"]
            rows = np.arange(tokens.size)
            shifted = logits - logits.max(axis=-1, keepdims=True)
            exp = np.exp(shifted)
            total = exp.sum(axis=-1)
            lp = shifted[rows, targets].astype(np.float64) - np.log(total.astype(np.float64))
            terms = token_loss(loss_fn, lp, inputs, cfg)
            loss_sum += float(terms.elementwise.sum())
            if terms.ratio is not None:
                ratios.append(terms.ratio)
            if terms.clipped is not None:
                clipped.append(terms.clipped)
            outputs.append(
                {"logprobs": lp.astype(np.float32), "elementwise_loss": terms.elementwise.astype(np.float32)}
            )
            if grads is not None:
                coef = terms.dlogprobs.astype(dtype)
                # d lp_t / d logits_t = onehot(target_t) - softmax(logits_t)
                dlogits = exp * (-coef / total.astype(dtype))[:, None]
                dlogits[rows, targets] += coef
                backward(mc, self._base, self.params, self._scale, fw, dlogits, grads)
        metrics = {"loss:sum": loss_sum}
        if ratios:
            metrics["ratio:mean"] = float(np.concatenate(ratios).mean())
        if clipped:
            metrics["clip_fraction:mean"] = float(np.concatenate(clipped).mean())
        if grads is not None:
            for key, g in grads.items():
                self._grads[key] += g
        return FBResult(outputs, metrics, grads)

    def forward(self, data: Sequence[Datum | tuple[Any, Mapping[str, Any]]], loss_fn: str = "cross_entropy", loss_fn_config: Mapping[str, float | str] | None = None) -> FBResult:
        return self.forward_backward(data, loss_fn, loss_fn_config, forward_only=True)

    def optim_step(self, adam: AdamConfig) -> dict[str, float]:
        """Apply AdamW to the accumulated gradients, then clear them."""
        metrics = self.adam.apply(self.params, self._grads, adam)
        for g in self._grads.values():
            g.fill(0)
        return metrics

    def sampler(self) -> Sampler:
        """A frozen copy of the current weights."""
        return Sampler(self.model_config, self.lora_config, self.params)

    def save(self, directory: str | os.PathLike[str], optimizer: bool = True) -> None:
        """Training state (adapters, and Adam moments and step when ``optimizer``)."""
        write_state(
            directory,
            kind="training",
            model_config=self.model_config,
            lora_config=self.lora_config,
            params=self.params,
            step=self.adam.step,
            moments=(self.adam.m, self.adam.v) if optimizer else None,
        )

    def save_sampler(self, directory: str | os.PathLike[str]) -> None:
        """Weights only, for sampling (``save_weights_for_sampler``)."""
        write_state(
            directory,
            kind="sampler",
            model_config=self.model_config,
            lora_config=self.lora_config,
            params=self.params,
            step=self.adam.step,
        )

    @classmethod
    def load(cls, directory: str | os.PathLike[str], optimizer: bool = False) -> "TrainableModel":
        """A model from a saved state; with ``optimizer`` it continues exactly where it stopped."""
        state = read_state(directory, with_optimizer=optimizer)
        if state.lora_config is None:
            raise ValueError(f"model state at {str(directory)!r} holds no adapters to train")
        model = cls(state.lora_config, model_config=state.model_config)
        for key, value in state.params.items():
            model.params[key][...] = value
        if state.moments is not None:
            m, v = state.moments
            for key in model.params:
                model.adam.m[key][...] = m[key]
                model.adam.v[key][...] = v[key]
            model.adam.step = state.step
        return model


def load_sampler(directory: str | os.PathLike[str]) -> Sampler:
    """A sampler from any saved state (sampler or training)."""
    state = read_state(directory, with_optimizer=False)
    return Sampler(state.model_config, state.lora_config, state.params)
