"""Our Structs encode to the SDK's JSON and read the SDK's JSON, type by type.

For each (ours, SDK type, payload): the SDK builds its object from the
payload; its ``model_dump(mode="json", exclude_none=True)`` must equal our
encoding of the same payload (as parsed JSON), and each side must decode the
other's bytes to an equal value.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinker.types as tt
from tinker.types._pydantic_types import datum as sdk_datum
from tinker.types._pydantic_types import forward_backward_input as sdk_fbi
from tinker.types._pydantic_types import model_input as sdk_mi
from tinker.types._pydantic_types import tensor_data as sdk_td
from tinker.types import future_completion as sdk_fc
from tinker.types import futures_retrieve_request as sdk_frr
from tinker.types import search_owner as sdk_owner
from tinker.types import session_status as sdk_status
from tinker.types.try_again_response import TryAgainResponse as SdkTryAgain

from tinker_actors import wire as w
from tinker_actors.wire.codec import decode, encode, to_builtins

TS = "2024-05-06T07:08:09.123456Z"
PNG = base64.b64encode(b"\x89PNG fake").decode()
TOKENS = {"type": "encoded_text", "tokens": [1, 2, 3]}
MI = {"chunks": [TOKENS]}
TD_INT = {"data": [1, 2, 3], "dtype": "int64", "shape": [3]}
TD_F = {"data": [0.5, -1.25, 2.0], "dtype": "float32", "shape": [3]}
TD_CSR = {
    "data": [5, 7],
    "dtype": "int64",
    "shape": [2, 3],
    "sparse_crow_indices": [0, 1, 2],
    "sparse_col_indices": [2, 0],
}
CKPT = {
    "checkpoint_id": "weights/step1",
    "checkpoint_type": "training",
    "time": TS,
    "tinker_path": "tinker://run/weights/step1",
}
RUN = {"training_run_id": "run", "base_model": "b", "model_owner": "o", "is_lora": True, "last_request_time": TS}

# (ours, SDK type, payload)
CASES: list[tuple[type, Any, dict[str, Any]]] = [
    (w.EncodedTextChunk, tt.EncodedTextChunk, TOKENS),
    (w.ImageChunk, tt.ImageChunk, {"type": "image", "data": PNG, "format": "png"}),
    (w.ImageChunk, tt.ImageChunk, {"type": "image", "data": PNG, "format": "jpeg", "expected_tokens": 4}),
    (w.ImageAssetPointerChunk, tt.ImageAssetPointerChunk, {"type": "image_asset_pointer", "format": "png", "location": "s3://x"}),
    (w.DmelChunk, tt.DmelChunk, {"type": "dmel", "dmel": base64.b64encode(b"\x01\x01\x05").decode()}),
    (w.ModelInput, sdk_mi.ModelInput, MI),
    (w.ModelInput, sdk_mi.ModelInput, {"chunks": []}),
    (w.ModelInput, sdk_mi.ModelInput, {"chunks": [TOKENS, {"type": "image", "data": PNG, "format": "png", "expected_tokens": 2}, TOKENS]}),
    (w.TensorData, sdk_td.TensorData, TD_INT),
    (w.TensorData, sdk_td.TensorData, TD_F),
    (w.TensorData, sdk_td.TensorData, TD_CSR),
    (w.TensorData, sdk_td.TensorData, {"data": [1.5], "dtype": "float32"}),
    (w.Datum, sdk_datum.Datum, {"model_input": MI, "loss_fn_inputs": {"target_tokens": TD_INT, "weights": TD_F}}),
    (w.ForwardBackwardInput, sdk_fbi.ForwardBackwardInput, {"data": [{"model_input": MI, "loss_fn_inputs": {"target_tokens": TD_INT}}], "loss_fn": "cross_entropy"}),
    (w.ForwardBackwardInput, sdk_fbi.ForwardBackwardInput, {"data": [], "loss_fn": "ppo", "loss_fn_config": {"clip_low": 0.8, "mode": "x"}}),
    (w.SamplingParams, tt.SamplingParams, {}),
    (w.SamplingParams, tt.SamplingParams, {"max_tokens": 5, "seed": 3, "stop": "\n", "temperature": 0.7, "top_k": 40, "top_p": 0.9}),
    (w.SamplingParams, tt.SamplingParams, {"stop": [1, 2]}),
    (w.SamplingParams, tt.SamplingParams, {"stop": ["a", "b"]}),
    (w.SamplingParams, tt.SamplingParams, {"stop": []}),
    (w.SampleRequest, tt.SampleRequest, {"prompt": MI, "sampling_params": {}}),
    (w.SampleRequest, tt.SampleRequest, {
        "num_samples": 3, "prompt": MI, "sampling_params": {"max_tokens": 2}, "sampling_session_id": "s:sample:0",
        "seq_id": 7, "prompt_logprobs": True, "topk_prompt_logprobs": 2, "topk_sample_logprobs": 1,
        "target_prompt_logprobs": {"data": [1, -1, 2, 3], "dtype": "int64", "shape": [2, 2]},
        "prompt_alt_tokens_k": 2, "prompt_logprobs_last_n": 1, "record_stability_info": False, "type": "sample",
    }),
    (w.AdamParams, tt.AdamParams, {}),
    (w.AdamParams, tt.AdamParams, {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.9, "eps": 1e-8, "weight_decay": 0.1, "grad_clip_norm": 1.0}),
    (w.DimuonParams, tt.DimuonParams, {"learning_rate": 0.02}),
    (w.OptimStepRequest, tt.OptimStepRequest, {"adam_params": {}, "model_id": "m", "seq_id": 2}),
    (w.OptimStepResponse, tt.OptimStepResponse, {}),
    (w.OptimStepResponse, tt.OptimStepResponse, {"metrics": {"loss:mean": 1.5}}),
    (w.LoraConfig, tt.LoraConfig, {"rank": 8}),
    (w.LoraConfig, tt.LoraConfig, {"rank": 8, "seed": 1, "train_unembed": False, "train_mlp": False, "train_attn": False}),
    (w.CreateModelRequest, tt.CreateModelRequest, {"session_id": "s", "model_seq_id": 0, "base_model": "b"}),
    (w.CreateModelRequest, tt.CreateModelRequest, {"session_id": "s", "model_seq_id": 1, "base_model": "b", "user_metadata": {"a": 1}, "lora_config": {"rank": 4}, "optimizer_config": {"type": "dimuon", "version": 1}}),
    (w.CreateModelResponse, tt.CreateModelResponse, {"model_id": "s:train:0"}),
    (w.GetInfoRequest, tt.GetInfoRequest, {"model_id": "m"}),
    (w.GetInfoResponse, tt.GetInfoResponse, {"model_data": {}, "model_id": "m"}),
    (w.GetInfoResponse, tt.GetInfoResponse, {"type": "get_info", "model_data": {"arch": "a", "model_name": "n", "tokenizer_id": "t"}, "model_id": "m", "is_lora": True, "lora_rank": 8, "model_name": "n"}),
    (w.UnloadModelRequest, tt.UnloadModelRequest, {"model_id": "m"}),
    (w.UnloadModelResponse, tt.UnloadModelResponse, {"model_id": "m"}),
    (w.SaveWeightsRequest, tt.SaveWeightsRequest, {"model_id": "m"}),
    (w.SaveWeightsRequest, tt.SaveWeightsRequest, {"model_id": "m", "path": "p", "seq_id": 3, "ttl_seconds": 3600, "overwrite": True, "user_metadata": {"k": "v"}}),
    (w.SaveWeightsResponse, tt.SaveWeightsResponse, {"path": "tinker://r/weights/p"}),
    (w.SaveWeightsForSamplerRequest, tt.SaveWeightsForSamplerRequest, {"model_id": "m", "sampling_session_seq_id": 1, "kind": "inflight", "seq_id": 4}),
    (w.SaveWeightsForSamplerResponseInternal, tt.SaveWeightsForSamplerResponseInternal, {"sampling_session_id": "s:sample:1"}),
    (w.SaveWeightsForSamplerResponse, tt.SaveWeightsForSamplerResponse, {"path": "tinker://r/sampler_weights/p"}),
    (w.SaveWeightsExternalRequest, tt.SaveWeightsExternalRequest, {"model_id": "m", "path": "p", "age_encryption_recipients": ["age1x"]}),
    (w.SaveWeightsExternalResponseInternal, tt.SaveWeightsExternalResponseInternal, {"path": "tinker://r/external_weights/p", "size_bytes": 10}),
    (w.LoadWeightsRequest, tt.LoadWeightsRequest, {"session_id": "s", "model_seq_id": 0, "path": "tinker://r/weights/p", "optimizer": True, "weights_access_token": "tok"}),
    (w.LoadWeightsRequest, tt.LoadWeightsRequest, {"model_id": "m", "seq_id": 1, "path": "tinker://r/weights/p", "optimizer": False, "optimizer_config": {"type": "adamw"}}),
    (w.LoadWeightsResponse, tt.LoadWeightsResponse, {"path": "p", "model_id": "m"}),
    (w.WeightsInfoResponse, tt.WeightsInfoResponse, {"base_model": "b", "is_lora": True, "lora_rank": 2}),
    (w.CopyWeightsRequest, tt.CopyWeightsRequest, {"source_path": "tinker://r/weights/p", "destination_project_id": "proj", "ttl_seconds": 7200}),
    (w.CopyWeightsResponse, tt.CopyWeightsResponse, {"tinker_path": "tinker://r2/weights/p"}),
    (w.CreateSamplingSessionRequest, tt.CreateSamplingSessionRequest, {"session_id": "s", "sampling_session_seq_id": 0, "base_model": "b"}),
    (w.CreateSamplingSessionResponse, tt.CreateSamplingSessionResponse, {"sampling_session_id": "s:sample:0"}),
    (w.JoinSamplingSessionRequest, tt.JoinSamplingSessionRequest, {"sampling_session_id": "s:sample:0"}),
    (w.JoinSamplingSessionResponse, tt.JoinSamplingSessionResponse, {"client_counter": 2}),
    (w.GetSamplerResponse, tt.GetSamplerResponse, {"sampler_id": "s", "base_model": "b", "model_path": "tinker://r/sampler_weights/x"}),
    (w.UntypedAPIFuture, tt.UntypedAPIFuture, {"request_id": "r", "sample_sequence_ids": ["a", "b"]}),
    (w.FutureRetrieveRequest, tt.FutureRetrieveRequest, {"request_id": "r"}),
    (w.FutureRetrieveRequest, tt.FutureRetrieveRequest, {"request_id": "r", "allow_metadata_only": True}),
    (w.TryAgainResponse, SdkTryAgain, {"type": "try_again", "request_id": "r", "queue_state": "paused_capacity"}),
    (w.RequestFailedResponse, tt.RequestFailedResponse, {"error": "boom", "category": "user"}),
    (w.FuturesRetrieveRequest, sdk_frr.FuturesRetrieveRequest, {"target": {"sampling_session_id": "s"}}),
    (w.FuturesRetrieveRequest, sdk_frr.FuturesRetrieveRequest, {"target": {"type": "sampling_session", "sampling_session_id": "s", "cloned_sampler_id": 2}, "prev_cursor": 5, "timeout": 0, "retrieved_request_ids": ["a"]}),
    (w.FuturesRetrieveResponse, tt.FuturesRetrieveResponse, {"completions": [{"state": "finished", "request_id": "a", "response_payload_uncompressed_size": 9}, {"state": "failed", "request_id": "b"}], "cursor": 3}),
    (w.FutureFinished, sdk_fc.FutureFinished, {"request_id": "a"}),
    (w.ClientConfigRequest, tt.ClientConfigRequest, {"sdk_version": "0.38.0"}),
    (w.ClientConfigResponse, tt.ClientConfigResponse, {}),
    (w.ClientConfigResponse, tt.ClientConfigResponse, {"pjwt_auth_enabled": True, "sample_use_retrieve_futures": True, "fwdbwd_max_chunk_len": 7}),
    (w.ClientDynamicConfigResponse, tt.ClientDynamicConfigResponse, {}),
    (w.AuthTokenResponse, tt.AuthTokenResponse, {"jwt": "x.y.z"}),
    (w.WhoamiResponse, tt.WhoamiResponse, {"user_urn": "u", "org_urn": "o"}),
    (w.CreateSessionRequest, tt.CreateSessionRequest, {"tags": ["a"], "user_metadata": {}, "sdk_version": "0.38.0"}),
    (w.CreateSessionRequest, tt.CreateSessionRequest, {"tags": [], "user_metadata": {"k": 1}, "sdk_version": "v", "project_id": "p", "display_name": "d"}),
    (w.CreateSessionResponse, tt.CreateSessionResponse, {"session_id": "s", "warning_message": "careful"}),
    (w.SessionHeartbeatRequest, tt.SessionHeartbeatRequest, {"session_id": "s"}),
    (w.SessionHeartbeatResponse, tt.SessionHeartbeatResponse, {}),
    (w.CreateCustomLossRequest, tt.CreateCustomLossRequest, {"session_id": "s", "custom_loss_seq_id": 0, "name": "l", "inputs": [{"name": "logprobs", "rank": 1}], "graph": {"nodes": [{"op": "placeholder", "name": "x", "target": "x"}, {"op": "output", "name": "o", "target": "output", "args": [{"ref": "x"}]}]}}),
    (w.CreateCustomLossResponse, tt.CreateCustomLossResponse, {"loss_id": "l1"}),
    (w.Cursor, tt.Cursor, {"offset": 0, "limit": 20, "total_count": 3}),
    (w.Checkpoint, tt.Checkpoint, CKPT),
    (w.Checkpoint, tt.Checkpoint, {**CKPT, "size_bytes": 5, "public": True, "user_metadata": {"a": "b"}, "expires_at": "2025-01-01T00:00:00Z"}),
    (w.CheckpointsListResponse, tt.CheckpointsListResponse, {"checkpoints": [CKPT]}),
    (w.TrainingRun, tt.TrainingRun, RUN),
    (w.TrainingRun, tt.TrainingRun, {**RUN, "corrupted": True, "lora_rank": 8, "last_checkpoint": CKPT, "user_metadata": {"x": "y"}}),
    (w.TrainingRunsResponse, tt.TrainingRunsResponse, {"training_runs": [RUN], "cursor": {"offset": 0, "limit": 20, "total_count": 1}}),
    (w.ExternalWeightsUrlsResponse, tt.ExternalWeightsUrlsResponse, {"urls": {"a.safetensors": "https://x"}, "expires": TS}),
    (w.ListSessionsResponse, tt.ListSessionsResponse, {"sessions": ["a", "b"]}),
    (w.GetSessionResponse, tt.GetSessionResponse, {"training_run_ids": ["m"], "sampler_ids": [], "display_name": "d"}),
    (w.SessionSearchRequest, tt.SessionSearchRequest, {}),
    (w.SessionSearchRequest, tt.SessionSearchRequest, {"session_id": "s", "project_ids": ["p"], "user_metadata": {"a": "b"}, "display_name": "x", "owner": {"type": "user", "owner_urns": ["u"]}, "statuses": [{"type": "active"}, {"type": "client_finished", "reasons": ["success"]}], "limit": 10, "cursor": {"last_created_at": TS, "last_session_id": "s"}}),
    (w.SessionSearchResponse, tt.SessionSearchResponse, {"sessions": [{"session_id": "s", "created_at": TS, "owner": "o", "project_id": "p", "checkpoints_count": 1, "status": {"type": "failed", "category": "user", "reason": {"type": "request", "request_id": "r", "request_type": "Sample"}, "message": "m"}}], "next_cursor": {"last_created_at": TS, "last_session_id": "s"}}),
    (w.ClientSessionFinished, sdk_status.ClientSessionFinished, {"reason": {"type": "errored"}, "detail": "d"}),
    (w.UserSearchOwner, sdk_owner.UserSearchOwner, {"owner_urns": ["u1"]}),
    (w.GetServerCapabilitiesResponse, tt.GetServerCapabilitiesResponse, {"supported_models": [{"model_name": "m", "max_context_length": 10, "trainable": True}, {}]}),
    (w.HealthResponse, tt.HealthResponse, {"status": "ok"}),
    (w.TelemetrySendRequest, tt.TelemetrySendRequest, {"events": [
        {"event": "SESSION_START", "event_id": "1", "event_session_index": 0, "severity": "INFO", "timestamp": TS},
        {"event": "SESSION_END", "event_id": "2", "event_session_index": 1, "severity": "INFO", "timestamp": TS, "duration": "PT1S"},
        {"event": "UNHANDLED_EXCEPTION", "event_id": "3", "event_session_index": 2, "severity": "ERROR", "timestamp": TS, "error_type": "E", "error_message": "m", "traceback": "t"},
        {"event": "GENERIC_EVENT", "event_id": "4", "event_session_index": 3, "severity": "WARNING", "timestamp": TS, "event_name": "n", "event_data": {"k": [1, 2]}},
    ], "platform": "linux", "sdk_version": "v", "session_id": "s", "process_uuid": "u"}),
]


def _ids(case: tuple[type, Any, dict[str, Any]]) -> str:
    return case[0].__name__


def check_conformance(ours_t: type, sdk_t: Any, payload: dict[str, Any]) -> None:
    raw = json.dumps(payload).encode()
    theirs = sdk_t.model_validate_json(raw)
    ours = decode(ours_t, raw)
    sdk_json = theirs.model_dump(mode="json", exclude_none=True)
    assert to_builtins(ours) == sdk_json
    # each side reads the other's bytes to an equal value
    assert decode(ours_t, json.dumps(sdk_json).encode()) == ours
    assert sdk_t.model_validate_json(encode(ours)) == theirs


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_json_matches_sdk(case: tuple[type, Any, dict[str, Any]]) -> None:
    check_conformance(*case)


def test_constructed_defaults_match_sdk() -> None:
    """Objects built in code (not decoded) send the SDK's defaults."""
    pairs = [
        (w.SamplingParams(), tt.SamplingParams()),
        (w.AdamParams(), tt.AdamParams()),
        (w.LoraConfig(rank=4), tt.LoraConfig(rank=4)),
        (w.CreateModelRequest(session_id="s", model_seq_id=0, base_model="b"), tt.CreateModelRequest(session_id="s", model_seq_id=0, base_model="b")),
        (w.SaveWeightsForSamplerRequest(model_id="m", path="p"), tt.SaveWeightsForSamplerRequest(model_id="m", path="p")),
        (w.FuturesRetrieveRequest(target=w.SamplingSessionFuturesTarget(sampling_session_id="s")), sdk_frr.FuturesRetrieveRequest(target=sdk_frr.SamplingSessionFuturesTarget(sampling_session_id="s"))),
        (w.OptimStepRequest(adam_params=w.AdamParams(learning_rate=0.5), model_id="m", seq_id=1), tt.OptimStepRequest(adam_params=tt.AdamParams(learning_rate=0.5), model_id="m", seq_id=1)),
        (w.SessionSearchRequest(), tt.SessionSearchRequest()),
        (w.OptimStepRequest(optimizer_params=w.DimuonParams(learning_rate=0.1, beta1=0.5), model_id="m"), tt.OptimStepRequest(optimizer_params=tt.DimuonParams(learning_rate=0.1, beta1=0.5), model_id="m")),
        (w.DmelChunk(dmel=b"\x01\x01\x05"), tt.DmelChunk(dmel=b"\x01\x01\x05")),
    ]
    for ours, theirs in pairs:
        assert to_builtins(ours) == theirs.model_dump(mode="json", exclude_none=True), type(ours).__name__


def test_session_finish_and_ttl_bodies_match_sdk_literal_dicts() -> None:
    # The SDK writes these two bodies by hand, with explicit nulls.
    body = w.SessionFinishRequest(reason=w.SessionFinishReason(type="success"))
    assert to_builtins(body) == {"reason": {"type": "success"}, "detail": None}
    assert to_builtins(w.CheckpointTtlRequest()) == {"ttl_seconds": None}
    assert to_builtins(w.CheckpointTtlRequest(ttl_seconds=3600)) == {"ttl_seconds": 3600}


# ---- hypothesis -------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
small_int = st.integers(min_value=0, max_value=2**31 - 1)

sampling_params = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.integers(1, 10_000),
        "seed": st.integers(0, 2**63 - 1),
        "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=3), max_size=3), st.lists(small_int, max_size=3)),
        "temperature": finite,
        "top_k": st.integers(-1, 1000),
        "top_p": finite,
    },
)
chunk = st.one_of(
    st.builds(lambda t: {"type": "encoded_text", "tokens": t}, st.lists(small_int, max_size=8)),
    st.builds(
        lambda d, f, e: {"type": "image", "data": base64.b64encode(d).decode(), "format": f, **({"expected_tokens": e} if e is not None else {})},
        st.binary(max_size=16), st.sampled_from(["png", "jpeg"]), st.none() | small_int,
    ),
)
model_input = st.builds(lambda cs: {"chunks": cs}, st.lists(chunk, max_size=4))
int_tensor = st.lists(st.integers(-(2**62), 2**62), max_size=8).map(lambda v: {"data": v, "dtype": "int64", "shape": [len(v)]})
float_tensor = st.lists(finite, min_size=1, max_size=8).map(lambda v: {"data": v, "dtype": "float32", "shape": [len(v)]})


@settings(max_examples=40, deadline=None)
@given(sampling_params)
def test_sampling_params_hypothesis(payload: dict[str, Any]) -> None:
    check_conformance(w.SamplingParams, tt.SamplingParams, payload)


@settings(max_examples=30, deadline=None)
@given(model_input, sampling_params, st.integers(1, 8), st.none() | st.booleans(), st.none() | small_int)
def test_sample_request_hypothesis(mi: dict, sp: dict, n: int, plp: bool | None, seq: int | None) -> None:
    payload: dict[str, Any] = {"prompt": mi, "sampling_params": sp, "num_samples": n}
    if plp is not None:
        payload["prompt_logprobs"] = plp
    if seq is not None:
        payload["seq_id"] = seq
    check_conformance(w.SampleRequest, tt.SampleRequest, payload)


@settings(max_examples=30, deadline=None)
@given(model_input, st.dictionaries(st.sampled_from(["target_tokens", "weights", "advantages", "extra"]), int_tensor | float_tensor, max_size=3))
def test_datum_hypothesis(mi: dict, inputs: dict) -> None:
    check_conformance(w.Datum, sdk_datum.Datum, {"model_input": mi, "loss_fn_inputs": inputs})


@settings(max_examples=30, deadline=None)
@given(st.fixed_dictionaries({}, optional={k: finite for k in ["learning_rate", "beta1", "beta2", "eps", "weight_decay", "grad_clip_norm"]}))
def test_adam_params_hypothesis(payload: dict[str, Any]) -> None:
    check_conformance(w.AdamParams, tt.AdamParams, payload)


def test_unknown_fields_are_ignored_on_decode() -> None:
    body = b'{"session_id":"s","type":"create_session","brand_new_flag":1}'
    assert decode(w.CreateSessionResponse, body) == w.CreateSessionResponse(session_id="s")


def test_wrong_type_tag_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(w.CreateModelResponse, b'{"model_id":"m","type":"get_info"}')
