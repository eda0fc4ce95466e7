"""Counters the tests and benchmarks read (``GET /_local/stats`` or ``app.state``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServerStats:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    duplicate_idempotency_keys: int = 0
    idempotency_conflicts: int = 0  # a key reused with another body or route: 422
    idempotency_reruns: int = 0  # a key whose future was gone: the work ran again
    open_long_polls: int = 0
    peak_long_polls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    work_done: Counter[str] = field(default_factory=Counter)
    # requests a route's handler ran for (idempotent replays and injected faults excluded)
    handled: Counter[str] = field(default_factory=Counter)
    shed: int = 0  # submits answered 429 because the work queue was full (max_pending_futures)

    def long_poll_started(self) -> None:
        self.open_long_polls += 1
        self.peak_long_polls = max(self.peak_long_polls, self.open_long_polls)

    def long_poll_ended(self) -> None:
        self.open_long_polls -= 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "statuses": dict(self.statuses),
            "duplicate_idempotency_keys": self.duplicate_idempotency_keys,
            "idempotency_conflicts": self.idempotency_conflicts,
            "idempotency_reruns": self.idempotency_reruns,
            "open_long_polls": self.open_long_polls,
            "peak_long_polls": self.peak_long_polls,
            "faults": dict(self.faults),
            "work_done": dict(self.work_done),
            "handled": dict(self.handled),
            "shed": self.shed,
        }

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]
