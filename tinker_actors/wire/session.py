"""Session bodies (§2): create_session, session_heartbeat, sessions/{id}/finish."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from ._base import WireStruct, sent

__all__ = [
    "CreateSessionRequest",
    "CreateSessionResponse",
    "SessionHeartbeatRequest",
    "SessionHeartbeatResponse",
    "SessionFinishReasonType",
    "SessionFinishReason",
    "SessionFinishRequest",
    "SetSessionProjectRequest",
]


class CreateSessionRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="create_session"):
    tags: list[str]
    user_metadata: dict[str, Any] | None = None
    sdk_version: str
    project_id: str | None = None
    display_name: str | None = None


class CreateSessionResponse(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="create_session"):
    info_message: str | None = None
    warning_message: str | None = None
    error_message: str | None = None
    session_id: str


class SessionHeartbeatRequest(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="session_heartbeat"):
    session_id: str


class SessionHeartbeatResponse(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="session_heartbeat"):
    pass


SessionFinishReasonType: TypeAlias = Literal["success", "errored", "interrupted"]


class SessionFinishReason(WireStruct, frozen=True, kw_only=True):
    type: SessionFinishReasonType  # type: ignore[assignment]


class SessionFinishRequest(WireStruct, frozen=True, kw_only=True):
    """``POST sessions/{id}/finish``; the SDK sends ``detail`` even when it is null."""

    reason: SessionFinishReason
    detail: str | None = sent(None)


class SetSessionProjectRequest(WireStruct, frozen=True, kw_only=True):
    """``PUT sessions/{id}/project``."""

    project_id: str
