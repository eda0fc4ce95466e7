"""Configuration of the local server: listening address, data dir, faults, switches.

A plain dataclass for the server; the fault settings are a typed Struct
(:class:`~.faults.FaultConfig`, re-exported here) that ``POST /_local/faults``
decodes its body into.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .faults import FaultConfig, fault_config_from_dict
from .limits import Limits

__all__ = ["FaultConfig", "ServerConfig", "fault_config_from_dict"]


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
    # Load shedding: with this many futures accepted and not finished, a new
    # submit (asample, forward_backward, save_*, ...) gets 429 with a
    # Retry-After of the time the queue takes to drain (at least
    # shed_retry_after_s) instead of joining it. 0: never.
    max_pending_futures: int = 1024
    shed_retry_after_s: float = 1.0
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
