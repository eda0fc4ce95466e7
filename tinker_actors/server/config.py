"""Configuration of the local server: listening address, data dir, faults, switches.

Plain dataclasses so the CLI, tests and ``POST /_local/faults`` build them the
same way; :func:`fault_config_from_dict` is the one JSON entry point.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .limits import Limits

PauseKind = Literal["paused_capacity", "paused_rate_limit"]


@dataclass
class FaultConfig:
    """Seeded fault injection. Every rate is a share of requests in [0, 1].

    * ``rate_429``: answer 429 with ``Retry-After: retry_after_s``.
    * ``rate_5xx``: answer 500 (``status_5xx`` to pick another code).
    * ``rate_drop``: close the connection without a response.
    * ``pause_futures_s``: a new future stays queued (try_again with ``pause_kind``)
      for this long before it starts; ``pause_rate`` is the share of futures paused.
    * ``expire_futures_s``: a finished future answers 410 once it is this old
      (``expire_rate`` share of futures; 1.0 by default when set).
    * ``session_expiry_s``: a session whose last heartbeat is older than this
      answers 410 on heartbeat and on every call that names it.
    * ``slow_s``: every answer is delayed by this long (``slow_rate`` share).
    * ``routes``: when non-empty, request-level faults (429/5xx/drop/slow) only hit
      these route names (e.g. ``["asample", "retrieve_future"]``).
    """

    seed: int = 0
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_5xx: float = 0.0
    status_5xx: int = 500
    rate_drop: float = 0.0
    pause_futures_s: float = 0.0
    pause_rate: float = 1.0
    pause_kind: PauseKind = "paused_capacity"
    expire_futures_s: float | None = None
    expire_rate: float = 1.0
    session_expiry_s: float | None = None
    slow_s: float = 0.0
    slow_rate: float = 1.0
    routes: list[str] = field(default_factory=list)

    def any_request_faults(self) -> bool:
        return bool(self.rate_429 or self.rate_5xx or self.rate_drop or self.slow_s)


def fault_config_from_dict(data: dict[str, Any]) -> FaultConfig:
    """Build a FaultConfig from JSON, refusing unknown keys and bad values."""
    if not isinstance(data, dict):
        raise ValueError("fault config must be a JSON object")
    names = {f.name for f in dataclasses.fields(FaultConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown fault settings: {', '.join(unknown)}")
    cfg = FaultConfig(**data)
    for name in ("rate_429", "rate_5xx", "rate_drop", "pause_rate", "expire_rate", "slow_rate"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number between 0 and 1")
    if cfg.pause_kind not in ("paused_capacity", "paused_rate_limit"):
        raise ValueError("pause_kind must be paused_capacity or paused_rate_limit")
    if not 500 <= int(cfg.status_5xx) <= 599:
        raise ValueError("status_5xx must be a 5xx code")
    return cfg


@dataclass
class ServerConfig:
    """Everything the local server needs to run.

    ``api_key=None`` accepts any key that starts with ``tml-``. The feature
    switches (all on by default) let tests emulate older servers.
    """

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | str | None = None
    api_key: str | None = None
    # several accepted keys, each seeing only its own sessions, runs,
    # checkpoints and futures (one key: no isolation); see server/tenancy.py
    api_keys: list[str] | None = None
    null_compute: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    long_poll_timeout_s: float = 30.0
    futures_batch_timeout_s: float = 30.0
    future_result_ttl_s: float = 600.0
    max_body_bytes: int = 64 * 1024 * 1024
    # what one request may ask for (sizes, counts, timeouts): docs/reliability.md
    limits: Limits = field(default_factory=Limits)
    # a result larger than this is announced with complete_metadata to an
    # allow_metadata_only poll; smaller ones come at once (0 = always announce)
    metadata_threshold_bytes: int = 64 * 1024
    seq_wait_timeout_s: float = 120.0
    compute_threads: int = 1
    # run model work on the event loop instead of a worker thread: only for
    # tests on a virtual clock, where a busy thread would let time jump
    compute_inline: bool = False
    archive_url_ttl_s: float = 300.0
    # feature switches (older servers lack these)
    dynamic_config: bool = True
    retrieve_futures: bool = True
    cancel_future: bool = True
    sessions_routes: bool = True
    sample_sequence_ids: bool = True
    sample_use_retrieve_futures: bool = False
    sample_cancel_enabled: bool = False
    # Extra answer fields, e.g. {"fwdbwd_max_chunk_len": 4} or
    # {"refresh_interval_sec": 10}; they win over the answers built above.
    # Read on every request, so a test may change them while the server runs.
    client_config_overrides: dict[str, Any] = field(default_factory=dict)
    dynamic_config_overrides: dict[str, Any] = field(default_factory=dict)
    base_model: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.long_poll_timeout_s < 45:
            raise ValueError("long_poll_timeout_s must be in (0, 45): the SDK gives up at 45 s")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be None or a non-empty string")
        if self.api_keys is not None:
            if self.api_key is not None:
                raise ValueError("give api_key or api_keys, not both")
            if not self.api_keys or not all(isinstance(k, str) and k for k in self.api_keys):
                raise ValueError("api_keys must be a non-empty list of non-empty strings")

    def __repr__(self) -> str:  # never show the key
        fields = ", ".join(
            f"{f.name}={_hidden(f.name, getattr(self, f.name))}"
            for f in dataclasses.fields(self)
        )
        return f"ServerConfig({fields})"


def _hidden(name: str, value: Any) -> str:
    if name == "api_key" and value:
        return "'***'"
    if name == "api_keys" and value:
        return f"[{len(value)} keys]"
    return repr(value)
