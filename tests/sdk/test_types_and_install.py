"""The drop-in's types behave like the SDK's, and `import tinker` can be pointed at the drop-in."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import tinker_actors.sdk as tinker
from tinker_actors import errors as ours
from tinker_actors.sdk import _install, types
from tinker_actors.sdk._convert import datum_to_wire, sample_from_wire
from tinker_actors.wire import types as wt

ROOT = Path(__file__).resolve().parents[2]


def test_tensor_data_keeps_the_sdk_behaviour() -> None:
    td = types.TensorData.from_numpy(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert td.dtype == "int64" and td.shape == [2, 3]
    assert td.data == [0, 1, 2, 3, 4, 5] and isinstance(td.data, list)
    assert td.tolist() == [[0, 1, 2], [3, 4, 5]]
    t = types.TensorData.from_torch(torch.tensor([1.5, 2.5], dtype=torch.bfloat16))
    assert t.dtype == "float32" and t.to_torch().dtype == torch.float32
    sparse = types.TensorData.from_torch_sparse(torch.tensor([[0, 0, 0, 7], [0, 0, 0, 0], [5, 0, 0, 0]]))
    assert sparse.sparse_crow_indices == [0, 1, 1, 2] and sparse.sparse_col_indices == [3, 0]
    assert sparse.to_numpy().tolist() == [[0, 0, 0, 7], [0, 0, 0, 0], [5, 0, 0, 0]]
    with pytest.raises(TypeError, match="dtype"):
        types.TensorData(data=[1, 2])


def test_datum_is_a_frozen_dataclass_that_converts_its_inputs() -> None:
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": torch.ones(3), "advantages": np.zeros(3)},
    )
    assert {k: v.dtype for k, v in datum.loss_fn_inputs.items()} == {
        "target_tokens": "int64", "weights": "float32", "advantages": "float32"}
    trimmed = dataclasses.replace(datum, loss_fn_inputs={"target_tokens": datum.loss_fn_inputs["target_tokens"]})
    assert list(trimmed.loss_fn_inputs) == ["target_tokens"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        datum.model_input = types.ModelInput.empty()  # type: ignore[misc]
    spans = [types.SampledProvenanceSpan(sequence_id="s:0", length=3)]
    tagged = datum.with_provenance(model_input=spans, loss_fn_inputs=spans)
    assert tagged.loss_fn_input_spans == spans
    wire = datum_to_wire(tagged)
    assert isinstance(wire.loss_fn_input_spans[0], wt.SampledProvenanceSpan)
    assert wire.loss_fn_inputs["target_tokens"].to_numpy().tolist() == [2, 3, 4]
    with pytest.raises(ValueError, match="tile"):
        datum.with_provenance(model_input=spans[:0], loss_fn_inputs=spans)
    with pytest.raises(ValueError, match="length"):
        types.PromptProvenanceSpan(sequence_id="s:0", length=-1)


def test_model_input_helpers() -> None:
    mi = types.ModelInput.empty().append(types.EncodedTextChunk(tokens=[5, 6])).append_int(7)
    assert mi.to_ints() == [5, 6, 7] and mi.length == 3


def test_sampled_tokens_are_lists_so_plus_appends() -> None:
    wire = wt.SampleResponse(sequences=[wt.SampledSequence(
        stop_reason="length", tokens=np.frombuffer(np.array([3, 4], dtype=np.int32).tobytes(), dtype=np.int32),
        logprobs=np.array([-0.5, -0.25], dtype=np.float32), sequence_id="r:0")])
    seq = sample_from_wire(wire).sequences[0]
    assert seq.tokens + [1] == [3, 4, 1]  # a numpy array would add element-wise
    assert seq.logprobs == [-0.5, -0.25] and seq.tokens_np.dtype == np.int32
    assert seq.sequence_id == "r:0"


def test_parsed_checkpoint_tinker_path() -> None:
    parsed = types.ParsedCheckpointTinkerPath.from_tinker_path("tinker://run-1/sampler_weights/final")
    assert (parsed.training_run_id, parsed.checkpoint_type, parsed.checkpoint_id) == (
        "run-1", "sampler", "sampler_weights/final")
    with pytest.raises(ValueError, match="Invalid tinker path"):
        types.ParsedCheckpointTinkerPath.from_tinker_path("tinker://run-1/other/x")


def test_errors_are_renamed_to_the_sdk_classes_with_the_original_as_cause() -> None:
    from tinker_actors.sdk._exceptions import translate

    cases = [
        (ours.BadRequestError("bad", status_code=400, endpoint="POST /api/v1/x"), tinker.BadRequestError),
        (ours.UnprocessableError("bad", status_code=422), tinker.UnprocessableEntityError),
        (ours.RateLimitError("slow down", status_code=429), tinker.RateLimitError),
        (ours.InternalServerError("oops", status_code=503), tinker.InternalServerError),
        (ours.APITimeoutError("late", endpoint="POST /api/v1/x"), tinker.APITimeoutError),
        (ours.APIConnectionError("reset"), tinker.APIConnectionError),
        (ours.RequestFailedError("nan loss", category="user", request_id="r1"), tinker.RequestFailedError),
    ]
    for exc, cls in cases:
        new = translate(exc, "http://127.0.0.1:1")
        assert type(new) is cls and new.__cause__ is exc
        assert isinstance(new, tinker.TinkerError)
    failed = translate(cases[-1][0])
    assert failed.request_id == "r1" and failed.category == types.RequestErrorCategory.User
    status = translate(cases[0][0], "http://127.0.0.1:1")
    assert status.status_code == 400 and str(status.request.url) == "http://127.0.0.1:1/api/v1/x"


def test_install_makes_import_tinker_the_drop_in_and_uninstall_undoes_it() -> None:
    import tinker as official_before

    with pytest.raises(RuntimeError, match="already imported"):
        _install.install()
    _install.install(replace=True)
    try:
        import tinker
        from tinker.lib.public_interfaces import APIFuture
        from tinker.types.tensor_data import TensorData

        assert tinker.ServiceClient is tinker_actors_sdk().ServiceClient
        assert TensorData is types.TensorData and APIFuture is tinker_actors_sdk().APIFuture
        with pytest.raises(ModuleNotFoundError, match="drop-in does not provide"):
            import tinker.lib.internal_client_holder  # noqa: F401
    finally:
        _install.uninstall()
    import tinker as official_after

    assert official_after is official_before


def tinker_actors_sdk():  # noqa: ANN201
    return tinker


def test_python_dash_m_runs_an_unmodified_program(tmp_path: Path) -> None:
    program = tmp_path / "prog.py"
    program.write_text(textwrap.dedent("""
        import sys
        import tinker
        from tinker.lib.public_interfaces import APIFuture
        print(tinker.__name__, tinker.ServiceClient.__module__, sys.argv[1:])
    """))
    out = subprocess.run([sys.executable, "-m", "tinker_actors.sdk", str(program), "a", "b"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60, check=True).stdout
    assert out.split() == ["tinker", "tinker_actors.sdk.service_client", "['a',", "'b']"]
