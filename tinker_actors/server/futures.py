"""The futures store: request_id -> state, result and waiters.

A long poll waits on the future's ``anyio.Event`` so it answers within a
scheduler tick of completion. Finished futures are kept for ``ttl_s`` after
their first retrieval (or after completion when never retrieved); a lookup of a
dropped id that this store issued answers "expired" (the app maps it to 410),
an id it never issued answers "unknown" (404).
"""

from __future__ import annotations

import enum
import itertools
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import anyio


class FutureState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Result:
    """A finished future's answer.

    ``value`` is a wire object; ``encode(kind)`` turns it into bytes for
    ``kind`` in {"json", "proto"}. ``proto`` is True for result types the SDK
    only accepts as protobuf.
    """

    value: Any
    encode: Callable[[Any, str], bytes]
    proto: bool = False
    _cache: dict[str, bytes] = field(default_factory=dict)

    def encoded(self, kind: str) -> bool:
        """True when ``body(kind)`` is already cached (costs nothing)."""
        return kind in self._cache

    def body(self, kind: str) -> bytes:
        if kind not in self._cache:
            self._cache[kind] = self.encode(self.value, kind)
        return self._cache[kind]


@dataclass
class Future:
    request_id: str
    request_type: str
    owner: str = ""  # model id or sampling session id
    tenant: str | None = None  # the API key's tenant that created it (serve --api-keys)
    state: FutureState = FutureState.QUEUED
    queue_state: str = "active"
    queue_state_reason: str | None = None
    result: Result | None = None
    error: str | None = None
    category: str = "unknown"
    created: float = 0.0
    finished_at: float | None = None
    retrieved_at: float | None = None
    expire_after_s: float | None = None  # fault: 410 once older than this
    event: anyio.Event = field(default_factory=anyio.Event)
    cancel_scope: anyio.CancelScope | None = None
    sample_sequence_ids: list[str] | None = None
    completion_index: int = -1  # position in its sampling session's completion log

    @property
    def finished(self) -> bool:
        return self.state in (FutureState.DONE, FutureState.FAILED, FutureState.CANCELLED)


class CompletionLog:
    """One sampling session's finished request ids, in completion order.

    Cursors are absolute positions (what ``retrieve_futures`` hands out), so
    the log can drop its head without moving them: entries whose future the
    store no longer holds (past its TTL) go first, and the log never holds
    more than ``MAX`` ids. A cursor older than the head resumes at the head:
    what it skipped is gone from the store anyway, or past the cap.
    """

    MAX = 100_000

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.base = 0  # the absolute position of ids[0]
        self.head = 0  # ids[:head] are dropped; compacted away once they are half the list

    @property
    def end(self) -> int:
        return self.base + len(self.ids)

    def append(self, request_id: str) -> None:
        self.ids.append(request_id)

    def since(self, cursor: int) -> list[str]:
        return self.ids[max(cursor - self.base, self.head) :]

    def trim(self, live: dict[str, Any]) -> None:
        ids = self.ids
        while self.head < len(ids) and (len(ids) - self.head > self.MAX or ids[self.head] not in live):
            self.head += 1
        if self.head > len(ids) // 2:
            del ids[: self.head]
            self.base += self.head
            self.head = 0


class Lookup(enum.Enum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"


class FuturesStore:
    """All futures of one server, bounded by a TTL after completion."""

    def __init__(self, *, ttl_s: float = 600.0, clock: Callable[[], float] = anyio.current_time):
        self._ttl_s = ttl_s
        self._clock = clock
        self._futures: OrderedDict[str, Future] = OrderedDict()
        self._expired: OrderedDict[str, str | None] = OrderedDict()  # request id -> tenant
        self._prefix = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)
        self.pending = 0  # created and not yet finished: the work the server still owes
        self.finished = 0  # finished since the start: load shedding measures the drain rate with it
        # finished ids in completion order: the sweep only looks at the oldest
        self._done: deque[str] = deque()
        # per-sampling-session completion logs for retrieve_futures
        self._completions: dict[str, CompletionLog] = {}
        self._completion_events: dict[str, anyio.Event] = {}

    def __len__(self) -> int:
        return len(self._futures)

    def create(self, request_type: str, owner: str = "", *, tenant: str | None = None) -> Future:
        rid = f"req-{self._prefix}-{next(self._counter)}"
        fut = Future(request_id=rid, request_type=request_type, owner=owner, created=self._clock(), tenant=tenant)
        self._futures[rid] = fut
        self.pending += 1
        self.sweep()
        return fut

    def get(self, request_id: str) -> Future | Lookup:
        fut = self._futures.get(request_id)
        if fut is None:
            return Lookup.EXPIRED if request_id in self._expired else Lookup.UNKNOWN
        if fut.finished and fut.expire_after_s is not None and fut.finished_at is not None:
            if self._clock() - fut.finished_at >= fut.expire_after_s:
                self._drop(request_id)
                return Lookup.EXPIRED
        return fut

    def start(self, fut: Future) -> None:
        if not fut.finished:
            fut.state = FutureState.RUNNING
            fut.queue_state = "active"
            fut.queue_state_reason = None

    def complete(self, fut: Future, result: Result) -> None:
        if fut.finished:
            return
        fut.state = FutureState.DONE
        fut.result = result
        self._finish(fut)

    def fail(self, fut: Future, error: str, category: str = "unknown") -> None:
        if fut.finished:
            return
        fut.state = FutureState.FAILED
        fut.error = error
        fut.category = category
        self._finish(fut)

    def cancel(self, fut: Future) -> bool:
        if fut.finished:
            return False
        fut.state = FutureState.CANCELLED
        fut.error = "cancelled by the client"
        fut.category = "user"
        if fut.cancel_scope is not None:
            fut.cancel_scope.cancel()
        self._finish(fut)
        return True

    def mark_retrieved(self, fut: Future) -> None:
        if fut.retrieved_at is None:
            fut.retrieved_at = self._clock()

    async def wait(self, fut: Future, timeout_s: float) -> bool:
        """Wait until ``fut`` finishes or ``timeout_s`` passes; True when finished."""
        if fut.finished:
            return True
        with anyio.move_on_after(timeout_s):
            await fut.event.wait()
        return fut.finished

    # -- sampling-session completion logs (retrieve_futures) --------------
    def track(self, fut: Future, session_key: str) -> None:
        if session_key not in self._completions:
            self._completions[session_key] = CompletionLog()
        fut.owner = session_key

    def completions_since(self, session_key: str, cursor: int) -> tuple[list[Future], int]:
        log = self._completions.get(session_key)
        if log is None:
            return [], 0
        out = []
        for rid in log.since(cursor):
            fut = self._futures.get(rid)
            if fut is not None:
                out.append(fut)
        return out, log.end

    async def wait_completion(self, session_key: str, cursor: int, timeout_s: float) -> None:
        log = self._completions.get(session_key)
        if log is not None and log.end > cursor:
            return
        ev = self._completion_events.setdefault(session_key, anyio.Event())
        try:
            with anyio.move_on_after(timeout_s):
                await ev.wait()
        finally:
            # the last waiter on a key that saw no completion takes its event
            # along, so polls on made-up keys leave nothing behind
            if not ev.is_set() and ev.statistics().tasks_waiting == 0 and self._completion_events.get(session_key) is ev:
                del self._completion_events[session_key]

    # -- internals -----------------------------------------------------
    def _finish(self, fut: Future) -> None:
        self.pending -= 1
        self.finished += 1
        fut.finished_at = self._clock()
        fut.event.set()
        self._done.append(fut.request_id)
        log = self._completions.get(fut.owner)
        if log is not None:
            fut.completion_index = log.end
            log.append(fut.request_id)
            log.trim(self._futures)
            ev = self._completion_events.pop(fut.owner, None)
            if ev is not None:
                ev.set()

    def expired_tenant(self, request_id: str) -> str | None:
        return self._expired.get(request_id)

    def forget(self, request_id: str) -> None:
        """Drop a future as if it had expired: polls answer 410 (fault injection)."""
        if request_id in self._futures:
            self._drop(request_id)

    def _drop(self, request_id: str) -> None:
        fut = self._futures.pop(request_id, None)
        self._expired[request_id] = fut.tenant if fut is not None else None
        while len(self._expired) > 100_000:
            self._expired.popitem(last=False)

    def sweep(self) -> None:
        """Drop finished futures older than the TTL (from retrieval, else completion).

        Amortised O(1): it walks the completion log from the oldest and stops
        at the first future still within its TTL. A late retrieval can keep
        younger futures behind it a little longer; none is dropped early.
        """
        now = self._clock()
        done = self._done
        while done:
            fut = self._futures.get(done[0])
            if fut is not None:
                since = fut.retrieved_at if fut.retrieved_at is not None else fut.finished_at
                if since is None or now - since <= self._ttl_s:
                    return
                self._drop(fut.request_id)
            done.popleft()
