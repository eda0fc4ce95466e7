"""Bridge between HTTP bodies and the numpy model (``server.model``).

Request bodies are parsed into small internal records (:class:`FBRequest`,
:class:`SampleRequest`) with numpy arrays; results come back as
:class:`FBOutput` / the model's ``SampleResult`` and are encoded to protobuf
(``wire.proto``) or JSON by ``encode_fb_output`` / ``encode_sample_response``.
``null_compute`` swaps the model for fixed-shape answers so benchmarks
measure the client.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import model as _model
from .http import bad

TOKENIZER_ID = "tinker-actors/byte"
_DTYPES = {"float32": np.float32, "int64": np.int64}


@dataclass
class FBDatum:
    tokens: np.ndarray  # int64 (T,)
    inputs: dict[str, np.ndarray]


@dataclass
class FBRequest:
    model_id: str
    seq_id: int
    data: list[FBDatum]
    loss_fn: str
    loss_fn_config: dict[str, float | str] = field(default_factory=dict)
    forward_only: bool = False


@dataclass
class FBOutput:
    outputs: list[dict[str, np.ndarray]]
    metrics: dict[str, float]
    output_type: str = "ArrayRecord"


@dataclass
class SampleRequest:
    sampling_session_id: str | None
    seq_id: int
    num_samples: int
    prompt: np.ndarray
    params: dict[str, Any]
    prompt_logprobs: bool = False
    topk_prompt_logprobs: int = 0
    topk_sample_logprobs: int = 0


# -- parsing -------------------------------------------------------------
def _chunks_tokens(chunks: list[Any]) -> np.ndarray:
    parts = []
    for chunk in chunks:
        if not isinstance(chunk, dict):
            raise bad("model_input chunks must be objects")
        kind = chunk.get("type", "encoded_text")
        if kind != "encoded_text":
            raise bad(f"this server's byte model reads only text chunks, got a {kind!r} chunk")
        toks = chunk.get("tokens")
        if not isinstance(toks, list):
            raise bad("encoded_text chunk needs a 'tokens' list")
        parts.append(np.asarray(toks, dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _tensor_json(obj: Any, name: str) -> np.ndarray:
    if isinstance(obj, list):  # plain list, dtype inferred like the SDK
        return np.asarray(obj, dtype=np.int64 if name == "target_tokens" else np.float32)
    if not isinstance(obj, dict) or "data" not in obj:
        raise bad(f"loss_fn_inputs[{name!r}] must be a TensorData object")
    dtype = _DTYPES.get(obj.get("dtype", "float32"))
    if dtype is None:
        raise bad(f"loss_fn_inputs[{name!r}]: dtype must be float32 or int64")
    data = np.asarray(obj["data"], dtype=dtype).reshape(-1)
    shape = obj.get("shape")
    if obj.get("sparse_crow_indices") is not None:
        crow = np.asarray(obj["sparse_crow_indices"], dtype=np.int64)
        col = np.asarray(obj["sparse_col_indices"], dtype=np.int64)
        return _csr_dense(data, crow, col, shape)
    if shape:
        try:
            data = data.reshape(shape)
        except ValueError:
            raise bad(f"loss_fn_inputs[{name!r}]: data does not fit shape {shape}") from None
    return data


def _csr_dense(values: np.ndarray, crow: np.ndarray, col: np.ndarray, shape: Any) -> np.ndarray:
    if not shape or len(shape) != 2:
        raise bad("a sparse tensor needs a 2-D shape")
    out = np.zeros(shape, dtype=values.dtype)
    for r in range(len(crow) - 1):
        out[r, col[crow[r] : crow[r + 1]]] = values[crow[r] : crow[r + 1]]
    return out


def parse_fb_json(body: dict[str, Any], *, forward_only: bool = False) -> FBRequest:
    """The legacy JSON forward_backward / forward body."""
    inp = body.get("forward_backward_input") or body.get("forward_input")
    if not isinstance(inp, dict):
        raise bad("missing required field 'forward_backward_input'")
    data = inp.get("data")
    if not isinstance(data, list):
        raise bad("forward_backward_input.data must be a list of Datum")
    datums = []
    for d in data:
        if not isinstance(d, dict) or not isinstance(d.get("model_input"), dict):
            raise bad("each Datum needs a model_input")
        tokens = _chunks_tokens(d["model_input"].get("chunks") or [])
        inputs = {k: _tensor_json(v, k) for k, v in (d.get("loss_fn_inputs") or {}).items()}
        datums.append(FBDatum(tokens, inputs))
    loss_fn = inp.get("loss_fn")
    if not isinstance(loss_fn, str):
        raise bad("missing required field 'loss_fn'")
    seq_id = body.get("seq_id")
    return FBRequest(
        model_id=body.get("model_id"),  # type: ignore[arg-type]
        seq_id=seq_id,  # type: ignore[arg-type]
        data=datums,
        loss_fn=loss_fn,
        loss_fn_config=dict(inp.get("loss_fn_config") or {}),
        forward_only=forward_only or bool(body.get("forward_only", False)),
    )


def _pb():
    from ..wire.proto import tinker_public_pb2

    return tinker_public_pb2


_PB_NP = {1: np.float32, 2: np.int64, 3: np.int32}


def _tensor_pb(t: Any, name: str) -> np.ndarray:
    dtype = _PB_NP.get(t.dtype)
    if dtype is None:
        raise bad(f"loss_fn_inputs[{name!r}]: unsupported tensor dtype {t.dtype}")
    shape = list(t.shape)
    if t.HasField("sparse_csr"):
        csr = t.sparse_csr
        return _csr_dense(
            np.frombuffer(csr.values, dtype=dtype),
            np.frombuffer(csr.crow_indices, dtype=np.int64),
            np.frombuffer(csr.col_indices, dtype=np.int64),
            shape,
        ).astype(np.int64 if dtype != np.float32 else np.float32)
    if len(t.dense) % np.dtype(dtype).itemsize:
        raise bad(f"loss_fn_inputs[{name!r}]: byte length is not a multiple of the dtype size")
    arr = np.frombuffer(t.dense, dtype=dtype)
    if shape:
        try:
            arr = arr.reshape(shape)
        except ValueError:
            raise bad(f"loss_fn_inputs[{name!r}]: data does not fit shape {shape}") from None
    return arr.astype(np.int64) if dtype == np.int32 else arr


def parse_fb_proto(raw: bytes) -> FBRequest:
    pb = _pb()
    msg = pb.ForwardBackwardRequest()
    try:
        msg.ParseFromString(raw)
    except Exception:
        raise bad("request body is not a valid ForwardBackwardRequest protobuf") from None
    datums = []
    for d in msg.data:
        parts = []
        for chunk in d.model_input:
            which = chunk.WhichOneof("chunk") if chunk.DESCRIPTOR.oneofs else None
            if which not in (None, "encoded_text"):
                raise bad(f"this server's byte model reads only text chunks, got {which!r}")
            buf = chunk.encoded_text.tokens
            if len(buf) % 4:
                raise bad("encoded_text tokens must be int32 little-endian")
            parts.append(np.frombuffer(buf, dtype="<i4").astype(np.int64))
        tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        inputs = {k: _tensor_pb(v, k) for k, v in d.loss_fn_inputs.items()}
        datums.append(FBDatum(tokens, inputs))
    cfg: dict[str, float | str] = dict(msg.loss_fn_config)
    for k, v in msg.loss_fn_config_v2.items():
        cfg[k] = v.number if v.WhichOneof("value") == "number" else v.text
    return FBRequest(msg.model_id, msg.seq_id, datums, msg.loss_fn, cfg, msg.forward_only)


def parse_sample(body: dict[str, Any]) -> SampleRequest:
    prompt = body.get("prompt")
    if not isinstance(prompt, dict):
        raise bad("missing required field 'prompt'")
    n = body.get("num_samples", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1024:
        raise bad("field 'num_samples' must be an integer in [1, 1024]")
    params = body.get("sampling_params") or {}
    if not isinstance(params, dict):
        raise bad("field 'sampling_params' must be an object")
    for key in ("prompt_alt_tokens_k", "prompt_logprobs_last_n"):
        if body.get(key):
            raise bad(f"this server does not support {key}")
    if body.get("target_prompt_logprobs") is not None:
        raise bad("this server does not support target_prompt_logprobs")
    return SampleRequest(
        sampling_session_id=body.get("sampling_session_id"),
        seq_id=int(body.get("seq_id") or 0),
        num_samples=n,
        prompt=_chunks_tokens(prompt.get("chunks") or []),
        params=params,
        prompt_logprobs=bool(body.get("prompt_logprobs", False)),
        topk_prompt_logprobs=int(body.get("topk_prompt_logprobs") or 0),
        topk_sample_logprobs=int(body.get("topk_sample_logprobs") or 0),
    )


# -- encoding ------------------------------------------------------------
def _td_json(arr: np.ndarray) -> dict[str, Any]:
    dtype = "int64" if np.issubdtype(arr.dtype, np.integer) else "float32"
    return {"data": arr.reshape(-1).tolist(), "dtype": dtype, "shape": list(arr.shape)}


def encode_fb_output(out: FBOutput, kind: str) -> bytes:
    if kind == "json":
        return json.dumps(
            {
                "loss_fn_output_type": out.output_type,
                "loss_fn_outputs": [{k: _td_json(v) for k, v in o.items()} for o in out.outputs],
                "metrics": out.metrics,
            }
        ).encode()
    pb = _pb()
    msg = pb.ForwardBackwardOutput()
    msg.loss_fn_output_type = f"tinker_actors.server:{out.output_type}"
    for k, v in out.metrics.items():
        msg.metrics[k] = float(v)
    if out.outputs:
        rec = msg.loss_fn_outputs.add()
        rec.type_tag = out.output_type
        rec.num_datums = len(out.outputs)
        for name in out.outputs[0]:
            arrs = [np.ascontiguousarray(o[name]) for o in out.outputs]
            is_int = np.issubdtype(arrs[0].dtype, np.integer)
            np_dtype = np.dtype("<i8") if is_int else np.dtype("<f4")
            arrs = [a.astype(np_dtype, copy=False) for a in arrs]
            bt = rec.fields[name]
            bt.data = b"".join(a.tobytes() for a in arrs)
            offsets = np.zeros(len(arrs) + 1, dtype="<i8")
            offsets[1:] = np.cumsum([a.nbytes for a in arrs])
            bt.offsets = offsets.tobytes()
            bt.dtype = pb.DTYPE_INT64 if is_int else pb.DTYPE_FLOAT32
            bt.trailing_shape.extend(list(arrs[0].shape[1:]))
    return msg.SerializeToString()


def _topk_json(topk: Any, first_none: bool) -> list[Any] | None:
    return topk.to_lists(first_is_none=first_none)


def encode_sample_response(res: Any, kind: str) -> bytes:
    if kind == "json":
        seqs = []
        for s in res.sequences:
            item: dict[str, Any] = {
                "stop_reason": s.stop_reason,
                "tokens": s.tokens.tolist(),
                "logprobs": s.logprobs.tolist(),
            }
            if s.topk_logprobs is not None:
                item["topk_logprobs"] = _topk_json(s.topk_logprobs, False)
            seqs.append(item)
        out: dict[str, Any] = {"sequences": seqs, "type": "sample"}
        if res.prompt_logprobs is not None:
            lp = res.prompt_logprobs.tolist()
            out["prompt_logprobs"] = [None if (x != x) else x for x in lp]
        if res.topk_prompt_logprobs is not None:
            out["topk_prompt_logprobs"] = _topk_json(res.topk_prompt_logprobs, True)
        return json.dumps(out).encode()
    pb = _pb()
    msg = pb.SampleResponse()
    for s in res.sequences:
        seq = msg.sequences.add()
        seq.stop_reason = pb.STOP_REASON_STOP if s.stop_reason == "stop" else pb.STOP_REASON_LENGTH
        seq.tokens = s.tokens.astype("<i4").tobytes()
        seq.logprobs = s.logprobs.astype("<f4").tobytes()
        if s.topk_logprobs is not None:
            _fill_topk(seq.topk_sampled_logprobs, s.topk_logprobs)
    if res.prompt_logprobs is not None:
        msg.prompt_logprobs = np.asarray(res.prompt_logprobs, dtype="<f4").tobytes()
    if res.topk_prompt_logprobs is not None:
        _fill_topk(msg.topk_prompt_logprobs, res.topk_prompt_logprobs)
    return msg.SerializeToString()


def _fill_topk(target: Any, topk: Any) -> None:
    ids = np.asarray(topk.token_ids)
    n, k = ids.shape if ids.ndim == 2 else (0, 0)
    target.token_ids = ids.astype("<i4").tobytes()
    target.logprobs = np.asarray(topk.logprobs, dtype="<f4").tobytes()
    target.k = k
    target.length = n


# -- the engine ------------------------------------------------------------
class Engine:
    """Runs model work (always on the compute thread, never on the event loop)."""

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

    def create(self, base_model: str, lora: dict[str, Any], opt: dict[str, Any]) -> Any:
        keys = ("rank", "seed", "train_unembed", "train_mlp", "train_attn")
        lcfg = _model.LoraConfig(**{k: v for k, v in lora.items() if k in keys})
        return self._cls()(lcfg, base_model)

    def forward_backward(self, handle: Any, req: FBRequest) -> FBOutput:
        res = handle.forward_backward(
            [_model.Datum(d.tokens, d.inputs) for d in req.data],
            req.loss_fn,
            req.loss_fn_config,
            forward_only=req.forward_only,
        )
        return FBOutput(res.loss_fn_outputs, res.metrics)

    def optim_step(self, handle: Any, params: dict[str, Any]) -> dict[str, float]:
        keys = ("learning_rate", "beta1", "beta2", "eps", "weight_decay", "grad_clip_norm")
        adam = _model.AdamConfig(**{k: float(v) for k, v in params.items() if k in keys})
        return dict(handle.optim_step(adam) or {})

    def save(self, handle: Any, directory: Path, *, optimizer: bool) -> None:
        if optimizer:
            handle.save(directory, optimizer=True)
        else:
            handle.save_sampler(directory)

    def load(self, directory: Path, *, optimizer: bool, like: Any = None) -> Any:
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
            max_tokens=p.get("max_tokens"),
            temperature=float(p.get("temperature", 1.0)),
            top_k=int(p.get("top_k", -1)),
            top_p=float(p.get("top_p", 1.0)),
            stop=p.get("stop"),
            seed=p.get("seed"),
            include_prompt_logprobs=req.prompt_logprobs,
            topk_prompt_logprobs=req.topk_prompt_logprobs,
            topk_sample_logprobs=req.topk_sample_logprobs,
        )


_ = base64  # reserved for image chunks once the model reads them
