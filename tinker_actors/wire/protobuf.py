"""Protobuf bodies, both directions (protocol §5).

* forward_backward requests: ``forward_backward_request_to_proto`` (client)
  and ``forward_backward_request_from_proto`` (server). A forward-only
  request is a ``ForwardRequest`` on our side and ``forward_only=true`` on
  the wire. Numbers in ``loss_fn_config`` go to both config maps, strings to
  ``loss_fn_config_v2`` only; the decoder prefers v2.
* ``ForwardBackwardOutput`` and ``SampleResponse`` results:
  ``*_to_proto`` (server) and ``*_from_proto`` (client).

Decoded objects are the same Structs as the JSON forms, holding numpy views
over the message bytes where the JSON form holds lists (see
``wire.tensor_data`` and ``wire.sampling`` for the representation).
``decode_result(T, body)`` is what ``classify_future_response`` calls for a
protobuf answer; it raises ``msgspec.DecodeError`` for a body it cannot read,
like the JSON path.
"""

from __future__ import annotations

from typing import Any, Sequence, TypeVar

import msgspec
import numpy as np
from google.protobuf.message import DecodeError as _ProtoDecodeError

from ..errors import ValidationError
from .model_input import (
    DmelChunk,
    EncodedTextChunk,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    ModelInputChunk,
)
from .proto import tinker_public_pb2 as pb
from .sampling import PromptAltTokens, SampledSequence, SampleResponse
from .tensor_data import TensorData, TopkLogprobs, topk_from_lists
from .tensors import batched_from_proto, batched_to_proto, le_bytes, tensor_from_proto, tensor_to_proto
from .training import (
    Datum,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    ForwardRequest,
    PromptProvenanceSpan,
    ProvenanceSpan,
    SampledProvenanceSpan,
)

__all__ = [
    "PROTOBUF_CONTENT_TYPE",
    "forward_backward_request_to_proto",
    "forward_backward_request_from_proto",
    "forward_backward_output_to_proto",
    "forward_backward_output_from_proto",
    "sample_response_to_proto",
    "sample_response_from_proto",
    "decode_result",
    "PROTO_RESULT_TYPES",
]

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"

_STOP_TO_PROTO = {"stop": pb.STOP_REASON_STOP, "length": pb.STOP_REASON_LENGTH}
_STOP_FROM_PROTO = {v: k for k, v in _STOP_TO_PROTO.items()}

T = TypeVar("T")


# ---- forward_backward request ------------------------------------------------


def _write_chunk(msg: Any, chunk: ModelInputChunk, where: str) -> None:
    if isinstance(chunk, EncodedTextChunk):
        msg.encoded_text.tokens = le_bytes(chunk.tokens, "<i4")
    elif isinstance(chunk, ImageChunk):
        msg.image.data = chunk.data
        msg.image.format = chunk.format
        if chunk.expected_tokens is not None:
            msg.image.expected_tokens = chunk.expected_tokens
    elif isinstance(chunk, DmelChunk):
        msg.dmel.dmel = chunk.dmel
    elif isinstance(chunk, ImageAssetPointerChunk):
        raise ValidationError(
            "image asset pointers cannot be sent in a forward_backward request; send the image bytes",
            field=where,
        )
    else:
        raise ValidationError(f"unsupported chunk type {type(chunk).__name__}", field=where)


def _write_span(msg: Any, span: ProvenanceSpan) -> None:
    arm = msg.sampled_tokens if isinstance(span, SampledProvenanceSpan) else msg.prompt_tokens
    arm.sequence_id = span.sequence_id
    arm.offset = span.offset
    arm.length = span.length


def forward_backward_request_to_proto(request: ForwardBackwardRequest | ForwardRequest) -> bytes:
    """Serialize a forward_backward (or forward-only) request body."""
    if isinstance(request, ForwardRequest):
        fb_input, forward_only = request.forward_input, True
    else:
        fb_input, forward_only = request.forward_backward_input, False
    msg = pb.ForwardBackwardRequest()
    msg.model_id = request.model_id
    msg.seq_id = request.seq_id if request.seq_id is not None else 0
    msg.loss_fn = fb_input.loss_fn
    msg.forward_only = forward_only
    for key, value in (fb_input.loss_fn_config or {}).items():
        if isinstance(value, str):
            msg.loss_fn_config_v2[key].text = value
        else:
            msg.loss_fn_config[key] = float(value)
            msg.loss_fn_config_v2[key].number = float(value)
    for i, datum in enumerate(fb_input.data):
        dmsg = msg.data.add()
        for j, chunk in enumerate(datum.model_input.chunks):
            _write_chunk(dmsg.model_input.add(), chunk, f"data[{i}].model_input.chunks[{j}]")
        for name, td in datum.loss_fn_inputs.items():
            tensor_to_proto(td, dmsg.loss_fn_inputs[name])
        for span in datum.model_input_spans or ():
            _write_span(dmsg.model_input_spans.add(), span)
        for span in datum.loss_fn_input_spans or ():
            _write_span(dmsg.loss_fn_input_spans.add(), span)
    return msg.SerializeToString()


def _read_chunk(msg: Any) -> ModelInputChunk:
    kind = msg.WhichOneof("chunk")
    if kind == "encoded_text":
        return EncodedTextChunk(tokens=np.frombuffer(msg.encoded_text.tokens, dtype="<i4"))
    if kind == "image":
        img = msg.image
        return ImageChunk(
            data=img.data,
            format=img.format,
            expected_tokens=img.expected_tokens if img.HasField("expected_tokens") else None,
        )
    if kind == "dmel":
        return DmelChunk(dmel=msg.dmel.dmel)
    raise ValueError("model input chunk has no content")


def _read_span(msg: Any) -> ProvenanceSpan:
    kind = msg.WhichOneof("span")
    if kind == "prompt_tokens":
        s = msg.prompt_tokens
        return PromptProvenanceSpan(sequence_id=s.sequence_id, offset=s.offset, length=s.length)
    if kind == "sampled_tokens":
        s = msg.sampled_tokens
        return SampledProvenanceSpan(sequence_id=s.sequence_id, offset=s.offset, length=s.length)
    raise ValueError("provenance span has no content")


def forward_backward_request_from_proto(body: bytes) -> ForwardBackwardRequest | ForwardRequest:
    """Parse a forward_backward body (raises msgspec.DecodeError when malformed)."""
    msg = _parse(pb.ForwardBackwardRequest, body)
    try:
        config: dict[str, float | str] | None = None
        if msg.loss_fn_config_v2:
            config = {}
            for key, value in msg.loss_fn_config_v2.items():
                kind = value.WhichOneof("value")
                config[key] = value.text if kind == "text" else value.number
        elif msg.loss_fn_config:
            config = dict(msg.loss_fn_config.items())
        data = []
        for dmsg in msg.data:
            spans_in = [_read_span(s) for s in dmsg.model_input_spans]
            spans_loss = [_read_span(s) for s in dmsg.loss_fn_input_spans]
            has_spans = bool(spans_in or spans_loss)
            data.append(
                Datum(
                    model_input=ModelInput(chunks=[_read_chunk(c) for c in dmsg.model_input]),
                    loss_fn_inputs={k: tensor_from_proto(v) for k, v in dmsg.loss_fn_inputs.items()},
                    model_input_spans=spans_in if has_spans else None,
                    loss_fn_input_spans=spans_loss if has_spans else None,
                )
            )
        fb_input = ForwardBackwardInput(data=data, loss_fn=msg.loss_fn, loss_fn_config=config)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise msgspec.DecodeError(f"malformed ForwardBackwardRequest: {exc}") from None
    if msg.forward_only:
        return ForwardRequest(forward_input=fb_input, model_id=msg.model_id, seq_id=msg.seq_id)
    return ForwardBackwardRequest(forward_backward_input=fb_input, model_id=msg.model_id, seq_id=msg.seq_id)


# ---- ForwardBackwardOutput ---------------------------------------------------


def _signature(outputs: dict[str, TensorData]) -> tuple[Any, ...]:
    sig = []
    for name in sorted(outputs):
        td = outputs[name]
        shape = td.shape if td.shape is not None else [td.values().size]
        sig.append((name, td.dtype, tuple(int(s) for s in shape[1:])))
    return tuple(sig)


def forward_backward_output_to_proto(output: ForwardBackwardOutput, *, type_tag: str = "") -> bytes:
    """Serialize a result. Runs of datums with the same fields, dtypes and
    trailing shapes share one ArrayRecord (ragged outputs give several)."""
    msg = pb.ForwardBackwardOutput()
    msg.loss_fn_output_type = output.loss_fn_output_type
    for key, value in output.metrics.items():
        msg.metrics[key] = float(value)
    runs: list[tuple[tuple[Any, ...], list[dict[str, TensorData]]]] = []
    for datum in output.loss_fn_outputs:
        sig = _signature(datum)
        if runs and runs[-1][0] == sig:
            runs[-1][1].append(datum)
        else:
            runs.append((sig, [datum]))
    for sig, datums in runs:
        record = msg.loss_fn_outputs.add()
        record.type_tag = type_tag
        record.num_datums = len(datums)
        for name, dtype, trailing in sig:
            batched_to_proto([d[name].to_numpy() for d in datums], dtype, trailing, record.fields[name])
    return msg.SerializeToString()


def forward_backward_output_from_proto(body: bytes) -> ForwardBackwardOutput:
    """Parse a result; each per-datum tensor is a view into the body bytes."""
    msg = _parse(pb.ForwardBackwardOutput, body)
    metrics = {k: float(v) for k, v in msg.metrics.items()}
    if not msg.loss_fn_outputs:
        return ForwardBackwardOutput(
            loss_fn_output_type=msg.loss_fn_output_type or "ArrayRecord", loss_fn_outputs=[], metrics=metrics
        )
    outputs: list[dict[str, TensorData]] = []
    try:
        for record in msg.loss_fn_outputs:
            fields = {name: batched_from_proto(bt) for name, bt in record.fields.items()}
            count = int(record.num_datums) or max((len(p) for _, _, p in fields.values()), default=0)
            for i in range(count):
                datum: dict[str, TensorData] = {}
                for name, (dtype, trailing, parts) in fields.items():
                    arr = parts[i]
                    inner = int(np.prod(trailing)) if trailing else 1
                    leading = arr.size // inner if inner else 0
                    datum[name] = TensorData(data=arr, dtype=dtype, shape=[leading, *trailing])
                outputs.append(datum)
    except (ValueError, IndexError) as exc:
        raise msgspec.DecodeError(f"malformed ForwardBackwardOutput: {exc}") from None
    return ForwardBackwardOutput(
        loss_fn_output_type=msg.loss_fn_output_type.rsplit(":", 1)[-1],
        loss_fn_outputs=outputs,
        metrics=metrics,
    )


# ---- SampleResponse ----------------------------------------------------------


def _write_topk(msg: Any, value: Any) -> None:
    topk = value if isinstance(value, TopkLogprobs) else topk_from_lists(value)
    msg.token_ids = le_bytes(topk.token_ids, "<i4")
    msg.logprobs = le_bytes(topk.logprobs, "<f4")
    msg.k = topk.k
    msg.length = topk.length


def _read_topk(msg: Any) -> TopkLogprobs | None:
    n, k = msg.length, msg.k
    if n == 0 or k == 0:
        return None
    ids = np.frombuffer(msg.token_ids, dtype="<i4")
    lps = np.frombuffer(msg.logprobs, dtype="<f4")
    if ids.size != n * k or lps.size != n * k:
        raise ValueError("top-k matrices do not match their length and k")
    return TopkLogprobs(ids.reshape(n, k), lps.reshape(n, k))


def _nan_for_none(values: Any) -> Any:
    if isinstance(values, np.ndarray):
        return values
    return [np.nan if v is None else v for v in values]


def sample_response_to_proto(response: SampleResponse) -> bytes:
    msg = pb.SampleResponse()
    for seq in response.sequences:
        smsg = msg.sequences.add()
        smsg.stop_reason = _STOP_TO_PROTO[seq.stop_reason]
        smsg.tokens = le_bytes(seq.tokens, "<i4")
        if seq.logprobs is not None:
            smsg.logprobs = le_bytes(seq.logprobs, "<f4")
        if seq.topk_logprobs is not None:
            _write_topk(smsg.topk_sampled_logprobs, seq.topk_logprobs)
    if response.prompt_logprobs is not None:
        msg.prompt_logprobs = le_bytes(_nan_for_none(response.prompt_logprobs), "<f4")
    if response.topk_prompt_logprobs is not None:
        _write_topk(msg.topk_prompt_logprobs, response.topk_prompt_logprobs)
    msg.prompt_cache_hit_tokens = response.prompt_cache_hit_tokens
    if response.target_prompt_logprobs is not None:
        tensor_to_proto(response.target_prompt_logprobs, msg.target_prompt_logprobs)
    if response.prompt_alt_tokens is not None:
        tensor_to_proto(response.prompt_alt_tokens.tokens, msg.prompt_alt_tokens.tokens)
        tensor_to_proto(response.prompt_alt_tokens.logprobs, msg.prompt_alt_tokens.logprobs)
    return msg.SerializeToString()


def sample_response_from_proto(body: bytes, sequence_ids: Sequence[str] | None = None) -> SampleResponse:
    """Parse a sample result. ``sequence_ids`` (the submit's
    ``sample_sequence_ids``) are stamped on the sequences in order when given."""
    msg = _parse(pb.SampleResponse, body)
    try:
        sequences = []
        for i, smsg in enumerate(msg.sequences):
            stop = _STOP_FROM_PROTO.get(smsg.stop_reason)
            if stop is None:
                raise ValueError(f"unknown stop_reason {smsg.stop_reason}")
            sequences.append(
                SampledSequence(
                    stop_reason=stop,  # type: ignore[arg-type]
                    tokens=np.frombuffer(smsg.tokens, dtype="<i4"),
                    logprobs=np.frombuffer(smsg.logprobs, dtype="<f4") if smsg.HasField("logprobs") else None,
                    topk_logprobs=_read_topk(smsg.topk_sampled_logprobs)
                    if smsg.HasField("topk_sampled_logprobs")
                    else None,
                    sequence_id=sequence_ids[i] if sequence_ids is not None and i < len(sequence_ids) else None,
                )
            )
        return SampleResponse(
            sequences=sequences,
            prompt_logprobs=np.frombuffer(msg.prompt_logprobs, dtype="<f4")
            if msg.HasField("prompt_logprobs")
            else None,
            topk_prompt_logprobs=_read_topk(msg.topk_prompt_logprobs)
            if msg.HasField("topk_prompt_logprobs")
            else None,
            target_prompt_logprobs=tensor_from_proto(msg.target_prompt_logprobs)
            if msg.HasField("target_prompt_logprobs")
            else None,
            prompt_cache_hit_tokens=msg.prompt_cache_hit_tokens,
            prompt_alt_tokens=PromptAltTokens(
                tokens=tensor_from_proto(msg.prompt_alt_tokens.tokens),
                logprobs=tensor_from_proto(msg.prompt_alt_tokens.logprobs),
            )
            if msg.HasField("prompt_alt_tokens")
            else None,
        )
    except ValueError as exc:
        raise msgspec.DecodeError(f"malformed SampleResponse: {exc}") from None


# ---- dispatch ----------------------------------------------------------------

PROTO_RESULT_TYPES: dict[type, Any] = {
    ForwardBackwardOutput: forward_backward_output_from_proto,
    SampleResponse: sample_response_from_proto,
}


def decode_result(result_type: type[T], body: bytes) -> T:
    """Decode a protobuf future result of ``result_type``."""
    reader = PROTO_RESULT_TYPES.get(result_type)
    if reader is None:
        raise msgspec.DecodeError(f"{getattr(result_type, '__name__', result_type)} has no protobuf form")
    return reader(body)  # type: ignore[no-any-return]


def _parse(cls: Any, body: bytes) -> Any:
    msg = cls()
    try:
        msg.ParseFromString(body)
    except _ProtoDecodeError as exc:
        raise msgspec.DecodeError(f"malformed {cls.DESCRIPTOR.name}: {exc}") from None
    return msg
