"""Bridge between the wire Structs and the numpy model (``server.model``).

Requests arrive as wire Structs (decoded from JSON with ``wire.decoder`` or
from protobuf with ``wire.protobuf``) and are turned into small internal
records holding numpy arrays (:class:`FBRequest`, :class:`SampleRequest`).
Results go back the other way: the model's outputs become wire
``ForwardBackwardOutput`` / ``SampleResponse`` Structs, encoded by
``wire.codec.encode`` (JSON) or ``wire.protobuf`` (protobuf).
``null_compute`` swaps the model for fixed-shape answers so benchmarks
measure the client; their encoded answers are cached by shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import wire
from ..byte_tokenizer import VOCAB_SIZE
from ..wire import protobuf as wpb
from ..wire import validate as wvalidate
from ..wire.tensor_data import MASK_LOGPROB, TopkLogprobs
from . import model as _model
from .http import bad
from .limits import INT32_MAX, Limits, clip

TOKENIZER_ID = "tinker-actors/byte"
OUTPUT_TYPE = "ArrayRecord"


@dataclass
class FBDatum:
    tokens: np.ndarray  # int64 (T,)
    inputs: dict[str, np.ndarray]


@dataclass
class FBRequest:
    model_id: str
    seq_id: int | None
    data: list[FBDatum]
    loss_fn: str
    loss_fn_config: dict[str, float | str] = field(default_factory=dict)
    forward_only: bool = False


@dataclass
class SampleRequest:
    sampling_session_id: str | None
    seq_id: int
    num_samples: int
    prompt: np.ndarray
    params: wire.SamplingParams
    prompt_logprobs: bool = False
    topk_prompt_logprobs: int = 0
    topk_sample_logprobs: int = 0

    def shape_key(self) -> tuple[Any, ...]:
        """Everything a null-compute answer depends on."""
        return (
            self.num_samples,
            self.params.max_tokens,
            len(self.prompt) if (self.prompt_logprobs or self.topk_prompt_logprobs) else 0,
            self.prompt_logprobs,
            self.topk_prompt_logprobs,
            self.topk_sample_logprobs,
        )


# -- requests: wire Structs -> internal records ------------------------------
# Every check here runs on the event loop before a job is queued, and before
# anything is built whose size the request chooses: a request over a limit is
# a 400 naming its field, never a failed job or a MemoryError.


def token_array(tokens: Any, where: str, limit: int) -> np.ndarray:
    """``tokens`` as int64 ids in the vocabulary, at most ``limit`` of them (400 otherwise)."""
    if len(tokens) > limit:
        raise bad(f"{where}: {len(tokens)} tokens; the limit is {limit}")
    try:
        arr = np.asarray(tokens, dtype=np.int64)
    except (OverflowError, ValueError, TypeError):
        raise bad(f"{where}: token ids must be integers in [0, {VOCAB_SIZE})") from None
    if arr.ndim != 1:
        raise bad(f"{where}: must be a flat list of token ids")
    if arr.size and (arr.min() < 0 or arr.max() >= VOCAB_SIZE):
        bad_id = int(arr[(arr < 0) | (arr >= VOCAB_SIZE)][0])
        raise bad(f"{where}: token id {bad_id} is outside the vocabulary [0, {VOCAB_SIZE})")
    return arr


def tokens_of(model_input: wire.ModelInput, where: str, limit: int = _model.MAX_CONTEXT) -> np.ndarray:
    parts = []
    total = 0
    for j, chunk in enumerate(model_input.chunks):
        if not isinstance(chunk, wire.EncodedTextChunk):
            raise bad(f"{where}: this server's byte model reads only text chunks, got a {chunk.type!r} chunk")
        arr = token_array(chunk.tokens, f"{where}.chunks[{j}].tokens", limit - total)
        total += arr.size
        parts.append(arr)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _in_range(value: Any, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad(f"{field}: must be an integer in [{low}, {high}], not {clip(value)}")
    return value


def _check_tensor(td: wire.TensorData, field: str, budget: int) -> int:
    """The tensor's dense element count, refused when its numbers or shape are out of range."""
    try:
        td.values()
        for name in ("sparse_crow_indices", "sparse_col_indices"):
            idx = getattr(td, name)
            if idx is not None:
                np.asarray(idx, dtype=np.int64)
    except (OverflowError, ValueError, TypeError):
        raise bad(f"{field}: values must be {td.dtype} numbers in range") from None
    if td.shape is None:
        return len(td.data)
    if len(td.shape) > 8:
        raise bad(f"{field}.shape: at most 8 dimensions, got {len(td.shape)}")
    size = 1
    for dim in td.shape:
        if not isinstance(dim, (int, np.integer)) or dim < 0:
            raise bad(f"{field}.shape: dimensions must be non-negative integers, got {clip(td.shape)}")
        size *= int(dim)
        if size > budget:
            raise bad(f"{field}.shape: {clip(td.shape)} holds more elements than the request's limit of {budget}")
    return size


def fb_request(req: wire.ForwardBackwardRequest | wire.ForwardRequest, limits: Limits = Limits()) -> FBRequest:
    """An internal FBRequest from a decoded (JSON or protobuf) request."""
    forward_only = isinstance(req, wire.ForwardRequest)
    inp = req.forward_input if forward_only else req.forward_backward_input  # type: ignore[union-attr]
    if len(inp.data) > limits.max_datums:
        raise bad(f"data: {len(inp.data)} datums; the limit is {limits.max_datums} per request")
    tokens: list[np.ndarray] = []
    budget = limits.max_forward_tokens
    for i, d in enumerate(inp.data):
        arr = tokens_of(d.model_input, f"data[{i}].model_input", min(_model.MAX_CONTEXT, budget))
        budget -= arr.size
        tokens.append(arr)
    elements = limits.max_forward_tokens * 8  # loss inputs: a few numbers per token
    for i, d in enumerate(inp.data):
        for key, td in d.loss_fn_inputs.items():
            elements -= _check_tensor(td, f"data[{i}].loss_fn_inputs.{key}", elements)
    wvalidate.validate_forward_backward(inp.data, inp.loss_fn, inp.loss_fn_config)
    datums = [
        FBDatum(arr, {k: td.to_numpy() for k, td in d.loss_fn_inputs.items()})
        for arr, d in zip(tokens, inp.data)
    ]
    return FBRequest(req.model_id, req.seq_id, datums, inp.loss_fn, dict(inp.loss_fn_config or {}), forward_only)


def sample_request(req: wire.SampleRequest, limits: Limits = Limits()) -> SampleRequest:
    if req.prompt_alt_tokens_k:
        raise bad("this server does not support prompt_alt_tokens_k")
    if req.prompt_logprobs_last_n is not None:
        raise bad("this server does not support prompt_logprobs_last_n")
    if req.target_prompt_logprobs is not None:
        raise bad("this server does not support target_prompt_logprobs")
    num_samples = _in_range(req.num_samples, "num_samples", 1, limits.max_num_samples)
    _in_range(req.topk_prompt_logprobs, "topk_prompt_logprobs", 0, limits.max_topk_logprobs)
    _in_range(req.topk_sample_logprobs, "topk_sample_logprobs", 0, limits.max_topk_logprobs)
    params = req.sampling_params
    prompt = tokens_of(req.prompt, "prompt")
    if prompt.size == 0:
        raise bad("prompt: must hold at least one token")
    room = _model.MAX_CONTEXT - prompt.size
    if params.max_tokens is not None:
        _in_range(params.max_tokens, "sampling_params.max_tokens", 1, max(1, room))
    max_tokens = _model.DEFAULT_MAX_TOKENS if params.max_tokens is None else params.max_tokens
    if prompt.size + max_tokens > _model.MAX_CONTEXT:
        raise bad(
            f"prompt: {prompt.size} tokens plus max_tokens {max_tokens} exceed the context of {_model.MAX_CONTEXT}"
        )
    if num_samples * (prompt.size + max_tokens) > limits.max_sample_tokens:
        raise bad(
            f"num_samples: {num_samples} samples of {prompt.size} + {max_tokens} tokens exceed the limit of "
            f"{limits.max_sample_tokens} tokens per request"
        )
    if params.seed is not None:
        _in_range(params.seed, "sampling_params.seed", 0, 2**63 - 1)
    stop = params.stop
    if isinstance(stop, list):
        if len(stop) > limits.max_stop_sequences:
            raise bad(f"sampling_params.stop: {len(stop)} entries; the limit is {limits.max_stop_sequences}")
        for j, item in enumerate(stop):
            if isinstance(item, int):
                _in_range(item, f"sampling_params.stop[{j}]", 0, INT32_MAX)
    wvalidate.validate_sample(req)
    return SampleRequest(
        sampling_session_id=req.sampling_session_id,
        seq_id=req.seq_id or 0,
        num_samples=num_samples,
        prompt=prompt,
        params=params,
        prompt_logprobs=bool(req.prompt_logprobs),
        topk_prompt_logprobs=req.topk_prompt_logprobs,
        topk_sample_logprobs=req.topk_sample_logprobs,
    )


# -- results: model outputs -> wire Structs -> bytes --------------------------
def encode_fb_output(out: Any, kind: str) -> bytes:
    """``out`` is the model's FBResult (``loss_fn_outputs``, ``metrics``)."""
    value = wire.ForwardBackwardOutput(
        loss_fn_output_type=OUTPUT_TYPE,
        loss_fn_outputs=[{k: wire.TensorData.from_numpy(v) for k, v in o.items()} for o in out.loss_fn_outputs],
        metrics={k: float(v) for k, v in out.metrics.items()},
    )
    if kind == "proto":
        return wpb.forward_backward_output_to_proto(value, type_tag=OUTPUT_TYPE)
    return wire.encode(value)


def _topk(topk: Any, pad_first: bool = False) -> TopkLogprobs | None:
    if topk is None:
        return None
    ids = np.array(topk.token_ids, dtype=np.int32)
    lps = np.array(topk.logprobs, dtype=np.float32)
    if pad_first and len(ids):  # the first prompt position has no distribution
        ids[0] = 0
        lps[0] = MASK_LOGPROB
    return TopkLogprobs(ids, lps)


def encode_sample_response(res: Any, kind: str) -> bytes:
    """``res`` is the model's SampleResult."""
    value = wire.SampleResponse(
        sequences=[
            wire.SampledSequence(
                stop_reason=s.stop_reason,
                tokens=s.tokens,
                logprobs=s.logprobs,
                topk_logprobs=_topk(s.topk_logprobs),
            )
            for s in res.sequences
        ],
        prompt_logprobs=res.prompt_logprobs,
        topk_prompt_logprobs=_topk(res.topk_prompt_logprobs, pad_first=True),
        type="sample",
    )
    if kind == "proto":
        return wpb.sample_response_to_proto(value)
    return wire.encode(value)


# -- the engine ------------------------------------------------------------
class Engine:
    """Runs model work (on the compute thread, or inline in null-compute mode)."""

    def __init__(self, *, null_compute: bool = False):
        self.null_compute = null_compute

    # validation done on the event loop before a job is queued
    def check_create(self, base_model: str, lora: dict[str, Any], opt: dict[str, Any]) -> None:
        _model.get_model_config(base_model)
        try:
            _model.LoraConfig(**{k: v for k, v in lora.items() if k in ("rank", "seed", "train_unembed", "train_mlp", "train_attn")})
        except TypeError as exc:
            raise ValueError(f"invalid lora_config: {exc}") from None
        if opt.get("type", "adamw") != "adamw":
            raise ValueError(f"optimizer {opt.get('type')!r} is not supported by this server (only adamw)")

    def supported_models(self) -> list[dict[str, Any]]:
        return [
            {"model_name": name, "max_context_length": _model.MAX_CONTEXT, "trainable": True, "sampleable": True}
            for name in _model.BASE_MODELS
        ]

    def _cls(self) -> Any:
        return _model.NullModel if self.null_compute else _model.TrainableModel

    def create(self, base_model: str, lora: dict[str, Any]) -> Any:
        keys = ("rank", "seed", "train_unembed", "train_mlp", "train_attn")
        lcfg = _model.LoraConfig(**{k: v for k, v in lora.items() if k in keys})
        return self._cls()(lcfg, base_model)

    def forward_backward(self, handle: Any, req: FBRequest) -> Any:
        return handle.forward_backward(
            [_model.Datum(d.tokens, d.inputs) for d in req.data],
            req.loss_fn,
            req.loss_fn_config,
            forward_only=req.forward_only,
        )

    def optim_step(self, handle: Any, adam: wire.AdamParams) -> dict[str, float]:
        cfg = _model.AdamConfig(
            learning_rate=adam.learning_rate,
            beta1=adam.beta1,
            beta2=adam.beta2,
            eps=adam.eps,
            weight_decay=adam.weight_decay,
            grad_clip_norm=adam.grad_clip_norm,
        )
        return dict(handle.optim_step(cfg) or {})

    def save(self, handle: Any, directory: Path, *, optimizer: bool) -> None:
        if optimizer:
            handle.save(directory, optimizer=True)
        else:
            handle.save_sampler(directory)

    def load(self, directory: Path, *, optimizer: bool) -> Any:
        return self._cls().load(directory, optimizer=optimizer)

    def sampler_from_model(self, handle: Any) -> Any:
        sampler = handle.sampler
        return sampler() if callable(sampler) else sampler

    def sampler_from_dir(self, directory: Path) -> Any:
        if self.null_compute:
            return _model.load_null_sampler(directory)
        return _model.load_sampler(directory)

    def base_sampler(self, base_model: str) -> Any:
        cfg = _model.get_model_config(base_model)
        if self.null_compute:
            return _model.NullSampler.for_base_model(cfg)
        return _model.Sampler.for_base_model(cfg)

    def sample(self, handle: Any, req: SampleRequest) -> Any:
        p = req.params
        return handle.sample(
            req.prompt,
            num_samples=req.num_samples,
            max_tokens=p.max_tokens,
            temperature=float(p.temperature),
            top_k=int(p.top_k),
            top_p=float(p.top_p),
            stop=p.stop,
            seed=p.seed,
            include_prompt_logprobs=req.prompt_logprobs,
            topk_prompt_logprobs=req.topk_prompt_logprobs,
            topk_sample_logprobs=req.topk_sample_logprobs,
        )
