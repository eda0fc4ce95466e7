"""The futures protocol (§6): submit answers, retrieve_future outcomes, retrieve_futures.

The runtime's poller calls :func:`classify_future_response` on every
retrieve_future answer. It follows the SDK's order: a protobuf content type
is a result; then ``{"type":"try_again"}``, then ``{"status":
"complete_metadata"}``, then any object with ``"error"``; anything else is
the expected JSON result. Malformed bodies raise ``msgspec.DecodeError`` /
``msgspec.ValidationError``; the transport turns those into
``ResponseDecodeError``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, TypeVar

import msgspec

from ._base import WireStruct, sent
from .codec import decode

__all__ = [
    "QueueState",
    "UntypedAPIFuture",
    "FutureRetrieveRequest",
    "TryAgainResponse",
    "CompleteMetadataResponse",
    "RequestErrorCategory",
    "RequestFailedResponse",
    "CancelFutureRequest",
    "SamplingSessionFuturesTarget",
    "FuturesRetrieveRequest",
    "FutureFinished",
    "FutureFailed",
    "FutureCompletion",
    "FuturesRetrieveResponse",
    "classify_future_response",
    "PROTOBUF_CONTENT_TYPE",
]

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"

QueueState: TypeAlias = Literal["active", "paused_capacity", "paused_rate_limit"]
RequestErrorCategory: TypeAlias = Literal["unknown", "server", "user"]


class UntypedAPIFuture(WireStruct, frozen=True, kw_only=True):
    """What every async submit answers: the id to poll."""

    request_id: str
    model_id: str | None = None
    sample_sequence_ids: list[str] | None = None


class FutureRetrieveRequest(WireStruct, frozen=True, kw_only=True):
    request_id: str
    allow_metadata_only: bool = sent(False)


class TryAgainResponse(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="try_again"):
    request_id: str
    queue_state: QueueState
    queue_state_reason: str | None = None


class CompleteMetadataResponse(WireStruct, frozen=True, kw_only=True):
    """The result is ready but large: reserve ``response_payload_size`` bytes, then re-poll."""

    status: Literal["complete_metadata"] = sent("complete_metadata")
    response_payload_size: int = 0


class RequestFailedResponse(WireStruct, frozen=True, kw_only=True):
    error: str
    category: RequestErrorCategory = sent("unknown")


class CancelFutureRequest(WireStruct, frozen=True, kw_only=True):
    request_id: str


class SamplingSessionFuturesTarget(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="sampling_session"):
    sampling_session_id: str
    cloned_sampler_id: int = sent(0)


class FuturesRetrieveRequest(WireStruct, frozen=True, kw_only=True):
    target: SamplingSessionFuturesTarget
    prev_cursor: int = sent(0)
    # None (omitted) asks for a long poll; 0 marks an ack-only poll.
    timeout: float | None = None
    retrieved_request_ids: list[str] = sent([])


class FutureFinished(WireStruct, frozen=True, kw_only=True, tag_field="state", tag="finished"):
    request_id: str
    response_payload_uncompressed_size: int | None = None


class FutureFailed(WireStruct, frozen=True, kw_only=True, tag_field="state", tag="failed"):
    request_id: str


FutureCompletion: TypeAlias = FutureFinished | FutureFailed


class FuturesRetrieveResponse(WireStruct, frozen=True, kw_only=True):
    completions: list[FutureCompletion]
    cursor: int


class _Probe(msgspec.Struct):
    """Only the keys that tell the outcomes apart; everything else is skipped."""

    type: Any = None
    status: Any = None
    error: Any = msgspec.field(default=msgspec.UNSET)


_probe_decoder = msgspec.json.Decoder(_Probe)

T = TypeVar("T")


def classify_future_response(
    content_type: str | None, body: bytes, result_type: type[T]
) -> TryAgainResponse | CompleteMetadataResponse | RequestFailedResponse | T:
    """Tell a retrieve_future answer apart (protocol §6 order) and decode it.

    ``result_type`` is the expected result (a wire Struct). A protobuf body is
    decoded with ``wire.protobuf.decode_result(result_type, body)``.
    """
    if content_type and PROTOBUF_CONTENT_TYPE in content_type.lower():
        from .protobuf import decode_result  # protobuf is only needed for these bodies

        return decode_result(result_type, body)
    probe = _probe_decoder.decode(body)
    if probe.type == "try_again":
        return decode(TryAgainResponse, body)
    if probe.status == "complete_metadata":
        return decode(CompleteMetadataResponse, body)
    if probe.error is not msgspec.UNSET:
        return _failed(body)
    return decode(result_type, body)


class _LooseFailed(msgspec.Struct):
    error: Any
    category: Any = "unknown"


def _failed(body: bytes) -> RequestFailedResponse:
    # The SDK falls back to "unknown" for a category it does not know, and
    # stringifies the error; never let a bad category hide the failure.
    raw = msgspec.json.decode(body, type=_LooseFailed)
    category = raw.category if raw.category in ("unknown", "server", "user") else "unknown"
    error = raw.error if isinstance(raw.error, str) else msgspec.json.encode(raw.error).decode()
    return RequestFailedResponse(error=error, category=category)
