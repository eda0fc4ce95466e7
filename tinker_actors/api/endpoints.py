"""The one table of Tinker endpoints: method, path, pool, request and response type.

Every endpoint-level method in :mod:`tinker_actors.api.resources` is generated
from a row here, so a route's pool, default timeout and retry budget are
written exactly once. Types are named by their ``tinker_actors.wire`` names
and resolved on first use.

Each row also says who retries it (``retry``, see :data:`RETRY_OWNERS`):
exactly one layer per failure, never two stacked. Most routes are retried by
the transport alone, under one idempotency key, for the whole retry budget
(300 s by default: what the official SDK's HTTP layer and its
``execute_with_retries`` loop cover together). The exceptions are routes an
actor re-sends on its own schedule (polls, heartbeat, dynamic config: the
transport makes one attempt) and ``asample``, whose 429 goes up to sampling
admission and whose 410 (on its future) to the sample itself.
docs/reliability.md shows the table, rendered by :func:`retry_table`.

Timeouts follow the official SDK (protocol §8): retrieve_future and
retrieve_futures wait up to 45 s for the server's long poll; heartbeat and
dynamic_config 10 s; telemetry 5 s; cancel 30 s.
"""

from __future__ import annotations

import functools
import string
from typing import Any, Literal

import msgspec

from ..transport.limits import ResourceType

__all__ = ["Endpoint", "ENDPOINTS", "endpoint", "PROTOBUF", "RETRY_OWNERS", "RetryOwner", "retry_table"]

PROTOBUF = "application/x-protobuf"

Body = Literal["json", "protobuf", "none"]
RetryOwner = Literal["transport", "sample", "poller", "heartbeat", "refresher", "telemetry", "best_effort", "close"]

_TRANSIENT = (
    "connection refused or reset, connect or read timeout, response deadline, "
    "408, 409, 429 (waits its Retry-After), 5xx, a proxy's empty 400"
)
# owner -> (who retries, what is transient, how long)
RETRY_OWNERS: dict[str, tuple[str, str, str]] = {
    "transport": (
        "the transport: the same body and `X-Idempotency-Key` every attempt",
        _TRANSIENT,
        "`retry_budget_s` (300 s) from the first attempt, no count limit",
    ),
    "sample": (
        "the transport for all but 429 (same body, key and seq_id); sampling admission for 429 "
        "(frees its slot, tightens for 10 s, resubmits after max(Retry-After, 1 s or 5 s)); "
        "the sample for a 410 on its future (new seq_id, new key)",
        _TRANSIENT + "; 410 on the future",
        "`sample_retry_budget_s` (7,200 s) for the whole sample, resubmits included",
    ),
    "poller": (
        "the future poller (one attempt per poll, then a jittered backoff timer)",
        "408, 429, 5xx, connection errors, timeouts; a 400 three times",
        "until the future makes no progress for `progress_timeout` (7,200 s)",
    ),
    "heartbeat": (
        "the heartbeat actor, every 10 s (one attempt each)",
        "any failure but 410",
        "the session is declared expired after `session_dead_after_s` (7,200 s) without a good beat; a 410 ends it at once",
    ),
    "refresher": (
        "the dynamic-config refresher, every max(refresh_interval, 10) s; at start-up a failure means the defaults",
        "any failure",
        "none: the last good flags stay in force",
    ),
    "telemetry": (
        "the telemetry batcher (never blocks real work)",
        "any failure",
        "3 attempts, 1 s then 2 s apart; then the batch is dropped and counted",
    ),
    "best_effort": (
        "nobody: a failed cancel leaves the work to the server, which drops it when heartbeats lapse",
        "-",
        "1 attempt (30 s)",
    ),
    "close": (
        "the transport, while the service closes",
        _TRANSIENT,
        "10 s within `close_grace`",
    ),
}


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One route. ``path`` may hold ``{name}`` fields filled from keyword arguments.

    * ``request`` / ``response``: wire type names (None: no body / ignore the body).
    * ``query``: the query parameters this route takes, with their defaults
      (None: left out unless given).
    * ``returns_future``: the answer is an ``UntypedAPIFuture`` to resolve by polling.
    * ``signed_url``: a 3xx answer is the result (a ``SignedURL`` with its expiry).
    * ``retry``: who retries a failed call (a key of :data:`RETRY_OWNERS`);
      ``max_retries=0`` goes with every owner but the transport.
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
    retry: RetryOwner = "transport"

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
                 timeout=10.0, max_retries=0, retry="refresher"),
        Endpoint(name="create_session", method="POST", path="create_session", resource=S,
                 request="CreateSessionRequest", response="CreateSessionResponse"),
        Endpoint(name="session_heartbeat", method="POST", path="session_heartbeat", resource=S,
                 request="SessionHeartbeatRequest", response="SessionHeartbeatResponse",
                 timeout=10.0, max_retries=0, retry="heartbeat"),
        Endpoint(name="finish_session", method="POST", path="sessions/{session_id}/finish", resource=S,
                 request="SessionFinishRequest", response=None, retry="close"),
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
                 request="SaveWeightsRequest", response=_FUT, returns_future=True),
        Endpoint(name="save_weights_for_sampler", method="POST", path="save_weights_for_sampler", resource=T,
                 request="SaveWeightsForSamplerRequest", response=_FUT, returns_future=True),
        Endpoint(name="save_weights_external", method="POST", path="save_weights_external", resource=T,
                 request="SaveWeightsExternalRequest", response=_FUT, returns_future=True),
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
                 request="FutureRetrieveRequest", response=None, timeout=45.0, max_retries=0, retry="poller"),
        Endpoint(name="retrieve_futures", method="POST", path="retrieve_futures", resource=F,
                 request="FuturesRetrieveRequest", response="FuturesRetrieveResponse",
                 timeout=45.0, max_retries=0, retry="poller"),
        Endpoint(name="cancel_future", method="POST", path="cancel_future", resource=F,
                 request="CancelFutureRequest", timeout=30.0, max_retries=0, retry="best_effort"),
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
                 request="SampleRequest", response=_FUT, returns_future=True, retry="sample",
                 headers={"X-Tinker-Sampling-Backpressure": "1"}),
        # -- telemetry ---------------------------------------------------------------------
        Endpoint(name="telemetry", method="POST", path="telemetry", resource=TE,
                 request="TelemetrySendRequest", response="TelemetryResponse", timeout=5.0, max_retries=0,
                 retry="telemetry"),
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


def _why_safe(ep: Endpoint, seq_field: bool) -> str:
    if ep.method == "GET":
        return "read-only"
    if ep.name in ("retrieve_future", "retrieve_futures", "session_heartbeat", "telemetry", "cancel_future",
                   "dynamic_config"):
        return "asks or reports; changes nothing a repeat could double"
    if seq_field:
        return "same key and seq_id: the server answers a repeat with the first request's future"
    return "same key: the server replays its first answer instead of doing the work again"


def retry_table() -> str:
    """The per-endpoint retry policy as Markdown (docs/reliability.md embeds it).

    First who retries and for how long (one row per owner), then every route
    with its owner and why repeating it cannot do the work twice.
    """
    from .resources import wire_type  # resolved lazily: wire types import numpy and protobuf

    lines = [
        "| policy | who retries | transient failures | budget |",
        "|---|---|---|---|",
        *(f"| `{name}` | {who} | {transient} | {budget} |" for name, (who, transient, budget) in RETRY_OWNERS.items()),
        "",
        "| endpoint | method | policy | why a retry is safe |",
        "|---|---|---|---|",
    ]
    for ep in sorted(ENDPOINTS.values(), key=lambda e: (list(RETRY_OWNERS).index(e.retry), e.name)):
        request = wire_type(ep.request)
        seq_field = request is not None and "seq_id" in getattr(request, "__struct_fields__", ())
        lines.append(f"| `{ep.name}` | `{ep.method} {ep.path}` | `{ep.retry}` | {_why_safe(ep, seq_field)} |")
    return "\n".join(lines) + "\n"
