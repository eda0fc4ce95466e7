"""REST bodies (§3 REST rows): training runs, checkpoints, sessions, capabilities, health."""

from __future__ import annotations

import datetime
from typing import Literal, TypeAlias

from ._base import WireStruct, sent

__all__ = [
    "Cursor",
    "CheckpointType",
    "Checkpoint",
    "CheckpointsListResponse",
    "CheckpointTtlRequest",
    "TrainingRun",
    "TrainingRunsResponse",
    "ExternalWeightsUrlsResponse",
    "ListSessionsResponse",
    "GetSessionResponse",
    "SessionTraceExportResponse",
    "OwnSearchOwner",
    "AccessibleSearchOwner",
    "UserSearchOwner",
    "SearchOwner",
    "ActiveSessionStatusQuery",
    "CancelledSessionStatusQuery",
    "FailedSessionStatusQuery",
    "ClientFinishedSessionStatusQuery",
    "SessionStatusQuery",
    "SessionSearchCursor",
    "SessionSearchRequest",
    "SessionFailedRequestReason",
    "SessionFailedTrainingRunReason",
    "SessionFailedSamplingSessionReason",
    "SessionFailedReason",
    "SessionFailed",
    "SessionCancelled",
    "ClientSessionFinishSuccess",
    "ClientSessionFinishErrored",
    "ClientSessionFinishInterrupted",
    "ClientSessionFinishReason",
    "ClientSessionFinished",
    "SessionActive",
    "SessionStatus",
    "SessionSummary",
    "SessionSearchResponse",
    "SupportedModel",
    "GetServerCapabilitiesResponse",
    "HealthResponse",
]


class Cursor(WireStruct, frozen=True, kw_only=True):
    offset: int
    limit: int
    total_count: int


CheckpointType: TypeAlias = Literal["training", "sampler", "external"]


class Checkpoint(WireStruct, frozen=True, kw_only=True):
    checkpoint_id: str
    checkpoint_type: CheckpointType
    time: datetime.datetime
    tinker_path: str
    size_bytes: int | None = None
    public: bool = sent(False)
    user_metadata: dict[str, str] | None = None
    expires_at: datetime.datetime | None = None


class CheckpointsListResponse(WireStruct, frozen=True, kw_only=True):
    checkpoints: list[Checkpoint]
    cursor: Cursor | None = None


class CheckpointTtlRequest(WireStruct, frozen=True, kw_only=True):
    """``PUT .../{ckpt}/ttl``; null clears the TTL, so it is always sent."""

    ttl_seconds: int | None = sent(None)


class TrainingRun(WireStruct, frozen=True, kw_only=True):
    training_run_id: str
    base_model: str
    model_owner: str
    is_lora: bool
    corrupted: bool = sent(False)
    lora_rank: int | None = None
    last_request_time: datetime.datetime
    last_checkpoint: Checkpoint | None = None
    last_sampler_checkpoint: Checkpoint | None = None
    user_metadata: dict[str, str] | None = None


class TrainingRunsResponse(WireStruct, frozen=True, kw_only=True):
    training_runs: list[TrainingRun]
    cursor: Cursor


class ExternalWeightsUrlsResponse(WireStruct, frozen=True, kw_only=True):
    urls: dict[str, str]
    expires: datetime.datetime


class ListSessionsResponse(WireStruct, frozen=True, kw_only=True):
    sessions: list[str]


class GetSessionResponse(WireStruct, frozen=True, kw_only=True):
    training_run_ids: list[str]
    sampler_ids: list[str]
    user_metadata: dict[str, str] | None = None
    display_name: str | None = None


class SessionTraceExportResponse(WireStruct, frozen=True, kw_only=True):
    status: Literal["pending", "ready", "failed"]
    url: str | None = None
    error: str | None = None


class OwnSearchOwner(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="own"):
    pass


class AccessibleSearchOwner(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="accessible"):
    pass


class UserSearchOwner(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="user"):
    owner_urns: list[str]


SearchOwner: TypeAlias = OwnSearchOwner | AccessibleSearchOwner | UserSearchOwner


class ActiveSessionStatusQuery(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="active"):
    pass


class CancelledSessionStatusQuery(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="cancelled"):
    pass


class FailedSessionStatusQuery(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="failed"):
    pass


class ClientFinishedSessionStatusQuery(
    WireStruct, frozen=True, kw_only=True, tag_field="type", tag="client_finished"
):
    reasons: list[Literal["success", "errored", "interrupted"]] | None = None


SessionStatusQuery: TypeAlias = (
    ActiveSessionStatusQuery
    | CancelledSessionStatusQuery
    | FailedSessionStatusQuery
    | ClientFinishedSessionStatusQuery
)


class SessionSearchCursor(WireStruct, frozen=True, kw_only=True):
    last_created_at: datetime.datetime
    last_session_id: str


class SessionSearchRequest(WireStruct, frozen=True, kw_only=True):
    session_id: str | None = None
    project_ids: list[str] | None = None
    user_metadata: dict[str, str] = sent({})
    display_name: str | None = None
    owner: SearchOwner = sent(OwnSearchOwner())
    statuses: list[SessionStatusQuery] | None = None
    limit: int = sent(50)
    cursor: SessionSearchCursor | None = None


class SessionFailedRequestReason(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="request"):
    request_id: str
    request_type: str


class SessionFailedTrainingRunReason(
    WireStruct, frozen=True, kw_only=True, tag_field="type", tag="training_run"
):
    training_run_id: str


class SessionFailedSamplingSessionReason(
    WireStruct, frozen=True, kw_only=True, tag_field="type", tag="sampling_session"
):
    sampling_session_id: str


SessionFailedReason: TypeAlias = (
    SessionFailedRequestReason | SessionFailedTrainingRunReason | SessionFailedSamplingSessionReason
)


class SessionFailed(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="failed"):
    category: Literal["user", "internal"]
    reason: SessionFailedReason
    message: str


class SessionCancelled(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="cancelled"):
    detail: str | None = None


class ClientSessionFinishSuccess(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="success"):
    pass


class ClientSessionFinishErrored(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="errored"):
    pass


class ClientSessionFinishInterrupted(
    WireStruct, frozen=True, kw_only=True, tag_field="type", tag="interrupted"
):
    pass


ClientSessionFinishReason: TypeAlias = (
    ClientSessionFinishSuccess | ClientSessionFinishErrored | ClientSessionFinishInterrupted
)


class ClientSessionFinished(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="client_finished"):
    reason: ClientSessionFinishReason
    detail: str | None = None


class SessionActive(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="active"):
    pass


SessionStatus: TypeAlias = SessionFailed | SessionCancelled | ClientSessionFinished | SessionActive


class SessionSummary(WireStruct, frozen=True, kw_only=True):
    session_id: str
    created_at: datetime.datetime
    owner: str
    project_id: str
    status: SessionStatus | None = None
    checkpoints_count: int
    display_name: str | None = None
    user_metadata: dict[str, str] | None = None
    checkpoint_storage_bytes: int | None = None


class SessionSearchResponse(WireStruct, frozen=True, kw_only=True):
    sessions: list[SessionSummary]
    next_cursor: SessionSearchCursor | None = None


class SupportedModel(WireStruct, frozen=True, kw_only=True):
    model_name: str | None = None
    max_context_length: int | None = None
    trainable: bool | None = None
    sampleable: bool | None = None


class GetServerCapabilitiesResponse(WireStruct, frozen=True, kw_only=True):
    supported_models: list[SupportedModel]


class HealthResponse(WireStruct, frozen=True, kw_only=True):
    status: Literal["ok"] = sent("ok")
