"""Training bodies: Datum, forward/backward, optim_step, custom losses.

``Datum`` converts plain lists and numpy arrays in ``loss_fn_inputs`` to
``TensorData`` in ``__post_init__`` (msgspec runs it after ``__init__`` and
after decoding), so ``Datum(model_input=..., loss_fn_inputs={"target_tokens":
[1, 2], "weights": np.ones(2)})`` works as in the SDK. Lists take their dtype
from the key (``target_tokens`` -> int64; ``weights``, ``advantages``,
``logprobs``, ``clip_low_threshold``, ``clip_high_threshold``,
``sequence_ratio_mask`` -> float32); keys the SDK does not know take it from
the values (ints -> int64, floats -> float32). ``Datum.create`` is the same
thing spelled as a constructor.

The current service sends forward_backward as protobuf (``wire.protobuf``);
the JSON forms here (``ForwardBackwardRequest`` with ``type:
"forward_backward"``, ``ForwardRequest`` with ``type: "forward"``, and a JSON
``ForwardBackwardOutput``) stay supported for servers that speak JSON.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, TypeAlias

import msgspec
import numpy as np

from ._base import WireStruct, sent
from .model_input import ModelInput
from .tensor_data import TensorData, TensorDtype, tensor_dtype_of

__all__ = [
    "LossFnType",
    "LOSS_FN_TYPES",
    "KEY_DTYPES",
    "PromptProvenanceSpan",
    "SampledProvenanceSpan",
    "ProvenanceSpan",
    "Datum",
    "to_tensor_data",
    "ForwardBackwardInput",
    "ForwardBackwardRequest",
    "ForwardRequest",
    "ForwardBackwardOutput",
    "LossFnOutput",
    "AdamParams",
    "DimuonParams",
    "OptimStepRequest",
    "OptimStepResponse",
    "CustomLossInput",
    "CustomLossNode",
    "CustomLossGraph",
    "CreateCustomLossRequest",
    "CreateCustomLossResponse",
]

LossFnType: TypeAlias = Literal[
    "cross_entropy",
    "importance_sampling",
    "ppo",
    "cispo",
    "dro",
    "gspo",
    "stable_reinforce",
    "custom",
]
LOSS_FN_TYPES: tuple[str, ...] = LossFnType.__args__  # type: ignore[attr-defined]

KEY_DTYPES: dict[str, TensorDtype] = {
    "target_tokens": "int64",
    "weights": "float32",
    "advantages": "float32",
    "logprobs": "float32",
    "clip_low_threshold": "float32",
    "clip_high_threshold": "float32",
    "sequence_ratio_mask": "float32",
}


class PromptProvenanceSpan(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="prompt_tokens"):
    """Positions ``[offset, offset+length)`` of a sampled sequence's prompt."""

    sequence_id: str
    offset: int = sent(0)
    length: int


class SampledProvenanceSpan(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="sampled_tokens"):
    """Positions ``[offset, offset+length)`` of a sampled sequence's tokens."""

    sequence_id: str
    offset: int = sent(0)
    length: int


ProvenanceSpan: TypeAlias = PromptProvenanceSpan | SampledProvenanceSpan


def to_tensor_data(key: str, value: Any) -> TensorData:
    """Convert a loss_fn_inputs value (TensorData, array or list) the way the SDK does."""
    if isinstance(value, TensorData):
        return value
    if isinstance(value, np.ndarray):
        return TensorData.from_numpy(value)
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        arr = value.detach().cpu()
        arr = arr.float().numpy() if arr.is_floating_point() else arr.numpy()
        return TensorData.from_numpy(arr)
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:
            raise ValueError(f"{key} must be a rectangular numeric array, not a ragged list") from None
        if arr.dtype == object:
            raise ValueError(f"{key} must be a rectangular numeric array, not a ragged list")
        dtype = KEY_DTYPES.get(key)
        if dtype is None:
            dtype = tensor_dtype_of(arr.dtype) if arr.size else "float32"
        return TensorData.from_list(arr, dtype)
    raise TypeError(f"unsupported loss_fn_inputs value for {key!r}: {type(value).__name__}")


class Datum(WireStruct, frozen=True, kw_only=True):
    """One training example: an input and its loss inputs (see module docstring)."""

    loss_fn_inputs: dict[str, TensorData] = sent({})
    model_input: ModelInput
    model_input_spans: list[ProvenanceSpan] | None = None
    loss_fn_input_spans: list[ProvenanceSpan] | None = None

    def __post_init__(self) -> None:
        inputs = self.loss_fn_inputs
        if not all(isinstance(v, TensorData) for v in inputs.values()):
            msgspec.structs.force_setattr(
                self, "loss_fn_inputs", {k: to_tensor_data(k, v) for k, v in inputs.items()}
            )
        if (self.model_input_spans is None) != (self.loss_fn_input_spans is None):
            raise ValueError("provenance spans come as a pair: set both span lists or neither")

    @classmethod
    def create(
        cls,
        model_input: ModelInput,
        loss_fn_inputs: Mapping[str, Any] | None = None,
        *,
        model_input_spans: list[ProvenanceSpan] | None = None,
        loss_fn_input_spans: list[ProvenanceSpan] | None = None,
    ) -> Datum:
        return cls(
            model_input=model_input,
            loss_fn_inputs={k: to_tensor_data(k, v) for k, v in (loss_fn_inputs or {}).items()},
            model_input_spans=model_input_spans,
            loss_fn_input_spans=loss_fn_input_spans,
        )

    def with_provenance(
        self, model_input: list[ProvenanceSpan], loss_fn_inputs: list[ProvenanceSpan]
    ) -> Datum:
        return msgspec.structs.replace(
            self, model_input_spans=list(model_input), loss_fn_input_spans=list(loss_fn_inputs)
        )


class ForwardBackwardInput(WireStruct, frozen=True, kw_only=True):
    data: list[Datum]
    loss_fn: LossFnType
    loss_fn_config: dict[str, float | str] | None = None


class ForwardBackwardRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="forward_backward"):
    """Legacy JSON form; the protobuf form is built by ``wire.protobuf``."""

    forward_backward_input: ForwardBackwardInput
    model_id: str
    seq_id: int | None = None


class ForwardRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="forward"):
    """Legacy JSON forward; in protobuf it is a ForwardBackwardRequest with forward_only."""

    forward_input: ForwardBackwardInput
    model_id: str
    seq_id: int | None = None


LossFnOutput: TypeAlias = dict[str, TensorData]


class ForwardBackwardOutput(WireStruct, frozen=True, kw_only=True):
    """Per-datum loss outputs (``logprobs``, ...) and ``name:reduction`` metrics.

    Decoded from protobuf, each TensorData holds a numpy view over the
    message bytes (see ``wire.tensor_data``).
    """

    loss_fn_output_type: str
    loss_fn_outputs: list[LossFnOutput]
    metrics: dict[str, float] = sent({})


class AdamParams(WireStruct, frozen=True, kw_only=True):
    learning_rate: float = sent(0.0001)
    beta1: float = sent(0.9)
    beta2: float = sent(0.95)
    eps: float = sent(1e-12)
    weight_decay: float = sent(0.0)
    grad_clip_norm: float = sent(0.0)


class DimuonParams(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="dimuon"):
    learning_rate: float
    grad_clip_norm: float = sent(0.0)
    beta1: float = sent(0.9)


class OptimStepRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="optim_step"):
    """Exactly one of ``adam_params`` (Adam models) or ``optimizer_params`` (others)."""

    adam_params: AdamParams | None = None
    optimizer_params: DimuonParams | None = None
    model_id: str
    seq_id: int | None = None


class OptimStepResponse(WireStruct, frozen=True, kw_only=True):
    metrics: dict[str, float] | None = None


class CustomLossInput(WireStruct, frozen=True, kw_only=True):
    name: str
    rank: Literal[0, 1, 2]


class CustomLossNode(WireStruct, frozen=True, kw_only=True):
    op: Literal["placeholder", "get_attr", "call_function", "call_method", "call_module", "output"]
    name: str
    target: str
    args: list[Any] = sent([])
    kwargs: dict[str, Any] = sent({})


class CustomLossGraph(WireStruct, frozen=True, kw_only=True):
    format: Literal[1] = sent(1)
    nodes: list[CustomLossNode]


class CreateCustomLossRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="create_custom_loss"):
    session_id: str
    custom_loss_seq_id: int
    name: str
    inputs: list[CustomLossInput]
    graph: CustomLossGraph


class CreateCustomLossResponse(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="create_custom_loss"):
    loss_id: str
