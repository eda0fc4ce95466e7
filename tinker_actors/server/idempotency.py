"""Replay of answers by ``X-Idempotency-Key``, honest about content and about dead futures.

Every key records a *fingerprint* of the request it first came with: a hash of
the route and the (inflated) body. Then, for a later request with that key:

* same fingerprint, answer recorded: the recorded answer is replayed (same
  ``request_id``) and no work is done again; still running: it waits for the
  first and replays its answer;
* a different fingerprint (another body, or another route): 422 with
  ``x-should-retry: false``, naming the key's first characters. It never gets
  the other request's answer;
* the answer points at a future the server can no longer deliver (expired or
  swept: 410; cancelled; failed on the server's side): the record is dropped
  and the request runs afresh, with new work and a new request id. A key the
  server never saw (it restarted: the records live in memory) runs afresh too.

What counts as "the same request" for ``asample``: the body without its
``seq_id`` (the protocol makes a client resubmit under a new seq_id), and with
the sampling session replaced by the model behind it (base model, or
checkpoint path and its write time, or the in-memory snapshot itself), so a
client resuming in a new session with the same key and the same content gets
the answer it already paid for. Every other route: the body bytes.

The cache is bounded by entry count and by recorded bytes (oldest first); keys
are scoped per tenant when the server isolates API keys.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import anyio
import msgspec

__all__ = ["Recorded", "IdempotencyCache", "fingerprint", "response_request_id"]


@dataclass
class Recorded:
    route: str
    fingerprint: bytes = b""
    done: anyio.Event = field(default_factory=anyio.Event)
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    ok: bool = False
    request_id: str | None = None  # the future the answer points at, if any
    charged: int = 0  # bytes the cache counts for this entry

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + 128


class IdempotencyCache:
    def __init__(self, max_entries: int = 100_000, max_bytes: int = 64 * 1024 * 1024):
        self._entries: OrderedDict[str, Recorded] = OrderedDict()
        self._max = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: str) -> Recorded | None:
        return self._entries.get(key)

    def begin(self, key: str, route: str, fingerprint: bytes = b"") -> Recorded:
        self.forget(key)
        rec = Recorded(route=route, fingerprint=fingerprint)
        self._entries[key] = rec
        self._charge(key, rec)
        return rec

    def finish(self, key: str, rec: Recorded, *, keep: bool) -> None:
        """Publish ``rec``; ``keep=False`` forgets it (the next try runs afresh)."""
        rec.ok = keep
        if self._entries.get(key) is rec:
            if keep:
                self._charge(key, rec)
            else:
                self.forget(key)
        rec.done.set()

    def forget(self, key: str, rec: Recorded | None = None) -> None:
        """Drop ``key`` (only while it still holds ``rec``, when given)."""
        if rec is not None and self._entries.get(key) is not rec:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.charged

    def _charge(self, key: str, rec: Recorded) -> None:
        size = len(key) + rec.size
        self._bytes += size - rec.charged
        rec.charged = size
        while self._entries and (len(self._entries) > self._max or self._bytes > self._max_bytes):
            self.forget(next(iter(self._entries)))


def fingerprint(route: str, body: bytes, sampler_identity: Callable[[str], str | None]) -> bytes:
    """What makes two requests with one key the same request (see the module docstring)."""
    if route == "asample":
        canonical = _sample_identity(body, sampler_identity)
        if canonical is not None:
            body = canonical
    return hashlib.sha256(route.encode() + b"\0" + body).digest()


def _sample_identity(body: bytes, sampler_identity: Callable[[str], str | None]) -> bytes | None:
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    doc.pop("seq_id", None)
    sid = doc.get("sampling_session_id")
    if isinstance(sid, str):
        model = sampler_identity(sid)
        if model is not None:
            doc["sampling_session_id"] = model
    try:
        return msgspec.json.encode(doc, order="sorted")
    except (TypeError, OverflowError, RecursionError):
        return None


def response_request_id(body: bytes) -> str | None:
    """The ``request_id`` of a recorded future answer (``{"request_id": ...}``), else None."""
    if not body.startswith(b"{") or b'"request_id"' not in body:
        return None
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    rid = doc.get("request_id") if isinstance(doc, dict) else None
    return rid if isinstance(rid, str) else None
