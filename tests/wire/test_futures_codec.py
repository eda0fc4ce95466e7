"""classify_future_response, the codec, tensors and zstd bodies."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from tinker_actors import wire as w
from tinker_actors.wire import compression, protobuf as wp
from tinker_actors.wire.codec import decoder
from tinker_actors.wire.futures import classify_future_response


def test_classify_order() -> None:
    ct = "application/json"
    r = classify_future_response(ct, b'{"type":"try_again","request_id":"r","queue_state":"paused_rate_limit","queue_state_reason":"busy"}', w.OptimStepResponse)
    assert r == w.TryAgainResponse(request_id="r", queue_state="paused_rate_limit", queue_state_reason="busy")
    r = classify_future_response(ct, b'{"status":"complete_metadata","response_payload_size":123}', w.OptimStepResponse)
    assert r == w.CompleteMetadataResponse(response_payload_size=123)
    r = classify_future_response(ct, b'{"error":"bad input","category":"user"}', w.OptimStepResponse)
    assert r == w.RequestFailedResponse(error="bad input", category="user")
    # an unknown category degrades to unknown rather than hiding the failure
    r = classify_future_response(ct, b'{"error":"x","category":"weird"}', w.OptimStepResponse)
    assert r == w.RequestFailedResponse(error="x", category="unknown")
    r = classify_future_response(ct, b'{"metrics":{"loss:mean":2}}', w.OptimStepResponse)
    assert r == w.OptimStepResponse(metrics={"loss:mean": 2.0})
    r = classify_future_response(None, b'{"model_id":"s:train:0"}', w.CreateModelResponse)
    assert r == w.CreateModelResponse(model_id="s:train:0")


def test_classify_protobuf_results() -> None:
    out = w.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", loss_fn_outputs=[{"logprobs": w.TensorData.from_numpy(np.array([-1.0], np.float32))}], metrics={"loss:sum": 1.0})
    body = wp.forward_backward_output_to_proto(out)
    assert classify_future_response("application/x-protobuf", body, w.ForwardBackwardOutput) == out
    with pytest.raises(msgspec.DecodeError):
        classify_future_response("application/x-protobuf", body, w.OptimStepResponse)


def test_classify_malformed_raises_msgspec_errors() -> None:
    with pytest.raises(msgspec.DecodeError):
        classify_future_response("application/json", b"{not json", w.OptimStepResponse)
    with pytest.raises(msgspec.ValidationError):
        classify_future_response("application/json", b'{"type":"try_again","request_id":"r","queue_state":"sleeping"}', w.OptimStepResponse)
    with pytest.raises(msgspec.ValidationError):
        classify_future_response("application/json", b'{"model_id": 5}', w.CreateModelResponse)


def test_decoder_is_cached() -> None:
    assert decoder(w.SampleRequest) is decoder(w.SampleRequest)


def test_model_input_helpers() -> None:
    mi = w.ModelInput.from_ints([1, 2]).append_int(3).append(w.ImageChunk(data=b"x", format="png", expected_tokens=4))
    assert mi.length == 7
    with pytest.raises(ValueError):
        mi.to_ints()
    assert w.ModelInput.empty().length == 0
    assert w.ModelInput.from_ints([4, 5]).append_int(6).to_ints() == [4, 5, 6]
    assert mi.chunks[0].type == "encoded_text" and mi.chunks[-1].type == "image"
    assert w.DmelChunk(dmel=bytes([254, 1, 2, 7, 3])).length == 7


def test_tensor_data_numpy_round_trip() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    td = w.TensorData.from_numpy(arr)
    assert td.to_numpy() is arr or np.shares_memory(td.to_numpy(), arr)
    assert td.dtype == "float32" and td.shape == [2, 3]
    assert w.TensorData.from_numpy(np.arange(3, dtype=np.int32)).to_numpy().dtype == np.int64
    assert w.TensorData.from_numpy(np.ones(2)).to_numpy().dtype == np.float32  # float64 narrows like the SDK
    assert w.encode(td) == b'{"data":[0.0,1.0,2.0,3.0,4.0,5.0],"dtype":"float32","shape":[2,3]}'
    with pytest.raises(ValueError):
        w.TensorData.from_numpy(np.array([True]))


def test_datum_converts_plain_values() -> None:
    d = w.Datum(model_input=w.ModelInput.from_ints([1, 2]), loss_fn_inputs={"target_tokens": [3, 4], "weights": [1, 0], "advantages": np.array([0.5, 1.5])})
    assert d.loss_fn_inputs["target_tokens"].dtype == "int64"
    assert d.loss_fn_inputs["weights"].dtype == "float32"  # ints under a float key become float32
    assert d.loss_fn_inputs["advantages"].to_numpy().dtype == np.float32
    assert w.Datum.create(w.ModelInput.from_ints([1]), {"target_tokens": [7]}).loss_fn_inputs["target_tokens"].tolist() == [7]
    with pytest.raises(ValueError):
        w.Datum(model_input=w.ModelInput.empty(), model_input_spans=[])


def test_zstd_round_trip_and_bounds() -> None:
    body = b"tinker" * 10_000
    packed = compression.compress(body)
    assert len(packed) < len(body) // 10
    assert compression.decompress(packed) == body
    with pytest.raises(ValueError):
        compression.decompress(packed, max_size=100)
    with pytest.raises(ValueError):
        compression.decompress(b"not zstd at all")
