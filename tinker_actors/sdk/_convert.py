"""Between the drop-in's SDK types (:mod:`tinker_actors.sdk.types`) and our wire Structs.

Inputs go to the wire before a call (no copies: a TensorData's array is
shared); results come back as the SDK's types after it. The wire
decoder's arrays are read-only views over the response body; the SDK's
TensorData copies those once so ``to_torch()`` can share memory with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..wire import types as wt
from . import types as st

__all__ = [
    "datum_to_wire", "data_to_wire", "tensor_to_wire", "tensor_from_wire", "fwdbwd_from_wire",
    "sample_from_wire", "spans_to_wire",
]


def tensor_to_wire(td: Any) -> wt.TensorData:
    if isinstance(td, wt.TensorData):
        return td
    if isinstance(td, st.TensorData):
        values = td._numpy if td.sparse_crow_indices is None else td._numpy.reshape(-1)
        return wt.TensorData(
            data=values, dtype=td.dtype, shape=td.shape,  # type: ignore[arg-type]
            sparse_crow_indices=td.sparse_crow_indices, sparse_col_indices=td.sparse_col_indices,
        )
    return wt.to_tensor_data("tensor", td)


def tensor_from_wire(td: wt.TensorData | None) -> st.TensorData | None:
    if td is None:
        return None
    return st.TensorData(
        data=td.values(), dtype=td.dtype, shape=None if td.shape is None else list(td.shape),
        sparse_crow_indices=None if td.sparse_crow_indices is None else list(td.sparse_crow_indices),
        sparse_col_indices=None if td.sparse_col_indices is None else list(td.sparse_col_indices),
    )


def spans_to_wire(spans: Iterable[Any] | None) -> list[Any] | None:
    if spans is None:
        return None
    out: list[Any] = []
    for span in spans:
        if isinstance(span, st.PromptProvenanceSpan):
            out.append(wt.PromptProvenanceSpan(sequence_id=span.sequence_id, offset=span.offset, length=span.length))
        elif isinstance(span, st.SampledProvenanceSpan):
            out.append(wt.SampledProvenanceSpan(sequence_id=span.sequence_id, offset=span.offset, length=span.length))
        else:
            out.append(span)
    return out


def datum_to_wire(datum: Any) -> wt.Datum:
    if isinstance(datum, wt.Datum):
        return datum
    if not isinstance(datum, st.Datum):
        raise TypeError(f"expected a tinker Datum, got {type(datum).__name__}")
    return wt.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={k: tensor_to_wire(v) for k, v in datum.loss_fn_inputs.items()},
        model_input_spans=spans_to_wire(datum.model_input_spans),
        loss_fn_input_spans=spans_to_wire(datum.loss_fn_input_spans),
    )


def data_to_wire(data: Iterable[Any]) -> list[wt.Datum]:
    return [datum_to_wire(d) for d in data]


def _outputs(outputs: list[Mapping[str, wt.TensorData]]) -> list[dict[str, st.TensorData]]:
    return [{k: tensor_from_wire(v) for k, v in out.items()} for out in outputs]  # type: ignore[misc]


def fwdbwd_from_wire(out: wt.ForwardBackwardOutput) -> st.ForwardBackwardOutput:
    return st.ForwardBackwardOutput(
        loss_fn_output_type=out.loss_fn_output_type,
        loss_fn_outputs=_outputs(out.loss_fn_outputs),
        metrics=dict(out.metrics),
    )


def _array(value: Any, dtype: Any) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=dtype)
    return arr if arr.flags.writeable else arr.copy()


def sample_from_wire(resp: wt.SampleResponse) -> st.SampleResponse:
    sequences = [
        st.SampledSequence(
            stop_reason=seq.stop_reason,
            sequence_id=seq.sequence_id or "",
            tokens_np=_array(seq.tokens, np.int32),
            logprobs_np=_array(seq.logprobs, np.float32),
            topk_logprobs_np=seq.topk_logprobs_np,
        )
        for seq in resp.sequences
    ]
    alt = resp.prompt_alt_tokens
    return st.SampleResponse(
        sequences=sequences,
        prompt_logprobs_np=resp.prompt_logprobs_np,
        topk_prompt_logprobs_np=resp.topk_prompt_logprobs_np,
        target_prompt_logprobs=tensor_from_wire(resp.target_prompt_logprobs),
        prompt_cache_hit_tokens=resp.prompt_cache_hit_tokens,
        prompt_alt_tokens=None if alt is None else st.PromptAltTokens(
            tokens=tensor_from_wire(alt.tokens), logprobs=tensor_from_wire(alt.logprobs)  # type: ignore[arg-type]
        ),
    )
