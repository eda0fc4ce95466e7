"""docs/benchmarks.md, regenerated from one run's results by ``python -m benchmarks``."""

from __future__ import annotations

from typing import Any

from .report import EXPLAIN, FLOOR, SDK, Row, Verdict
from .scenarios import CLIENTS

TITLES = {
    "sampling": "1. Sampling throughput and client CPU",
    "futures": "2. Futures",
    "training": "3. Training pipeline",
    "scale": "4. Scale",
    "startup": "5. Start-up",
    "knee": "6. Open loop: the knee and the tail below it",
}

INTRO = """\
# Benchmarks

tinker_actors against the official SDK (`tinker` from PyPI) and a floor, in one
invocation and against one local server process. Regenerate this page, the
plots in `docs/img/` and a JSON file in `benchmarks/results/` with:

```
python -m benchmarks            # the full run (about 15-25 minutes on 2 cores)
python -m benchmarks --quick    # scaled-down counts, about two minutes
python -m benchmarks --scenario sampling --scenario futures
python -m benchmarks --scenario knee --keep benchmarks/results/EARLIER.json   # other sections from an earlier run
```

It needs the `bench` extra (`pip install -e .[bench]`: the official SDK,
uvicorn, matplotlib; httptools and uvloop make the server faster). It is not
part of the test suite.

**How it measures.**
* One local server (`tinker_actors.server`, null compute, on uvicorn) serves
  every client. Each client runs in its own child process, one at a time, so the
  CPU time (user + system, `getrusage`, every thread) and peak RSS are that
  client's alone. Within each setting the three clients run back to back, in an
  order that rotates from setting to setting.
* The **floor** is the fewest requests the protocol allows, sent with httpcore
  on trio: one `asample`, then `retrieve_future` long polls with
  `allow_metadata_only: false` until the protobuf result arrives. Each worker
  owns one keep-alive connection; nothing is retried, validated or decoded
  beyond the request id. No client can do less work.
* The **official SDK** is used as its docs show for async code: `sample(...)`
  returns an `APIFuture` that the caller awaits (`result_async`), with a fixed
  number of worker coroutines giving the in-flight level. The SDK runs its own
  loop on a thread; its CPU is counted too, as a user would pay it.
* **tinker_actors** runs in `async with tinker_actors.open_service(...)` under
  trio, with the same worker structure.
* The **open-loop** scenarios (futures, knee) are driven by tinker_actors' own
  bench engine (`tinker_actors.jobs.bench`, see [bench.md](bench.md)) through a
  thin target per client, so the schedule, the latency from each request's
  intended send time and the HDR percentiles are computed by the same code for
  all three: `python -m benchmarks --scenario knee` finds each client's knee
  with a rate ramp, then measures p99 at 50 % and 80 % of it.
* Server counters (`GET /_local/stats`) give the requests each client sent;
  the server's own CPU share tells when the server set the pace.
* Machines are shared and noisy: compare the **ratios**, not absolute numbers
  across runs.
"""


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("share of steps", "share of requests"):
        return f"{100 * v:.0f} %"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _table(rows: list[Row]) -> list[str]:
    out = ["| setting | figure | unit | floor | official SDK | tinker_actors | ta / SDK | ta / floor |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        vals = [_fmt(r.values.get(c), r.unit) for c in CLIENTS]
        out.append(f"| {r.setting} | {r.figure} | {r.unit} | {' | '.join(vals)} | {_ratio(r.ratio(SDK))} | {_ratio(r.ratio(FLOOR))} |")
    return out


def render(results: dict[str, Any], rows: list[Row], verdicts: list[Verdict], images: list[str]) -> str:
    env = results["environment"]
    lines = [INTRO]
    lines.append("## This run\n")
    lines.append(f"* {results['started']} · {'**quick** (scaled-down counts)' if results['quick'] else 'full size'}"
                 f" · {env['cpus']} CPUs · Python {env['python']} · server: {env['server']}")
    lines.append(f"* versions: {', '.join(f'{k} {v}' for k, v in env['versions'].items())}")
    lines.append(f"* raw results: `{results['json_path']}`")
    for scenario, where in results.get("carried_over", {}).items():
        lines.append(f"* {TITLES.get(scenario, scenario)}: carried over from `{where['from']}` ({where['started']})")
    failures = [(s, g["setting"], r["client"], r["error"]) for s, groups in results["scenarios"].items()
                for g in groups for r in g["records"] if "error" in r]
    if failures:
        lines.append("\n**Runs that failed** (their figures are missing below):\n")
        for s, setting, client, err in failures:
            lines.append(f"* {s} / {setting} / {client}: {err.splitlines()[0][:300]}")
    lines.append("\n## Targets\n")
    lines.append("| target | status | where we stand |\n|---|---|---|")
    for v in verdicts:
        lines.append(f"| {v.target} | **{v.status}** | {v.detail} |")
    for scenario, title in TITLES.items():
        sel = [r for r in rows if r.scenario == scenario]
        if not sel:
            continue
        lines.append(f"\n## {title}\n")
        lines.append(SETUP.get(scenario, "") + "\n")
        lines.extend(_table(sel))
        lines.append("")
        for fig in dict.fromkeys(r.figure for r in sel):
            lines.append(f"* **{fig}**: {EXPLAIN.get(fig, '')}")
        for img in IMAGES.get(scenario, []):
            if img in images:
                lines.append(f"\n![{scenario}](img/{img})")
    lines.append("")
    return "\n".join(lines)


SETUP = {
    "sampling": "Short prompts (25 byte tokens, 8 new tokens), null compute; the same number of requests at each in-flight level.",
    "futures": "Open loop on tinker_actors' bench engine (the same scheduler for all three clients): one sample is sent every 1/rate s and the server holds every future for a fixed delay before it completes, so a few hundred futures are outstanding at any time. Wake lag is latency from the intended send time minus that delay.",
    "training": "forward_backward (one datum, cross_entropy, protobuf) then optim_step, awaited together each step. The pipelining check pauses every future on the server and looks, halfway through the pause, whether the optim_step request has already arrived.",
    "scale": "Every request is queued at once (the SDK's `sample` and tinker_actors' futures return immediately; the floor builds every request body up front and drains them with 100 connections).",
    "startup": "A fresh interpreter per measurement; session and sampling-client set-up count toward the first request.",
    "knee": "Every client driven by tinker_actors' bench engine (`tinker_actors.jobs.bench`, open loop, latency from each request's intended send time), sampling the same short prompt. A ramp finds each client's knee; then each client runs at a constant 50 % and 80 % of its own knee. The engine runs in the client's process (the SDK's futures are awaited from trio with one callback each), so the knee includes the engine's own cost, the same for all three.",
}
IMAGES = {
    "sampling": ["sampling_throughput.png", "sampling_cpu.png"],
    "futures": ["futures.png"],
    "training": ["training.png"],
    "scale": ["scale.png"],
    "startup": ["startup.png"],
    "knee": ["knee.png"],
}
