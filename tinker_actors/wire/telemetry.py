"""Telemetry bodies (§10): ``POST telemetry`` with a batch of events tagged on ``event``."""

from __future__ import annotations

import datetime
from typing import Any, Literal, TypeAlias

from ._base import WireStruct, sent

__all__ = [
    "EventType",
    "Severity",
    "SessionStartEvent",
    "SessionEndEvent",
    "UnhandledExceptionEvent",
    "GenericEvent",
    "TelemetryEvent",
    "TelemetrySendRequest",
    "TelemetryBatch",
    "TelemetryResponse",
]

EventType: TypeAlias = Literal["SESSION_START", "SESSION_END", "UNHANDLED_EXCEPTION", "GENERIC_EVENT"]
Severity: TypeAlias = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class _Event(WireStruct, frozen=True, kw_only=True, tag_field="event"):
    event_id: str
    event_session_index: int
    severity: Severity
    timestamp: datetime.datetime

    @property
    def event(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]


class SessionStartEvent(_Event, frozen=True, kw_only=True, tag="SESSION_START"):
    pass


class SessionEndEvent(_Event, frozen=True, kw_only=True, tag="SESSION_END"):
    duration: str  # ISO 8601 duration


class UnhandledExceptionEvent(_Event, frozen=True, kw_only=True, tag="UNHANDLED_EXCEPTION"):
    error_type: str
    error_message: str
    traceback: str | None = None


class GenericEvent(_Event, frozen=True, kw_only=True, tag="GENERIC_EVENT"):
    event_name: str
    event_data: dict[str, Any] = sent({})


TelemetryEvent: TypeAlias = SessionStartEvent | SessionEndEvent | UnhandledExceptionEvent | GenericEvent


class TelemetrySendRequest(WireStruct, frozen=True, kw_only=True):
    events: list[TelemetryEvent]
    platform: str
    sdk_version: str
    session_id: str
    process_uuid: str


TelemetryBatch = TelemetrySendRequest


class TelemetryResponse(WireStruct, frozen=True, kw_only=True):
    status: Literal["accepted"] = sent("accepted")
