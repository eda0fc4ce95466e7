"""AdamW over the adapters, with global-norm gradient clipping.

One step, for every trainable array p with accumulated gradient g:

    g   <- g * min(1, clip / ||G||)          (||G|| over all arrays; clip <= 0 = off)
    m   <- beta1 m + (1 - beta1) g
    v   <- beta2 v + (1 - beta2) g^2
    p   <- p (1 - lr wd)                      (decoupled weight decay, as torch.optim.AdamW)
    p   <- p - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

``t`` counts steps from 1. Moments are kept in the parameters' dtype, so saving
and reloading them is exact.
"""

from __future__ import annotations

import math

import numpy as np

from .config import AdamConfig

__all__ = ["AdamState", "global_norm"]

Params = dict[str, np.ndarray]


def global_norm(grads: Params) -> float:
    return math.sqrt(sum(float(np.dot(g.ravel().astype(np.float64), g.ravel().astype(np.float64))) for g in grads.values()))


class AdamState:
    """First and second moments per parameter, and the step count."""

    def __init__(self, params: Params) -> None:
        self.step = 0
        self.m: Params = {k: np.zeros_like(v) for k, v in params.items()}
        self.v: Params = {k: np.zeros_like(v) for k, v in params.items()}

    def apply(self, params: Params, grads: Params, adam: AdamConfig) -> dict[str, float]:
        """Update ``params`` in place; metrics in ``name:reduction`` form."""
        norm = global_norm(grads)
        factor = 1.0
        if adam.grad_clip_norm > 0 and norm > adam.grad_clip_norm:
            factor = adam.grad_clip_norm / (norm + 1e-6)
        self.step += 1
        b1, b2, lr = adam.beta1, adam.beta2, adam.learning_rate
        bias1 = 1.0 - b1**self.step
        bias2 = 1.0 - b2**self.step
        decay = 1.0 - lr * adam.weight_decay
        for key, p in params.items():
            g = grads[key] * factor if factor != 1.0 else grads[key]
            m, v = self.m[key], self.v[key]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            if decay != 1.0:
                p *= decay
            p -= lr * (m / bias1) / (np.sqrt(v / bias2) + adam.eps)
        return {
            "grad_norm:mean": norm,
            "grad_norm_clipped:mean": norm * factor,
            "learning_rate:mean": lr,
            "step:max": float(self.step),
        }
