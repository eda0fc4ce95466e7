"""What every client adapter shares: the workload, its bodies, and figure shapes.

The same prompt, sampling settings, training datum and Adam step are used by
all three clients, so any difference in the figures is the client's.
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any, Awaitable, Callable

from .. import measure

BASE_MODEL = "tinker-actors/byte-lm-tiny"
PROMPT_TOKENS = list(b"The quick brown fox jumps")  # short prompt, byte vocabulary
MAX_TOKENS = 8
TRAIN_TOKENS = list(b"one small training datum!")
LORA_RANK = 8
ADAM = {"learning_rate": 1e-4, "beta1": 0.9, "beta2": 0.95, "eps": 1e-12,
        "weight_decay": 0.0, "grad_clip_norm": 0.0}


def sample_body_json(sampling_session_id: str, seq_id: int) -> bytes:
    """The asample body the official SDK would send for our workload."""
    return json.dumps({
        "num_samples": 1,
        "prompt": {"chunks": [{"tokens": PROMPT_TOKENS, "type": "encoded_text"}]},
        "sampling_params": {"max_tokens": MAX_TOKENS, "temperature": 1.0, "top_k": -1, "top_p": 1.0},
        "sampling_session_id": sampling_session_id,
        "seq_id": seq_id,
        "prompt_logprobs": False,
        "topk_prompt_logprobs": 0,
        "topk_sample_logprobs": 0,
        "type": "sample",
    }, separators=(",", ":")).encode()


def create_model_body(session_id: str) -> dict[str, Any]:
    return {"session_id": session_id, "model_seq_id": 0, "base_model": BASE_MODEL,
            "lora_config": {"rank": LORA_RANK, "train_unembed": True, "train_mlp": True, "train_attn": True},
            "optimizer_config": {"type": "adamw"}, "type": "create_model"}


# -- a hand-written protobuf encoder, just enough for one ForwardBackwardRequest ---
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:  # length-delimited
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _tensor(dense: bytes, dtype: int, shape: list[int]) -> bytes:
    packed = b"".join(_varint(d) for d in shape)
    return _field(1, dense) + _varint(3 << 3) + _varint(dtype) + _field(4, packed)


def forward_backward_proto(model_id: str, seq_id: int) -> bytes:
    """ForwardBackwardRequest{model_id, seq_id, [Datum], "cross_entropy"} with one datum."""
    n = len(TRAIN_TOKENS) - 1
    tokens = struct.pack(f"<{n}i", *TRAIN_TOKENS[:-1])
    chunk = _field(1, _field(1, tokens))  # Chunk.encoded_text.tokens
    targets = _tensor(struct.pack(f"<{n}q", *TRAIN_TOKENS[1:]), 2, [n])  # I64
    weights = _tensor(struct.pack(f"<{n}f", *([1.0] * n)), 1, [n])  # F32
    inputs = _field(2, _field(1, b"target_tokens") + _field(2, targets)) + _field(
        2, _field(1, b"weights") + _field(2, weights))
    datum = _field(1, chunk) + inputs
    return (_field(1, model_id.encode()) + _varint(2 << 3) + _varint(seq_id)
            + _field(3, datum) + _field(4, b"cross_entropy"))


# -- figure shapes ---------------------------------------------------------------
def scale_figures(rss_before: int, rss_queued: int, n: int) -> dict[str, Any]:
    peak = max(measure.peak_rss_bytes(), rss_queued)
    return {
        "queued_rss_mb": (rss_queued - rss_before) / 2**20,
        "peak_bytes_per_queued_request": (peak - rss_before) / n,
        "queued_bytes_per_request": (rss_queued - rss_before) / n,
    }


def startup_figures(t0: float, t_imported: float, t_first: float) -> dict[str, Any]:
    return {
        "import_s": t_imported - t0,
        "first_request_after_import_s": t_first - t_imported,
        "time_to_first_request_s": t_first - t0,
        "peak_rss_mb": measure.peak_rss_bytes() / 2**20,
    }


class PipelineProbe:
    """Was the optim_step POST at the server before the forward_backward result existed?

    The server pauses every future for ``pause_s``; ``check(after_s)`` is called
    right after the caller has issued both calls, waits ``after_s < pause_s``
    (so the forward_backward result cannot exist yet) and then counts the
    optim_step requests the server has seen.
    """

    def __init__(self, base_url: str, sleep: Callable[[float], Awaitable[None]]):
        self.base_url = base_url
        self.sleep = sleep
        self.base = measure.route_count(measure.local_stats(base_url), "optim_step")
        self.steps = 0
        self.queued = 0

    async def check(self, after_s: float) -> None:
        self.steps += 1
        await self.sleep(after_s)
        seen = measure.route_count(measure.local_stats(self.base_url), "optim_step") - self.base
        if seen >= self.steps:
            self.queued += 1

    def figures(self) -> dict[str, Any]:
        return {"steps": self.steps, "optim_queued_before_fb_result": self.queued,
                "pipelined_share": self.queued / self.steps if self.steps else 0.0}


async def drain(futs: list[Any], deadline_s: float | None, wait: Callable[[Any], Awaitable[Any]]) -> dict[str, Any]:
    """Await ``futs`` in order; stop at ``deadline_s`` and project the full drain time."""
    t0 = time.monotonic()
    done = 0
    for fut in futs:
        await wait(fut)
        done += 1
        if deadline_s is not None and time.monotonic() - t0 > deadline_s and done < len(futs):
            break
    elapsed = time.monotonic() - t0
    return {"drained": done, "drain_s": elapsed,
            "projected_drain_s": elapsed * len(futs) / done if done else float("nan")}
