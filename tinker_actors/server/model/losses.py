"""Loss functions on per-token logprobs, with their derivative d(loss)/d(logprob).

Every built-in loss of this server is a sum over tokens of a function of the
target logprob ``lp_t = log p_theta(target_t | input[:t+1])``, so each one here
returns the loss and ``dloss/dlp`` per token; the network turns that into
adapter gradients. Notation: ``q_t`` is the sampler's logprob
(``loss_fn_inputs["logprobs"]``), ``A_t`` the advantage, ``r_t = exp(lp_t - q_t)``.

==================== ============================================================
name                 loss (summed over tokens t of every datum)
==================== ============================================================
cross_entropy        ``-w_t lp_t``  (``weights`` default to 1)
importance_sampling  ``-r_t A_t``
ppo                  ``-min(r_t A_t, clip(r_t, lo, hi) A_t)``
cispo                ``-sg(clip(r_t, lo, hi)) A_t lp_t``  (sg = stop-gradient)
dro                  ``-(lp_t A_t - beta/2 (lp_t - q_t)^2)``
gspo                 ``-m_t min(s A_t, clip(s, lo, hi) A_t)`` with one ratio per
                     sequence, ``s = exp(mean over m of (lp - q))``
stable_reinforce     ``-sg(min(r_t, hi)) A_t lp_t``  (truncated importance weight)
==================== ============================================================

gspo (Group Sequence Policy Optimization) scores a datum's action tokens
as one sequence: ``m_t`` is 1 where ``A_t != 0`` (the sampled tokens; prompt
tokens carry no advantage) and the sequence ratio is the geometric mean of
the token ratios there, so ``ds/dlp_t = s m_t / n`` (``n = sum m``). Its
``clip_*_threshold`` bounds apply to that sequence ratio.
stable_reinforce is REINFORCE with the importance weight truncated from
above at ``clip_high_threshold`` (default 2) and held constant in the
gradient; a sampler made with ``record_stability_info`` lets the server
check the sampled tokens it trains on against what it sampled.

Config keys (``loss_fn_config``): ``clip_low_threshold`` (default 0.8) and
``clip_high_threshold`` (default 1.2) are ratio bounds for ppo and cispo, as in
Tinker's docs (a datum may override them with loss_fn_inputs of the same names,
scalar or per token); ``beta`` (default 0.05) weights dro's quadratic penalty. Unknown
keys are an error, so a typo does not silently train with the defaults.

Outputs per datum: ``logprobs`` (float32, length T) and ``elementwise_loss``
(float32, the per-token loss above). Metrics use Tinker's ``name:reduction``
keys: always ``loss:sum``; the policy-gradient losses add ``ratio:mean`` (mean
of r_t over tokens), ppo and cispo add ``clip_fraction:mean`` (share of tokens
whose ratio lies outside [lo, hi]).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["LOSS_FUNCTIONS", "LOSS_INPUTS", "TokenLoss", "token_loss", "check_loss_fn", "loss_config"]

LOSS_FUNCTIONS: frozenset[str] = frozenset(
    {"cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "gspo", "stable_reinforce"}
)

# Required loss_fn_inputs per loss (cross_entropy's weights are optional).
LOSS_INPUTS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("target_tokens",),
    "importance_sampling": ("target_tokens", "logprobs", "advantages"),
    "ppo": ("target_tokens", "logprobs", "advantages"),
    "cispo": ("target_tokens", "logprobs", "advantages"),
    "dro": ("target_tokens", "logprobs", "advantages"),
    "gspo": ("target_tokens", "logprobs", "advantages"),
    "stable_reinforce": ("target_tokens", "logprobs", "advantages"),
}
_OPTIONAL_INPUTS: dict[str, tuple[str, ...]] = {"cross_entropy": ("weights",)}

_CONFIG_DEFAULTS: dict[str, dict[str, float]] = {
    "cross_entropy": {},
    "importance_sampling": {},
    "ppo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
    "cispo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
    "dro": {"beta": 0.05},
    "gspo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
    "stable_reinforce": {"clip_high_threshold": 2.0},
}


def check_loss_fn(loss_fn: str) -> None:
    if loss_fn not in LOSS_FUNCTIONS:
        known = ", ".join(sorted(LOSS_FUNCTIONS))
        raise ValueError(f"unsupported loss_fn {loss_fn!r}; this server supports: {known}")


def loss_config(loss_fn: str, config: Mapping[str, float | str] | None) -> dict[str, float]:
    """``config`` merged over the defaults of ``loss_fn``, checked."""
    check_loss_fn(loss_fn)
    merged = dict(_CONFIG_DEFAULTS[loss_fn])
    for key, value in (config or {}).items():
        if key not in merged:
            allowed = ", ".join(sorted(merged)) or "none"
            raise ValueError(f"loss_fn_config key {key!r} is not used by {loss_fn} (accepted keys: {allowed})")
        try:
            merged[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"loss_fn_config[{key!r}] must be a number, got {value!r}") from None
        if not np.isfinite(merged[key]):
            raise ValueError(f"loss_fn_config[{key!r}] must be finite, got {value!r}")
    if "clip_low_threshold" in merged and not merged["clip_low_threshold"] <= merged["clip_high_threshold"]:
        raise ValueError("clip_low_threshold must not exceed clip_high_threshold")
    return merged


def check_inputs(loss_fn: str, inputs: Mapping[str, np.ndarray], length: int, where: str) -> None:
    """Required inputs present, each one-dimensional of the input's length."""
    for key in LOSS_INPUTS[loss_fn]:
        if key not in inputs:
            raise ValueError(f"{where}: loss_fn {loss_fn!r} needs loss_fn_inputs[{key!r}]")
    for key in (*LOSS_INPUTS[loss_fn], *_OPTIONAL_INPUTS.get(loss_fn, ())):
        if key in inputs:
            shape = np.shape(inputs[key])
            if shape != (length,):
                raise ValueError(
                    f"{where}: loss_fn_inputs[{key!r}] has shape {list(shape)}, expected [{length}]"
                    " (one value per input token)"
                )


def _threshold(inputs: Mapping[str, np.ndarray], cfg: Mapping[str, float], key: str, length: int) -> np.ndarray | float:
    # The SDK also lets a datum carry its own thresholds (a scalar or one per token).
    if key not in inputs:
        return cfg[key]
    value = np.asarray(inputs[key], dtype=np.float64)
    if value.size == 1:
        return float(value.reshape(()))
    if value.shape != (length,):
        raise ValueError(f"loss_fn_inputs[{key!r}] has shape {list(value.shape)}, expected a scalar or [{length}]")
    return value


@dataclass(slots=True)
class TokenLoss:
    """One datum's loss: per-token values, their derivative, and metric parts."""

    elementwise: np.ndarray  # float64 (T,)
    dlogprobs: np.ndarray  # float64 (T,)
    ratio: np.ndarray | None = None  # r_t, for ratio:mean
    clipped: np.ndarray | None = None  # bool, for clip_fraction:mean


def token_loss(loss_fn: str, lp: np.ndarray, inputs: Mapping[str, np.ndarray], cfg: Mapping[str, float]) -> TokenLoss:
    """Loss of one datum given its target logprobs ``lp`` (float64)."""
    if loss_fn == "cross_entropy":
        w = np.asarray(inputs["weights"], dtype=np.float64) if "weights" in inputs else np.ones_like(lp)
        return TokenLoss(-w * lp, -w)
    q = np.asarray(inputs["logprobs"], dtype=np.float64)
    adv = np.asarray(inputs["advantages"], dtype=np.float64)
    ratio = np.exp(lp - q)
    if loss_fn == "importance_sampling":
        return TokenLoss(-ratio * adv, -ratio * adv, ratio)
    if loss_fn == "gspo":
        return _gspo(lp, q, adv, cfg)
    if loss_fn == "stable_reinforce":
        hi = _threshold(inputs, cfg, "clip_high_threshold", lp.shape[0])
        weight = np.minimum(ratio, hi)
        return TokenLoss(-weight * adv * lp, -weight * adv, ratio, ratio > hi)
    if loss_fn == "dro":
        beta = cfg["beta"]
        diff = lp - q
        return TokenLoss(-(lp * adv - 0.5 * beta * diff * diff), -(adv - beta * diff), ratio)
    lo = _threshold(inputs, cfg, "clip_low_threshold", lp.shape[0])
    hi = _threshold(inputs, cfg, "clip_high_threshold", lp.shape[0])
    clipped_ratio = np.clip(ratio, lo, hi)
    outside = (ratio < lo) | (ratio > hi)
    if loss_fn == "ppo":
        unclipped_obj = ratio * adv
        clipped_obj = clipped_ratio * adv
        # min() picks the unclipped term where it is smaller (or equal); only
        # there does the objective depend on theta.
        use_unclipped = unclipped_obj <= clipped_obj
        obj = np.where(use_unclipped, unclipped_obj, clipped_obj)
        return TokenLoss(-obj, np.where(use_unclipped, -unclipped_obj, 0.0), ratio, outside)
    if loss_fn == "cispo":
        return TokenLoss(-clipped_ratio * adv * lp, -clipped_ratio * adv, ratio, outside)
    raise AssertionError(loss_fn)  # check_loss_fn ran first


def _gspo(lp: np.ndarray, q: np.ndarray, adv: np.ndarray, cfg: Mapping[str, float]) -> TokenLoss:
    """gspo of one datum (see the module docstring): one ratio for its action tokens."""
    mask = (adv != 0).astype(np.float64)
    n = float(mask.sum())
    if n == 0:
        zero = np.zeros_like(lp)
        return TokenLoss(zero, zero.copy(), np.ones_like(lp), np.zeros(lp.shape, dtype=bool))
    seq_ratio = float(np.exp(np.sum(mask * (lp - q)) / n))
    lo, hi = cfg["clip_low_threshold"], cfg["clip_high_threshold"]
    clipped_ratio = min(max(seq_ratio, lo), hi)
    unclipped_obj = seq_ratio * adv
    use_unclipped = unclipped_obj <= clipped_ratio * adv
    obj = mask * np.where(use_unclipped, unclipped_obj, clipped_ratio * adv)
    # d(-sum_u obj_u)/d lp_t: only unclipped terms depend on theta, all through s.
    live = float(np.sum(mask * adv * use_unclipped))
    dlp = -live * seq_ratio * mask / n
    outside = np.full(lp.shape, not lo <= seq_ratio <= hi) & (mask > 0)
    return TokenLoss(-obj, dlp, np.full(lp.shape, seq_ratio), outside)
