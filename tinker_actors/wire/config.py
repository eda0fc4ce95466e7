"""Start-up bodies (§2): client/config, client/dynamic_config, auth/token, whoami.

Every flag has the SDK's default, so a server that answers ``{}`` (or leaves
out a flag) gives the SDK's behaviour; unknown flags are ignored on decode.
"""

from __future__ import annotations

from ._base import WireStruct, sent

__all__ = [
    "ClientConfigRequest",
    "ClientConfigResponse",
    "ClientDynamicConfigRequest",
    "ClientDynamicConfigResponse",
    "AuthTokenRequest",
    "AuthTokenResponse",
    "WhoamiResponse",
]


class ClientConfigRequest(WireStruct, frozen=True, kw_only=True):
    sdk_version: str


class ClientConfigResponse(WireStruct, frozen=True, kw_only=True):
    pjwt_auth_enabled: bool = sent(False)
    credential_default_source: str = sent("api_key")
    sample_dispatch_bytes_semaphore_size: int = sent(10 * 1024 * 1024)
    inflight_response_bytes_semaphore_size: int = sent(50 * 1024 * 1024)
    parallel_fwdbwd_chunks: bool = sent(True)
    proto_compress_fwdbwd: bool = sent(False)
    fwdbwd_max_chunk_len: int = sent(1024)
    fwdbwd_max_chunk_bytes_count: int = sent(5_000_000)
    fwdbwd_dispatch_bytes_semaphore_size: int = sent(50 * 1000 * 1000)
    billing_exception_max_pause_duration_sec: int = sent(60 * 60)
    sample_no_retries: bool = sent(False)
    sample_enable_stuck_detection: bool = sent(True)
    sample_max_concurrent_requests: int = sent(2000)
    use_pyqwest_transport: bool = sent(True)
    sample_use_retrieve_futures: bool = sent(False)
    custom_loss_server_side: bool = sent(False)
    sample_join_sampling_session: bool = sent(False)


class ClientDynamicConfigRequest(WireStruct, frozen=True, kw_only=True):
    sdk_version: str


class ClientDynamicConfigResponse(WireStruct, frozen=True, kw_only=True):
    refresh_interval_sec: int = sent(300)
    sample_cancel_enabled: bool = sent(False)
    sample_cancel_max_batch_size: int = sent(64)


class AuthTokenRequest(WireStruct, frozen=True, kw_only=True):
    """``POST auth/token`` sends an empty object."""


class AuthTokenResponse(WireStruct, frozen=True, kw_only=True):
    jwt: str


class WhoamiResponse(WireStruct, frozen=True, kw_only=True):
    user_urn: str
    org_urn: str
    email: str | None = None
