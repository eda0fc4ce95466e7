"""Turn raw run records into figures, ratios, target verdicts and docs/benchmarks.md.

Every figure is a row: (scenario, setting, figure, unit, value per client),
plus the two ratios tinker_actors/sdk and tinker_actors/floor. Ratios are what
the targets are judged on, because absolute numbers on a shared machine drift
from run to run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .scenarios import CLIENTS

TA, SDK, FLOOR = "tinker_actors", "sdk", "floor"


@dataclass
class Row:
    scenario: str
    setting: str
    figure: str
    unit: str
    values: dict[str, float | None] = field(default_factory=dict)
    lower_is_better: bool = True

    def ratio(self, other: str) -> float | None:
        a, b = self.values.get(TA), self.values.get(other)
        if a is None or b is None or b == 0 or (isinstance(a, float) and math.isnan(a)):
            return None
        return a / b


# One sentence per figure; docs/benchmarks.md prints them under each table.
EXPLAIN = {
    "requests/s": "Completed sample requests per second of wall time, with this many requests kept in flight.",
    "client CPU per request": "User plus system CPU of the client process (all its threads) during the timed phase, divided by the number of requests.",
    "peak RSS": "The client process's peak resident memory over its whole life, import included.",
    "server CPU": "The local server's CPU use during the run as a share of one core; near 100 % means the server, not the client, set the pace.",
    "polls per future": "retrieve_future and retrieve_futures requests the server received, divided by the number of futures.",
    "open connections (peak)": "The most TCP connections from the client process to the server at once, sampled every 0.25 s from /proc.",
    "wake lag p99": "99th percentile of (the moment the caller resumed) minus (the moment its call was scheduled plus the server-side delay), i.e. the time a finished future waits before its caller wakes, client queueing included.",
    "step time": "Mean wall time of one forward_backward + optim_step step, from the first call to both results in hand.",
    "client-added latency per step": "Mean step time minus the floor's mean step time: what the client adds over the bare protocol.",
    "optim queued before fb result": "Share of steps whose optim_step request had reached the server while the forward_backward result could not exist yet (the server paused it).",
    "memory per queued request": "Peak resident memory once every request was queued, minus resident memory before, divided by the number of requests.",
    "time to drain": "Wall time from queueing the first request to the last result; a client still draining at the deadline is stopped and its time projected from the share it drained.",
    "drained before the deadline": "Share of the queued requests completed before the scenario's deadline (100 % means the time to drain is measured, not projected).",
    "knee rate": "Open loop, rate stepping up x1.41 every few seconds (the bench engine's ramp): the last step that completed at least 95 % of its arrivals within the step, with p99 at most 10x the first step's and under 1 % errors.",
    "client behind at the knee": "1 when the client's own sends fell behind schedule (send lag p99 above 10 ms) at the first step past the knee: then the knee is the client's, not the server's.",
    "offered rate": "The constant open-loop rate of this run: the share of this client's own knee named in the setting.",
    "p99 (open loop)": "99th percentile latency from each request's intended send time (coordinated omission corrected), over the measured seconds.",
    "p99.9 (open loop)": "99.9th percentile latency, as above.",
    "send lag p99": "How late the client's sends left against their schedule (99th percentile); above 10 ms the client itself could not keep up.",
    "import time": "Time to import the client library in a fresh interpreter (median of fresh processes).",
    "time to first request": "Time from the start of the import to the first completed sample, session set-up included (median).",
}


def _fig(rec: dict[str, Any] | None, *path: str) -> float | None:
    cur: Any = rec.get("figures") if rec else None
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return float(cur) if isinstance(cur, (int, float)) else None


def _rows_for(scenario: str, setting: str, recs: dict[str, dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []

    def add(figure: str, unit: str, get: Callable[[dict[str, Any]], float | None], lower: bool = True) -> None:
        rows.append(Row(scenario, setting, figure, unit, {c: get(recs[c]) if c in recs else None for c in CLIENTS}, lower))

    if scenario == "sampling":
        add("requests/s", "req/s", lambda r: _fig(r, "requests_per_s"), lower=False)
        add("client CPU per request", "µs", lambda r: _fig(r, "cpu_us_per_request"))
        add("peak RSS", "MB", lambda r: _fig(r, "peak_rss_mb"))
        add("server CPU", "% of a core", lambda r: 100 * r["server_cpu_util"] if "figures" in r else None)
    elif scenario == "futures":
        def polls(r: dict[str, Any]) -> float | None:
            n = _fig(r, "n")
            req = r.get("server_requests", {})
            return (req.get("retrieve_future", 0) + req.get("retrieve_futures", 0)) / n if n else None

        add("polls per future", "requests", polls)
        add("open connections (peak)", "connections",
            lambda r: float(r["open_connections"]["peak"]) if "figures" in r and "open_connections" in r else None)
        add("wake lag p99", "ms", lambda r: _fig(r, "wake_lag", "p99_ms"))
        add("client CPU per request", "µs", lambda r: _fig(r, "cpu_us_per_request"))
    elif scenario == "training" and setting != "pipelining":
        add("step time", "ms", lambda r: _fig(r, "step", "mean_ms"))
        floor = _fig(recs.get(FLOOR), "step", "mean_ms")
        add("client-added latency per step", "ms",
            lambda r: None if floor is None or _fig(r, "step", "mean_ms") is None else _fig(r, "step", "mean_ms") - floor)
        add("client CPU per request", "µs", lambda r: _fig(r, "cpu_us_per_request"))
    elif scenario == "training":
        add("optim queued before fb result", "share of steps", lambda r: _fig(r, "pipelined_share"), lower=False)
    elif scenario == "scale":
        add("memory per queued request", "bytes", lambda r: _fig(r, "peak_bytes_per_queued_request"))
        add("time to drain", "s", lambda r: _fig(r, "projected_drain_s"))
        add("drained before the deadline", "share of requests",
            lambda r: None if _fig(r, "drained") is None else _fig(r, "drained") / _fig(r, "n"), lower=False)
        add("client CPU per request", "µs", lambda r: _fig(r, "cpu_us_per_request"))
    elif scenario == "knee" and setting == "ramp":
        add("knee rate", "req/s", lambda r: _fig(r, "knee_rate"), lower=False)

        def behind(r: dict[str, Any]) -> float | None:
            steps = (r.get("figures") or {}).get("steps") or []
            knee = _fig(r, "knee_rate")
            past = [s for s in steps if knee is None or (s.get("target_rate") or 0) > knee]
            return float(past[0]["behind"]) if past else None

        add("client behind at the knee", "yes=1", behind)
        add("client CPU per request", "µs", lambda r: _fig(r, "cpu_us_per_request"))
    elif scenario == "knee":
        def step(key: str) -> Callable[[dict[str, Any]], float | None]:
            def get(r: dict[str, Any]) -> float | None:
                steps = (r.get("figures") or {}).get("steps") or []
                v = steps[0].get(key) if steps else None
                return float(v) if isinstance(v, (int, float)) else None
            return get

        add("offered rate", "req/s", step("target_rate"), lower=False)
        add("p99 (open loop)", "ms", step("p99_ms"))
        add("p99.9 (open loop)", "ms", step("p999_ms"))
        add("send lag p99", "ms", step("lag_p99_ms"))
    elif scenario == "startup":
        add("import time", "ms", lambda r: None if _fig(r, "import_s") is None else 1e3 * _fig(r, "import_s"))
        add("time to first request", "ms",
            lambda r: None if _fig(r, "time_to_first_request_s") is None else 1e3 * _fig(r, "time_to_first_request_s"))
    return rows


def summarize(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for scenario, groups in results["scenarios"].items():
        for group in groups:
            recs = {r["client"]: r for r in group["records"]}
            rows.extend(_rows_for(scenario, group["setting"], recs))
    return rows


@dataclass
class Verdict:
    target: str
    status: str  # "met" | "missed" | "not measured" | "server-bound"
    detail: str


def _find(rows: list[Row], scenario: str, figure: str, setting: str | None = None) -> list[Row]:
    return [r for r in rows if r.scenario == scenario and r.figure == figure and (setting is None or r.setting == setting)]


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def targets(rows: list[Row]) -> list[Verdict]:
    out: list[Verdict] = []
    cpu = _find(rows, "sampling", "client CPU per request")
    for bound, other, name in ((1 / 3, SDK, "official SDK"), (1.5, FLOOR, "floor")):
        ratios = [(r.setting, r.ratio(other)) for r in cpu]
        known = [(s, x) for s, x in ratios if x is not None]
        detail = ", ".join(f"{s}: {_x(x)}" for s, x in ratios)
        status = "not measured" if not known else ("met" if all(x <= bound for _, x in known) else "missed")
        label = "one third" if other == SDK else "1.5x"
        out.append(Verdict(f"client CPU per sample request at most {label} of the {name}'s", status, detail))

    thr = _find(rows, "sampling", "requests/s", "in_flight=1000")
    srv = _find(rows, "sampling", "server CPU", "in_flight=1000")
    if thr and thr[0].ratio(SDK) is not None:
        r = thr[0]
        vs_sdk, vs_floor = r.ratio(SDK), r.ratio(FLOOR)
        server_bound = vs_floor is not None and vs_floor >= 0.9
        util = srv[0].values.get(TA) if srv else None
        status = "met" if vs_sdk >= 3 else ("server-bound" if server_bound else "missed")
        detail = (f"tinker_actors/sdk {_x(vs_sdk)}, tinker_actors/floor {_x(vs_floor)}"
                  + (f", server at {util:.0f} % of a core" if util is not None else ""))
        if server_bound and vs_sdk < 3:
            detail += "; tinker_actors is within 10 % of the floor, so the server (not the client) sets the pace"
        out.append(Verdict("at 1,000 in flight, at least 3x the official SDK's throughput", status, detail))
    else:
        out.append(Verdict("at 1,000 in flight, at least 3x the official SDK's throughput", "not measured", ""))

    polls = _find(rows, "futures", "polls per future")
    v = polls[0].values.get(TA) if polls else None
    out.append(Verdict("at most 1.2 polling requests per future", "not measured" if v is None else ("met" if v <= 1.2 else "missed"),
                       "" if v is None else f"{v:.2f} per future (SDK {polls[0].values.get(SDK) or 0:.2f}, floor {polls[0].values.get(FLOOR) or 0:.2f})"))
    mem = _find(rows, "scale", "memory per queued request")
    v = mem[0].values.get(TA) if mem else None
    out.append(Verdict("at most 2 KB of memory per queued request", "not measured" if v is None else ("met" if v <= 2048 else "missed"),
                       "" if v is None else f"{v:.0f} bytes per queued request (SDK {mem[0].values.get(SDK) or 0:.0f})"))
    return out


def to_json(rows: list[Row], verdicts: list[Verdict]) -> dict[str, Any]:
    return {
        "rows": [{**asdict(r), "tinker_actors/sdk": r.ratio(SDK), "tinker_actors/floor": r.ratio(FLOOR)} for r in rows],
        "targets": [asdict(v) for v in verdicts],
    }
