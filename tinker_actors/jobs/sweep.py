"""The sampling-sweep runner: every prompt x setting of a spec, resumable.

::

    spec = load_spec("sweep.toml")
    async with open_service_client(base_url=..., api_key=...) as service:
        outcome = await run_sweep(spec, service)
    print(outcome.summary)

How a run goes:

1. The spec is planned into the journal (``Journal.plan`` is idempotent, so
   a resumed run adds only prompts appended since).
2. A row that was in flight when the last run died and whose server request
   id is journaled is *re-attached* first (``ServiceClient.retrieve_future``):
   its result is awaited without sending anything. If the server no longer
   has that future (404/410) the row moves to a new idempotency key
   (``Journal.next_generation``, committed before the send) and is sent
   again; any other failure to re-attach sends it again under its key, which
   a server that still has it answers from its idempotency record.
3. Concurrency starts at ``[concurrency] max`` and follows an AIMD
   controller: a 429 or a future paused for rate limit or capacity halves
   it, a full window of successes adds one.
4. Results are buffered by a :class:`JournalWriter` and committed in batches;
   a result is only ``done`` once its commit is on disk.
5. At the end the journal is exported to the spec's results JSONL, and the
   summary (counts, latency percentiles, tokens/s) is returned.

Failures (docs/sweep.md has the table). Only the server's own verdict on a
request is permanent: a 4xx user error, or a future that failed with category
``user``. Everything else is sent again, under the same idempotency key:

* the server's future is gone (410, or 404 after a restart): under the
  request's next key generation, so the server computes it afresh instead of
  answering with the dead request id;
* the session expired (the heartbeat's verdict, or a 410 on a submit): a new
  session is opened (``reconnect``) and the request sent on it;
* the server is unreachable (refused, reset, timeouts, 502/503/504, failing
  heartbeats): requests wait while one probe at a time tries again
  (:mod:`.outage`); once the outage lasts ``give_up_after`` seconds the run
  stops with every unfinished row resumable, and ``gave_up`` set;
* other transient failures (5xx, 429, 408, 409, failed futures of category
  server/unknown, no progress): re-sent with back-off, up to
  ``_ROW_RETRIES`` times per run while the rest of the sweep gets through;
  then the row is left ``failed, retryable`` and the next run sends it again.

Rows failed permanently are sent again only with ``retry_failed=True``
(``sweep --retry-failed``).

Cancelling the run (Ctrl-C, SIGTERM turned into a cancel by the CLI) flushes
what has arrived and leaves the rest for the next run; SIGKILL loses at most
the buffered results, which are re-sent (and replayed by the server) on
resume.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import trio
from rich.console import Console

from tinker_actors.errors import (
    ActorCrashedError,
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    FutureTimeoutError,
    GoneError,
    NotFoundError,
    PermissionDeniedError,
    RequestFailedError,
    ResponseDecodeError,
    ServiceClosedError,
    SessionExpiredError,
    TinkerActorsError,
    ValidationError,
)
from tinker_actors.wire import types as wt

from .._log import get_logger
from .aimd import AdaptiveLimiter, AimdPolicy, is_congestion
from .export import export_jsonl
from .journal import Journal, JournalRow, open_journal_writer
from .outage import OutageTracker
from .progress import ProgressCounters, open_progress
from .records import result_from_response
from .sweep_spec import SweepRequest, SweepSpec, load_prompts, plan_requests

__all__ = ["SweepOutcome", "run_sweep", "sweep_status", "export_sweep", "prompt_input", "failure_kind"]

log = get_logger(__name__)

# How often a waiting request looks at its future's queue state for
# congestion (a paused queue is a back-off signal like a 429).
_STATE_CHECK_S = 0.25
# How soon a waiting request records its server request id in the journal.
# A request answered sooner never needs it: its result is recorded instead.
_ID_CHECK_S = 0.02
# Transient failures of one request in one run, counted only while the rest
# of the sweep reaches the server (an outage counts against give_up_after
# instead). After these the row is left `failed, retryable` and the next run
# sends it again. With 6, a sweep of 5,000 requests at a steady 7 % failure
# rate left one request behind about one run in 25,000 (tests/reliability).
_ROW_RETRIES = 10
_BACKOFF_INITIAL = 0.5
_BACKOFF_MAX = 30.0
# How often the outage watcher looks (and the progress display learns) whether
# the server is reachable.
_WATCH_S = 0.5

_UNSET: Any = object()


class SweepOutcome(msgspec.Struct, kw_only=True):
    spec_id: str
    journal: str
    results: str | None  # None when the run was interrupted before export
    counts: dict[str, int]
    sent_this_run: int
    skipped: int  # already done when the run started
    reattached: int = 0  # in flight when the last run stopped, answered by re-attaching (not sent again)
    interrupted: bool
    # the server was unreachable for give_up_after seconds: the run stopped, resumable
    gave_up: bool = False
    resent: int = 0  # job-level re-sends this run (a request sent again after a failure or a crash)
    transient_errors: int = 0  # failures this run that were retried (not failed rows)
    new_keys: int = 0  # requests moved to a new idempotency key because the server forgot their future
    sessions_opened: int = 0  # sessions opened to replace an expired one
    outages: int = 0  # times the server became unreachable this run
    longest_outage_s: float = 0.0
    message: str | None = None  # what to do next, when the sweep is not complete
    summary: dict[str, Any] = msgspec.field(default_factory=dict)
    aimd: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def complete(self) -> bool:
        c = self.counts
        return c.get("done", 0) + c.get("failed_permanent", 0) == c.get("total", 0)


def prompt_input(request: SweepRequest, tokenizer: Any) -> wt.ModelInput:
    """The ModelInput for a prompt: its token list, or its text through ``tokenizer``."""
    if request.prompt.tokens is not None:
        return wt.ModelInput.from_ints(list(request.prompt.tokens))
    return wt.ModelInput.from_ints(list(tokenizer.encode(request.prompt.text or "")))


def failure_kind(exc: BaseException) -> str:
    """What a failed request means to a sweep.

    ``permanent``: the server's verdict on the request (a 4xx user error, a
    future failed with category user); ``fatal``: the credentials were refused
    (no request can succeed: the run stops, nothing is marked); ``gone``: the
    server no longer has the request's future (404/410 on retrieve_future);
    ``session``: the session (or its sampling session) is gone or closed;
    ``unreachable``: nothing reached the server (connection refused or reset,
    timeouts, 502/503/504); ``transient``: anything else worth sending again;
    ``bug``: not an error of this library (re-raised).
    """
    if isinstance(exc, ValidationError):
        return "permanent"
    if isinstance(exc, RequestFailedError):
        return "permanent" if exc.category == "user" else "transient"
    if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
        return "fatal"
    if isinstance(exc, (SessionExpiredError, ServiceClosedError)):
        return "session"
    if isinstance(exc, (GoneError, NotFoundError)):
        return "gone" if "retrieve_future" in (exc.endpoint or "") else "session"
    if isinstance(exc, APIStatusError):
        code = exc.status_code
        if code in (502, 503, 504):
            return "unreachable"
        if code >= 500 or code in (402, 408, 409, 429):
            return "transient"
        return "permanent"
    if isinstance(exc, APIConnectionError):  # APITimeoutError too
        return "unreachable"
    if isinstance(exc, (FutureTimeoutError, ResponseDecodeError, ActorCrashedError, TimeoutError, TinkerActorsError)):
        return "transient"
    return "bug"


def _reached_server(exc: BaseException) -> bool:
    """Whether the failure is an answer from the server itself (so it is reachable)."""
    if isinstance(exc, RequestFailedError):
        return True
    return isinstance(exc, APIStatusError) and exc.status_code not in (502, 503, 504)


def _paused(state: Any) -> bool:
    return is_congestion(str(getattr(state, "value", state)))


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------ sessions


@dataclasses.dataclass(eq=False)
class _Session:
    service: Any
    number: int
    close: trio.Event | None = None  # set to close a session this sweep opened
    sampler: Any = None


async def _hold(factory: Callable[[], Any], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Open a ServiceClient with ``factory`` and keep it open until told to close."""
    close = trio.Event()
    async with factory() as service:
        task_status.started((service, close))
        await close.wait()


def _default_reconnect(service: Any) -> Callable[[], Any] | None:
    """A factory for a new ServiceClient configured like ``service`` (None if unknown)."""
    config = getattr(getattr(service, "service", None), "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return None
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}

    def reconnect() -> Any:
        from tinker_actors.clients import open_service_client

        return open_service_client(**fields)

    return reconnect


class _Sessions:
    """The sweep's current session and its sampling client; replaces an expired one."""

    def __init__(
        self, service: Any, spec: SweepSpec, nursery: trio.Nursery, *, sampler: Any, reconnect: Callable[[], Any] | None
    ) -> None:
        self.current = _Session(service, 0)
        self._spec = spec
        self._nursery = nursery
        self._fixed_sampler = sampler
        self._reconnect = reconnect
        self._lock = trio.Lock()
        self._owned: list[_Session] = []
        self.opened = 0
        self.tokenizer: Any = None
        self._tokenizer_loaded = False

    async def sampler(self) -> tuple[_Session, Any]:
        """The current session and a sampling client on it (made on first use)."""
        while True:
            session = self.current
            if self._fixed_sampler is not None:
                client = self._fixed_sampler
            else:
                if session.sampler is None:
                    async with self._lock:
                        if session is self.current and session.sampler is None:
                            session.sampler = await session.service.create_sampling_client(
                                base_model=self._spec.model.base_model, model_path=self._spec.model.model_path
                            )
                if session is not self.current or session.sampler is None:
                    continue
                client = session.sampler
            if not self._tokenizer_loaded:
                self.tokenizer = _tokenizer(client)
                self._tokenizer_loaded = True
            return session, client

    def health(self) -> tuple[float | None, float | None]:
        """(heartbeats failing since, last successful heartbeat) of the current session, trio time."""
        health = getattr(getattr(self.current.service, "service", None), "health", None)
        failing = getattr(health, "since", None) if getattr(health, "state", None) == "degraded" else None
        return failing, getattr(health, "last_success", None)

    async def replace(self, stale: _Session) -> bool:
        """Open a new session in place of ``stale``; False when it cannot be replaced.

        Only the first caller for a stale session opens one; the others find it
        replaced. Raises what opening a session raised (the caller retries).
        """
        async with self._lock:
            if stale is not self.current:
                return True
            if self._reconnect is None:
                return False
            service, close = await self._nursery.start(_hold, self._reconnect)
            self.opened += 1
            self.current = _Session(service, stale.number + 1, close)
            self._owned.append(self.current)
            log.info("sweep_session_replaced", session=self.current.number, session_id=getattr(service, "session_id", None))
            if stale.close is not None:
                stale.close.set()
            return True

    def close_all(self) -> None:
        for session in self._owned:
            if session.close is not None:
                session.close.set()


# ------------------------------------------------------------------ the run


@dataclasses.dataclass(eq=False)
class _Item:
    row: JournalRow
    request: SweepRequest
    idempotency_key: str
    generation: int
    counted_failures: int = 0
    sends: int = 0


async def run_sweep(
    spec: SweepSpec,
    service: Any,
    *,
    progress: bool | None = None,
    console: Console | None = None,
    log_interval: float = 10.0,
    export: bool = True,
    durable: bool = False,
    sampler: Any = None,
    on_result: Callable[[str], None] | None = None,
    give_up_after: float | None = _UNSET,
    retry_failed: bool = False,
    reconnect: Callable[[], Any] | None = _UNSET,
) -> SweepOutcome:
    """Run (or resume) the sweep ``spec`` on ``service`` (a ServiceClient).

    ``progress`` forces the rich bar on (True) or log lines (False); by
    default the bar is used on a terminal. ``sampler`` overrides the
    SamplingClient the spec's model would give (tests, custom routing).
    ``on_result(key)`` is called after each result is buffered.
    ``give_up_after``: seconds the server may stay unreachable before the run
    stops, resumable (default: the spec's ``[retry] give_up_after_s``; None:
    never). ``retry_failed``: send rows a previous run marked failed
    permanently again. ``reconnect``: a zero-argument callable giving an
    ``async with`` ServiceClient, used to replace an expired session (default:
    one configured like ``service``; None: never replace).
    """
    give_up = spec.give_up_after_s if give_up_after is _UNSET else give_up_after
    if reconnect is _UNSET:
        reconnect = _default_reconnect(service)
    prompts = load_prompts(spec.prompts_path)
    requests = {r.key: r for r in plan_requests(spec, prompts)}
    journal = Journal.open(spec.journal_path, spec_id=spec.spec_id, spec_hash=spec.spec_hash, durable=durable)
    with journal:
        added = journal.plan(requests.values())
        counts = journal.counts()
        pending = [row for row in journal.pending(include_failed=retry_failed) if row.key in requests]
        log.info(
            "sweep_start",
            spec_id=spec.spec_id,
            journal=str(spec.journal_path),
            total=counts["total"],
            done=counts["done"],
            to_send=len(pending),
            newly_planned=added,
            retry_failed=retry_failed,
        )
        counters = ProgressCounters(total=counts["total"], done=counts["done"], skipped=counts["done"])
        counters.failed = counts["total"] - counts["done"] - len(pending)  # failed rows not sent again
        limiter = AdaptiveLimiter(AimdPolicy(ceiling=spec.concurrency_max, floor=spec.concurrency_min))
        tracker = OutageTracker()
        stats = {"sent": 0, "reattached": 0, "new_keys": 0}
        interrupted = True
        gave_up = False
        sessions: _Sessions | None = None

        try:
            if pending:
                async with (
                    trio.open_nursery() as holders,
                    open_journal_writer(journal) as writer,
                    open_progress(
                        counters, description=spec.spec_id, console=console, terminal=progress, log_interval=log_interval
                    ),
                ):
                    sessions = _Sessions(service, spec, holders, sampler=sampler, reconnect=reconnect)
                    run = _Run(spec, journal, writer, sessions, limiter, tracker, counters, stats, on_result)
                    try:
                        gave_up = await run.all(pending, requests, give_up)
                    finally:
                        sessions.close_all()
            interrupted = False
        finally:
            counts = journal.counts()
            outcome = SweepOutcome(
                spec_id=spec.spec_id,
                journal=str(spec.journal_path),
                results=None,
                counts=counts,
                sent_this_run=stats["sent"],
                skipped=counters.skipped,
                reattached=stats["reattached"],
                interrupted=interrupted,
                gave_up=gave_up,
                resent=counters.retries,
                transient_errors=counters.errors,
                new_keys=stats["new_keys"],
                sessions_opened=sessions.opened if sessions is not None else 0,
                outages=tracker.outages,
                longest_outage_s=round(tracker.longest, 3),
                aimd=limiter.statistics(),
            )
            outcome.message = _next_step(outcome, give_up)
            log.info("sweep_stop", spec_id=spec.spec_id, interrupted=interrupted, gave_up=gave_up,
                     sent_this_run=stats["sent"], reattached=stats["reattached"], counts=counts)
        if export:
            outcome.summary = export_sweep(spec, journal, tokenizer=sessions.tokenizer if sessions else None)
            outcome.results = str(spec.results_path)
    return outcome


def _next_step(o: SweepOutcome, give_up: float | None) -> str | None:
    c = o.counts
    left = c.get("total", 0) - c.get("done", 0) - c.get("failed", 0)
    retryable = c.get("failed", 0) - c.get("failed_permanent", 0)
    if o.gave_up:
        return (
            f"the server was unreachable for {give_up:g} s, so the sweep stopped; {left + retryable} requests are "
            f"left in the journal {o.journal} (finished results are kept). Run the same command again to resume "
            "once the server is back (--give-up-after sets how long to keep trying)."
        )
    parts = []
    if retryable:
        parts.append(f"{retryable} requests kept failing with transient errors; run the same command again to send them again")
    if c.get("failed_permanent", 0):
        parts.append(
            f"{c['failed_permanent']} requests were refused by the server (see the error column of the results); "
            "after fixing the cause, --retry-failed sends them again"
        )
    return "; ".join(parts) or None


class _Run:
    """The workers of one run and what they share."""

    def __init__(
        self,
        spec: SweepSpec,
        journal: Journal,
        writer: Any,
        sessions: _Sessions,
        limiter: AdaptiveLimiter,
        tracker: OutageTracker,
        counters: ProgressCounters,
        stats: dict[str, int],
        on_result: Callable[[str], None] | None,
    ) -> None:
        self.spec = spec
        self.journal = journal
        self.writer = writer
        self.sessions = sessions
        self.limiter = limiter
        self.tracker = tracker
        self.counters = counters
        self.stats = stats
        self.on_result = on_result
        self._rng = random.Random()

    async def all(self, pending: list[JournalRow], requests: dict[str, SweepRequest], give_up: float | None) -> bool:
        """Run every pending row; True when the run stopped because the server stayed unreachable."""
        send, receive = trio.open_memory_channel[_Item](math.inf)
        for row in pending:
            send.send_nowait(_Item(row, requests[row.key], row.idempotency_key, row.generation))
        send.close()
        gave_up = False

        async def worker() -> None:
            async for item in receive:
                await self.one(item)

        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal gave_up
                if await self.watch(give_up):
                    gave_up = True
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            # One worker per slot of the ceiling: the limiter decides how many
            # of them may have a request out at a time.
            async with trio.open_nursery() as workers:
                for _ in range(min(self.spec.concurrency_max, len(pending))):
                    workers.start_soon(worker)
            nursery.cancel_scope.cancel()  # the watcher
        return gave_up

    # -- outage ---------------------------------------------------------------------

    def unreachable_since(self) -> float | None:
        failing, beat = self.sessions.health()
        if beat is not None and self.tracker.fail_since is not None and beat > self.tracker.fail_since:
            self.tracker.success(beat)  # a heartbeat got through since the last failure
        return self.tracker.unreachable_since(trio.current_time(), failing)

    async def watch(self, give_up: float | None) -> bool:
        """Follow the outage state for the display and the logs; True once it lasted ``give_up`` s."""
        c = self.counters
        was: float | None = None
        while True:
            now = trio.current_time()
            since = self.unreachable_since()
            c.unreachable_since = since
            c.next_try_at = self.tracker.next_try if since is not None and not self.tracker.probing else None
            if since is not None and was is None:
                log.warning("sweep_server_unreachable", since_s=round(now - since, 1), give_up_after_s=give_up)
            elif since is None and was is not None:
                log.info("sweep_server_reachable_again", outage_s=round(now - was, 1))
            was = since
            if since is not None and give_up is not None and now - since >= give_up:
                log.error("sweep_gave_up", unreachable_s=round(now - since, 1), give_up_after_s=give_up)
                return True
            await trio.sleep(_WATCH_S)

    async def turn(self) -> bool:
        """Wait until this request may be sent; True when it goes out as the outage's probe."""
        while True:
            now = trio.current_time()
            if self.unreachable_since() is None:
                return False
            if self.tracker.may_probe(now):
                return True
            wake = self.tracker.next_try if self.tracker.next_try is not None and not self.tracker.probing else now + _WATCH_S
            await trio.sleep(min(max(wake - now, 0.01), _WATCH_S))

    # -- one request --------------------------------------------------------------------

    async def one(self, item: _Item) -> None:
        if item.row.state == "sent" and item.row.request_id:
            if await self.reattach(item):
                return
        while True:
            probe = await self.turn()
            try:
                finished = await self.attempt(item, probe)
            finally:
                if probe and self.tracker.probing:
                    self.tracker.probe_abandoned()
            if finished:
                return

    async def reattach(self, item: _Item) -> bool:
        """Wait on the request a previous run left in flight; False: send it."""
        retrieve = getattr(self.sessions.current.service, "retrieve_future", None)
        request_id = item.row.request_id
        if retrieve is None or request_id is None:
            return False
        c = self.counters
        c.in_flight += 1
        started = time.perf_counter()
        try:
            async with self.limiter.slot() as slot:
                fut = retrieve(request_id, "sample")
                response = await _wait(fut, self.limiter, slot)
        except Exception as exc:
            kind = failure_kind(exc)
            if kind == "bug":
                raise
            if kind == "gone":
                # The server forgot it (expired, or restarted): its key would
                # only be answered with the dead id, so the row gets a new one.
                self.new_key(item)
            log.info("sweep_reattach_failed", key=item.row.key, error=type(exc).__name__, kind=kind)
            return False
        finally:
            c.in_flight -= 1
        self.stats["reattached"] += 1
        self.tracker.success(trio.current_time())
        self.writer.add_result(
            item.row.key, result_from_response(response, request_id=request_id), latency_s=time.perf_counter() - started
        )
        self.finished_ok(item)
        return True

    def new_key(self, item: _Item) -> None:
        item.generation, item.idempotency_key = self.journal.next_generation(item.row.key, seen=item.generation)
        self.stats["new_keys"] += 1
        log.info("sweep_new_idempotency_key", key=item.row.key, generation=item.generation)

    def finished_ok(self, item: _Item) -> None:
        self.counters.done += 1
        if self.on_result is not None:
            self.on_result(item.row.key)

    async def attempt(self, item: _Item, probe: bool) -> bool:
        """Send ``item`` once; True when it is finished (done or failed), False to send it again."""
        c = self.counters
        try:
            session, client = await self.sessions.sampler()
        except Exception as exc:
            # Making the sampling client: a refusal is about the spec's model, not one row.
            kind = failure_kind(exc)
            if kind in ("bug", "fatal", "permanent"):
                raise
            c.errors += 1
            return await self.failed(item, exc, kind, probe, session=self.sessions.current)
        request = item.request
        async with self.limiter.slot() as slot:
            self.journal.mark_sent(item.row.key)
            if item.row.attempts > 0 or item.sends > 0:
                c.retries += 1
            item.sends += 1
            self.stats["sent"] += 1
            c.in_flight += 1
            started = time.perf_counter()
            try:
                fut = client.sample(
                    prompt_input(request, self.sessions.tokenizer),
                    request.setting.num_samples,
                    wt.SamplingParams(**request.setting.sampling_params()),
                    idempotency_key=item.idempotency_key,
                    **self.spec.request_options(),
                )
                response = await _wait(
                    fut, self.limiter, slot, on_request_id=lambda rid: self.journal.record_request_id(item.row.key, rid)
                )
            except Exception as exc:
                kind = failure_kind(exc)
                if kind == "bug":
                    raise
                if is_congestion(exc):
                    slot.congested()
                else:
                    slot.neutral()
                if kind == "fatal":
                    raise
                if kind == "permanent":
                    self.tracker.success(trio.current_time())  # the server answered
                    self.writer.add_failure(item.row.key, _error_text(exc), retryable=False)
                    c.failed += 1
                    log.warning("sweep_request_failed", key=item.row.key, error=_error_text(exc), permanent=True)
                    return True
                c.errors += 1
                fail_exc = exc
            else:
                self.tracker.success(trio.current_time())
                self.writer.add_result(
                    item.row.key, result_from_response(response, request_id=fut.request_id),
                    latency_s=time.perf_counter() - started,
                )
                self.finished_ok(item)
                return True
            finally:
                c.in_flight -= 1
        return await self.failed(item, fail_exc, kind, probe, session=session)

    async def failed(self, item: _Item, exc: BaseException, kind: str, probe: bool, *, session: _Session) -> bool:
        """After a transient failure: what to do before sending ``item`` again (True: give the row up)."""
        now = trio.current_time()
        if _reached_server(exc):
            self.tracker.success(now)
        elif kind == "unreachable":
            self.tracker.unreachable_failure(now)
            if probe:
                self.tracker.probe_failed(now)
        in_outage = self.unreachable_since() is not None
        if kind != "unreachable" and not in_outage:
            item.counted_failures += 1
        log.info("sweep_retry", key=item.row.key, error=type(exc).__name__, kind=kind, failures=item.counted_failures)
        if item.counted_failures > _ROW_RETRIES:
            self.writer.add_failure(item.row.key, _error_text(exc), retryable=True)
            self.counters.failed += 1
            log.warning("sweep_request_failed", key=item.row.key, error=_error_text(exc), permanent=False)
            return True
        if kind == "gone":
            self.new_key(item)
            return False
        if kind == "session":
            if _reached_server(exc):
                # A 404/410 answer to the submit itself: a server that records
                # answers by idempotency key would replay it for this key on
                # the new session too, so the request moves to a new key.
                self.new_key(item)
            try:
                replaced = await self.sessions.replace(session)
            except Exception as open_exc:
                if failure_kind(open_exc) in ("bug", "fatal"):
                    raise
                log.info("sweep_session_open_failed", error=_error_text(open_exc))
                now = trio.current_time()
                if not _reached_server(open_exc):
                    self.tracker.unreachable_failure(now)
                    if probe:
                        self.tracker.probe_failed(now)
                replaced = True  # wait below, then try again
            else:
                if replaced:
                    if self.sessions.current is not session:
                        self.tracker.success(trio.current_time())  # a session opened: the server answers
                    return False
            if not replaced:
                log.warning("sweep_session_not_replaceable", error=_error_text(exc))
        if kind == "unreachable" and self.unreachable_since() is not None:
            return False  # the outage gate spaces the next try
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, (int, float)) and hint > 0:
            await trio.sleep(min(hint, _BACKOFF_MAX))  # the server said how long
        else:
            n = max(item.counted_failures, 1)
            await trio.sleep(min(_BACKOFF_MAX, _BACKOFF_INITIAL * 2 ** (n - 1)) * self._rng.uniform(0.5, 1.0))
        return False


async def _wait(
    fut: Any, limiter: AdaptiveLimiter, slot: Any, *, on_request_id: Callable[[str], None] | None = None
) -> Any:
    """Await ``fut``; a paused queue state counts as congestion (once per request).

    ``on_request_id`` is called once with the server's request id as soon as
    it is known (so a killed run's successor can re-attach instead of resending).
    """
    signalled = False
    while True:
        with trio.move_on_after(_STATE_CHECK_S if on_request_id is None else _ID_CHECK_S):
            return await fut
        if on_request_id is not None and getattr(fut, "request_id", None):
            on_request_id(fut.request_id)
            on_request_id = None
        if not signalled and _paused(getattr(fut, "state", None)):
            signalled = True
            slot.congested()
            limiter.signal_congestion()


def _tokenizer(sampler: Any) -> Any:
    try:
        return sampler.get_tokenizer()
    except ImportError as exc:
        log.warning("sweep_no_tokenizer", error=str(exc))
        return None


def export_sweep(spec: SweepSpec, journal: Journal, *, tokenizer: Any = None) -> dict[str, Any]:
    """Write the results JSONL from ``journal``; the summary with counts added."""
    if tokenizer is None:
        from tinker_actors.clients import load_tokenizer

        try:
            tokenizer = load_tokenizer(None, spec.model.base_model)
        except ImportError:
            tokenizer = None
    decode = None
    if tokenizer is not None:

        def decode(tokens: Sequence[int]) -> str:
            return str(tokenizer.decode(list(tokens)))

    summary = export_jsonl(
        journal.results(), spec.results_path, settings={s.index: s.as_dict() for s in spec.settings}, decode=decode
    )
    summary["journal"] = journal.counts()
    return summary


def sweep_status(spec: SweepSpec) -> dict[str, Any]:
    """The journal's counts for ``spec`` without sending anything (read-only)."""
    if not Path(spec.journal_path).exists():
        return {"journal": str(spec.journal_path), "exists": False}
    with Journal.open(spec.journal_path, spec_id=spec.spec_id, spec_hash=spec.spec_hash, readonly=True) as journal:
        return {"journal": str(spec.journal_path), "exists": True, **journal.counts()}
