"""``tinker-actors bench``: run a load (sampling | training | mixed | run FILE), compare two runs, read the history."""

from __future__ import annotations

import argparse
import datetime as dt
import math
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from ._common import EXIT_FAILED, EXIT_OK, Globals, UsageError, base_url_for, probe, run_job

_DESCRIPTION = """\
Put load on an endpoint and report throughput and latency (HDR histograms: p50/p90/p99/p99.9/max)
per operation, time queued vs running, errors, and the server's counters. Writes bench.json,
report.html and PNGs (with the `plots` extra) to --out, and appends the run to the history store.

  bench sampling|training|mixed   a built-in workload (closed loop; --rate R makes it an open loop)
  bench run WORKLOAD.toml         a workload file (weighted mix of operations, lengths, ramps)
  bench compare A.json B.json     differences between two runs, with intervals and verdicts
  bench history METRIC            one metric over past runs (plots it with the `plots` extra)

See docs/bench.md for every option and how to read each figure."""


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="measure an endpoint: open/closed loop load, compare runs, history",
                       description=_DESCRIPTION)
    bench = p.add_subparsers(dest="bench_command", metavar="SCENARIO", parser_class=type(p))
    p.set_defaults(handler=_need_scenario)

    out = argparse.ArgumentParser(add_help=False)
    g = out.add_argument_group("repeats and output")
    g.add_argument("--repeat", type=int, default=1, metavar="N", help="run N trials; report medians and 95%% intervals (default 1)")
    g.add_argument("--out", type=Path, default=None,
                   help="output directory (default: bench-out/<time>, a new one per run); refused if it holds a result")
    g.add_argument("--overwrite", action="store_true", help="replace the result already in --out")
    g.add_argument("--no-plot", action="store_true", help="write no PNGs (the HTML report then has tables only)")
    g.add_argument("--history", type=Path, default=None, metavar="DB",
                   help="results store to append to (default: DATA_DIR/bench-history.sqlite)")
    g.add_argument("--no-history", action="store_true", help="do not append this run to the results store")
    g.add_argument("--drain", type=float, default=30.0, metavar="S",
                   help="open loop: seconds to wait for requests still out after the last send (default 30)")
    bar = g.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="log lines instead of a bar")
    g.add_argument("--log-interval", type=float, default=10.0, metavar="S",
                   help="seconds between progress log lines when not on a terminal (default 10)")

    load = argparse.ArgumentParser(add_help=False)
    lg = load.add_argument_group("load")
    lg.add_argument("--rate", type=float, default=None, metavar="R", help="open loop: R requests per second (default: closed loop)")
    lg.add_argument("--arrivals", choices=["constant", "poisson"], default="constant", help="open loop arrivals (default constant)")
    lg.add_argument("--ramp", default=None, metavar="START:STOP:STEPS",
                    help="open loop: rate steps from START to STOP (geometric) to find the knee, e.g. 50:800:5")
    lg.add_argument("--step-duration", type=float, default=5.0, metavar="S", help="seconds per ramp step (default 5)")
    lg.add_argument("--duration", type=float, default=None, metavar="S",
                    help="measured seconds (open loop default 10; closed loop: instead of --count)")
    lg.add_argument("--warmup", type=float, default=None, metavar="S",
                    help="seconds of load before measuring, excluded from every figure (default: 1 open, 0 closed)")
    lg.add_argument("--count", type=int, default=None, metavar="N", help="closed loop: measured requests (default 200; training 20)")
    lg.add_argument("--concurrency", type=int, default=None, metavar="C", help="closed loop: requests in flight (default 32; training 4)")
    lg.add_argument("--max-in-flight", type=int, default=10_000, metavar="N",
                    help="open loop: at most N requests out; later arrivals wait and the lag is reported (default 10000)")
    wg = load.add_argument_group("requests")
    wg.add_argument("--prompt-len", type=int, default=32, help="prompt tokens per sample (default 32)")
    wg.add_argument("--output-len", type=int, default=16, help="max tokens per sample (default 16)")
    wg.add_argument("--batch-size", type=int, default=8, help="datums per training step (default 8)")
    wg.add_argument("--seq-len", type=int, default=64, help="tokens per datum (default 64)")
    wg.add_argument("--base-model", default="tinker-actors/byte-lm-tiny")
    wg.add_argument("--seed", type=int, default=0)

    for name, text in (("sampling", "sample requests"), ("training", "forward_backward + optim_step steps"),
                       ("mixed", "8 samples to 1 training step")):
        sp = bench.add_parser(name, parents=[common, load, out], help=text,
                              description=f"The built-in {name} workload: {text}.")
        sp.set_defaults(handler=cmd_bench_run, scenario=name, workload=None)

    sp = bench.add_parser("run", parents=[common, out], help="a workload file (TOML or JSON)",
                          description="Run a workload file (see docs/bench.md for the format).")
    sp.add_argument("workload", type=Path, help="the workload (.toml or .json)")
    sp.set_defaults(handler=cmd_bench_run, scenario=None)

    sp = bench.add_parser("compare", parents=[common], help="compare two bench.json files",
                          description="Differences between run A and run B per operation and metric: medians with\n"
                                      "95%% intervals, the change with its bootstrap interval, the Mann-Whitney p-value\n"
                                      "over the trials and a verdict (better, worse, ~ for no significant difference).",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("a", type=Path, help="the baseline bench.json (or its directory)")
    sp.add_argument("b", type=Path, help="the new bench.json (or its directory)")
    sp.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    sp.add_argument("--metric", action="append", default=None, help="only these metrics (repeatable; default all)")
    sp.set_defaults(handler=cmd_bench_compare)

    sp = bench.add_parser("history", parents=[common], help="one metric over past runs",
                          description="One metric over the runs in the results store, oldest first; with the\n"
                                      "`plots` extra also a PNG. METRIC: throughput, p50, p90, p99, p99.9, max, mean,\n"
                                      "error_rate, knee_rate.", formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("metric", help="e.g. p99 or throughput")
    sp.add_argument("--op", default="all", help="operation label (default: all operations together)")
    sp.add_argument("--workload", default=None, help="only runs of this workload name")
    sp.add_argument("--last", type=int, default=None, metavar="N", help="only the last N runs")
    sp.add_argument("--history", type=Path, default=None, metavar="DB", help="results store (default: DATA_DIR/bench-history.sqlite)")
    sp.add_argument("--plot", type=Path, default=None, metavar="PNG", help="write the plot here (default: bench-history-METRIC.png)")
    sp.set_defaults(handler=cmd_bench_history)


async def _need_scenario(ns: argparse.Namespace, g: Globals) -> int:
    raise UsageError("bench: name a scenario: sampling, training, mixed, run FILE, compare A B or history METRIC (see bench --help)")


def _history_path(ns: argparse.Namespace, g: Globals) -> Path:
    return ns.history or (g.data_dir / "bench-history.sqlite")


def _workload(ns: argparse.Namespace) -> Any:
    from tinker_actors.jobs.bench.workload import Ramp, WorkloadError, load_workload, preset

    try:
        if ns.scenario is None:
            return load_workload(ns.workload)
        training = ns.scenario == "training"
        wl = preset(
            ns.scenario, rate=ns.rate, duration_s=ns.duration, arrivals=ns.arrivals, warmup_s=ns.warmup,
            count=ns.count, concurrency=ns.concurrency or (4 if training else 32), prompt_len=ns.prompt_len,
            output_len=ns.output_len, batch_size=ns.batch_size, seq_len=ns.seq_len, model=ns.base_model,
            max_in_flight=ns.max_in_flight, seed=ns.seed,
        ) if ns.ramp is None else None
        if training and wl is not None and wl.load.mode == "closed" and ns.count is None and ns.duration is None:
            wl.load.count = 20
        if ns.ramp is not None:
            if ns.rate is not None:
                raise WorkloadError("--ramp and --rate: give one (a ramp sets its own rates)")
            try:
                start, stop, steps = ns.ramp.split(":")
                ramp = Ramp(start=float(start), stop=float(stop), steps=int(steps), step_s=ns.step_duration)
            except ValueError:
                raise WorkloadError(f"--ramp {ns.ramp!r}: expected START:STOP:STEPS, e.g. 50:800:5") from None
            wl = preset(ns.scenario, rate=ramp.start, duration_s=1.0, arrivals=ns.arrivals, warmup_s=ns.warmup,
                        prompt_len=ns.prompt_len, output_len=ns.output_len, batch_size=ns.batch_size,
                        seq_len=ns.seq_len, model=ns.base_model, max_in_flight=ns.max_in_flight, seed=ns.seed)
            wl.load.rate, wl.load.duration_s, wl.load.ramp = None, None, ramp
            wl.check()
        return wl
    except WorkloadError as exc:
        raise UsageError(str(exc)) from None


def _default_out() -> Path:
    return Path("bench-out") / dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")


async def _time_based_total(progress: Any, workload: Any, repeat: int) -> None:
    """For a closed loop that runs for a time: keep the bar's total at (finished so far + rate x time left)."""
    from tinker_actors.jobs.bench.workload import phases

    total_s = sum(p.duration or 0.0 for p in phases(workload.load) if p.measured) * repeat
    start = trio.current_time()
    while True:
        await trio.sleep(0.5)
        elapsed = trio.current_time() - start
        done = progress.finished
        if elapsed > 0 and done:
            progress.total = max(done, int(done + done / elapsed * max(0.0, total_s - elapsed)))


async def cmd_bench_run(ns: argparse.Namespace, g: Globals) -> int:
    from tinker_actors.clients import open_service_client
    from tinker_actors.jobs.bench.history import HistoryStore, environment
    from tinker_actors.jobs.bench.report import OutputExists, prepare_out_dir, render_summary, write_outputs
    from tinker_actors.jobs.bench.runner import planned_ops, run_bench
    from tinker_actors.jobs.progress import ProgressCounters, open_progress

    if ns.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    wl = _workload(ns)
    try:
        out = prepare_out_dir(ns.out or _default_out(), overwrite=ns.overwrite)
    except OutputExists as exc:
        raise UsageError(str(exc)) from None
    planned = planned_ops(wl)
    counters = ProgressCounters(total=(planned or 0) * ns.repeat)

    async def job(stop: trio.Event) -> int:
        async with base_url_for(g) as url:
            if not g.embedded:
                await probe(url)
            config: dict[str, Any] = {"telemetry": False} if g.embedded else {}
            async with open_service_client(base_url=url, api_key=g.key, **config) as service:
                async with open_progress(counters, description=f"bench {wl.name}", console=g.stderr,
                                         terminal=ns.progress, log_interval=ns.log_interval):
                    async with trio.open_nursery() as nursery:
                        if planned is None:
                            nursery.start_soon(_time_based_total, counters, wl, ns.repeat)
                        result = await run_bench(
                            service, wl, repeat=ns.repeat, progress=counters,
                            stats_url=f"{url.rstrip('/')}/_local/stats", api_key=g.key, drain_s=ns.drain,
                            environment=environment(), server_url=url,
                        )
                        nursery.cancel_scope.cancel()
        files, notes = write_outputs(result, out, plot=not ns.no_plot)
        if not ns.no_history:
            with HistoryStore.open(_history_path(ns, g)) as store:
                store.add(result, files["json"])
            files["history"] = str(_history_path(ns, g))
        errors = sum(f.errors for f in result.merged if f.op == "all")

        def human(c: Console) -> None:
            render_summary(result, c)
            for n in notes:
                c.print(n, markup=False, highlight=False)
            for name, path in files.items():
                c.print(f"  {name:8} {path}", markup=False, highlight=False)

        g.emit({"files": files, "notes": notes, "summary": result.merged, "aggregate": result.aggregate,
                "knee": [t.knee for t in result.trials if t.knee is not None],
                "warnings": sorted({w for t in result.trials for w in t.warnings})}, human)
        return EXIT_OK if errors == 0 else EXIT_FAILED

    return await run_job(job, graceful=False)


def _result_path(p: Path) -> Path:
    return p / "bench.json" if p.is_dir() else p


async def cmd_bench_compare(ns: argparse.Namespace, g: Globals) -> int:
    from tinker_actors.jobs.bench.compare import compare_results
    from tinker_actors.jobs.bench.report import render_compare
    from tinker_actors.jobs.bench.results import read_result

    if not 0 < ns.alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    try:
        a, b = read_result(_result_path(ns.a)), read_result(_result_path(ns.b))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    rows = compare_results(a, b, alpha=ns.alpha, metrics=ns.metric)
    if not rows:
        raise UsageError(f"{ns.a} and {ns.b} have no operation in common")
    g.emit({"a": str(ns.a), "b": str(ns.b), "alpha": ns.alpha, "rows": rows},
           lambda c: render_compare(rows, c, a_name=str(ns.a), b_name=str(ns.b)))
    return EXIT_OK


async def cmd_bench_history(ns: argparse.Namespace, g: Globals) -> int:
    from tinker_actors.jobs.bench.history import HistoryStore, plot_series
    from tinker_actors.jobs.bench.plots import NO_PLOTS, matplotlib_available

    path = _history_path(ns, g)
    if not path.exists():
        raise UsageError(f"{path}: no results store yet (a bench run creates it; --history names another)")
    with HistoryStore.open(path) as store:
        rows = store.series(ns.metric, op=ns.op, workload=ns.workload, last=ns.last)
        known = store.metrics()
    if not rows:
        ops = sorted({op for op, _ in known})
        metrics = sorted({m for _, m in known})
        raise UsageError(f"no runs with metric {ns.metric!r} for op {ns.op!r} in {path} "
                         f"(ops: {', '.join(ops) or '-'}; metrics: {', '.join(metrics) or '-'})")
    plot: str | None = None
    note: str | None = None
    if matplotlib_available():
        target = ns.plot or Path(f"bench-history-{ns.metric}.png")
        plot_series(rows, ns.metric, ns.op, target)
        plot = str(target)
    else:
        note = NO_PLOTS
    latency = ns.metric not in ("throughput", "error_rate", "knee_rate")

    def fmt(v: float | None) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v * 1e3:.3g} ms" if latency else f"{v:,.2f}"

    def human(c: Console) -> None:
        from rich.table import Table
        from rich.text import Text

        t = Table(title=Text(f"bench history: {ns.op} {ns.metric} ({path})"))
        for col in ("run", "when", "workload", "commit", "machine", "median", "95 % interval"):
            t.add_column(col)
        for r in rows:
            commit = (r.git_commit or "-")[:10] + (" (dirty)" if r.git_dirty else "")
            t.add_row(*map(Text, (str(r.run_id), r.created_at, r.workload, commit, r.machine, fmt(r.median),
                                  "-" if r.lo is None else f"{fmt(r.lo)} .. {fmt(r.hi)}")))
        c.print(t)
        if plot:
            c.print(f"  plot  {plot}", markup=False, highlight=False)
        if note:
            c.print(note, markup=False, highlight=False)

    g.emit({"metric": ns.metric, "op": ns.op, "rows": rows, "plot": plot}, human)
    return EXIT_OK
