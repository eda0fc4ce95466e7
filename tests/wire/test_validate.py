"""Boundary validation: each bad input is refused with the field that is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors import wire as w
from tinker_actors.errors import ValidationError
from tinker_actors.wire.validate import parse_tinker_path, validate_forward_backward, validate_sample, validate_tensor


def datum(tokens=(1, 2, 3), **inputs):  # type: ignore[no-untyped-def]
    return w.Datum(model_input=w.ModelInput.from_ints(list(tokens)), loss_fn_inputs=inputs)


def ce(n: int = 3) -> w.Datum:
    return datum(range(1, n + 1), target_tokens=list(range(2, n + 2)), weights=[1.0] * n)


def pg(n: int = 3) -> w.Datum:
    return datum(range(1, n + 1), target_tokens=[1] * n, logprobs=[-1.0] * n, advantages=[0.5] * n)


def field_of(fn, *args, **kwargs) -> str | None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as info:
        fn(*args, **kwargs)
    return info.value.field


def test_good_batches_pass() -> None:
    validate_forward_backward([ce(), ce(5)], "cross_entropy")
    for loss in ("importance_sampling", "ppo", "cispo", "dro", "gspo", "stable_reinforce"):
        validate_forward_backward([pg()], loss, {"clip_low_threshold": 0.8})
    validate_forward_backward([ce()], "custom", {"loss_id": "l1"})


def test_unknown_loss() -> None:
    assert field_of(validate_forward_backward, [ce()], "mse") == "loss_fn"


def test_missing_inputs_per_loss() -> None:
    assert field_of(validate_forward_backward, [datum(target_tokens=[1, 2, 3])], "cross_entropy") == "data[0].loss_fn_inputs.weights"
    assert field_of(validate_forward_backward, [ce(), ce()], "ppo") == "data[0].loss_fn_inputs.logprobs"
    assert field_of(validate_forward_backward, [ce()], "custom") == "loss_fn_config.loss_id"


def test_length_mismatch() -> None:
    bad = datum(target_tokens=[1, 2], weights=[1.0, 1.0])
    assert field_of(validate_forward_backward, [ce(), bad], "cross_entropy") == "data[1].loss_fn_inputs.target_tokens"


def test_wrong_dtype() -> None:
    bad = datum(target_tokens=w.TensorData(data=[1.0, 2.0, 3.0], dtype="float32", shape=[3]), weights=[1.0] * 3)
    assert field_of(validate_forward_backward, [bad], "cross_entropy") == "data[0].loss_fn_inputs.target_tokens.dtype"
    odd = w.TensorData(data=[1], dtype="int8", shape=[1])  # type: ignore[arg-type]
    assert field_of(validate_tensor, odd, "t") == "t.dtype"


def test_ragged_tensor() -> None:
    ragged = w.TensorData(data=[1, 2, 3], dtype="int64", shape=[2, 2])
    assert field_of(validate_tensor, ragged, "x") == "x.data"
    with pytest.raises(ValueError):
        datum(target_tokens=[[1, 2], [3]])


def test_csr_consistency() -> None:
    good = w.TensorData(data=[5, 7], dtype="int64", shape=[2, 3], sparse_crow_indices=[0, 1, 2], sparse_col_indices=[2, 0])
    validate_tensor(good, "x")
    bad_crow = w.TensorData(data=[5, 7], dtype="int64", shape=[2, 3], sparse_crow_indices=[0, 2, 1], sparse_col_indices=[2, 0])
    assert field_of(validate_tensor, bad_crow, "x") == "x.sparse_crow_indices"
    bad_col = w.TensorData(data=[5, 7], dtype="int64", shape=[2, 3], sparse_crow_indices=[0, 1, 2], sparse_col_indices=[3, 0])
    assert field_of(validate_tensor, bad_col, "x") == "x.sparse_col_indices"
    no_col = w.TensorData(data=[5], dtype="int64", shape=[1, 3], sparse_crow_indices=[0, 1])
    assert field_of(validate_tensor, no_col, "x") == "x"


def test_negative_tokens() -> None:
    assert field_of(validate_forward_backward, [datum((1, -2, 3), target_tokens=[1, 2, 3], weights=[1.0] * 3)], "cross_entropy") == "data[0].model_input.chunks[0].tokens"
    assert field_of(validate_forward_backward, [datum(target_tokens=[1, -2, 3], weights=[1.0] * 3)], "cross_entropy") == "data[0].loss_fn_inputs.target_tokens"


@pytest.mark.parametrize("token", [2**31, 2**63, 2**64])
def test_token_ids_past_int32_are_refused_before_sending(token: int) -> None:
    # Token ids travel as int32: 2**63 used to pass here and fail deep in the encoder.
    prompt = w.SampleRequest(prompt=w.ModelInput.from_ints([1, token]), sampling_params=w.SamplingParams())
    assert field_of(validate_sample, prompt) == "prompt.chunks[0].tokens"


@pytest.mark.parametrize("value", [2**63, 2**64, -(2**63) - 1, float("inf")])
def test_tensor_values_that_do_not_fit_int64_are_a_validation_error(value: float) -> None:
    # Used to escape as a bare OverflowError from numpy.
    assert field_of(validate_tensor, w.TensorData(data=[1, value], dtype="int64"), "x") == "x.data"


def test_asset_pointer_refused_in_forward_backward() -> None:
    d = w.Datum(model_input=w.ModelInput(chunks=[w.ImageAssetPointerChunk(format="png", location="x", expected_tokens=1)]), loss_fn_inputs={"target_tokens": [1], "weights": [1.0]})
    assert field_of(validate_forward_backward, [d], "cross_entropy") == "data[0].model_input.chunks[0]"


def sample(**params):  # type: ignore[no-untyped-def]
    return w.SampleRequest(prompt=w.ModelInput.from_ints([1, 2, 3]), sampling_params=w.SamplingParams(**params))


@pytest.mark.parametrize(
    "params, field",
    [
        ({"temperature": -0.1}, "sampling_params.temperature"),
        ({"temperature": float("nan")}, "sampling_params.temperature"),
        ({"top_p": 0.0}, "sampling_params.top_p"),
        ({"top_p": 1.5}, "sampling_params.top_p"),
        ({"top_k": 0}, "sampling_params.top_k"),
        ({"top_k": -2}, "sampling_params.top_k"),
        ({"max_tokens": 0}, "sampling_params.max_tokens"),
        ({"stop": ["a", 1]}, "sampling_params.stop"),
    ],
)
def test_sampling_params_out_of_range(params: dict, field: str) -> None:
    assert field_of(validate_sample, sample(**params)) == field


def test_sample_good_and_bad() -> None:
    validate_sample(sample(temperature=0.0, top_p=1.0, top_k=-1, max_tokens=1, stop=[1, 2]))
    validate_sample(sample(top_k=1, stop="x"))
    bad_n = w.SampleRequest(num_samples=0, prompt=w.ModelInput.from_ints([1]), sampling_params=w.SamplingParams())
    assert field_of(validate_sample, bad_n) == "num_samples"
    last_n = w.SampleRequest(prompt=w.ModelInput.from_ints([1, 2]), sampling_params=w.SamplingParams(), prompt_logprobs=True, prompt_logprobs_last_n=2)
    assert field_of(validate_sample, last_n) == "prompt_logprobs_last_n"
    target = w.SampleRequest(prompt=w.ModelInput.from_ints([1, 2, 3]), sampling_params=w.SamplingParams(), target_prompt_logprobs=w.TensorData.from_numpy(np.zeros((3, 1), np.int64)))
    assert field_of(validate_sample, target) == "target_prompt_logprobs.shape"


def test_tinker_paths() -> None:
    p = parse_tinker_path("tinker://run-1/sampler_weights/step_10")
    assert (p.run_id, p.kind, p.name) == ("run-1", "sampler_weights", "step_10")
    assert p.checkpoint_id == "sampler_weights/step_10" and p.checkpoint_type == "sampler"
    assert str(p) == "tinker://run-1/sampler_weights/step_10"
    for bad in [
        "tinker://run/weights",
        "tinker://run/weights/a/b",
        "tinker://run/models/a",
        "tinker://../weights/a",
        "tinker://run/weights/..",
        "tinker://run//a",
        "tinker:///weights/a",
        "tinker://run/weights/",
        "tinker://run/weights/a\x00b",
        "file:///etc/passwd",
        "run/weights/a",
    ]:
        with pytest.raises(ValidationError):
            parse_tinker_path(bad)
