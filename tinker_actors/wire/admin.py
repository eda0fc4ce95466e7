"""Admin bodies: the audit log, billing usage and current checkpoint storage usage.

``GET /api/v1/audit?event_type=&day=`` answers an :class:`AuditLogResponse`;
``GET /api/v1/billing/usage/events?starting_on=&ending_before=`` a
:class:`BillingUsageResponse` of hourly buckets, whose ``event_info`` is a
union tagged on ``type``; ``GET /api/v1/billing/usage/checkpoints/current``
(optionally ``?project_id=``) a :class:`CurrentCheckpointStorageUsageResponse`.
Times are RFC 3339 strings on the wire and ``datetime`` here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

from ._base import WireStruct, sent

__all__ = [
    "AuditLogEntry",
    "AuditLogResponse",
    "GetBillingUsageRequest",
    "TrainingBillingEvent",
    "SamplingPrefillBillingEvent",
    "SamplingSampleBillingEvent",
    "CheckpointBillingEvent",
    "StorageBillingEvent",
    "BillingEventInfo",
    "BillingUsageEvent",
    "BillingUsageSession",
    "BillingUsageResponse",
    "GetCurrentCheckpointStorageUsageRequest",
    "CurrentCheckpointStorageUsageItem",
    "CurrentCheckpointStorageUsageResponse",
    "AUDIT_EVENT_TYPES",
]

AUDIT_EVENT_TYPES = ("all", "checkpoints", "projects", "teams", "organizations")


class AuditLogEntry(WireStruct, frozen=True, kw_only=True):
    timestamp: datetime
    event: str
    event_details: dict[str, Any] = sent({})
    model_id: str | None = None
    tinker_path: str | None = None
    purpose: str | None = None


class AuditLogResponse(WireStruct, frozen=True, kw_only=True):
    entries: list[AuditLogEntry]


class GetBillingUsageRequest(WireStruct, frozen=True, kw_only=True):
    starting_on: datetime
    ending_before: datetime


class TrainingBillingEvent(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="training"):
    token_count: int


class SamplingPrefillBillingEvent(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="sampling_prefill"):
    cached: bool
    token_count: int


class SamplingSampleBillingEvent(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="sampling_sample"):
    token_count: int


class CheckpointBillingEvent(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="checkpoint"):
    count: int


class StorageBillingEvent(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="storage"):
    gigabyte_hours: float
    free: bool = sent(False)


BillingEventInfo: TypeAlias = (
    TrainingBillingEvent | SamplingPrefillBillingEvent | SamplingSampleBillingEvent | CheckpointBillingEvent
    | StorageBillingEvent
)


class BillingUsageEvent(WireStruct, frozen=True, kw_only=True):
    bucket_start: datetime
    bucket_end: datetime
    event_info: BillingEventInfo
    base_model: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    session_id: str | None = None
    project_id: str | None = None
    estimated_cost_usd: float | None = None
    effective_rate_usd_per_million_tokens: float | None = None
    effective_rate_usd_per_gigabyte_month: float | None = None


class BillingUsageSession(WireStruct, frozen=True, kw_only=True):
    user_metadata: dict[str, str] | None = None


class BillingUsageResponse(WireStruct, frozen=True, kw_only=True):
    data: list[BillingUsageEvent]
    sessions: dict[str, BillingUsageSession] = sent({})
    cost_data_through: datetime | None = None


class GetCurrentCheckpointStorageUsageRequest(WireStruct, frozen=True, kw_only=True):
    project_id: str | None = None


class CurrentCheckpointStorageUsageItem(WireStruct, frozen=True, kw_only=True):
    checkpoint_count: int
    size_bytes: int
    size_gigabytes: float
    project_id: str | None = None
    org_user_urn: str | None = None
    user_email: str | None = None
    user_name: str | None = None
    estimated_monthly_cost_usd: float | None = None


class CurrentCheckpointStorageUsageResponse(WireStruct, frozen=True, kw_only=True):
    data: list[CurrentCheckpointStorageUsageItem]
    effective_rate_usd_per_gigabyte_month: float | None = None
