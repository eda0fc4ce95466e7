"""Progress of a long job: a rich bar on a terminal, log lines elsewhere.

The job updates a :class:`ProgressCounters` (plain attribute writes, no
locks: everything runs on one trio thread). The names say what they count,
so the bar agrees with the summary printed at the end: ``failed`` is rows
that ended failed (the summary's "failed"); ``transient`` is failures that
were retried and ``re-sent`` the requests sent again, neither of which is a
failed row. While the server is unreachable the bar says since when and when
the next try is. :func:`open_progress` starts one
trio task that reads the counters every ``interval`` seconds and either
redraws a rich progress bar (terminal) or, every ``log_interval`` seconds,
logs one ``sweep_progress`` structlog line (pipes, CI, notebooks' log files).

rich's ``Live`` refreshes from its own thread unless told otherwise; here it
is created with ``auto_refresh=False`` and refreshed from the trio task, so
the library starts no thread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .._log import get_logger

__all__ = ["ProgressCounters", "ProgressSnapshot", "snapshot", "open_progress"]

log = get_logger(__name__)


@dataclass
class ProgressCounters:
    total: int
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    retries: int = 0  # requests sent again (after a failure, or left unfinished by a previous run)
    errors: int = 0  # transient failures, each followed by a re-send (not failed rows)
    skipped: int = 0  # already done in the journal when this run started
    started_at: float | None = None  # trio time; set by open_progress
    unreachable_since: float | None = None  # trio time the current outage began; None: reachable
    next_try_at: float | None = None  # trio time of the next probe during an outage (None: one is out)
    # (time, finished) samples for the rate over a sliding window
    _history: list[tuple[float, int]] = field(default_factory=list, repr=False)

    @property
    def finished(self) -> int:
        return self.done + self.failed


@dataclass(frozen=True)
class ProgressSnapshot:
    total: int
    done: int
    failed: int
    in_flight: int
    retries: int
    errors: int
    elapsed: float
    rate: float  # finished requests per second over the recent window
    eta: float | None  # seconds; None while the rate is unknown
    unreachable_s: float | None = None  # how long the server has been unreachable; None: it is reachable
    unreachable_since_wall: float | None = None  # the same moment, as a Unix time
    next_try_s: float | None = None  # seconds to the next try during an outage; None: a try is out

    def as_dict(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "resent": self.retries,
            "transient_errors": self.errors,
            "elapsed_s": round(self.elapsed, 3),
            "rate_per_s": round(self.rate, 3),
            "eta_s": None if self.eta is None else round(self.eta, 1),
        }
        if self.unreachable_s is not None:
            out["unreachable_s"] = round(self.unreachable_s, 1)
            out["unreachable_since"] = self.unreachable_since_wall
            out["next_try_s"] = None if self.next_try_s is None else round(self.next_try_s, 1)
        return out

    def outage_text(self) -> str:
        """``server unreachable since 12:03:04 (75 s), next try in 12 s``; empty when reachable."""
        if self.unreachable_s is None or self.unreachable_since_wall is None:
            return ""
        since = time.strftime("%H:%M:%S", time.localtime(self.unreachable_since_wall))
        nxt = "trying now" if self.next_try_s is None else f"next try in {max(0.0, self.next_try_s):.0f} s"
        return f"server unreachable since {since} ({self.unreachable_s:.0f} s), {nxt}"


def snapshot(counters: ProgressCounters, now: float, *, window: float = 30.0) -> ProgressSnapshot:
    """Read the counters at ``now``; the rate is over the last ``window`` seconds.

    Work skipped because the journal already had it does not count toward
    the rate, so a resumed sweep's ETA is not wildly optimistic.
    """
    started = counters.started_at if counters.started_at is not None else now
    fresh = counters.finished - counters.skipped
    hist = counters._history
    if not hist and now > started:
        hist.append((started, 0))  # the run began with nothing finished
    hist.append((now, fresh))
    while len(hist) > 2 and hist[1][0] <= now - window:
        hist.pop(0)
    t0, n0 = hist[0]
    rate = (fresh - n0) / (now - t0) if now - t0 > 0 else 0.0
    remaining = max(0, counters.total - counters.finished)
    eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
    down = counters.unreachable_since
    unreachable_s = None if down is None else max(0.0, now - down)
    return ProgressSnapshot(
        total=counters.total,
        done=counters.done,
        failed=counters.failed,
        in_flight=counters.in_flight,
        retries=counters.retries,
        errors=counters.errors,
        elapsed=now - started,
        rate=rate,
        eta=eta,
        unreachable_s=unreachable_s,
        unreachable_since_wall=None if unreachable_s is None else time.time() - unreachable_s,
        next_try_s=None if down is None or counters.next_try_at is None else counters.next_try_at - now,
    )


def _fmt_eta(eta: float | None) -> str:
    if eta is None:
        return "--:--"
    eta = int(eta)
    h, rest = divmod(eta, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _RichView:
    def __init__(self, console: Console, description: str, total: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("in flight {task.fields[in_flight]}"),
            TextColumn("{task.fields[rate]:.1f}/s"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("[red]failed {task.fields[failed]}"),
            TextColumn("re-sent {task.fields[retries]} ({task.fields[errors]} transient errors)"),
            TimeElapsedColumn(),
            TextColumn("[yellow]{task.fields[outage]}"),
            console=console,
            auto_refresh=False,  # no refresh thread: the trio task refreshes
            transient=False,
        )
        self.task: TaskID = self.progress.add_task(
            description, total=total, in_flight=0, rate=0.0, eta="--:--", retries=0, errors=0, failed=0, outage=""
        )

    def show(self, snap: ProgressSnapshot) -> None:
        self.progress.update(
            self.task,
            completed=snap.done + snap.failed,
            total=snap.total,
            in_flight=snap.in_flight,
            rate=snap.rate,
            eta=_fmt_eta(snap.eta),
            retries=snap.retries,
            errors=snap.errors,
            failed=snap.failed,
            outage=snap.outage_text(),
        )
        self.progress.refresh()


@contextlib.asynccontextmanager
async def open_progress(
    counters: ProgressCounters,
    *,
    description: str = "sweep",
    console: Console | None = None,
    interval: float = 0.5,
    log_interval: float = 10.0,
    terminal: bool | None = None,
) -> AsyncIterator[ProgressCounters]:
    """Report ``counters`` for the life of the block; one final report on exit.

    ``terminal`` forces the mode; by default it is the console's ``is_terminal``.
    """
    console = console or Console()
    use_rich = console.is_terminal if terminal is None else terminal
    counters.started_at = trio.current_time()
    view = _RichView(console, description, counters.total) if use_rich else None

    def report(final: bool = False) -> None:
        snap = snapshot(counters, trio.current_time())
        if view is not None:
            view.show(snap)
        else:
            log.info("sweep_progress_final" if final else "sweep_progress", job=description, **snap.as_dict())

    async def ticker() -> None:
        step = interval if view is not None else log_interval
        while True:
            await trio.sleep(step)
            report()

    if view is not None:
        view.progress.start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            try:
                yield counters
            finally:
                nursery.cancel_scope.cancel()
    finally:
        report(final=True)
        if view is not None:
            view.progress.stop()
