"""Runtime configuration: what the user sets, and what the server tells us.

* :class:`ServiceConfig` is the user's side: endpoint, key, pool sizes,
  timeouts, telemetry, tags. ``ServiceConfig.from_env()`` reads the variables
  the official SDK reads (``TINKER_API_KEY``, ``TINKER_BASE_URL``,
  ``TINKER_TAGS``, ``TINKER_PROJECT_ID``, ``TINKER_TELEMETRY``); explicit
  arguments win. The key is checked (``tml-`` or a JWT ``eyJ``) before any I/O
  and never appears in ``repr``.
* :class:`ServerFlags` is the server's side: the client-config and
  dynamic-config flags, with the official SDK's defaults for anything the
  server leaves out (or for a server without those routes).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import msgspec

from .._version import __version__
from ..errors import ConfigError
from ..transport.headers import check_api_key
from .supervisor import RestartPolicy

__all__ = ["ServiceConfig", "ServerFlags", "PollSettings", "DEFAULT_BASE_URL", "DEFAULT_POOL_LIMITS"]

DEFAULT_BASE_URL = "https://tinker.thinkingmachines.dev/services/tinker-prod"
DEFAULT_POOL_LIMITS: Mapping[str, int] = {"session": 5, "sampling": 100, "futures": 50, "training": 5, "telemetry": 5}
_TRUE = {"1", "true", "yes", "on"}


class ServerFlags(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Flags from ``client/config`` and ``client/dynamic_config``; unknown ones are ignored."""

    # client/config
    pjwt_auth_enabled: bool = False
    sample_dispatch_bytes_semaphore_size: int = 10 * 1024 * 1024
    inflight_response_bytes_semaphore_size: int = 50 * 1024 * 1024
    parallel_fwdbwd_chunks: bool = True
    proto_compress_fwdbwd: bool = False
    fwdbwd_max_chunk_len: int = 1024
    fwdbwd_max_chunk_bytes_count: int = 5_000_000
    fwdbwd_dispatch_bytes_semaphore_size: int = 50_000_000
    billing_exception_max_pause_duration_sec: float = 3600
    sample_no_retries: bool = False
    sample_enable_stuck_detection: bool = True
    sample_max_concurrent_requests: int = 2000
    use_pyqwest_transport: bool = True
    sample_use_retrieve_futures: bool = False
    custom_loss_server_side: bool = False
    sample_join_sampling_session: bool = False
    # client/dynamic_config
    refresh_interval_sec: float = 300
    sample_cancel_enabled: bool = False
    sample_cancel_max_batch_size: int = 64

    @classmethod
    def read(cls, answer: Mapping[str, Any]) -> tuple[ServerFlags, list[str]]:
        """Flags from the servers' answers, and the names of fields that were unreadable.

        Unknown names are ignored; a field of the wrong type keeps its default
        instead of sending every other flag back to its default too.
        """
        known = {k: v for k, v in answer.items() if k in cls.__struct_fields__}
        try:
            return msgspec.convert(known, cls, strict=False), []
        except msgspec.ValidationError:
            pass
        good: dict[str, Any] = {}
        bad: list[str] = []
        for name, value in known.items():
            try:
                msgspec.convert({name: value}, cls, strict=False)
            except msgspec.ValidationError:
                bad.append(name)
            else:
                good[name] = value
        return msgspec.convert(good, cls, strict=False), bad


class PollSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the future poller behaves (see ``runtime.poller``)."""

    poll_timeout: float = 45.0
    # a future with no progress for this long fails (the SDK's stuck detection is 2 h)
    progress_timeout: float = 7200.0
    max_open_polls: int | None = None  # None: the futures pool size
    min_poll_interval: float = 1.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 60.0
    bad_request_retries: int = 3
    warn_debounce_s: float = 60.0
    # this many failed polls in a row (connection errors, timeouts, 5xx) log a warning
    # (debounced by warn_debounce_s) and show on FutureStatus.last_poll_error
    poll_error_warn_after: int = 5
    cancel_timeout: float = 30.0
    cancel_concurrency: int = 8
    # A future whose expected result is at most this many bytes skips the
    # complete_metadata step when the inflight byte budget has room at once
    # (0 disables). The local server's own threshold is 64 KiB.
    metadata_skip_bytes: int = 64 * 1024


def _mask(key: str | None) -> str:
    return "None" if not key else f"'{key[:4]}…'"


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class ServiceConfig:
    """Everything ``open_service`` needs. ``repr`` never shows the key."""

    api_key: str | None = None
    base_url: str = DEFAULT_BASE_URL
    pool_limits: Mapping[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_POOL_LIMITS))
    mailbox_factor: int = 2  # each pool actor's mailbox holds factor × concurrency envelopes
    request_timeout: float = 60.0  # per read
    connect_timeout: float = 5.0
    # one attempt, headers and body together (a server dripping its body a byte
    # at a time never trips a per-read timeout); at least connect + read timeout
    response_deadline: float = 180.0
    # a response body larger than this is refused (ResponseDecodeError)
    max_response_bytes: int = 256 * 1024 * 1024
    # Retries of one call (see the retry policy table in docs/reliability.md):
    # no count limit by default, a time budget instead, at least as patient as
    # the official SDK's layers together (HTTP retries inside a 300 s loop for
    # submits; a sample retried until 7,200 s pass without progress).
    max_retries: int | None = None
    retry_budget_s: float = 300.0
    # The whole of one sample(): submit retries, 429 resubmits and 410 resubmits
    # together. None: no limit (the poller's progress_timeout still applies).
    sample_retry_budget_s: float | None = 7200.0
    telemetry: bool = True
    telemetry_batch_size: int = 100
    telemetry_flush_interval: float = 10.0
    telemetry_queue_size: int = 10_000
    tags: tuple[str, ...] = ()
    project_id: str | None = None
    user_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    display_name: str | None = None
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 10.0
    heartbeat_warn_after_s: float = 120.0
    heartbeat_warn_after_failures: int = 3
    # With no successful heartbeat for this long (and no 410), the session is
    # declared expired as on a 410: pending futures fail with SessionExpiredError.
    # None: never (stay "degraded" for as long as the beats fail).
    # The official SDK never gives up on a session over failed heartbeats (it
    # warns); 2 h matches its stuck detection, so an overloaded server that
    # answers slowly for minutes does not cost the session.
    session_dead_after_s: float | None = 7200.0
    poll: PollSettings = PollSettings()
    sampling_max_concurrent: int | None = None  # None: the server's sample_max_concurrent_requests
    restart_policy: RestartPolicy = RestartPolicy()
    close_grace: float = 30.0
    sdk_version: str = __version__
    check_key: bool = True
    # TLS certificate verification for an https base_url. Turning it off is
    # explicit and the transport logs a warning when it opens.
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if self.check_key:
            if not self.api_key:
                raise ConfigError("no API key: pass api_key= or set TINKER_API_KEY")
            check_api_key(self.api_key)
            if not (self.api_key.startswith("tml-") or self.api_key.startswith("eyJ")):
                raise ConfigError("the API key must start with 'tml-' (or be a JWT starting with 'eyJ')")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.retry_budget_s <= 0:
            raise ConfigError(f"retry_budget_s must be positive, got {self.retry_budget_s}")
        if self.sample_retry_budget_s is not None and self.sample_retry_budget_s <= 0:
            raise ConfigError(f"sample_retry_budget_s must be positive or None, got {self.sample_retry_budget_s}")
        for name, size in self.pool_limits.items():
            if size < 1:
                raise ConfigError(f"pool {name!r} needs at least 1 connection, got {size}")

    def pool_size(self, resource: str) -> int:
        return int(self.pool_limits.get(str(resource), DEFAULT_POOL_LIMITS.get(str(resource), 5)))

    def __repr__(self) -> str:
        return (
            f"ServiceConfig(base_url={self.base_url!r}, api_key={_mask(self.api_key)}, "
            f"pool_limits={dict(self.pool_limits)!r}, telemetry={self.telemetry}, tags={self.tags!r}, "
            f"project_id={self.project_id!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServiceConfig:
        """Build a config from the SDK's environment variables; ``overrides`` win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("TINKER_API_KEY"):
            values["api_key"] = env["TINKER_API_KEY"]
        if env.get("TINKER_BASE_URL"):
            values["base_url"] = env["TINKER_BASE_URL"]
        if env.get("TINKER_TAGS"):
            # the SDK treats tags as a set; keep first-seen order for a stable body
            values["tags"] = tuple(dict.fromkeys(t.strip() for t in env["TINKER_TAGS"].split(",") if t.strip()))
        if env.get("TINKER_PROJECT_ID"):
            values["project_id"] = env["TINKER_PROJECT_ID"]
        if "TINKER_TELEMETRY" in env:
            values["telemetry"] = env["TINKER_TELEMETRY"].strip().lower() in _TRUE
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "tags" in values and not isinstance(values["tags"], tuple):
            values["tags"] = tuple(values["tags"])
        return cls(**values)
