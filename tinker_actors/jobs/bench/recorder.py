"""What one trial records: latencies per phase and operation, errors, sends, lag, states.

Latencies go into HDR histograms (one per phase and operation) and, for the
timeline, into flat arrays of (completion time, latency, ok). A sampling task
(:meth:`Recorder.sample_states`) looks at every request in flight every
``STATE_TICK_S`` (longer with many in flight) and files it as *client* (not yet acknowledged by the
server: admission, training order, the submit POST), *queued* (the server
reported it queued or paused) or *running* (anything else, including a
server that long-polls and reports nothing until the result). Those samples
give the queued-vs-running picture over time and each operation's queued
share; a request shorter than one tick is never seen and counts as running.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from typing import Any

import numpy as np
import trio

from .histograms import LatencyHistogram
from .results import LagFigures, OpFigures, PhaseResult, Timeline
from .workload import Phase

__all__ = ["Recorder", "STATE_TICK_S", "Handle"]

STATE_TICK_S = 0.025
MAX_TICK_S = 0.5
TICK_PER_REQUEST_S = 0.0005
# The open loop "could not keep up" when the p99 of its send lag exceeds this
# (or more than 1 % of its arrivals had to wait for a free max_in_flight slot).
LAG_WARN_S = 0.010
_QUEUED = frozenset({"queued", "paused_capacity", "paused_rate_limit"})


class Handle:
    """One request in flight."""

    __slots__ = ("op", "phase", "intended", "sent", "work", "queued_s", "reported", "last")

    def __init__(self, op: int, phase: int, intended: float, sent: float) -> None:
        self.op = op
        self.phase = phase
        self.intended = intended
        self.sent = sent
        self.work: Any = None
        self.queued_s = sent - intended  # scheduler lag is time the request waited on the client
        self.reported = False  # the server has reported a state for it
        self.last = sent


def _where(h: Handle) -> str:
    work = h.work
    if work is None:
        return "client"
    try:
        if getattr(work, "request_id", "") is None:
            return "client"
        state = getattr(work, "state", None)
    except Exception:  # noqa: BLE001 - a target's state is a nicety
        return "running"
    name = str(getattr(state, "value", state)) if state is not None else ""
    if name.startswith("paused"):
        h.reported = True
        return "queued"
    if name == "queued":
        # A future starts "queued" and stays so while a long poll is out;
        # it counts as queued only after the server has reported a state.
        return "queued" if h.reported else "running"
    if name == "running":
        h.reported = True
    return "running"


class Recorder:
    def __init__(self, labels: list[str], phases: list[Phase], t0: float, progress: Any = None) -> None:
        self.labels = labels
        self.phases = phases
        self.t0 = t0
        self.progress = progress
        n = len(phases)
        self.hist = [[LatencyHistogram() for _ in labels] for _ in range(n)]
        self.kinds: list[list[Counter[str]]] = [[Counter() for _ in labels] for _ in range(n)]
        self.queued = [[0.0 for _ in labels] for _ in range(n)]
        self.running = [[0.0 for _ in labels] for _ in range(n)]
        self.lag = [LatencyHistogram() for _ in range(n)]
        self.lag_max = [0.0] * n
        self.cap_hits = [0] * n
        self.sent = [0] * n
        self.started_at: list[float | None] = [None] * n
        self.ended_at: list[float | None] = [None] * n
        # timeline arrays (seconds from t0)
        self.send_t = array("d")
        self.done_t = array("d")
        self.done_lat = array("d")
        self.done_intended = array("d")
        self.done_ok = array("b")
        self.state_t = array("d")
        self.state_n: list[array[int]] = [array("l"), array("l"), array("l")]  # client, queued, running
        self.inflight: set[Handle] = set()
        self._idle: trio.Event | None = None
        self.first_errors: dict[str, str] = {}

    # -- what the loops call ------------------------------------------------------------

    def phase_started(self, i: int, at: float) -> None:
        self.started_at[i] = at

    def phase_ended(self, i: int, at: float) -> None:
        self.ended_at[i] = at

    def cap_hit(self, i: int) -> None:
        self.cap_hits[i] += 1

    def begin(self, op: int, phase: int, intended: float, sent: float) -> Handle:
        h = Handle(op, phase, intended, sent)
        self.inflight.add(h)
        self.sent[phase] += 1
        lag = sent - intended
        if self.phases[phase].rate is not None:
            self.lag[phase].record(max(lag, 1e-6))
            self.lag_max[phase] = max(self.lag_max[phase], lag)
        self.send_t.append(sent - self.t0)
        if self.progress is not None:
            self.progress.in_flight += 1
        return h

    def attach(self, h: Handle, work: Any) -> None:
        h.work = work

    def end(self, h: Handle, now: float, error: BaseException | None) -> None:
        self.inflight.discard(h)
        latency = now - h.intended
        # what the sampler has not seen since its last look counts as running
        queued = min(h.queued_s, latency)
        self.queued[h.phase][h.op] += queued
        self.running[h.phase][h.op] += latency - queued
        self.done_t.append(now - self.t0)
        self.done_lat.append(latency)
        self.done_intended.append(h.intended - self.t0)
        self.done_ok.append(error is None)
        if error is None:
            self.hist[h.phase][h.op].record(latency)
        else:
            kind = type(error).__name__
            self.kinds[h.phase][h.op][kind] += 1
            self.first_errors.setdefault(kind, str(error)[:300])
        p = self.progress
        if p is not None:
            p.in_flight -= 1
            if self.phases[h.phase].measured:
                if error is None:
                    p.done += 1
                else:
                    p.failed += 1  # a failed request (the transport's retries are counted apart)
        if not self.inflight and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        while self.inflight:
            self._idle = trio.Event()
            await self._idle.wait()

    def cut_unfinished(self, now: float) -> None:
        """Requests still out at the end of the drain: failed as ``Unfinished``."""
        for h in list(self.inflight):
            self.end(h, now, _Unfinished(f"no result {now - h.intended:.1f} s after its intended send"))

    async def sample_states(self) -> None:
        """Sample where every in-flight request is, for the life of the trial.

        Every STATE_TICK_S, stretched with the number in flight (0.5 ms per
        request, at most 0.5 s) so the sampling stays near 2 % of a core: a
        look at a client future costs a few microseconds, and at 25 ms it cost
        0.7 ms of CPU per 2-second request, on the thread the client runs on.
        """
        while True:
            await trio.sleep(min(MAX_TICK_S, max(STATE_TICK_S, len(self.inflight) * TICK_PER_REQUEST_S)))
            self.sample_once(trio.current_time())

    def sample_once(self, now: float) -> None:
        counts = [0, 0, 0]
        for h in self.inflight:
            where = _where(h)
            if where != "running":
                h.queued_s += now - h.last
            h.last = now
            counts[0 if where == "client" else 1 if where == "queued" else 2] += 1
        self.state_t.append(now - self.t0)
        for i in range(3):
            self.state_n[i].append(counts[i])

    # -- figures --------------------------------------------------------------------------

    def _figures(self, label: str, hists: list[LatencyHistogram], kinds: list[Counter[str]],
                 queued: float, running: float, duration: float | None, ok_in_window: int | None) -> OpFigures:
        h = LatencyHistogram.merged(hists)
        k: Counter[str] = Counter()
        for c in kinds:
            k.update(c)
        errors = sum(k.values())
        ok = h.count
        done = ok_in_window if ok_in_window is not None else ok
        return OpFigures(
            op=label,
            count=ok + errors,
            ok=ok,
            errors=errors,
            error_kinds=dict(sorted(k.items())),
            throughput_per_s=(done / duration) if duration else None,
            latency=h.summary(),
            histogram=h.encode(),
            queued_s=queued,
            running_s=running,
            queued_share=queued / (queued + running) if queued + running > 0 else None,
        )

    def _window_ok(self, start: float, end: float) -> int:
        t = np.frombuffer(self.done_t, dtype=np.float64) if len(self.done_t) else np.zeros(0)
        ok = np.frombuffer(self.done_ok, dtype=np.int8) if len(self.done_ok) else np.zeros(0, dtype=np.int8)
        sel = (t >= start) & (t < end) & (ok == 1)
        return int(sel.sum())

    def kept_up(self, i: int) -> bool:
        """Did phase ``i`` (ended) complete at least 95 % of its target rate within its window?"""
        ph = self.phases[i]
        start, end = self.started_at[i], self.ended_at[i]
        if ph.rate is None or start is None or end is None or end <= start:
            return True
        done = self._window_ok(start - self.t0, end - self.t0)
        return done >= 0.95 * ph.rate * (end - start)

    def _ran(self) -> list[int]:
        return [i for i in range(len(self.phases)) if self.started_at[i] is not None]

    def phase_results(self) -> list[PhaseResult]:
        out = []
        for i in self._ran():
            ph = self.phases[i]
            start = (self.started_at[i] or self.t0) - self.t0
            end = (self.ended_at[i] or self.started_at[i] or self.t0) - self.t0
            duration = max(end - start, 0.0)
            open_loop = ph.rate is not None
            ops = []
            for j, label in enumerate(self.labels):
                ops.append(self._figures(label, [self.hist[i][j]], [self.kinds[i][j]], self.queued[i][j],
                                         self.running[i][j], duration, None))
            total = self._figures("all", self.hist[i], self.kinds[i], sum(self.queued[i]), sum(self.running[i]),
                                  duration, None)
            # Open loop: what completed within the phase's window, not what was sent in it
            # (past the knee, a step's requests finish in later steps).
            completed = self._window_ok(start, end) if open_loop else total.ok
            lag = None
            if open_loop:
                p99 = self.lag[i].percentile(99)
                lag = LagFigures(
                    p50=self.lag[i].percentile(50),
                    p99=p99,
                    max=self.lag_max[i] if self.sent[i] else None,
                    cap_hits=self.cap_hits[i],
                    behind=self.cap_hits[i] > 0.01 * self.sent[i] or (p99 is not None and p99 > LAG_WARN_S),
                )
            out.append(PhaseResult(
                name=ph.name,
                measured=ph.measured,
                start_s=start,
                duration_s=duration,
                target_rate=ph.rate,
                sent=self.sent[i],
                achieved_rate=self.sent[i] / duration if duration else None,
                completed_rate=completed / duration if duration else None,
                lag=lag,
                ops=ops,
                all=total,
            ))
        return out

    def measured_figures(self, phases: list[PhaseResult]) -> list[OpFigures]:
        idx = [i for i in self._ran() if self.phases[i].measured]
        duration = sum(p.duration_s for p in phases if p.measured)
        out = []
        for j, label in enumerate(self.labels):
            out.append(self._figures(label, [self.hist[i][j] for i in idx], [self.kinds[i][j] for i in idx],
                                     sum(self.queued[i][j] for i in idx), sum(self.running[i][j] for i in idx),
                                     duration, None))
        out.append(self._figures("all", [h for i in idx for h in self.hist[i]], [k for i in idx for k in self.kinds[i]],
                                 sum(sum(self.queued[i]) for i in idx), sum(sum(self.running[i]) for i in idx),
                                 duration, None))
        return out

    def timeline(self, wall_s: float) -> Timeline:
        bucket = _bucket_width(wall_s, len(self.send_t) / wall_s if wall_s > 0 else 0.0)
        n = max(1, math.ceil(wall_s / bucket))
        edges = np.arange(n + 1) * bucket

        def arr(a: array[Any], dtype: Any) -> np.ndarray:
            return np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype=dtype)

        send_t = arr(self.send_t, np.float64)
        done_t = arr(self.done_t, np.float64)
        lat = arr(self.done_lat, np.float64)
        ok = arr(self.done_ok, np.int8).astype(bool)
        sent = np.histogram(send_t, edges)[0]
        okc = np.histogram(done_t[ok], edges)[0]
        errc = np.histogram(done_t[~ok], edges)[0]
        b = np.clip((done_t[ok] // bucket).astype(int), 0, n - 1)
        p50: list[float | None] = []
        p99: list[float | None] = []
        ok_lat = lat[ok]
        order = np.argsort(b, kind="stable")
        b_sorted, lat_sorted = b[order], ok_lat[order]
        bounds = np.searchsorted(b_sorted, np.arange(n + 1))
        for i in range(n):
            xs = lat_sorted[bounds[i]:bounds[i + 1]]
            p50.append(float(np.percentile(xs, 50)) if len(xs) else None)
            p99.append(float(np.percentile(xs, 99)) if len(xs) else None)
        st = arr(self.state_t, np.float64)
        states = []
        for k in range(3):
            vals = arr(self.state_n[k], np.int64).astype(float)
            sums = np.histogram(st, edges, weights=vals)[0]
            cnt = np.histogram(st, edges)[0]
            states.append([float(s / c) if c else 0.0 for s, c in zip(sums, cnt)])
        return Timeline(
            bucket_s=bucket,
            t=[float(x) for x in edges[:-1]],
            sent=[int(x) for x in sent],
            ok=[int(x) for x in okc],
            errors=[int(x) for x in errc],
            p50=p50,
            p99=p99,
            client=states[0],
            queued=states[1],
            running=states[2],
        )


def _bucket_width(wall_s: float, rate: float = 0.0) -> float:
    """About 100 buckets on a 1-2-5 grid (0.1 s for a 10 s run, 1 s for 100 s), but wide
    enough for about 5 sends each: at 5/s, 0.1 s buckets would read 0, 10, 0, 10 per second."""
    raw = max(max(wall_s, 1e-3) / 100, 5.0 / rate if rate > 0 else 0.0)
    for step in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0):
        if raw <= step:
            return step
    return 60.0


class _Unfinished(Exception):
    pass


_Unfinished.__name__ = "Unfinished"
