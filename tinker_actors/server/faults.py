"""Seeded fault injection.

One ``random.Random(seed)`` draws every decision in request arrival order, so
a run with the same seed and the same request sequence injects the same faults
(``decisions`` records them for replay checks). Setting a new FaultConfig
reseeds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import FaultConfig


@dataclass(frozen=True)
class RequestFault:
    kind: str  # "429" | "5xx" | "drop" | "none"
    slow_s: float = 0.0


class FaultInjector:
    def __init__(self, config: FaultConfig | None = None):
        self.set(config or FaultConfig())

    def set(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self.decisions: list[tuple[str, str]] = []

    def for_request(self, route: str) -> RequestFault:
        """Decide the fate of one incoming request on ``route``."""
        cfg = self.config
        if not cfg.any_request_faults() or (cfg.routes and route not in cfg.routes):
            return RequestFault("none")
        draw = self._rng.random()
        slow = cfg.slow_s if cfg.slow_s and self._rng.random() < cfg.slow_rate else 0.0
        kind = "none"
        if draw < cfg.rate_429:
            kind = "429"
        elif draw < cfg.rate_429 + cfg.rate_5xx:
            kind = "5xx"
        elif draw < cfg.rate_429 + cfg.rate_5xx + cfg.rate_drop:
            kind = "drop"
        self.decisions.append((route, kind))
        return RequestFault(kind, slow)

    def pause_for_future(self) -> float:
        cfg = self.config
        if cfg.pause_futures_s <= 0:
            return 0.0
        return cfg.pause_futures_s if self._rng.random() < cfg.pause_rate else 0.0

    def expiry_for_future(self) -> float | None:
        cfg = self.config
        if cfg.expire_futures_s is None:
            return None
        return cfg.expire_futures_s if self._rng.random() < cfg.expire_rate else None
