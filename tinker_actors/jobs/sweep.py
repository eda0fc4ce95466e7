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
   knows that id (404/410), or the id was never recorded, the row is sent
   again, in plan order, under its stable idempotency key. A row that was in flight when the last run died is
   answered by the server's record of that key (no new work); a row that
   never reached the server is computed for the first time.
3. Concurrency starts at ``[concurrency] max`` and follows an AIMD
   controller: a 429 or a future paused for rate limit or capacity halves
   it, a full window of successes adds one.
4. Results are buffered by a :class:`JournalWriter` and committed in batches;
   a result is only ``done`` once its commit is on disk.
5. At the end the journal is exported to the spec's results JSONL, and the
   summary (counts, latency percentiles, tokens/s) is returned.

Cancelling the run (Ctrl-C, SIGTERM turned into a cancel by the CLI) flushes
what has arrived and leaves the rest for the next run; SIGKILL loses at most
the buffered results, which are re-sent (and replayed by the server) on
resume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import trio
from rich.console import Console

from tinker_actors.errors import (
    APIConnectionError,
    APIStatusError,
    BadRequestError,
    NotFoundError,
    RequestFailedError,
    UnprocessableError,
    ValidationError,
)
from tinker_actors.wire import types as wt

from .._log import get_logger
from .aimd import AdaptiveLimiter, AimdPolicy, is_congestion
from .export import export_jsonl
from .journal import Journal, open_journal_writer
from .progress import ProgressCounters, open_progress
from .records import result_from_response
from .sweep_spec import SweepRequest, SweepSpec, load_prompts, plan_requests

__all__ = ["SweepOutcome", "run_sweep", "sweep_status", "export_sweep", "prompt_input"]

log = get_logger(__name__)

# How often a waiting request looks at its future's queue state for
# congestion (a paused queue is a back-off signal like a 429).
_STATE_CHECK_S = 0.25
# How soon a waiting request records its server request id in the journal.
# A request answered sooner never needs it: its result is recorded instead.
_ID_CHECK_S = 0.02
# Retries inside one run for failures worth retrying (connection loss, 5xx
# and 429s after the transport's own retries ran out). What is still failing
# after these is left `failed, retryable` for the next run. Submits are not
# retried below us (asample has max_retries=0), so with 3 a sweep of 5,000
# requests at a 7 % failure rate left one request behind about one run in
# eight; with 6 the odds are about 1 in 25,000 (tests/reliability).
_RUN_RETRIES = 6


class SweepOutcome(msgspec.Struct, kw_only=True):
    spec_id: str
    journal: str
    results: str | None  # None when the run was interrupted before export
    counts: dict[str, int]
    sent_this_run: int
    skipped: int  # already done when the run started
    reattached: int = 0  # in flight when the last run stopped, answered by re-attaching (not sent again)
    interrupted: bool
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


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, (ValidationError, BadRequestError, UnprocessableError)):
        return False
    if isinstance(exc, RequestFailedError):
        return exc.category != "user"
    if isinstance(exc, NotFoundError) and "retrieve_future" in (exc.endpoint or ""):
        return True  # the server forgot the future (it restarted): send the request again
    if isinstance(exc, APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500 or exc.status_code == 410
    return isinstance(exc, (APIConnectionError, TimeoutError))


def _paused(state: Any) -> bool:
    return is_congestion(str(getattr(state, "value", state)))


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
) -> SweepOutcome:
    """Run (or resume) the sweep ``spec`` on ``service`` (a ServiceClient).

    ``progress`` forces the rich bar on (True) or log lines (False); by
    default the bar is used on a terminal. ``sampler`` overrides the
    SamplingClient the spec's model would give (tests, custom routing).
    ``on_result(key)`` is called after each result is buffered.
    """
    prompts = load_prompts(spec.prompts_path)
    requests = {r.key: r for r in plan_requests(spec, prompts)}
    journal = Journal.open(spec.journal_path, spec_id=spec.spec_id, spec_hash=spec.spec_hash, durable=durable)
    with journal:
        added = journal.plan(requests.values())
        counts = journal.counts()
        pending = [row for row in journal.pending() if row.key in requests]
        log.info(
            "sweep_start",
            spec_id=spec.spec_id,
            journal=str(spec.journal_path),
            total=counts["total"],
            done=counts["done"],
            to_send=len(pending),
            newly_planned=added,
        )
        counters = ProgressCounters(total=counts["total"], done=counts["done"], skipped=counts["done"])
        counters.failed = counts["failed_permanent"]
        limiter = AdaptiveLimiter(AimdPolicy(ceiling=spec.concurrency_max, floor=spec.concurrency_min))
        sent = 0
        reattached = 0
        interrupted = True
        tokenizer: Any = None

        if pending:
            if sampler is None:
                sampler = await service.create_sampling_client(
                    base_model=spec.model.base_model, model_path=spec.model.model_path
                )
            tokenizer = _tokenizer(sampler)

        try:
            if pending:
                async with (
                    open_journal_writer(journal) as writer,
                    open_progress(
                        counters, description=spec.spec_id, console=console, terminal=progress, log_interval=log_interval
                    ),
                ):
                    send, receive = trio.open_memory_channel[Any](math.inf)
                    for row in pending:
                        send.send_nowait(row)
                    send.close()

                    async def reattach(row: Any) -> bool:
                        """Wait on the request a previous run left in flight; False: send it again."""
                        nonlocal reattached
                        retrieve = getattr(service, "retrieve_future", None)
                        if row.state != "sent" or not row.request_id or retrieve is None:
                            return False
                        counters.in_flight += 1
                        started = time.perf_counter()
                        try:
                            async with limiter.slot() as slot:
                                fut = retrieve(row.request_id, "sample")
                                response = await _wait(fut, limiter, slot)
                        except Exception as exc:
                            # 404/410: the server forgot it (restart, expiry); anything else
                            # is also best answered by the idempotent resend that follows.
                            log.info("sweep_reattach_failed", key=row.key, error=type(exc).__name__)
                            return False
                        finally:
                            counters.in_flight -= 1
                        reattached += 1
                        writer.add_result(
                            row.key, result_from_response(response, request_id=row.request_id),
                            latency_s=time.perf_counter() - started,
                        )
                        counters.done += 1
                        if on_result is not None:
                            on_result(row.key)
                        return True

                    async def one(row: Any) -> None:
                        nonlocal sent
                        if await reattach(row):
                            return
                        request = requests[row.key]
                        model_input = prompt_input(request, tokenizer)
                        params = wt.SamplingParams(**request.setting.sampling_params())
                        for attempt in range(_RUN_RETRIES + 1):
                            async with limiter.slot() as slot:
                                journal.mark_sent(row.key)
                                if row.attempts > 0 or attempt > 0:
                                    counters.retries += 1
                                sent += 1
                                counters.in_flight += 1
                                started = time.perf_counter()
                                try:
                                    fut = sampler.sample(
                                        model_input,
                                        request.setting.num_samples,
                                        params,
                                        include_prompt_logprobs=spec.include_prompt_logprobs,
                                        topk_prompt_logprobs=spec.topk_prompt_logprobs,
                                        topk_sample_logprobs=spec.topk_sample_logprobs,
                                        idempotency_key=request.idempotency_key,
                                    )
                                    response = await _wait(
                                        fut, limiter, slot, on_request_id=lambda rid: journal.record_request_id(row.key, rid)
                                    )
                                except Exception as exc:
                                    counters.errors += 1
                                    retry = _retryable(exc)
                                    if is_congestion(exc):
                                        slot.congested()
                                    else:
                                        slot.neutral()
                                    if retry and attempt < _RUN_RETRIES:
                                        log.info("sweep_retry", key=row.key, error=type(exc).__name__, attempt=attempt + 1)
                                        wait = getattr(exc, "retry_after", None) or min(8.0, 0.5 * 2**attempt)
                                    else:
                                        writer.add_failure(row.key, f"{type(exc).__name__}: {exc}", retryable=retry)
                                        if not retry:
                                            counters.failed += 1
                                        log.warning("sweep_request_failed", key=row.key, error=type(exc).__name__, retryable=retry)
                                        return
                                else:
                                    latency = time.perf_counter() - started
                                    writer.add_result(
                                        row.key, result_from_response(response, request_id=fut.request_id), latency_s=latency
                                    )
                                    counters.done += 1
                                    if on_result is not None:
                                        on_result(row.key)
                                    return
                                finally:
                                    counters.in_flight -= 1
                            await trio.sleep(wait)

                    async def worker() -> None:
                        async for row in receive:
                            await one(row)

                    # One worker per slot of the ceiling: the limiter decides
                    # how many of them may have a request out at a time.
                    async with trio.open_nursery() as nursery:
                        for _ in range(min(spec.concurrency_max, len(pending))):
                            nursery.start_soon(worker)
            interrupted = False
        finally:
            counts = journal.counts()
            outcome = SweepOutcome(
                spec_id=spec.spec_id,
                journal=str(spec.journal_path),
                results=None,
                counts=counts,
                sent_this_run=sent,
                skipped=counters.skipped,
                reattached=reattached,
                interrupted=interrupted,
                aimd=limiter.statistics(),
            )
            log.info("sweep_stop", spec_id=spec.spec_id, interrupted=interrupted, sent_this_run=sent,
                     reattached=reattached, counts=counts)
        if export:
            outcome.summary = export_sweep(spec, journal, tokenizer=tokenizer)
            outcome.results = str(spec.results_path)
    return outcome


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
