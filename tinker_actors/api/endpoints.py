"""The one table of Tinker endpoints: method, path, pool, request and response type.

Every endpoint-level method in :mod:`tinker_actors.api.resources` is generated
from a row here, so a route's pool, default timeout and retry budget are
written exactly once. Types are named by their ``tinker_actors.wire`` names
and resolved on first use.

Per-endpoint defaults follow the official SDK (protocol §8): submits that a
higher layer retries itself (asample, retrieve_future, heartbeat, cancel,
saves) default to ``max_retries=0``; retrieve_future and retrieve_futures wait
up to 45 s for the server's long poll; heartbeat and dynamic_config 10 s;
telemetry 5 s; cancel 30 s.
"""

from __future__ import annotations

import functools
import string
from typing import Any, Literal

import msgspec

from ..transport.limits import ResourceType

__all__ = ["Endpoint", "ENDPOINTS", "endpoint", "PROTOBUF"]

PROTOBUF = "application/x-protobuf"

Body = Literal["json", "protobuf", "none"]


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One route. ``path`` may hold ``{name}`` fields filled from keyword arguments.

    * ``request`` / ``response``: wire type names (None: no body / ignore the body).
    * ``query``: the query parameters this route takes, with their defaults
      (None: left out unless given).
    * ``returns_future``: the answer is an ``UntypedAPIFuture`` to resolve by polling.
    * ``signed_url``: a 3xx answer is the result (a ``SignedURL`` with its expiry).
    """

    name: str
    method: str
    path: str
    resource: ResourceType
    request: str | None = None
    response: str | None = None
    body: Body = "json"
    accept: str | None = None
    headers: dict[str, str] = {}
    query: dict[str, Any] = {}
    timeout: float | None = None
    max_retries: int | None = None
    returns_future: bool = False
    signed_url: bool = False

    @property
    def path_params(self) -> tuple[str, ...]:
        return _path_fields(self.path)


@functools.cache
def _path_fields(path: str) -> tuple[str, ...]:
    # read on every call of the route (every sample): parse each path once
    return tuple(f for _, f, _, _ in string.Formatter().parse(path) if f)


S, T, SA, F, TE = (
    ResourceType.SESSION,
    ResourceType.TRAINING,
    ResourceType.SAMPLING,
    ResourceType.FUTURES,
    ResourceType.TELEMETRY,
)
_FUT = "UntypedAPIFuture"
_RUNS = "training_runs/{training_run_id}"
_CKPT = _RUNS + "/checkpoints/{checkpoint_id}"
_SCOPE = {"access_scope": "owned"}

ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in [
        # -- service / session --------------------------------------------------------
        Endpoint(name="get_server_capabilities", method="GET", path="get_server_capabilities", resource=S,
                 response="GetServerCapabilitiesResponse", body="none"),
        Endpoint(name="health_check", method="GET", path="healthz", resource=S,
                 response="HealthResponse", body="none"),
        Endpoint(name="client_config", method="POST", path="client/config", resource=S,
                 request="ClientConfigRequest", response="ClientConfigResponse"),
        Endpoint(name="dynamic_config", method="POST", path="client/dynamic_config", resource=S,
                 request="ClientDynamicConfigRequest", response="ClientDynamicConfigResponse",
                 timeout=10.0, max_retries=0),
        Endpoint(name="create_session", method="POST", path="create_session", resource=S,
                 request="CreateSessionRequest", response="CreateSessionResponse"),
        Endpoint(name="session_heartbeat", method="POST", path="session_heartbeat", resource=S,
                 request="SessionHeartbeatRequest", response="SessionHeartbeatResponse",
                 timeout=10.0, max_retries=0),
        Endpoint(name="finish_session", method="POST", path="sessions/{session_id}/finish", resource=S,
                 request="SessionFinishRequest", response=None),
        Endpoint(name="create_sampling_session", method="POST", path="create_sampling_session", resource=S,
                 request="CreateSamplingSessionRequest", response="CreateSamplingSessionResponse"),
        Endpoint(name="join_sampling_session", method="POST", path="join_sampling_session", resource=S,
                 request="JoinSamplingSessionRequest", response="JoinSamplingSessionResponse"),
        # -- models ------------------------------------------------------------------------
        Endpoint(name="create_model", method="POST", path="create_model", resource=S,
                 request="CreateModelRequest", response=_FUT, returns_future=True),
        Endpoint(name="get_info", method="POST", path="get_info", resource=T,
                 request="GetInfoRequest", response="GetInfoResponse"),
        Endpoint(name="unload_model", method="POST", path="unload_model", resource=T,
                 request="UnloadModelRequest", response=_FUT, returns_future=True),
        # -- weights -----------------------------------------------------------------------
        Endpoint(name="load_weights", method="POST", path="load_weights", resource=T,
                 request="LoadWeightsRequest", response=_FUT, returns_future=True),
        Endpoint(name="save_weights", method="POST", path="save_weights", resource=T,
                 request="SaveWeightsRequest", response=_FUT, returns_future=True, max_retries=0),
        Endpoint(name="save_weights_for_sampler", method="POST", path="save_weights_for_sampler", resource=T,
                 request="SaveWeightsForSamplerRequest", response=_FUT, returns_future=True, max_retries=0),
        Endpoint(name="save_weights_external", method="POST", path="save_weights_external", resource=T,
                 request="SaveWeightsExternalRequest", response=_FUT, returns_future=True, max_retries=0),
        Endpoint(name="list_checkpoints", method="GET", path=_RUNS + "/checkpoints", resource=T,
                 response="CheckpointsListResponse", body="none"),
        Endpoint(name="delete_checkpoint", method="DELETE", path=_CKPT, resource=T, body="none"),
        Endpoint(name="get_checkpoint_archive_url", method="GET", path=_CKPT + "/archive", resource=T,
                 body="none", signed_url=True),
        Endpoint(name="get_external_weights_urls", method="GET", path=_CKPT + "/external_weights_urls",
                 resource=T, response="ExternalWeightsUrlsResponse", body="none"),
        Endpoint(name="publish_checkpoint", method="POST", path=_CKPT + "/publish", resource=T, body="none"),
        Endpoint(name="unpublish_checkpoint", method="DELETE", path=_CKPT + "/publish", resource=T, body="none"),
        Endpoint(name="set_checkpoint_ttl", method="PUT", path=_CKPT + "/ttl", resource=T,
                 request="CheckpointTtlRequest"),
        Endpoint(name="copy_weights", method="POST", path="copy_weights", resource=T,
                 request="CopyWeightsRequest", response="CopyWeightsResponse"),
        Endpoint(name="weights_info", method="POST", path="weights_info", resource=T,
                 request="WeightsInfoRequest", response="WeightsInfoResponse"),
        # -- futures -----------------------------------------------------------------------
        Endpoint(name="retrieve_future", method="POST", path="retrieve_future", resource=F,
                 request="FutureRetrieveRequest", response=None, timeout=45.0, max_retries=0),
        Endpoint(name="retrieve_futures", method="POST", path="retrieve_futures", resource=F,
                 request="FuturesRetrieveRequest", response="FuturesRetrieveResponse",
                 timeout=45.0, max_retries=0),
        Endpoint(name="cancel_future", method="POST", path="cancel_future", resource=F,
                 request="CancelFutureRequest", timeout=30.0, max_retries=0),
        # -- training ----------------------------------------------------------------------
        Endpoint(name="forward", method="POST", path="forward_backward", resource=T,
                 request="ForwardRequest", response=_FUT, body="protobuf", returns_future=True),
        Endpoint(name="forward_backward", method="POST", path="forward_backward", resource=T,
                 request="ForwardBackwardRequest", response=_FUT, body="protobuf", returns_future=True),
        Endpoint(name="optim_step", method="POST", path="optim_step", resource=T,
                 request="OptimStepRequest", response=_FUT, returns_future=True),
        Endpoint(name="create_custom_loss", method="POST", path="create_custom_loss", resource=S,
                 request="CreateCustomLossRequest", response=_FUT, returns_future=True),
        # -- sampling ----------------------------------------------------------------------
        Endpoint(name="asample", method="POST", path="asample", resource=SA,
                 request="SampleRequest", response=_FUT, returns_future=True, max_retries=0,
                 headers={"X-Tinker-Sampling-Backpressure": "1"}),
        # -- telemetry ---------------------------------------------------------------------
        Endpoint(name="telemetry", method="POST", path="telemetry", resource=TE,
                 request="TelemetrySendRequest", response="TelemetryResponse", timeout=5.0, max_retries=1),
        # -- REST: runs, sessions, samplers ------------------------------------------------
        Endpoint(name="list_training_runs", method="GET", path="training_runs", resource=T,
                 response="TrainingRunsResponse", body="none",
                 query={"limit": 20, "offset": 0, **_SCOPE, "project_id": None}),
        Endpoint(name="get_training_run", method="GET", path=_RUNS, resource=T,
                 response="TrainingRun", body="none", query=_SCOPE),
        Endpoint(name="list_user_checkpoints", method="GET", path="checkpoints", resource=T,
                 response="CheckpointsListResponse", body="none", query={"limit": 100, "offset": 0}),
        Endpoint(name="list_sessions", method="GET", path="sessions", resource=T,
                 response="ListSessionsResponse", body="none", query={"limit": 20, "offset": 0, **_SCOPE}),
        Endpoint(name="get_session", method="GET", path="sessions/{session_id}", resource=T,
                 response="GetSessionResponse", body="none", query=_SCOPE),
        Endpoint(name="set_session_project", method="PUT", path="sessions/{session_id}/project", resource=T,
                 request="SetSessionProjectRequest"),
        Endpoint(name="search_sessions", method="POST", path="sessions/search", resource=T,
                 request="SessionSearchRequest", response="SessionSearchResponse"),
        Endpoint(name="session_trace_export", method="GET", path="sessions/{session_id}/trace_export", resource=T,
                 response="SessionTraceExportResponse", body="none"),
        Endpoint(name="get_sampler", method="GET", path="samplers/{sampler_id}", resource=T,
                 response="GetSamplerResponse", body="none"),
        # -- admin: audit log, billing and storage usage -------------------------------------
        Endpoint(name="get_audit_log", method="GET", path="audit", resource=T,
                 response="AuditLogResponse", body="none", query={"event_type": "all", "day": None}),
        Endpoint(name="get_billing_usage", method="GET", path="billing/usage/events", resource=T,
                 response="BillingUsageResponse", body="none",
                 query={"starting_on": None, "ending_before": None}),
        Endpoint(name="get_current_checkpoint_storage_usage", method="GET",
                 path="billing/usage/checkpoints/current", resource=T,
                 response="CurrentCheckpointStorageUsageResponse", body="none", query={"project_id": None}),
    ]
}


def endpoint(name: str) -> Endpoint:
    """The row for ``name``; KeyError names the known ones."""
    try:
        return ENDPOINTS[name]
    except KeyError:
        raise KeyError(f"unknown endpoint {name!r}; known: {', '.join(sorted(ENDPOINTS))}") from None
