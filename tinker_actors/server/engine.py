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
from ..wire import protobuf as wpb
from ..wire import validate as wvalidate
from ..wire.tensor_data import MASK_LOGPROB, TopkLogprobs
from . import model as _model
from .http import bad

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
def tokens_of(model_input: wire.ModelInput, where: str) -> np.ndarray:
    parts = []
    for chunk in model_input.chunks:
        if not isinstance(chunk, wire.EncodedTextChunk):
            raise bad(f"{where}: this server's byte model reads only text chunks, got a {chunk.type!r} chunk")
        parts.append(np.asarray(chunk.tokens, dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def fb_request(req: wire.ForwardBackwardRequest | wire.ForwardRequest) -> FBRequest:
    """An internal FBRequest from a decoded (JSON or protobuf) request."""
    forward_only = isinstance(req, wire.ForwardRequest)
    inp = req.forward_input if forward_only else req.forward_backward_input  # type: ignore[union-attr]
    wvalidate.validate_forward_backward(inp.data, inp.loss_fn, inp.loss_fn_config)
    datums = [
        FBDatum(
            tokens_of(d.model_input, f"data[{i}].model_input"),
            {k: td.to_numpy() for k, td in d.loss_fn_inputs.items()},
        )
        for i, d in enumerate(inp.data)
    ]
    return FBRequest(req.model_id, req.seq_id, datums, inp.loss_fn, dict(inp.loss_fn_config or {}), forward_only)


def sample_request(req: wire.SampleRequest) -> SampleRequest:
    wvalidate.validate_sample(req)
    if req.prompt_alt_tokens_k:
        raise bad("this server does not support prompt_alt_tokens_k")
    if req.prompt_logprobs_last_n is not None:
        raise bad("this server does not support prompt_logprobs_last_n")
    if req.target_prompt_logprobs is not None:
        raise bad("this server does not support target_prompt_logprobs")
    if req.num_samples > 1024:
        raise bad("num_samples: must be at most 1024")
    return SampleRequest(
        sampling_session_id=req.sampling_session_id,
        seq_id=req.seq_id or 0,
        num_samples=req.num_samples,
        prompt=tokens_of(req.prompt, "prompt"),
        params=req.sampling_params,
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
