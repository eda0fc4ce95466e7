"""Boundary validation: catch bad input before it is sent (client) or run (server).

Every check raises ``tinker_actors.errors.ValidationError`` whose ``field``
names the offending path, e.g. ``data[3].loss_fn_inputs.weights``. The client
calls these before building a request; the local server calls them on every
decoded request and answers 400 with the message.

* ``validate_forward_backward(data, loss_fn, loss_fn_config)``
* ``validate_sample(request)`` / ``validate_sampling_params(params)``
* ``validate_tensor(td, field)``
* ``parse_tinker_path(path) -> TinkerPath(run_id, kind, name)``
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence, TypeAlias

import msgspec
import numpy as np

from ..errors import ValidationError
from .model_input import EncodedTextChunk, ImageAssetPointerChunk, ImageChunk, ModelInput
from .sampling import SampleRequest, SamplingParams
from .tensor_data import TensorData
from .training import LOSS_FN_TYPES, Datum

__all__ = [
    "REQUIRED_LOSS_INPUTS",
    "validate_tensor",
    "validate_model_input",
    "validate_forward_backward",
    "validate_sampling_params",
    "validate_sample",
    "TinkerPathKind",
    "TinkerPath",
    "parse_tinker_path",
]

_POLICY_GRADIENT = ("target_tokens", "logprobs", "advantages")
REQUIRED_LOSS_INPUTS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("target_tokens", "weights"),
    "importance_sampling": _POLICY_GRADIENT,
    "ppo": _POLICY_GRADIENT,
    "cispo": _POLICY_GRADIENT,
    "dro": _POLICY_GRADIENT,
    "gspo": _POLICY_GRADIENT,
    "stable_reinforce": _POLICY_GRADIENT,
    "custom": (),
}

_EXPECTED_DTYPES = {
    "target_tokens": "int64",
    "weights": "float32",
    "advantages": "float32",
    "logprobs": "float32",
}


_INT32_MAX = 2**31 - 1


def validate_tensor(td: Any, field: str) -> None:
    """Dtype known; dense data matches its shape; CSR parts are consistent."""
    if not isinstance(td, TensorData):
        raise ValidationError(f"expected TensorData, got {type(td).__name__}", field=field)
    if td.dtype not in ("int64", "float32"):
        raise ValidationError(f"dtype must be int64 or float32, not {td.dtype!r}", field=f"{field}.dtype")
    try:
        values = td.values()
    except OverflowError:
        raise ValidationError(f"a value does not fit {td.dtype}", field=f"{field}.data") from None
    except (ValueError, TypeError):
        raise ValidationError("data is not a flat numeric array", field=f"{field}.data") from None
    shape = None if td.shape is None else [int(s) for s in np.asarray(td.shape).reshape(-1)]
    if shape is not None and any(s < 0 for s in shape):
        raise ValidationError(f"negative dimension in shape {shape}", field=f"{field}.shape")
    crow, col = td.sparse_crow_indices, td.sparse_col_indices
    if crow is None and col is None:
        if shape is not None and math.prod(shape) != values.size:
            raise ValidationError(
                f"shape {shape} needs {math.prod(shape)} values, data has {values.size}", field=f"{field}.data"
            )
        return
    if crow is None or col is None:
        raise ValidationError("CSR needs both sparse_crow_indices and sparse_col_indices", field=field)
    if shape is None or len(shape) != 2:
        raise ValidationError("a CSR tensor needs a 2-D shape", field=f"{field}.shape")
    crow_a = np.asarray(crow, dtype=np.int64).reshape(-1)
    col_a = np.asarray(col, dtype=np.int64).reshape(-1)
    nrows, ncols = shape
    nnz = values.size
    if crow_a.size != nrows + 1 or crow_a[0] != 0 or crow_a[-1] != nnz or np.any(np.diff(crow_a) < 0):
        raise ValidationError(
            f"sparse_crow_indices must be {nrows + 1} non-decreasing offsets from 0 to {nnz}",
            field=f"{field}.sparse_crow_indices",
        )
    if col_a.size != nnz or (nnz and (col_a.min() < 0 or col_a.max() >= ncols)):
        raise ValidationError(
            f"sparse_col_indices must be {nnz} column numbers below {ncols}", field=f"{field}.sparse_col_indices"
        )


def _leading(td: TensorData) -> int:
    if td.shape:
        return int(td.shape[0])
    return int(td.values().size)


def validate_model_input(model_input: Any, field: str, *, allow_asset_pointers: bool = True) -> None:
    if not isinstance(model_input, ModelInput):
        raise ValidationError(f"expected ModelInput, got {type(model_input).__name__}", field=field)
    for j, chunk in enumerate(model_input.chunks):
        where = f"{field}.chunks[{j}]"
        if isinstance(chunk, EncodedTextChunk):
            # Token ids cross the wire as int32 (protobuf's encoded_text), so a larger id
            # would be wrapped or refused deep inside the encoder instead of here.
            try:
                tokens = np.asarray(chunk.tokens)
                bad = tokens.size and (tokens.dtype.kind not in "iu" or tokens.min() < 0 or tokens.max() > _INT32_MAX)
            except (OverflowError, TypeError, ValueError):
                bad = True
            if bad:
                raise ValidationError("token ids must be integers from 0 to 2**31-1", field=f"{where}.tokens")
        elif isinstance(chunk, ImageAssetPointerChunk) and not allow_asset_pointers:
            raise ValidationError(
                "image asset pointers cannot be sent in forward_backward; send the image bytes (ImageChunk)",
                field=where,
            )
        elif isinstance(chunk, (ImageChunk, ImageAssetPointerChunk)) and chunk.format not in ("png", "jpeg"):
            raise ValidationError(f"image format must be png or jpeg, not {chunk.format!r}", field=f"{where}.format")


def _input_length(model_input: ModelInput) -> int | None:
    try:
        return model_input.length
    except ValueError:  # an image without expected_tokens has no known length
        return None


def validate_forward_backward(
    data: Sequence[Datum], loss_fn: str, loss_fn_config: Mapping[str, Any] | None = None
) -> None:
    """Check a forward/forward_backward batch before it is sent or run."""
    if loss_fn not in LOSS_FN_TYPES:
        raise ValidationError(f"unknown loss function {loss_fn!r}; one of {', '.join(LOSS_FN_TYPES)}", field="loss_fn")
    for key, value in (loss_fn_config or {}).items():
        ok = isinstance(value, str) or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
        if not ok:
            raise ValidationError("config values must be finite numbers or strings", field=f"loss_fn_config.{key}")
    if loss_fn == "custom" and not isinstance((loss_fn_config or {}).get("loss_id"), str):
        raise ValidationError("the custom loss needs loss_fn_config={'loss_id': ...}", field="loss_fn_config.loss_id")
    required = REQUIRED_LOSS_INPUTS[loss_fn]
    for i, datum in enumerate(data):
        where = f"data[{i}]"
        if not isinstance(datum, Datum):
            raise ValidationError(f"expected Datum, got {type(datum).__name__}", field=where)
        validate_model_input(datum.model_input, f"{where}.model_input", allow_asset_pointers=False)
        for key in required:
            if key not in datum.loss_fn_inputs:
                raise ValidationError(f"{loss_fn} needs loss_fn_inputs[{key!r}]", field=f"{where}.loss_fn_inputs.{key}")
        length = _input_length(datum.model_input)
        for key, td in datum.loss_fn_inputs.items():
            field = f"{where}.loss_fn_inputs.{key}"
            validate_tensor(td, field)
            want = _EXPECTED_DTYPES.get(key)
            if want is not None and td.dtype != want:
                raise ValidationError(f"{key} must be {want}, not {td.dtype}", field=f"{field}.dtype")
            if length is not None and _leading(td) != length:
                raise ValidationError(
                    f"has {_leading(td)} rows but the model input has {length} tokens", field=field
                )
            if key == "target_tokens":
                vals = td.values()
                if vals.size and vals.min() < 0:
                    raise ValidationError("token ids must be non-negative", field=field)
        spans_in, spans_loss = datum.model_input_spans, datum.loss_fn_input_spans
        if (spans_in is None) != (spans_loss is None):
            raise ValidationError("provenance spans come as a pair", field=f"{where}.model_input_spans")
        if spans_in is not None and length is not None and sum(s.length for s in spans_in) != length:
            raise ValidationError("model_input_spans must tile the model input", field=f"{where}.model_input_spans")
        for s in [*(spans_in or ()), *(spans_loss or ())]:
            if s.length < 0 or s.offset < 0 or not s.sequence_id:
                raise ValidationError("spans need a sequence_id and non-negative offset/length", field=f"{where}.spans")


def validate_sampling_params(params: Any, field: str = "sampling_params") -> None:
    if not isinstance(params, SamplingParams):
        raise ValidationError(f"expected SamplingParams, got {type(params).__name__}", field=field)
    t = params.temperature
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not (t >= 0) or math.isinf(t):
        raise ValidationError(f"temperature must be a finite number >= 0, not {t!r}", field=f"{field}.temperature")
    p = params.top_p
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not (0 < p <= 1):
        raise ValidationError(f"top_p must be in (0, 1], not {p!r}", field=f"{field}.top_p")
    k = params.top_k
    if not isinstance(k, int) or isinstance(k, bool) or k == 0 or k < -1:
        raise ValidationError(f"top_k must be -1 (no limit) or >= 1, not {k!r}", field=f"{field}.top_k")
    m = params.max_tokens
    if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 1):
        raise ValidationError(f"max_tokens must be >= 1, not {m!r}", field=f"{field}.max_tokens")
    seed = params.seed
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValidationError(f"seed must be a non-negative integer, not {seed!r}", field=f"{field}.seed")
    stop = params.stop
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, (list, tuple)):
        raise ValidationError("stop must be a string, a list of strings or a list of token ids", field=f"{field}.stop")
    if all(isinstance(s, str) for s in stop):
        return
    if all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in stop):
        return
    raise ValidationError("stop must be all strings or all non-negative token ids", field=f"{field}.stop")


def _non_negative_int(value: Any, field: str, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValidationError(f"must be an integer >= {minimum}, not {value!r}", field=field)


def validate_sample(request: SampleRequest) -> None:
    """Check a sample request before it is sent or run."""
    _non_negative_int(request.num_samples, "num_samples", 1)
    validate_model_input(request.prompt, "prompt")
    validate_sampling_params(request.sampling_params)
    _non_negative_int(request.topk_prompt_logprobs, "topk_prompt_logprobs")
    _non_negative_int(request.topk_sample_logprobs, "topk_sample_logprobs")
    _non_negative_int(request.prompt_alt_tokens_k, "prompt_alt_tokens_k")
    length = _input_length(request.prompt)
    last_n = request.prompt_logprobs_last_n
    if last_n is not None:
        if not request.prompt_logprobs:
            raise ValidationError("needs prompt_logprobs=True", field="prompt_logprobs_last_n")
        upper = (length - 1) if length is not None else None
        if not isinstance(last_n, int) or last_n < 1 or (upper is not None and last_n > upper):
            raise ValidationError(f"must be between 1 and len(prompt)-1 ({upper})", field="prompt_logprobs_last_n")
    target = request.target_prompt_logprobs
    if target is not None:
        validate_tensor(target, "target_prompt_logprobs")
        if target.dtype != "int64":
            raise ValidationError("must be int64 token ids", field="target_prompt_logprobs.dtype")
        if target.shape is None or len(target.shape) != 2:
            raise ValidationError("must have shape [len(prompt)-1, K]", field="target_prompt_logprobs.shape")
        if length is not None and int(target.shape[0]) != length - 1:
            raise ValidationError(
                f"must have {length - 1} rows (len(prompt)-1), not {target.shape[0]}",
                field="target_prompt_logprobs.shape",
            )
        vals = target.values()
        if vals.size and vals.min() < -1:
            raise ValidationError("token ids must be >= 0, or -1 to skip a cell", field="target_prompt_logprobs")


TinkerPathKind: TypeAlias = Literal["weights", "sampler_weights", "external_weights"]
_KINDS = ("weights", "sampler_weights", "external_weights")
_CHECKPOINT_TYPES = {"weights": "training", "sampler_weights": "sampler", "external_weights": "external"}
_SCHEME = "tinker://"


class TinkerPath(msgspec.Struct, frozen=True):
    """``tinker://<run_id>/<kind>/<name>``."""

    run_id: str
    kind: TinkerPathKind
    name: str

    @property
    def path(self) -> str:
        return f"{_SCHEME}{self.run_id}/{self.kind}/{self.name}"

    @property
    def checkpoint_id(self) -> str:
        """``<kind>/<name>``, as the REST checkpoint routes spell it."""
        return f"{self.kind}/{self.name}"

    @property
    def checkpoint_type(self) -> str:
        """``training``, ``sampler`` or ``external``."""
        return _CHECKPOINT_TYPES[self.kind]

    def __str__(self) -> str:
        return self.path


def parse_tinker_path(path: str, field: str = "path") -> TinkerPath:
    """Split a checkpoint path; anything but exactly three clean segments is refused."""
    if not isinstance(path, str) or not path.startswith(_SCHEME):
        raise ValidationError(f"not a tinker:// path: {path!r}", field=field)
    parts = path[len(_SCHEME) :].split("/")
    if len(parts) != 3:
        raise ValidationError(f"expected tinker://<run>/<kind>/<name>, got {path!r}", field=field)
    run_id, kind, name = parts
    for segment in (run_id, name):
        if segment in ("", ".", "..") or "\x00" in segment or "\\" in segment or segment != segment.strip():
            raise ValidationError(f"bad path segment {segment!r} in {path!r}", field=field)
    if kind not in _KINDS:
        raise ValidationError(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}", field=field)
    return TinkerPath(run_id=run_id, kind=kind, name=name)  # type: ignore[arg-type]
