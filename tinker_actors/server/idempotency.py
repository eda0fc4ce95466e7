"""Replay of answers by ``X-Idempotency-Key``.

The first request with a key runs; a later request with the same key and
route gets the recorded answer (same request_id) without doing the work
again. A repeat that arrives while the first is still running waits for it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import anyio


@dataclass
class Recorded:
    route: str
    done: anyio.Event = field(default_factory=anyio.Event)
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    ok: bool = False


class IdempotencyCache:
    def __init__(self, max_entries: int = 100_000):
        self._entries: OrderedDict[str, Recorded] = OrderedDict()
        self._max = max_entries

    def lookup(self, key: str) -> Recorded | None:
        return self._entries.get(key)

    def begin(self, key: str, route: str) -> Recorded:
        rec = Recorded(route=route)
        self._entries[key] = rec
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return rec

    def finish(self, key: str, rec: Recorded, *, keep: bool) -> None:
        """Publish ``rec``; ``keep=False`` forgets it (the next try runs afresh)."""
        rec.ok = keep
        if not keep and self._entries.get(key) is rec:
            del self._entries[key]
        rec.done.set()
