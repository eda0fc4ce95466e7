"""Seeded fault injection: what may go wrong, and the one RNG that decides when.

:class:`FaultConfig` is a typed msgspec Struct: ``POST /_local/faults`` decodes
its body straight into it, so a value of the wrong type or out of range is a
400 naming the field, never a server that fails later on the bad value.

Request-level faults, decided when a request arrives (``kind``):

==========  ==============================================================
``429``     answer 429 with ``Retry-After`` (and ``retry-after-ms``)
``5xx``     answer ``status_5xx`` (500 by default, 503 to model overload)
``drop``    abort the connection before any work (no response)
``lost``    do the work, keep the answer for replay, then abort the
            connection: the response is lost *after* the server did the work
``timeout`` do the work, then hold the answer for ``timeout_s`` (longer
            than the client's read timeout) before sending it
``gone``    answer 410, as for a future the server has forgotten
==========  ==============================================================

One ``random.Random(seed)`` draws every decision in request arrival order, so
a run with the same seed and the same request sequence injects the same faults
(``decisions`` records them for replay checks). Setting a new FaultConfig
reseeds. ``max_faults`` turns request-level faults off after that many, so a
test can make exactly the first N requests of a route fail.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import msgspec

from .http import json_response

__all__ = [
    "FaultConfig",
    "FaultInjector",
    "RequestFault",
    "DroppedConnection",
    "answer_fault",
    "shed_load",
    "LoadShedder",
    "deferred_send",
    "fault_config_from_dict",
    "fault_config_from_json",
    "REQUEST_FAULT_KINDS",
]

PauseKind = Literal["paused_capacity", "paused_rate_limit"]
# in the order the shares of one draw are laid out on [0, 1)
REQUEST_FAULT_KINDS = ("429", "5xx", "drop", "lost", "timeout", "gone")
_RATES = ("rate_429", "rate_5xx", "rate_drop", "rate_lost", "rate_timeout", "rate_410")
_SHARES = (*_RATES, "pause_rate", "expire_rate", "slow_rate")
_WAITS = ("retry_after_s", "pause_futures_s", "slow_s", "timeout_s")
_MAX_WAIT_S = 1e9  # finite: anyio.sleep(inf) would hang for good; tests pause futures for 10**7 s


class FaultConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Seeded fault injection. Every rate is a share of requests in [0, 1].

    * ``rate_429``: answer 429 with ``Retry-After: retry_after_s``.
    * ``rate_5xx``: answer 500 (``status_5xx`` to pick another code, e.g. 503).
    * ``rate_drop``: close the connection without a response, before any work.
    * ``rate_lost``: do the work, then close the connection: the answer is lost
      (a retry with the same ``X-Idempotency-Key`` gets it replayed).
    * ``rate_timeout``: do the work, then hold the answer ``timeout_s`` seconds
      (set it above the client's read timeout).
    * ``rate_410``: answer 410 (on ``retrieve_future``: the future is gone).
    * ``max_faults``: after this many request-level faults, inject no more.
    * ``pause_futures_s``: a new future stays queued (try_again with ``pause_kind``)
      for this long before it starts; ``pause_rate`` is the share of futures paused.
    * ``expire_futures_s``: a finished future answers 410 once it is this old
      (``expire_rate`` share of futures; 1.0 by default when set).
    * ``session_expiry_s``: a session whose last heartbeat is older than this
      answers 410 on heartbeat and on every call that names it.
    * ``slow_s``: every answer is delayed by this long (``slow_rate`` share).
    * ``routes``: when non-empty, request-level faults (all of the above but
      pauses, expiry and session expiry) only hit these route names
      (e.g. ``["asample", "retrieve_future"]``).
    """

    seed: int = 0
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_5xx: float = 0.0
    status_5xx: int = 500
    rate_drop: float = 0.0
    rate_lost: float = 0.0
    rate_timeout: float = 0.0
    timeout_s: float = 120.0
    rate_410: float = 0.0
    max_faults: int | None = None
    pause_futures_s: float = 0.0
    pause_rate: float = 1.0
    pause_kind: PauseKind = "paused_capacity"
    expire_futures_s: float | None = None
    expire_rate: float = 1.0
    session_expiry_s: float | None = None
    slow_s: float = 0.0
    slow_rate: float = 1.0
    routes: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        # msgspec reports a ValueError raised here as a ValidationError of the body
        for name in _SHARES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
        if sum(getattr(self, name) for name in _RATES) > 1.0 + 1e-9:
            raise ValueError(f"the request fault rates ({', '.join(_RATES)}) add up to more than 1")
        for name in _WAITS:
            value = getattr(self, name)
            if not 0.0 <= value <= _MAX_WAIT_S:
                raise ValueError(f"{name} must be between 0 and {_MAX_WAIT_S:g} seconds, got {value!r}")
        for name in ("expire_futures_s", "session_expiry_s"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= _MAX_WAIT_S:
                raise ValueError(f"{name} must be between 0 and {_MAX_WAIT_S:g} seconds, got {value!r}")
        if not 500 <= self.status_5xx <= 599:
            raise ValueError(f"status_5xx must be a 5xx code, got {self.status_5xx}")
        if self.max_faults is not None and self.max_faults < 0:
            raise ValueError(f"max_faults must be >= 0, got {self.max_faults}")
        if not -(2**63) <= self.seed < 2**63:
            raise ValueError("seed must fit in 64 bits")

    def any_request_faults(self) -> bool:
        return bool(self.slow_s) or any(getattr(self, name) for name in _RATES)


_decoder = msgspec.json.Decoder(FaultConfig)


def fault_config_from_dict(data: Any) -> FaultConfig:
    """A FaultConfig from decoded JSON; ValueError naming the field on a bad value."""
    if not isinstance(data, dict):
        raise ValueError("fault config must be a JSON object")
    try:
        return msgspec.convert(data, FaultConfig)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad fault config: {exc}") from None


def fault_config_from_json(body: bytes) -> FaultConfig:
    """The ``POST /_local/faults`` body; ValueError naming the field on a bad value."""
    try:
        return _decoder.decode(body or b"{}")
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad fault config: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"fault config is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class RequestFault:
    kind: str  # one of REQUEST_FAULT_KINDS, or "none"
    slow_s: float = 0.0


_NONE = RequestFault("none")


class FaultInjector:
    def __init__(self, config: FaultConfig | None = None):
        self.set(config or FaultConfig())

    def set(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self.decisions: list[tuple[str, str]] = []
        self.injected = 0

    def for_request(self, route: str) -> RequestFault:
        """Decide the fate of one incoming request on ``route``."""
        cfg = self.config
        if not cfg.any_request_faults() or (cfg.routes and route not in cfg.routes):
            return _NONE
        if cfg.max_faults is not None and self.injected >= cfg.max_faults:
            return _NONE
        draw = self._rng.random()
        slow = cfg.slow_s if cfg.slow_s and self._rng.random() < cfg.slow_rate else 0.0
        kind = "none"
        edge = 0.0
        for name, candidate in zip(_RATES, REQUEST_FAULT_KINDS, strict=True):
            edge += getattr(cfg, name)
            if draw < edge:
                kind = candidate
                break
        self.decisions.append((route, kind))
        if kind != "none":
            self.injected += 1
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


# -- acting on a decision, at the ASGI level -------------------------------------------------
Send = Callable[[dict[str, Any]], Awaitable[None]]


class DroppedConnection(Exception):
    """Raised on purpose to make the ASGI server abort a connection.

    The response is started with a ``content-length`` it never delivers, so
    hypercorn or uvicorn aborts the connection mid-response: the client sees a
    transport error, never an HTTP status.
    """


async def _drop(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    raise DroppedConnection("connection dropped on purpose (fault injection)")


async def _request_id(receive: Any) -> str | None:
    """The ``request_id`` of a retrieve_future body, read off the ASGI receive channel."""
    body, more = b"", True
    while more and len(body) <= 1 << 16:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    rid = value.get("request_id") if isinstance(value, dict) else None
    return rid if isinstance(rid, str) else None


async def answer_fault(
    fault: RequestFault,
    config: FaultConfig,
    stats: Any,
    scope: Any,
    receive: Any,
    send: Send,
    *,
    forget_future: Callable[[str], None] | None = None,
) -> bool:
    """Answer a fault that replaces the request (429, 5xx, 410, drop); True when it did.

    ``forget_future``: for a 410 on ``retrieve_future``, the server forgets the
    future the poll names, as a real 410 means (later polls answer 410 too).
    """
    kind = fault.kind
    if kind == "429":
        stats.faults["429"] += 1
        stats.statuses["429"] += 1
        retry = config.retry_after_s
        await json_response(
            {"detail": "rate limited (injected by the local server)"},
            status=429,
            headers={"Retry-After": f"{retry:g}", "retry-after-ms": str(int(retry * 1000))},
        )(scope, receive, send)
        return True
    if kind == "5xx":
        stats.faults["5xx"] += 1
        stats.statuses[str(config.status_5xx)] += 1
        detail = {"detail": "server error (injected by the local server)"}
        await json_response(detail, status=config.status_5xx)(scope, receive, send)
        return True
    if kind == "gone":
        if forget_future is not None:
            rid = await _request_id(receive)
            if rid is not None:
                forget_future(rid)
        stats.faults["gone"] += 1
        stats.statuses["410"] += 1
        await json_response({"detail": "gone (injected by the local server)"}, status=410)(scope, receive, send)
        return True
    if kind == "drop":
        stats.faults["drop"] += 1
        await _drop(send)
    return False


class LoadShedder:
    """When the work queue is full, refuse a submit and say when to come back.

    The Retry-After is the time the server needs to drain what is queued, at
    the rate it has been finishing work (measured over windows of at least a
    second), jittered by ±25 % so the refused clients do not all return in
    the same instant, within [``floor_s``, 60 s]. A fixed short wait would
    make thousands of refused submits return every second and spend the
    server's event loop on 429s instead of work (heartbeats starved with it).
    """

    def __init__(self, limit: int, floor_s: float, *, rng: random.Random | None = None) -> None:
        self.limit = limit
        self.floor_s = floor_s
        self.rate: float | None = None  # finished futures per second
        self._mark: tuple[float, int] | None = None
        self._rng = rng or random.Random()

    def retry_after(self, pending: int, finished: int) -> float | None:
        """Seconds to wait, or None when the submit may go on."""
        if self.limit <= 0 or pending < self.limit:
            self._mark = None
            return None
        now = anyio.current_time()
        if self._mark is None:
            self._mark = (now, finished)
        elif now - self._mark[0] >= 1.0:
            seen = (finished - self._mark[1]) / (now - self._mark[0])
            self.rate = seen if self.rate is None else 0.5 * self.rate + 0.5 * seen
            self._mark = (now, finished)
        drain = pending / self.rate if self.rate else self.floor_s
        return min(max(self.floor_s, drain * self._rng.uniform(0.75, 1.25)), 60.0)


async def shed_load(retry_after_s: float, stats: Any, scope: Any, receive: Any, send: Send) -> None:
    """Answer 429 with Retry-After: the server has more queued work than it takes (``max_pending_futures``).

    Not a fault but load shedding, in the same shape a real overloaded
    service answers; the client waits the Retry-After and resubmits.
    """
    stats.shed += 1
    stats.statuses["429"] += 1
    await json_response(
        {"detail": "the server is busy: too much queued work; retry after the Retry-After delay"},
        status=429,
        headers={"Retry-After": f"{retry_after_s:.3g}", "retry-after-ms": str(int(retry_after_s * 1000))},
    )(scope, receive, send)


def deferred_send(fault: RequestFault, config: FaultConfig, stats: Any, send: Send) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """For ``lost`` and ``timeout``: a send that holds the answer, and what to do once the work is done.

    The request runs (and its answer is recorded for idempotent replay) with
    the returned send; the caller then awaits the second value, which drops
    the connection (``lost``) or sends the held answer ``timeout_s`` late.
    """
    held: list[dict[str, Any]] = []

    async def hold(message: dict[str, Any]) -> None:
        held.append(message)

    async def after() -> None:
        if fault.kind == "lost":
            stats.faults["lost"] += 1
            await _drop(send)
        stats.faults["timeout"] += 1
        await anyio.sleep(config.timeout_s)
        for message in held:
            await send(message)

    return hold, after
