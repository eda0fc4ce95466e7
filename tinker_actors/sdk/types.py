"""``tinker.types`` of the drop-in: the official SDK's type names with its behaviour.

Most SDK types are plain records; for those the drop-in hands out our wire
Structs of the same name and fields (``SamplingParams``, ``AdamParams``,
``ModelInput``, ``EncodedTextChunk``, ``TrainingRun``, ``Checkpoint``...).
The records whose *behaviour* code relies on are classes of their own here,
converted to and from the wire Structs at the client boundary
(:mod:`tinker_actors.sdk._convert`):

* :class:`TensorData` keeps a numpy array; ``.data`` is a flat Python list,
  ``to_numpy``/``to_torch``/``tolist``/``from_numpy``/``from_torch``/
  ``from_torch_sparse`` work as in the SDK;
* :class:`Datum` is a frozen dataclass (``dataclasses.replace`` works), turns
  lists, arrays and torch tensors in ``loss_fn_inputs`` into TensorData, and
  carries provenance spans (``with_provenance`` checks that they tile);
* :class:`SampledSequence` / :class:`SampleResponse`: ``tokens`` and
  ``logprobs`` are lists of Python numbers (``seq.tokens + [eos]`` appends),
  ``tokens_np`` / ``logprobs_np`` the arrays;
* :class:`ForwardBackwardOutput` holds TensorData of this module;
* :class:`ParsedCheckpointTinkerPath` parses ``tinker://`` paths.

Our own trio clients keep returning the wire Structs (numpy views, no copies);
only the drop-in converts.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from datetime import date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeAlias, Union

import msgspec
import numpy as np
import numpy.typing as npt

from ..wire import types as _wt
from ..wire.types import *  # noqa: F403  (the records the drop-in shares with the wire layer)
from ..wire.tensor_data import TopkLogprobs, topk_to_lists

if TYPE_CHECKING:
    import torch

# -- names the SDK has that are aliases, not classes ------------------------------------------

ModelID: TypeAlias = str
RequestID: TypeAlias = str
CustomLossInputRank: TypeAlias = Literal[0, 1, 2]
ClientSessionFinishReasonType: TypeAlias = Literal["success", "errored", "interrupted"]
OptimParams: TypeAlias = Union[_wt.AdamParams, _wt.DimuonParams]
FutureRetrieveResponse: TypeAlias = Any


class RequestErrorCategory(enum.StrEnum):
    """Who a failed request is blamed on (``RequestFailedError.category``)."""

    Unknown = "unknown"
    Server = "server"
    User = "user"


# -- model inputs -------------------------------------------------------------------------------
# The SDK's (pydantic) records copy what they are given; code relies on it:
# the cookbook builds ``EncodedTextChunk(tokens=buf)`` and then clears ``buf``.


class EncodedTextChunk(_wt.EncodedTextChunk, frozen=True, kw_only=True, eq=False):
    """Token ids; the list given is copied, as the SDK's model does."""

    def __post_init__(self) -> None:
        tokens = self.tokens
        copied = tokens.tolist() if isinstance(tokens, np.ndarray) else [int(t) for t in tokens]
        msgspec.structs.force_setattr(self, "tokens", copied)


class ModelInput(_wt.ModelInput, frozen=True, kw_only=True):
    """A prompt or training input (a list of chunks, copied on construction)."""

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "chunks", list(self.chunks))

    @classmethod
    def from_ints(cls, tokens: Sequence[int]) -> ModelInput:
        return cls(chunks=[EncodedTextChunk(tokens=tokens)])  # type: ignore[arg-type]

    @classmethod
    def empty(cls) -> ModelInput:
        return cls(chunks=[])

    def append(self, chunk: Any) -> ModelInput:
        """A new ModelInput with ``chunk`` added."""
        return ModelInput(chunks=[*self.chunks, chunk])

    def append_int(self, token: int) -> ModelInput:
        """A new ModelInput with one more token."""
        return self.append(EncodedTextChunk(tokens=[token]))


# -- TensorData --------------------------------------------------------------------------------

_NP_OF = {"float32": np.dtype(np.float32), "int64": np.dtype(np.int64)}


def _wire_dtype(dtype: np.dtype[Any]) -> str:
    if dtype.kind == "f":
        return "float32"
    if dtype.kind in "iu":
        return "int64"
    raise ValueError(f"TensorData holds float32 or int64 values; numpy dtype {dtype} has no wire form")


def _pad(pad_value: Any) -> int:
    if isinstance(pad_value, bool) or not isinstance(pad_value, (int, np.integer)):
        raise TypeError(f"pad_value must be an integer, got {type(pad_value).__name__}: {pad_value!r}")
    return int(pad_value)


@dataclasses.dataclass(frozen=True, eq=False, init=False)
class TensorData:
    """A dense or CSR-sparse tensor of float32 or int64 values (the SDK's ``TensorData``).

    The values live in a numpy array; ``data`` is that array as a flat list.
    Arrays that numpy marks read-only (views over a response body) are
    copied once, so ``to_torch()`` can share memory with them.
    """

    dtype: Literal["int64", "float32"]
    shape: Optional[list[int]] = None
    sparse_crow_indices: Optional[list[int]] = None
    sparse_col_indices: Optional[list[int]] = None
    _numpy: np.ndarray = dataclasses.field(repr=False, default=None)  # type: ignore[assignment]

    def __init__(
        self,
        data: Union[list[int], list[float], np.ndarray, None] = None,
        dtype: Optional[Literal["int64", "float32"]] = None,
        shape: Optional[list[int]] = None,
        sparse_crow_indices: Optional[list[int]] = None,
        sparse_col_indices: Optional[list[int]] = None,
    ) -> None:
        if dtype is None:
            raise TypeError("TensorData needs a dtype ('float32' or 'int64')")
        if dtype not in _NP_OF:
            raise ValueError(f"unsupported TensorData dtype {dtype!r}; expected 'float32' or 'int64'")
        want = _NP_OF[dtype]
        if isinstance(data, np.ndarray):
            arr = data.astype(want) if data.dtype != want else (data if data.flags.writeable else data.copy())
        elif data is None:
            arr = np.empty(0, dtype=want)
        else:
            arr = np.asarray(data, dtype=want)
        if sparse_crow_indices is None and shape is not None and list(arr.shape) != list(shape):
            arr = arr.reshape(shape)
        set_ = object.__setattr__
        set_(self, "dtype", dtype)
        set_(self, "shape", None if shape is None else [int(x) for x in shape])
        set_(self, "sparse_crow_indices", None if sparse_crow_indices is None else [int(x) for x in sparse_crow_indices])
        set_(self, "sparse_col_indices", None if sparse_col_indices is None else [int(x) for x in sparse_col_indices])
        set_(self, "_numpy", arr)

    @property
    def data(self) -> Union[list[int], list[float]]:
        """The stored values, flattened, as Python numbers."""
        return self._numpy.reshape(-1).tolist()  # type: ignore[no-any-return]

    @classmethod
    def from_numpy(cls, array: npt.NDArray[Any]) -> TensorData:
        array = np.asarray(array)
        return cls(data=array, dtype=_wire_dtype(array.dtype), shape=list(array.shape))  # type: ignore[arg-type]

    @classmethod
    def from_torch(cls, tensor: torch.Tensor) -> TensorData:
        import torch

        t = tensor.detach().cpu()
        if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
            t = t.float()
        return cls.from_numpy(t.contiguous().numpy())

    @classmethod
    def from_torch_sparse(cls, tensor: torch.Tensor, pad_value: int = 0) -> TensorData:
        """CSR form of a 2-D tensor, leaving out cells equal to ``pad_value``; dense when that is not smaller."""
        pad = _pad(pad_value)
        if tensor.ndim != 2:
            return cls.from_torch(tensor)
        arr = cls.from_torch(tensor)._numpy
        keep = arr != pad
        nrows, ncols = arr.shape
        nnz = int(keep.sum())
        if (nrows + 1) + 2 * nnz >= nrows * ncols:
            return cls.from_numpy(arr)
        rows, cols = np.nonzero(keep)
        crow = np.zeros(nrows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=nrows), out=crow[1:])
        return cls(
            data=arr[rows, cols], dtype=_wire_dtype(arr.dtype), shape=[nrows, ncols],  # type: ignore[arg-type]
            sparse_crow_indices=crow.tolist(), sparse_col_indices=cols.tolist(),
        )

    def to_numpy(self, pad_value: int = 0) -> npt.NDArray[Any]:
        """The dense array; unlisted CSR cells take ``pad_value``."""
        if self.sparse_crow_indices is None:
            return self._numpy
        pad = _pad(pad_value)
        if self.shape is None or len(self.shape) != 2 or self.sparse_col_indices is None:
            raise ValueError("a CSR TensorData needs a 2-D shape and sparse_col_indices")
        nrows, ncols = self.shape
        crow = np.asarray(self.sparse_crow_indices, dtype=np.int64)
        dense = np.full((nrows, ncols), pad, dtype=self._numpy.dtype)
        dense[np.repeat(np.arange(nrows), np.diff(crow)), np.asarray(self.sparse_col_indices, dtype=np.int64)] = (
            self._numpy.reshape(-1)
        )
        return dense

    def to_torch(self, pad_value: int = 0) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.to_numpy(pad_value))

    def tolist(self, pad_value: int = 0) -> list[Any]:
        return self.to_numpy(pad_value).tolist()  # type: ignore[no-any-return]


# -- provenance and Datum ------------------------------------------------------------------------


def _check_span(cls_name: str, sequence_id: str, offset: int, length: int) -> None:
    if length < 0:
        raise ValueError(f"{cls_name}.length must be >= 0, got {length}")
    if offset < 0:
        raise ValueError(f"{cls_name}.offset must be >= 0, got {offset}")
    if not sequence_id:
        raise ValueError(f"{cls_name}.sequence_id must be a non-empty SampledSequence.sequence_id")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptProvenanceSpan:
    """``length`` datum positions that are positions ``[offset, offset+length)`` of a sample's prompt."""

    sequence_id: str
    offset: int = 0
    length: int

    def __post_init__(self) -> None:
        _check_span("PromptProvenanceSpan", self.sequence_id, self.offset, self.length)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampledProvenanceSpan:
    """``length`` datum positions that are positions ``[offset, offset+length)`` of a sampled sequence."""

    sequence_id: str
    offset: int = 0
    length: int

    def __post_init__(self) -> None:
        _check_span("SampledProvenanceSpan", self.sequence_id, self.offset, self.length)


ProvenanceSpans: TypeAlias = list[Union[PromptProvenanceSpan, SampledProvenanceSpan]]
LossFnInputs: TypeAlias = dict[str, TensorData]
LossFnOutput: TypeAlias = dict[str, TensorData]

# Which dtype a plain list takes, by loss input name (as the SDK decides it).
_LIST_DTYPE = dict(_wt.KEY_DTYPES)
_CSR_KEYS = frozenset({"target_tokens", "weights"})


def _as_tensor(key: str, value: Any) -> TensorData:
    if isinstance(value, TensorData):
        return value
    if isinstance(value, _wt.TensorData):
        return TensorData(data=value.values(), dtype=value.dtype, shape=value.shape,
                          sparse_crow_indices=value.sparse_crow_indices, sparse_col_indices=value.sparse_col_indices)
    if isinstance(value, np.ndarray):
        return TensorData.from_numpy(value)
    if hasattr(value, "detach") and hasattr(value, "to_sparse_csr"):  # a torch tensor
        if key in _CSR_KEYS and value.ndim == 2:
            return TensorData.from_torch_sparse(value)
        return TensorData.from_torch(value)
    if isinstance(value, list):
        try:
            arr = np.asarray(value)
        except ValueError:
            raise ValueError(f"loss_fn_inputs[{key!r}] must be a rectangular numeric array, not a ragged list") from None
        if arr.dtype == object:
            raise ValueError(f"loss_fn_inputs[{key!r}] must be a rectangular numeric array, not a ragged list")
        if key not in _LIST_DTYPE:
            if arr.size and arr.dtype.kind in "fiu":
                return TensorData.from_numpy(arr)
            raise ValueError(f"loss_fn_inputs[{key!r}]: cannot tell the dtype of a list for an unknown key; "
                             "pass a numpy array or TensorData")
        return TensorData(data=arr, dtype=_LIST_DTYPE[key], shape=list(arr.shape))  # type: ignore[arg-type]
    raise TypeError(f"unsupported loss_fn_inputs value for {key!r}: {type(value).__name__}")


def _check_spans(name: str, spans: Any) -> None:
    if spans is None:
        return
    for span in spans:
        if not isinstance(span, (PromptProvenanceSpan, SampledProvenanceSpan)):
            raise TypeError(f"{name} holds PromptProvenanceSpan or SampledProvenanceSpan, not {type(span).__name__}")


def _check_tiling(name: str, spans: Sequence[Any], length: int) -> None:
    covered = sum(span.length for span in spans)
    if covered != length:
        raise ValueError(f"with_provenance: the {name} spans cover {covered} positions, but the field has {length}; "
                         "the runs must tile it exactly")


@dataclasses.dataclass(frozen=True)
class Datum:
    """One training example (the SDK's ``Datum``): a frozen dataclass."""

    model_input: ModelInput
    loss_fn_inputs: LossFnInputs = dataclasses.field(default_factory=dict)
    model_input_spans: Optional[ProvenanceSpans] = None
    loss_fn_input_spans: Optional[ProvenanceSpans] = None

    def __post_init__(self) -> None:
        inputs = self.loss_fn_inputs
        object.__setattr__(self, "loss_fn_inputs", {k: _as_tensor(k, v) for k, v in inputs.items()})
        _check_spans("model_input_spans", self.model_input_spans)
        _check_spans("loss_fn_input_spans", self.loss_fn_input_spans)
        if (self.model_input_spans is None) != (self.loss_fn_input_spans is None):
            raise ValueError("provenance spans come as a pair: set both model_input_spans and "
                             "loss_fn_input_spans, or neither")

    def with_provenance(self, model_input: ProvenanceSpans, loss_fn_inputs: ProvenanceSpans) -> Datum:
        """A copy carrying provenance: ``model_input`` spans tile the input tokens,
        ``loss_fn_inputs`` spans tile ``loss_fn_inputs["target_tokens"]``."""
        _check_tiling("model_input", model_input, self.model_input.length)
        targets = self.loss_fn_inputs.get("target_tokens")
        if targets is not None and targets.shape is not None and len(targets.shape) == 1:
            _check_tiling("loss_fn_inputs", loss_fn_inputs, targets.shape[0])
        return dataclasses.replace(self, model_input_spans=list(model_input), loss_fn_input_spans=list(loss_fn_inputs))


@dataclasses.dataclass(frozen=True)
class ForwardBackwardInput:
    data: list[Datum]
    loss_fn: str
    loss_fn_config: Optional[dict[str, Union[float, str]]] = None


@dataclasses.dataclass(frozen=True)
class ForwardBackwardRequest:
    forward_backward_input: ForwardBackwardInput
    model_id: str
    seq_id: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ForwardRequest:
    forward_input: ForwardBackwardInput
    model_id: str
    seq_id: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ForwardBackwardOutput:
    """Per-datum outputs (``logprobs``, ``elementwise_loss``...) and ``name:reduction`` metrics."""

    loss_fn_output_type: str
    loss_fn_outputs: list[LossFnOutput]
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


# -- sampling results -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SampledSequence:
    """One sampled continuation. ``tokens``/``logprobs`` are lists; ``*_np`` the arrays."""

    stop_reason: Literal["stop", "length"]
    sequence_id: str
    tokens_np: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    logprobs_np: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    topk_logprobs_np: Optional[TopkLogprobs] = dataclasses.field(default=None, repr=False)
    _tokens_list: Optional[list[int]] = dataclasses.field(default=None, repr=False)
    _logprobs_list: Optional[list[float]] = dataclasses.field(default=None, repr=False)
    _topk_logprobs_list: Optional[list[Optional[list[tuple[int, float]]]]] = dataclasses.field(default=None, repr=False)

    @cached_property
    def tokens(self) -> list[int]:
        if self._tokens_list is not None:
            return self._tokens_list
        return [] if self.tokens_np is None else self.tokens_np.tolist()

    @cached_property
    def logprobs(self) -> Optional[list[float]]:
        if self._logprobs_list is not None:
            return self._logprobs_list
        return None if self.logprobs_np is None else self.logprobs_np.tolist()

    @cached_property
    def topk_logprobs(self) -> Optional[list[Optional[list[tuple[int, float]]]]]:
        if self._topk_logprobs_list is not None:
            return self._topk_logprobs_list
        return None if self.topk_logprobs_np is None else topk_to_lists(self.topk_logprobs_np)


@dataclasses.dataclass(frozen=True)
class PromptAltTokens:
    """``k`` draws per prompt position after the first: ``tokens`` (int64) and ``logprobs`` (float32)."""

    tokens: TensorData
    logprobs: TensorData


@dataclasses.dataclass(frozen=True)
class SampleResponse:
    """The sequences of one sample request and the prompt scores that were asked for."""

    sequences: Sequence[SampledSequence]
    prompt_logprobs_np: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    topk_prompt_logprobs_np: Optional[TopkLogprobs] = dataclasses.field(default=None, repr=False)
    target_prompt_logprobs: Optional[TensorData] = None
    prompt_cache_hit_tokens: int = 0
    prompt_alt_tokens: Optional[PromptAltTokens] = None
    _prompt_logprobs_list: Optional[list[Optional[float]]] = dataclasses.field(default=None, repr=False)
    _topk_prompt_logprobs_list: Optional[list[Optional[list[tuple[int, float]]]]] = dataclasses.field(
        default=None, repr=False
    )

    @cached_property
    def prompt_logprobs(self) -> Optional[list[Optional[float]]]:
        """One logprob per prompt token, None where the server did not score it (the first)."""
        if self._prompt_logprobs_list is not None:
            return self._prompt_logprobs_list
        if self.prompt_logprobs_np is None:
            return None
        out: list[Optional[float]] = self.prompt_logprobs_np.tolist()
        for i in np.flatnonzero(np.isnan(self.prompt_logprobs_np)):
            out[i] = None
        return out

    @cached_property
    def topk_prompt_logprobs(self) -> Optional[list[Optional[list[tuple[int, float]]]]]:
        if self._topk_prompt_logprobs_list is not None:
            return self._topk_prompt_logprobs_list
        return None if self.topk_prompt_logprobs_np is None else topk_to_lists(self.topk_prompt_logprobs_np)


# -- tinker paths -----------------------------------------------------------------------------------

_PATH_KINDS = {"weights": "training", "sampler_weights": "sampler", "external_weights": "external"}


@dataclasses.dataclass
class ParsedCheckpointTinkerPath:
    """``tinker://<run>/<weights|sampler_weights|external_weights>/<name>`` in parts."""

    tinker_path: str
    training_run_id: str
    checkpoint_type: Literal["training", "sampler", "external"]
    checkpoint_id: str

    @classmethod
    def from_tinker_path(cls, tinker_path: str) -> ParsedCheckpointTinkerPath:
        prefix = "tinker://"
        parts = tinker_path[len(prefix):].split("/") if tinker_path.startswith(prefix) else []
        if len(parts) != 3 or parts[1] not in _PATH_KINDS:
            raise ValueError(f"Invalid tinker path: {tinker_path} "
                             "(expected tinker://<run>/<weights|sampler_weights|external_weights>/<name>)")
        return cls(tinker_path=tinker_path, training_run_id=parts[0],
                   checkpoint_type=_PATH_KINDS[parts[1]],  # type: ignore[arg-type]
                   checkpoint_id=f"{parts[1]}/{parts[2]}")


# -- admin records (audit log, billing, checkpoint storage) ------------------------------------------

from ..wire.admin import (  # noqa: E402
    AuditLogEntry,
    AuditLogResponse,
    BillingEventInfo,
    BillingUsageEvent,
    BillingUsageResponse,
    BillingUsageSession,
    CheckpointBillingEvent,
    CurrentCheckpointStorageUsageItem,
    CurrentCheckpointStorageUsageResponse,
    GetBillingUsageRequest,
    GetCurrentCheckpointStorageUsageRequest,
    SamplingPrefillBillingEvent,
    SamplingSampleBillingEvent,
    StorageBillingEvent,
    TrainingBillingEvent,
)

AuditLogEventType: TypeAlias = Literal["all", "checkpoints", "projects", "teams", "organizations"]

_OWN = [
    "ModelID", "RequestID", "CustomLossInputRank", "ClientSessionFinishReasonType", "OptimParams",
    "FutureRetrieveResponse", "RequestErrorCategory", "EncodedTextChunk", "ModelInput", "TensorData", "PromptProvenanceSpan",
    "SampledProvenanceSpan", "ProvenanceSpans", "LossFnInputs", "LossFnOutput", "Datum", "ForwardBackwardInput",
    "ForwardBackwardRequest", "ForwardRequest", "ForwardBackwardOutput", "SampledSequence", "PromptAltTokens",
    "SampleResponse", "ParsedCheckpointTinkerPath", "AuditLogEntry", "AuditLogResponse", "BillingEventInfo",
    "BillingUsageEvent", "BillingUsageResponse", "BillingUsageSession", "CheckpointBillingEvent",
    "CurrentCheckpointStorageUsageItem", "CurrentCheckpointStorageUsageResponse", "GetBillingUsageRequest",
    "GetCurrentCheckpointStorageUsageRequest", "SamplingPrefillBillingEvent", "SamplingSampleBillingEvent",
    "StorageBillingEvent", "TrainingBillingEvent", "TopkLogprobs", "AuditLogEventType",
]
__all__ = sorted(set(_wt.__all__) | set(_OWN))

# ``date``/``datetime`` are used in annotations of the admin methods that import from here.
_ = (date, datetime)
