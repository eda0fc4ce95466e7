"""Splitting a large forward_backward into chunks and joining the results.

The service caps one request at ``fwdbwd_max_chunk_len`` datums (1024) and
about ``fwdbwd_max_chunk_bytes_count`` protobuf bytes (5 MB); the server flags
may change both. A call over either limit is cut into consecutive chunks, each
sent with its own seq_id; the outputs are concatenated in datum order and the
metrics combined according to the reduction named after the last ``:`` in
each key (``loss:sum``, ``acc:mean``...):

* ``mean`` and ``slack`` are weighted by each chunk's datum count;
* ``sum``, ``min``, ``max`` as named; ``hash2`` is a wrapping 64-bit sum;
* ``unique`` keeps every chunk's value (``key``, then ``key_1``, ``key_2``... as the SDK names them).

A key whose reduction is unknown is dropped (as the SDK does); a key with no
``:`` at all is treated as ``mean`` instead of failing the whole call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._log import get_logger
from ..wire.model_input import DmelChunk, EncodedTextChunk, ImageChunk
from ..wire.training import Datum, ForwardBackwardOutput

__all__ = [
    "MAX_CHUNK_LEN",
    "MAX_CHUNK_BYTES",
    "estimate_datum_bytes",
    "plan_chunks",
    "combine_metrics",
    "combine_outputs",
]

log = get_logger(__name__)

MAX_CHUNK_LEN = 1024
MAX_CHUNK_BYTES = 5_000_000

_MASK64 = (1 << 64) - 1


def _tensor_bytes(tensor: Any) -> int:
    data = tensor.data
    n = data.size if isinstance(data, np.ndarray) else len(data)
    itemsize = 8 if tensor.dtype == "int64" else 4
    sparse = 0
    if tensor.sparse_crow_indices is not None:
        sparse = 8 * (len(tensor.sparse_crow_indices) + len(tensor.sparse_col_indices or ()))
    return n * itemsize + sparse


def estimate_datum_bytes(datum: Datum) -> int:
    """Roughly the protobuf size of one datum: int32 tokens, raw tensor bytes, CSR indices."""
    total = 0
    for chunk in datum.model_input.chunks:
        if isinstance(chunk, EncodedTextChunk):
            total += 4 * len(chunk.tokens)
        elif isinstance(chunk, ImageChunk):
            total += len(chunk.data)
        elif isinstance(chunk, DmelChunk):
            total += len(chunk.dmel)
    for tensor in datum.loss_fn_inputs.values():
        total += _tensor_bytes(tensor)
    return total


def plan_chunks(
    data: Sequence[Datum], *, max_len: int = MAX_CHUNK_LEN, max_bytes: int = MAX_CHUNK_BYTES
) -> list[list[Datum]]:
    """Cut ``data`` into consecutive chunks within both limits (a lone oversized datum gets its own chunk)."""
    chunks: list[list[Datum]] = []
    current: list[Datum] = []
    size = 0
    for datum in data:
        cost = estimate_datum_bytes(datum)
        if current and (len(current) >= max_len or size + cost > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(datum)
        size += cost
    if current or not chunks:
        chunks.append(current)
    return chunks


def _reduce(reduction: str, values: list[float], weights: list[int]) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    if reduction == "mean":
        return float(np.average(arr, weights=weights)) if sum(weights) else float(arr.mean())
    if reduction == "slack":
        mean = np.average(arr, weights=weights) if sum(weights) else arr.mean()
        return float(arr.max() - mean)
    if reduction == "sum":
        return float(arr.sum())
    if reduction == "min":
        return float(arr.min())
    if reduction == "max":
        return float(arr.max())
    if reduction == "hash2":
        return float(sum(int(v) & _MASK64 for v in values) & _MASK64)
    return None


def combine_metrics(metrics: Sequence[dict[str, float]], weights: Sequence[int]) -> dict[str, float]:
    """Combine per-chunk metrics by their ``name:reduction`` suffix (see module docstring)."""
    if not metrics:
        return {}
    if len(metrics) == 1:
        return dict(metrics[0])
    out: dict[str, float] = {}
    for key in metrics[0]:
        if not all(key in m for m in metrics):
            continue
        values = [float(m[key]) for m in metrics]
        reduction = key.rsplit(":", 1)[1] if ":" in key else "mean"
        if reduction == "unique":
            out[key] = values[0]
            out.update({f"{key}_{i}": v for i, v in enumerate(values[1:], start=1)})
            continue
        value = _reduce(reduction, values, list(weights))
        if value is None:
            log.debug("metric_reduction_unknown", key=key)
            continue
        out[key] = value
    return out


def combine_outputs(results: Sequence[ForwardBackwardOutput]) -> ForwardBackwardOutput:
    """One output for several chunks: outputs concatenated, metrics combined."""
    if len(results) == 1:
        return results[0]
    if not results:
        return ForwardBackwardOutput(loss_fn_output_type="", loss_fn_outputs=[], metrics={})
    weights = [len(r.loss_fn_outputs) for r in results]
    return ForwardBackwardOutput(
        loss_fn_output_type=results[0].loss_fn_output_type,
        loss_fn_outputs=[out for r in results for out in r.loss_fn_outputs],
        metrics=combine_metrics([r.metrics for r in results], weights),
    )
