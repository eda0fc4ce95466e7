"""The network: a one-block causal transformer over bytes, forward and backward by hand.

    x0 = embed[tokens] + sinusoid(positions)
    x1 = x0 + Wo(attention(Wq n1, Wk n1, Wv n1))       n1 = rmsnorm(x0), one causal head
    x2 = x1 + W2 silu(W1 n2)                            n2 = rmsnorm(x1)
    logits = Unembed n3                                 n3 = rmsnorm(x2)

Every matrix except the embedding may carry a LoRA adapter,
``y = x W + s (x A) B`` with ``s = lora_alpha / rank``: adapters on wq, wk, wv,
wo exist with ``train_attn``, on w1, w2 with ``train_mlp``, on unembed with
``train_unembed``. Only adapters are trainable; base weights are read-only and
shared between every model built on the same ``ModelConfig``.

Rows are positions, so a matrix maps ``x @ W`` (d_in x d_out).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .config import LoraConfig, ModelConfig

__all__ = [
    "ADAPTER_GROUPS",
    "base_params",
    "init_lora",
    "lora_scale",
    "Forward",
    "forward",
    "backward",
    "DecodeState",
    "prefill",
    "decode_step",
]

Params = dict[str, np.ndarray]

# Fixed order: it decides the draw order of the LoRA seed's random stream.
ADAPTER_GROUPS: dict[str, tuple[str, ...]] = {
    "attn": ("wq", "wk", "wv", "wo"),
    "mlp": ("w1", "w2"),
    "unembed": ("unembed",),
}
_RMS_EPS = 1e-6


def _matrix_shapes(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    d, f = cfg.d_model, cfg.d_ff
    return {
        "wq": (d, d),
        "wk": (d, d),
        "wv": (d, d),
        "wo": (d, d),
        "w1": (d, f),
        "w2": (f, d),
        "unembed": (d, cfg.vocab_size),
    }


@functools.lru_cache(maxsize=8)
def base_params(cfg: ModelConfig) -> Params:
    """The base weights of ``cfg``: same config, same arrays (read-only, cached)."""
    rng = np.random.default_rng(cfg.base_seed)
    dtype = np.dtype(cfg.dtype)
    params: Params = {"embed": rng.standard_normal((cfg.vocab_size, cfg.d_model))}
    for name, shape in _matrix_shapes(cfg).items():
        params[name] = rng.standard_normal(shape) / math.sqrt(shape[0])
    out = {}
    for name, value in params.items():
        arr = value.astype(dtype)
        arr.flags.writeable = False
        out[name] = arr
    return out


def adapter_targets(lora: LoraConfig) -> list[str]:
    """Matrices that carry an adapter under ``lora``'s flags, in canonical order."""
    enabled = {"attn": lora.train_attn, "mlp": lora.train_mlp, "unembed": lora.train_unembed}
    return [name for group, names in ADAPTER_GROUPS.items() if enabled[group] for name in names]


def init_lora(cfg: ModelConfig, lora: LoraConfig) -> Params:
    """Fresh adapters: ``A`` small random from the LoRA seed, ``B`` zero (so delta W = 0)."""
    rng = np.random.default_rng(lora.effective_seed)
    dtype = np.dtype(cfg.dtype)
    shapes = _matrix_shapes(cfg)
    params: Params = {}
    for name in adapter_targets(lora):
        d_in, d_out = shapes[name]
        params[f"{name}.A"] = (rng.standard_normal((d_in, lora.rank)) / math.sqrt(d_in)).astype(dtype)
        params[f"{name}.B"] = np.zeros((lora.rank, d_out), dtype=dtype)
    return params


def lora_scale(cfg: ModelConfig, rank: int) -> float:
    return cfg.lora_alpha / rank


@functools.lru_cache(maxsize=16)
def _sinusoid(length: int, d: int, dtype: str) -> np.ndarray:
    pos = np.arange(length, dtype=np.float64)[:, None]
    freq = np.exp(-math.log(10000.0) * np.arange(0, d, 2, dtype=np.float64) / d)
    table = np.zeros((length, d))
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq)
    out = table.astype(dtype)
    out.flags.writeable = False
    return out


def _positions(start: int, stop: int, d: int, dtype: str) -> np.ndarray:
    # Tables come in power-of-two lengths so the cache stays small.
    length = 1 << max(6, (stop - 1).bit_length())
    return _sinusoid(length, d, dtype)[start:stop]


@functools.lru_cache(maxsize=8)
def _causal_bias(length: int, dtype: str) -> np.ndarray:
    bias = np.triu(np.full((length, length), -np.inf), 1).astype(dtype)
    bias.flags.writeable = False
    return bias


def _mask_future(scores: np.ndarray, dtype: str) -> None:
    t = scores.shape[0]
    # Cached in power-of-two sizes; the top-left corner of a bigger mask is the same mask.
    scores += _causal_bias(1 << max(6, (t - 1).bit_length()), dtype)[:t, :t]


def _rms(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + _RMS_EPS)
    return x * r, r


def _rms_back(dn: np.ndarray, n: np.ndarray, r: np.ndarray) -> np.ndarray:
    return r * (dn - n * np.mean(dn * n, axis=-1, keepdims=True))


def _silu(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sig = 1.0 / (1.0 + np.exp(-u))
    return u * sig, sig


class _Linear:
    """``x W + s (x A) B`` for the matrices of one model."""

    __slots__ = ("base", "lora", "scale")

    def __init__(self, base: Params, lora: Params, scale: float) -> None:
        self.base = base
        self.lora = lora
        self.scale = scale

    def __call__(self, x: np.ndarray, name: str) -> np.ndarray:
        y = x @ self.base[name]
        a = self.lora.get(f"{name}.A")
        if a is not None:
            y = y + (self.scale * (x @ a)) @ self.lora[f"{name}.B"]
        return y

    def back(self, dy: np.ndarray, x: np.ndarray, name: str, grads: Params, need_dx: bool = True) -> np.ndarray | None:
        a = self.lora.get(f"{name}.A")
        dx = dy @ self.base[name].T if need_dx else None
        if a is not None:
            b = self.lora[f"{name}.B"]
            dyb = dy @ b.T
            grads[f"{name}.B"] += self.scale * ((x @ a).T @ dy)
            grads[f"{name}.A"] += self.scale * (x.T @ dyb)
            if need_dx:
                dx = dx + self.scale * (dyb @ a.T)
        return dx


@dataclass(slots=True)
class Forward:
    """Activations of one sequence, kept for the backward pass."""

    logits: np.ndarray
    n1: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    p: np.ndarray
    a: np.ndarray
    r2: np.ndarray
    n2: np.ndarray
    u: np.ndarray
    g: np.ndarray
    sig: np.ndarray
    r3: np.ndarray
    n3: np.ndarray


def _after_attention(lin: _Linear, x0: np.ndarray, a: np.ndarray):
    x1 = x0 + lin(a, "wo")
    n2, r2 = _rms(x1)
    u = lin(n2, "w1")
    g, sig = _silu(u)
    x2 = x1 + lin(g, "w2")
    n3, r3 = _rms(x2)
    return lin(n3, "unembed"), (r2, n2, u, g, sig, r3, n3)


def forward(cfg: ModelConfig, base: Params, lora: Params, scale: float, tokens: np.ndarray) -> Forward:
    """Logits (T, vocab) of one token sequence, with the activations backward needs."""
    t = tokens.shape[0]
    x0 = base["embed"][tokens] + _positions(0, t, cfg.d_model, cfg.dtype)
    lin = _Linear(base, lora, scale)
    n1, _ = _rms(x0)
    q, k, v = lin(n1, "wq"), lin(n1, "wk"), lin(n1, "wv")
    s = (q @ k.T) * (1.0 / math.sqrt(cfg.d_model))
    _mask_future(s, cfg.dtype)
    s -= s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    a = p @ v
    logits, (r2, n2, u, g, sig, r3, n3) = _after_attention(lin, x0, a)
    return Forward(logits, n1, q, k, v, p, a, r2, n2, u, g, sig, r3, n3)


def backward(
    cfg: ModelConfig, base: Params, lora: Params, scale: float, fw: Forward, dlogits: np.ndarray, grads: Params
) -> None:
    """Add d(loss)/d(adapter) to ``grads`` given d(loss)/d(logits) of one sequence."""
    lin = _Linear(base, lora, scale)
    has_attn = "wq.A" in lora
    has_mlp = "w1.A" in lora
    need_below = has_attn or has_mlp
    dn3 = lin.back(dlogits, fw.n3, "unembed", grads, need_dx=need_below)
    if not need_below:
        return
    dx2 = _rms_back(dn3, fw.n3, fw.r3)
    dg = lin.back(dx2, fw.g, "w2", grads)
    du = dg * fw.sig * (1.0 + fw.u * (1.0 - fw.sig))
    dn2 = lin.back(du, fw.n2, "w1", grads, need_dx=has_attn)
    if not has_attn:
        return
    dx1 = dx2 + _rms_back(dn2, fw.n2, fw.r2)
    da = lin.back(dx1, fw.a, "wo", grads)
    dp = da @ fw.v.T
    dv = fw.p.T @ da
    ds = fw.p * (dp - np.sum(dp * fw.p, axis=-1, keepdims=True))
    ds *= 1.0 / math.sqrt(cfg.d_model)
    dq = ds @ fw.k
    dk = ds.T @ fw.q
    # The embedding is frozen, so gradients stop at the adapters of wq/wk/wv.
    lin.back(dq, fw.n1, "wq", grads, need_dx=False)
    lin.back(dk, fw.n1, "wk", grads, need_dx=False)
    lin.back(dv, fw.n1, "wv", grads, need_dx=False)


@dataclass(slots=True)
class DecodeState:
    """Key/value cache of ``n`` sequences that share a prompt, for incremental decoding."""

    keys: np.ndarray  # (n, capacity, d)
    values: np.ndarray
    length: int


def prefill(
    cfg: ModelConfig, base: Params, lora: Params, scale: float, prompt: np.ndarray, n: int, capacity: int
) -> tuple[np.ndarray, DecodeState]:
    """Logits of every prompt position, and a cache for ``n`` continuations."""
    fw = forward(cfg, base, lora, scale, prompt)
    t, d = fw.k.shape
    keys = np.empty((n, capacity, d), dtype=fw.k.dtype)
    values = np.empty_like(keys)
    keys[:, :t] = fw.k
    values[:, :t] = fw.v
    return fw.logits, DecodeState(keys, values, t)


def decode_step(
    cfg: ModelConfig, base: Params, lora: Params, scale: float, tokens: np.ndarray, state: DecodeState
) -> np.ndarray:
    """Feed one token per sequence at position ``state.length``; logits (n, vocab) of the next."""
    pos = state.length
    x0 = base["embed"][tokens] + _positions(pos, pos + 1, cfg.d_model, cfg.dtype)
    lin = _Linear(base, lora, scale)
    n1, _ = _rms(x0)
    q, k, v = lin(n1, "wq"), lin(n1, "wk"), lin(n1, "wv")
    state.keys[:, pos] = k
    state.values[:, pos] = v
    state.length = pos + 1
    keys = state.keys[:, : pos + 1]
    s = np.einsum("nd,nld->nl", q, keys) * (1.0 / math.sqrt(cfg.d_model))
    s -= s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    a = np.einsum("nl,nld->nd", p, state.values[:, : pos + 1])
    logits, _ = _after_attention(lin, x0, a)
    return logits
