"""Resource types and how many connections each one's pool may open.

Each resource type gets its own pool so that a flood of sampling calls can
never starve a heartbeat or a training step of connections (the sizes follow
tinkex: session 5, sampling 100, futures 50, training 5, telemetry 5).
"""

from __future__ import annotations

import enum

import msgspec

from ..errors import ConfigError

__all__ = ["ResourceType", "PoolLimits"]


class ResourceType(enum.StrEnum):
    """Which pool a request travels through."""

    SESSION = "session"
    SAMPLING = "sampling"
    FUTURES = "futures"
    TRAINING = "training"
    TELEMETRY = "telemetry"


class PoolLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Connections per resource type, and how large one shard may grow.

    ``shard_size`` caps the connections held by a single httpcore connection
    pool: a pool larger than that is split into several shards. httpcore's
    bookkeeping costs grow with the square of the connections in one client,
    so small shards keep per-request CPU flat (see docs/transport.md for the
    measurement that chose the default).
    """

    session: int = 5
    sampling: int = 100
    futures: int = 50
    training: int = 5
    telemetry: int = 5
    shard_size: int = 1
    # Idle keep-alive connections are closed after this many seconds.
    keepalive_expiry: float = 30.0

    def __post_init__(self) -> None:
        for name in ("session", "sampling", "futures", "training", "telemetry", "shard_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"PoolLimits.{name} must be a positive int, got {value!r}")
        if not self.keepalive_expiry > 0:
            raise ConfigError(f"PoolLimits.keepalive_expiry must be > 0, got {self.keepalive_expiry!r}")

    def connections(self, resource: ResourceType | str) -> int:
        """The number of connections allowed for ``resource``."""
        return int(getattr(self, ResourceType(resource).value))
