"""Our protobuf bytes and the SDK's conversion functions agree, both ways."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinker.types as tt
from tinker.proto import request_conv, response_conv
from tinker.proto import tinker_public_pb2 as sdk_pb
from tinker.types.prompt_alt_tokens import PromptAltTokens as SdkAlt
from tinker.types.topk_logprobs import TopkLogprobs as SdkTopk

from tinker_actors import wire as w
from tinker_actors.errors import ValidationError
from tinker_actors.wire import protobuf as wp
from tinker_actors.wire.proto import tinker_public_pb2 as our_pb


def test_descriptor_matches_sdk_field_for_field() -> None:
    def dump(fd):  # type: ignore[no-untyped-def]
        out = {}

        def walk(md, prefix):  # type: ignore[no-untyped-def]
            for f in md.fields:
                out[prefix + md.name + "." + f.name] = (
                    f.number, f.type, f.is_repeated, f.has_presence,
                    f.containing_oneof.name if f.containing_oneof else None,
                )
            for n in md.nested_types:
                walk(n, prefix + md.name + ".")

        for md in fd.message_types_by_name.values():
            walk(md, "")
        for name, ed in fd.enum_types_by_name.items():
            for v in ed.values:
                out[name + "." + v.name] = v.number
        return out

    assert dump(our_pb.DESCRIPTOR) == dump(sdk_pb.DESCRIPTOR)
    # both packages live in one process without a descriptor-pool clash
    assert our_pb.DESCRIPTOR.pool is not sdk_pb.DESCRIPTOR.pool


# ---- forward_backward request ---------------------------------------------


def _pair(tokens, inputs, config, loss_fn="ppo", spans=False):  # type: ignore[no-untyped-def]
    ours_d = w.Datum(model_input=w.ModelInput.from_ints(tokens), loss_fn_inputs=dict(inputs))
    sdk_d = tt.Datum(model_input=tt.ModelInput.from_ints(tokens), loss_fn_inputs=dict(inputs))
    if spans:
        ours_d = ours_d.with_provenance(
            [w.PromptProvenanceSpan(sequence_id="a", length=len(tokens))],
            [w.SampledProvenanceSpan(sequence_id="b", offset=1, length=len(tokens))],
        )
        sdk_d = sdk_d.with_provenance(
            [tt.PromptProvenanceSpan(sequence_id="a", length=len(tokens))],
            [tt.SampledProvenanceSpan(sequence_id="b", offset=1, length=len(tokens))],
        )
    ours = w.ForwardBackwardRequest(
        forward_backward_input=w.ForwardBackwardInput(data=[ours_d], loss_fn=loss_fn, loss_fn_config=config),
        model_id="s:train:0", seq_id=4,
    )
    sdk = tt.ForwardBackwardRequest(
        forward_backward_input=tt.ForwardBackwardInput(data=[sdk_d], loss_fn=loss_fn, loss_fn_config=config),
        model_id="s:train:0", seq_id=4,
    )
    return ours, sdk


@pytest.mark.parametrize("spans", [False, True])
def test_fb_request_bytes_equal_sdk(spans: bool) -> None:
    inputs = {"target_tokens": [2, 3, 4], "logprobs": [-0.5, -1.0, -2.0], "advantages": np.array([1.0, 0.0, -1.0])}
    ours, sdk = _pair([1, 2, 3], inputs, {"clip_low_threshold": 0.8, "variant": "x"}, spans=spans)
    body = wp.forward_backward_request_to_proto(ours)
    assert body == request_conv.forward_backward_request_to_proto(sdk).SerializeToString()
    assert wp.forward_backward_request_from_proto(body) == ours


def test_fb_request_csr_and_forward_only() -> None:
    csr = w.TensorData(data=[5, 7], dtype="int64", shape=[2, 3], sparse_crow_indices=[0, 1, 2], sparse_col_indices=[2, 0])
    sdk_csr = tt.TensorData(data=[5, 7], dtype="int64", shape=[2, 3], sparse_crow_indices=[0, 1, 2], sparse_col_indices=[2, 0])
    ours = w.ForwardRequest(
        forward_input=w.ForwardBackwardInput(data=[w.Datum(model_input=w.ModelInput.from_ints([1, 2]), loss_fn_inputs={"target_tokens": csr})], loss_fn="cross_entropy"),
        model_id="m", seq_id=1,
    )
    sdk = tt.ForwardRequest(
        forward_input=tt.ForwardBackwardInput(data=[tt.Datum(model_input=tt.ModelInput.from_ints([1, 2]), loss_fn_inputs={"target_tokens": sdk_csr})], loss_fn="cross_entropy"),
        model_id="m", seq_id=1,
    )
    body = wp.forward_backward_request_to_proto(ours)
    sdk_msg = request_conv.forward_backward_request_to_proto(
        tt.ForwardBackwardRequest(forward_backward_input=sdk.forward_input, model_id="m", seq_id=1)
    )
    sdk_msg.forward_only = True
    assert body == sdk_msg.SerializeToString()
    back = wp.forward_backward_request_from_proto(body)
    assert isinstance(back, w.ForwardRequest) and back == ours
    td = back.forward_input.data[0].loss_fn_inputs["target_tokens"]
    assert td.to_numpy(pad_value=-1).tolist() == [[-1, -1, 5], [7, -1, -1]]


def test_fb_request_decodes_to_numpy_views() -> None:
    ours, _ = _pair([1, 2, 3], {"target_tokens": [2, 3, 4], "logprobs": [0.0] * 3, "advantages": [1.0] * 3}, None)
    back = wp.forward_backward_request_from_proto(wp.forward_backward_request_to_proto(ours))
    datum = back.forward_backward_input.data[0]
    arr = datum.loss_fn_inputs["logprobs"].to_numpy()
    assert isinstance(arr, np.ndarray) and not arr.flags.writeable  # a view over the body bytes
    assert isinstance(datum.model_input.chunks[0].tokens, np.ndarray)
    assert datum.model_input.to_ints() == [1, 2, 3]


def test_asset_pointer_cannot_go_in_proto() -> None:
    datum = w.Datum(model_input=w.ModelInput(chunks=[w.ImageAssetPointerChunk(format="png", location="s3://x")]))
    req = w.ForwardBackwardRequest(forward_backward_input=w.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy"), model_id="m")
    with pytest.raises(ValidationError) as info:
        wp.forward_backward_request_to_proto(req)
    assert info.value.field == "data[0].model_input.chunks[0]"


def test_malformed_proto_raises_msgspec_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        wp.forward_backward_output_from_proto(b"\xff\xff\xff")
    with pytest.raises(msgspec.DecodeError):
        wp.sample_response_from_proto(b"\x0a\x05\x08")


token_lists = st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=6)
f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=30, deadline=None)
@given(token_lists, st.data(), st.dictionaries(st.text(min_size=1, max_size=4), f32 | st.text(max_size=4), max_size=3))
def test_fb_request_hypothesis(tokens: list[int], data: st.DataObject, config: dict) -> None:
    n = len(tokens)
    inputs = {
        "target_tokens": data.draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)),
        "logprobs": data.draw(st.lists(f32, min_size=n, max_size=n)),
        "advantages": data.draw(st.lists(f32, min_size=n, max_size=n)),
    }
    ours, sdk = _pair(tokens, inputs, config or None)
    body = wp.forward_backward_request_to_proto(ours)
    assert body == request_conv.forward_backward_request_to_proto(sdk).SerializeToString()
    assert wp.forward_backward_request_from_proto(body) == ours


# ---- ForwardBackwardOutput ------------------------------------------------


def _sdk_output_as_ours(sdk: tt.ForwardBackwardOutput) -> w.ForwardBackwardOutput:
    return w.ForwardBackwardOutput(
        loss_fn_output_type=sdk.loss_fn_output_type,
        loss_fn_outputs=[
            {k: w.TensorData(data=v.to_numpy().reshape(-1), dtype=v.dtype, shape=v.shape) for k, v in d.items()}
            for d in sdk.loss_fn_outputs
        ],
        metrics=dict(sdk.metrics),
    )


def test_fb_output_ragged_records_read_by_sdk() -> None:
    out = w.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[
            {"logprobs": w.TensorData.from_numpy(np.array([-1.0, -2.0], np.float32)), "elementwise_loss": w.TensorData.from_numpy(np.ones(2, np.float32))},
            {"logprobs": w.TensorData.from_numpy(np.array([-3.0], np.float32)), "elementwise_loss": w.TensorData.from_numpy(np.zeros(1, np.float32))},
            {"logprobs": w.TensorData.from_numpy(np.arange(6, dtype=np.float32).reshape(3, 2)), "elementwise_loss": w.TensorData.from_numpy(np.ones(3, np.float32))},
        ],
        metrics={"loss:sum": 2.5, "tokens:mean": 3.0},
    )
    body = wp.forward_backward_output_to_proto(out)
    msg = our_pb.ForwardBackwardOutput.FromString(body)
    assert len(msg.loss_fn_outputs) == 2  # the [3,2] datum needs its own record
    sdk = response_conv.deserialize_forward_backward_output(body)
    assert _sdk_output_as_ours(sdk) == out
    assert wp.forward_backward_output_from_proto(body) == out


def test_fb_output_widens_bf16_and_int32_and_strips_module() -> None:
    msg = sdk_pb.ForwardBackwardOutput(loss_fn_output_type="pkg.mod:TorchLossReturn")
    rec = msg.loss_fn_outputs.add(num_datums=2)
    bf = np.array([1.0, -2.5, 0.375], np.float32).view(np.uint32) >> 16
    rec.fields["logprobs"].data = bf.astype("<u2").tobytes()
    rec.fields["logprobs"].offsets = np.array([0, 4, 6], "<i8").tobytes()
    rec.fields["logprobs"].dtype = sdk_pb.DTYPE_BFLOAT16
    rec.fields["ids"].data = np.array([7, 8, 9], "<i4").tobytes()
    rec.fields["ids"].offsets = np.array([0, 8, 12], "<i8").tobytes()
    rec.fields["ids"].dtype = sdk_pb.DTYPE_INT32
    body = msg.SerializeToString()
    ours = wp.forward_backward_output_from_proto(body)
    assert ours == _sdk_output_as_ours(response_conv.deserialize_forward_backward_output(body))
    assert ours.loss_fn_output_type == "TorchLossReturn"
    assert ours.loss_fn_outputs[0]["logprobs"].to_numpy().tolist() == [1.0, -2.5]
    assert ours.loss_fn_outputs[1]["ids"].to_numpy().dtype == np.int64


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 3)), min_size=0, max_size=4), st.dictionaries(st.text(min_size=1, max_size=3).map(lambda s: s + ":sum"), f32, max_size=3))
def test_fb_output_hypothesis(shapes: list[tuple[int, int]], metrics: dict) -> None:
    rng = np.random.default_rng(len(shapes))
    outs = [
        {"logprobs": w.TensorData.from_numpy(rng.standard_normal((n, k)).astype(np.float32)),
         "target_tokens": w.TensorData.from_numpy(rng.integers(0, 100, n).astype(np.int64))}
        for n, k in shapes
    ]
    out = w.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", loss_fn_outputs=outs, metrics=metrics)
    body = wp.forward_backward_output_to_proto(out)
    assert _sdk_output_as_ours(response_conv.deserialize_forward_backward_output(body)) == out
    assert wp.forward_backward_output_from_proto(body) == out


# ---- SampleResponse -------------------------------------------------------


def _sdk_sample_bytes(resp: tt.SampleResponse) -> bytes:
    """Build SDK-side proto bytes by hand (the SDK only reads SampleResponse)."""
    msg = sdk_pb.SampleResponse()
    for seq in resp.sequences:
        s = msg.sequences.add(stop_reason=sdk_pb.STOP_REASON_STOP if seq.stop_reason == "stop" else sdk_pb.STOP_REASON_LENGTH)
        s.tokens = seq.tokens_np.astype("<i4").tobytes()
        if seq.logprobs_np is not None:
            s.logprobs = seq.logprobs_np.astype("<f4").tobytes()
    if resp.prompt_logprobs_np is not None:
        msg.prompt_logprobs = resp.prompt_logprobs_np.astype("<f4").tobytes()
    msg.prompt_cache_hit_tokens = resp.prompt_cache_hit_tokens
    return msg.SerializeToString()


def _example_response() -> w.SampleResponse:
    return w.SampleResponse(
        sequences=[
            w.SampledSequence(stop_reason="stop", tokens=[5, 6, 7], logprobs=[-0.5, -1.0, -0.25],
                              topk_logprobs=[[(5, -0.5), (9, -2.0)], [(6, -1.0)], None]),
            w.SampledSequence(stop_reason="length", tokens=[1]),
        ],
        prompt_logprobs=[None, -1.5, -0.75],
        topk_prompt_logprobs=[None, [(3, -0.125), (4, -3.0)], [(2, -0.25)]],
        target_prompt_logprobs=w.TensorData(data=[-0.5, 0.0, -1.0, -2.0], dtype="float32", shape=[2, 2]),
        prompt_cache_hit_tokens=2,
        prompt_alt_tokens=w.PromptAltTokens(
            tokens=w.TensorData(data=[1, 2, 3, 4], dtype="int64", shape=[2, 2]),
            logprobs=w.TensorData(data=[-1.0, -2.0, -3.0, -4.0], dtype="float32", shape=[2, 2]),
        ),
    )


def _sdk_as_ours(sdk: tt.SampleResponse) -> w.SampleResponse:
    def td(t):  # type: ignore[no-untyped-def]
        return None if t is None else w.TensorData(data=t.to_numpy().reshape(-1), dtype=t.dtype, shape=t.shape)

    return w.SampleResponse(
        sequences=[
            w.SampledSequence(stop_reason=s.stop_reason, tokens=s.tokens, logprobs=s.logprobs, topk_logprobs=s.topk_logprobs, sequence_id=s.sequence_id)
            for s in sdk.sequences
        ],
        prompt_logprobs=sdk.prompt_logprobs,
        topk_prompt_logprobs=sdk.topk_prompt_logprobs,
        target_prompt_logprobs=td(sdk.target_prompt_logprobs),
        prompt_cache_hit_tokens=sdk.prompt_cache_hit_tokens,
        prompt_alt_tokens=None if sdk.prompt_alt_tokens is None else w.PromptAltTokens(tokens=td(sdk.prompt_alt_tokens.tokens), logprobs=td(sdk.prompt_alt_tokens.logprobs)),
    )


def test_sample_response_read_by_sdk() -> None:
    resp = _example_response()
    body = wp.sample_response_to_proto(resp)
    sdk = response_conv.deserialize_sample_response(body)
    assert _sdk_as_ours(sdk) == resp
    assert sdk.prompt_logprobs == [None, -1.5, -0.75]
    assert sdk.sequences[0].topk_logprobs[2] is None
    ours = wp.sample_response_from_proto(body, sequence_ids=["a", "b"])
    assert ours.prompt_logprobs_list == [None, -1.5, -0.75]
    assert isinstance(ours.sequences[0].tokens, np.ndarray) and ours.sequences[0].tokens_list == [5, 6, 7]
    assert [s.sequence_id for s in ours.sequences] == ["a", "b"]
    assert ours == msgspec.structs.replace(resp, sequences=[msgspec.structs.replace(s, sequence_id=i) for s, i in zip(resp.sequences, "ab")])


def test_sample_response_json_form_round_trips() -> None:
    resp = _example_response()
    decoded = w.decode(w.SampleResponse, w.encode(resp))
    assert decoded == resp
    from_proto = wp.sample_response_from_proto(wp.sample_response_to_proto(resp))
    assert w.decode(w.SampleResponse, w.encode(from_proto)) == resp  # numpy views encode as the list form


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["stop", "length"]), st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=5), st.booleans()), max_size=3),
       st.none() | st.lists(st.none() | f32, min_size=1, max_size=5), st.integers(0, 1000))
def test_sample_response_hypothesis(seqs: list, prompt_lp: list | None, hits: int) -> None:
    sdk_resp = tt.SampleResponse(
        sequences=[
            tt.SampledSequence(stop_reason=r, sequence_id=None, tokens_np=np.array(t, np.int32),  # type: ignore[arg-type]
                               logprobs_np=np.linspace(-1, 0, len(t), dtype=np.float32) if lp else None)
            for r, t, lp in seqs
        ],
        prompt_logprobs_np=None if prompt_lp is None else np.array([math.nan if v is None else v for v in prompt_lp], np.float32),
        prompt_cache_hit_tokens=hits,
    )
    sdk_body = _sdk_sample_bytes(sdk_resp)
    ours = wp.sample_response_from_proto(sdk_body)
    assert ours == _sdk_as_ours(sdk_resp)
    # and the SDK reads what we write back
    assert _sdk_as_ours(response_conv.deserialize_sample_response(wp.sample_response_to_proto(ours))) == ours


def test_sdk_topk_reader_agrees_on_padding() -> None:
    topk = w.TopkLogprobs([[5, 9], [6, 0], [0, 0]], [[-0.5, -2.0], [-1.0, w.MASK_LOGPROB], [w.MASK_LOGPROB, w.MASK_LOGPROB]])
    sdk_rows = __import__("tinker.types.topk_logprobs", fromlist=["x"]).topk_to_lists(SdkTopk(topk.token_ids, topk.logprobs))
    assert topk.to_lists() == sdk_rows == [[(5, -0.5), (9, -2.0)], [(6, -1.0)], None]
