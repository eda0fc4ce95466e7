"""Every method the two gap analyses name exists here, on the right class, async and blocking.

The seeds are /work/shared/seeds/gap-analysis-functions.md (client methods,
Python and Elixir) and gap-analysis-resources.md (endpoint resources). The
tables below are written from them; Elixir names are mapped to ours in the
comments. A second check reads the Python names straight out of the
functions seed's comparison tables, so a row added there fails here until it
is implemented.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from tinker_actors import api
from tinker_actors.clients import RestClient, SamplingClient, ServiceClient, TrainingClient, sync

SEED = Path("/work/shared/seeds/gap-analysis-functions.md")

# class -> methods. Python SDK names, plus the tinkex (Elixir) names:
#   Tinkex.TrainingClient.forward_future/2 etc.   -> TrainingClient.forward_future (awaits the submit only)
#   Tinkex.TrainingClient.save_weights_typed/2    -> TrainingClient.save_weights_typed (= save_state)
#   Tinkex.TrainingClient.load_weights_typed/2    -> TrainingClient.load_weights_typed (= load_state[_with_optimizer])
#   Tinkex.TrainingClient.save_weights/load_weights -> save_state / load_state
#   Tinkex.API.Weights.save_weights_for_sampler   -> save_weights_for_sampler(_typed)
#   Tinkex.API.Models.get_info/2                  -> ServiceClient.get_info, TrainingClient.get_info
#   Tinkex.API.Service.get_server_capabilities/1  -> ServiceClient/RestClient.get_server_capabilities
#   Tinkex.Client.new / create_training_client    -> open_service_client / create_lora_training_client
#   Tinkex.RestClient.new/2                       -> ServiceClient.create_rest_client
#   Tinkex.API.Rest.publish_checkpoint/2          -> RestClient.publish_checkpoint_from_tinker_path
#   Tinkex.API.Rest.unpublish_checkpoint/2        -> RestClient.unpublish_checkpoint_from_tinker_path
#   (SamplingClient sample/compute_logprobs and their *_async: see the sampling row)
CLIENT_METHODS: dict[type, tuple[str, ...]] = {
    ServiceClient: (
        "create_lora_training_client", "create_training_client_from_state",
        "create_training_client_from_state_with_optimizer", "create_sampling_client", "create_rest_client",
        "get_server_capabilities", "get_telemetry", "health_check", "get_info", "unload_model",
        "create_custom_loss", "copy_weights", "retrieve_future",
    ),
    TrainingClient: (
        "forward", "forward_async", "forward_backward", "forward_backward_async", "forward_backward_custom",
        "optim_step", "optim_step_async", "save_state", "load_state", "load_state_with_optimizer",
        "save_weights_for_sampler", "get_info", "get_tokenizer", "create_sampling_client",
        "save_weights_and_get_sampling_client", "save_weights_external",
        "forward_future", "forward_backward_future", "optim_step_future",
        "save_weights_typed", "load_weights_typed", "save_weights_for_sampler_typed",
    ),
    SamplingClient: ("sample", "sample_async", "compute_logprobs", "compute_logprobs_async", "get_tokenizer",
                     "get_base_model", "get_sampler_handle", "from_sampler_handle"),
    RestClient: (
        "get_training_run", "get_training_run_by_tinker_path", "list_training_runs", "list_checkpoints",
        "list_user_checkpoints", "get_checkpoint_archive_url", "delete_checkpoint",
        "publish_checkpoint_from_tinker_path", "unpublish_checkpoint_from_tinker_path", "get_session",
        "list_sessions", "get_sampler", "get_weights_info_by_tinker_path", "get_external_weights_urls",
        "search_sessions", "assign_session_project", "export_session_trace", "whoami", "get_server_capabilities",
        "copy_weights",
    ),
}

SYNC_OF = {
    ServiceClient: sync.ServiceClient,
    TrainingClient: sync.TrainingClient,
    SamplingClient: sync.SamplingClient,
    RestClient: sync.RestClient,
}

# Resources seed, section 3 (Python AsyncXResource methods) and 3.8 (Elixir additions):
#   Tinkex.API.Session.create/create_typed/heartbeat -> ServiceResource.create_session / session_heartbeat
#   Tinkex.API.Models.get_model_info/unload_model     -> ModelsResource.get_info / unload
#   Tinkex.API.Weights.list_checkpoints(model_id)     -> WeightsResource.list(model_id)
#   Tinkex.API.Sampling.sample_async                  -> SamplingResource.asample
#   Tinkex.API.Telemetry.send/send_sync               -> TelemetryResource.send (never raises) / send_sync
#   Tinkex.API.Rest.*                                 -> RestResource (and the RestClient above)
RESOURCE_METHODS: dict[type, tuple[str, ...]] = {
    api.ServiceResource: ("get_server_capabilities", "health_check", "create_session", "session_heartbeat",
                          "create_sampling_session"),
    api.ModelsResource: ("create", "get_info", "unload"),
    api.WeightsResource: ("load", "save", "save_for_sampler", "list", "delete_checkpoint",
                          "get_checkpoint_archive_url"),
    api.FuturesResource: ("retrieve",),
    api.TrainingResource: ("forward", "forward_backward", "optim_step"),
    api.SamplingResource: ("asample",),
    api.TelemetryResource: ("send", "send_sync"),
    api.RestResource: ("get_session", "list_sessions", "list_checkpoints", "list_user_checkpoints",
                       "get_checkpoint_archive_url", "delete_checkpoint", "get_sampler", "weights_info",
                       "get_training_run", "list_training_runs", "search_sessions", "set_session_project",
                       "get_external_weights_urls", "copy_weights", "session_trace_export"),
}


def _public_methods(cls: type) -> set[str]:
    return {
        name for name, value in inspect.getmembers(cls)
        if not name.startswith("_") and callable(value) and not isinstance(inspect.getattr_static(cls, name), property)
    }


@pytest.mark.parametrize("cls", list(CLIENT_METHODS), ids=lambda c: c.__name__)
def test_every_seed_method_exists_on_the_async_and_blocking_client(cls: type) -> None:
    missing = [m for m in CLIENT_METHODS[cls] if not callable(getattr(cls, m, None))]
    assert not missing, f"{cls.__name__} lacks {missing}"
    blocking = SYNC_OF[cls]
    missing_sync = [m for m in CLIENT_METHODS[cls] if not callable(getattr(blocking, m, None))]
    assert not missing_sync, f"sync.{cls.__name__} lacks {missing_sync}"


@pytest.mark.parametrize("cls", list(SYNC_OF), ids=lambda c: c.__name__)
def test_blocking_facade_mirrors_every_public_async_method(cls: type) -> None:
    missing = sorted(_public_methods(cls) - _public_methods(SYNC_OF[cls]))
    assert not missing, f"sync.{cls.__name__} lacks {missing}"


def test_blocking_kinds_follow_the_async_kinds() -> None:
    # an async iterator is a generator in the facade; an SDK *_async alias is awaitable there too
    assert inspect.isgeneratorfunction(sync.RestClient.iter_training_runs)
    assert inspect.iscoroutinefunction(sync.TrainingClient.forward_backward_async)
    assert inspect.iscoroutinefunction(sync.SamplingClient.sample_async)
    assert not inspect.iscoroutinefunction(sync.TrainingClient.forward_backward_future)


@pytest.mark.parametrize("cls", list(RESOURCE_METHODS), ids=lambda c: c.__name__)
def test_every_seed_resource_method_exists(cls: type) -> None:
    missing = [m for m in RESOURCE_METHODS[cls] if not callable(getattr(cls, m, None))]
    assert not missing, f"{cls.__name__} lacks {missing}"
    assert hasattr(cls, "with_raw_response")


def test_weights_resource_takes_model_and_checkpoint_ids_positionally() -> None:
    for name, params in (("list", ["model_id"]), ("delete_checkpoint", ["model_id", "checkpoint_id"]),
                         ("get_checkpoint_archive_url", ["model_id", "checkpoint_id"])):
        sig = inspect.signature(getattr(api.WeightsResource, name))
        positional = [p.name for p in sig.parameters.values()
                      if p.kind is inspect.Parameter.POSITIONAL_ONLY and p.name != "self"]
        assert positional == params, (name, positional)


_SECTION_CLASS = {
    "ServiceClient": ServiceClient,
    "TrainingClient": TrainingClient,
    "SamplingClient": SamplingClient,
    "RestClient": RestClient,
}


def _seed_python_rows() -> dict[type, set[str]]:
    """``| `name()` | ... |`` rows under each ``### XClient / ...`` heading of the functions seed."""
    out: dict[type, set[str]] = {}
    current: type | None = None
    for line in SEED.read_text().splitlines():
        heading = re.match(r"### (\w+Client)\b", line)
        if heading:
            current = _SECTION_CLASS.get(heading.group(1))
            continue
        if line.startswith("## "):
            current = None
        row = re.match(r"\| `(\w+)\(\)` \|", line)
        if current is not None and row and row.group(1) != current.__name__:
            out.setdefault(current, set()).add(row.group(1))
    return out


def test_python_names_read_from_the_seed_exist_async_and_blocking() -> None:
    rows = _seed_python_rows()
    assert set(rows) == set(_SECTION_CLASS.values()) and sum(map(len, rows.values())) >= 35
    for cls, names in rows.items():
        for name in sorted(names):
            assert callable(getattr(cls, name, None)), f"{cls.__name__}.{name}"
            assert callable(getattr(SYNC_OF[cls], name, None)), f"sync.{cls.__name__}.{name}"
