"""What a run leaves behind: ``bench.json``, ``report.html`` (plots embedded), the PNGs, and terminal tables.

The HTML report is one self-contained file (inline CSS, PNGs as data URIs):
mail it, attach it to an issue, open it in a year. Without matplotlib it is
the same report without pictures, and says so.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .compare import CompareRow
from .histograms import PERCENTILES, percentile_key
from .plots import NO_PLOTS, matplotlib_available, write_pngs
from .results import BenchResult, Interval, OpFigures, PhaseResult, write_result

__all__ = ["OutputExists", "prepare_out_dir", "write_outputs", "render_summary", "render_compare", "render_html"]

_LAT_KEYS = [percentile_key(q) for q in PERCENTILES] + ["max"]


class OutputExists(Exception):
    """The output directory already holds a bench result (and overwriting was not asked for)."""


def prepare_out_dir(out: Path, *, overwrite: bool) -> Path:
    """Create ``out``; refuse one that already holds a ``bench.json`` unless ``overwrite``."""
    if (out / "bench.json").exists() and not overwrite:
        raise OutputExists(f"{out} already holds a bench result; pass --overwrite to replace it, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_outputs(result: BenchResult, out: Path, *, plot: bool = True) -> tuple[dict[str, str], list[str]]:
    """bench.json, the PNGs (when asked and matplotlib is there) and report.html; (files, notes)."""
    files: dict[str, str] = {}
    notes: list[str] = []
    write_result(result, out / "bench.json")
    files["json"] = str(out / "bench.json")
    images: dict[str, Path] = {}
    if plot:
        if matplotlib_available():
            images = write_pngs(result, out)
            files.update({k: str(v) for k, v in images.items()})
        else:
            notes.append(NO_PLOTS)
    (out / "report.html").write_text(render_html(result, images, notes))
    files["html"] = str(out / "report.html")
    return files, notes


# ----------------------------------------------------------------- formatting


def _ms(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    v = x * 1e3
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}"


def _interval(iv: Interval | None, fmt: Any) -> str:
    if iv is None or iv.median is None:
        return "-"
    if iv.lo is None or iv.hi is None:
        return fmt(iv.median)
    return f"{fmt(iv.median)} [{fmt(iv.lo)}, {fmt(iv.hi)}]"


def _op_rows(result: BenchResult) -> list[list[str]]:
    rows = []
    repeats = len(result.trials) > 1
    for f in result.merged:
        agg = result.aggregate.get(f.op, {})
        if repeats:
            thr = _interval(agg.get("throughput"), _num)
            lats = [_interval(agg.get(k), _ms) for k in _LAT_KEYS]
        else:
            thr = _num(f.throughput_per_s)
            lats = [_ms(f.latency.get(k)) for k in _LAT_KEYS]  # type: ignore[arg-type]
        rows.append([f.op, str(f.count), thr, *lats, _share(f.queued_share), str(f.errors)])
    return rows


def _phase_rows(trial_phases: list[PhaseResult]) -> list[list[str]]:
    rows = []
    for p in trial_phases:
        lag = p.lag
        rows.append([
            p.name + ("" if p.measured else " (excluded)"),
            _num(p.target_rate), _num(p.achieved_rate), _num(p.completed_rate),
            _ms(p.all.latency.get("p50")), _ms(p.all.latency.get("p99")),  # type: ignore[arg-type]
            "-" if lag is None else _ms(lag.p99) + (" BEHIND" if lag.behind else ""),
            str(p.all.errors),
        ])
    return rows


_OP_COLS = ["op", "count", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "queued %", "errors"]
_PHASE_COLS = ["phase", "target/s", "sent/s", "completed/s", "p50 ms", "p99 ms", "send lag p99 ms", "errors"]


def render_summary(result: BenchResult, console: Console) -> None:
    """The run's tables on the terminal: per operation, per phase (open loop), knee, warnings."""
    n = len(result.trials)
    title = f"bench {result.workload.get('name', '')}: {result.mode} loop"
    if n > 1:
        title += f", {n} trials (median [95 % interval])"
    table = Table(title=Text(title))
    for col in _OP_COLS:
        table.add_column(col, justify="left" if col == "op" else "right")
    # Text cells: labels are data, never markup or emoji codes
    for row in _op_rows(result):
        table.add_row(*map(Text, row))
    console.print(table)
    if result.mode == "open" and result.trials:
        trial = result.trials[0]
        pt = Table(title="phases" + (" (trial 1)" if n > 1 else ""))
        for col in _PHASE_COLS:
            pt.add_column(col, justify="left" if col == "phase" else "right")
        for row in _phase_rows(trial.phases):
            pt.add_row(*map(Text, row))
        console.print(pt)
    for t in result.trials:
        if t.knee is not None:
            where = f"{t.knee.rate:.1f}/s ({t.knee.step})" if t.knee.rate else "below the first step"
            console.print(f"knee (trial {t.index + 1}): {where}; past it: {t.knee.reason}", markup=False, highlight=False)
    seen: set[str] = set()
    for t in result.trials:
        for w in t.warnings:
            if w not in seen:
                seen.add(w)
                console.print(f"warning: {w}", markup=False, highlight=False, style="yellow")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def render_compare(rows: list[CompareRow], console: Console, *, a_name: str, b_name: str) -> None:
    table = Table(title=Text(f"bench compare: A = {a_name}, B = {b_name}"))
    for col in ("op", "metric", "A median [95 %]", "B median [95 %]", "change [95 %]", "p", "verdict"):
        table.add_column(col, justify="left" if col in ("op", "metric", "verdict") else "right")
    for r in rows:
        fmt = _num if r.metric == "throughput" else (lambda v: f"{v:.4f}") if r.metric == "error_rate" else _ms
        change = _pct(r.change)
        if r.change_lo is not None and r.change_hi is not None:
            change += f" [{_pct(r.change_lo)}, {_pct(r.change_hi)}]"
        table.add_row(*map(Text, (r.op, r.metric + (" (ms)" if r.metric not in ("throughput", "error_rate") else ""),
                                  _interval(r.a, fmt), _interval(r.b, fmt), change,
                                  "-" if r.p is None else f"{r.p:.3f}", r.verdict)))
    console.print(table)


# ----------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.6em 0 1.4em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}code{background:#f3f3f3;padding:0 3px}
.warn{color:#8a5a00}.note{color:#555}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
"""

_READ = {
    "timeline": "Top: requests sent and completed per second against the target (dashed); red x: intervals with "
                "failed requests; orange triangles: HTTP 429 answers from the server. Middle: p50 and p99 of the "
                "requests that completed in each interval, from their intended send time. Bottom: requests in flight "
                "by where they were, and the server's open long polls. Grey: warm-up, excluded from every figure.",
    "cdf": "Share of requests at or below each latency (log axis). A long flat tail at the top is the p99/p99.9 story.",
    "queued": "Each operation's total time split into queued (client admission, ordering, the submit, and server-reported "
              "queue or pause) and running. Requests shorter than the sampling tick (25 ms, longer with many in flight) count as running.",
    "knee": "Each ramp step's offered rate against what completed within it, and its p99. The knee is the last step that "
            "completed at least 95 % of its arrivals with p99 within the configured factor of the first step's.",
}


def _table_html(cols: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _server_rows(result: BenchResult) -> list[list[str]]:
    rows = []
    for t in result.trials:
        if len(t.server) < 2:
            continue
        first, last = t.server[0], t.server[-1]
        statuses = {k: v - first.statuses.get(k, 0) for k, v in last.statuses.items() if v - first.statuses.get(k, 0)}
        work = {k: v - first.work_done.get(k, 0) for k, v in last.work_done.items() if v - first.work_done.get(k, 0)}
        peak_polls = max((s.open_long_polls or 0) for s in t.server)
        retries = (last.client_retries or 0) - (first.client_retries or 0) if last.client_retries is not None else None
        rows.append([str(t.index + 1), ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "-",
                     ", ".join(f"{k}: {v}" for k, v in sorted(work.items())) or "-", str(peak_polls),
                     "-" if retries is None else str(retries)])
    return rows


def render_html(result: BenchResult, images: dict[str, Path], notes: list[str]) -> str:
    name = html.escape(str(result.workload.get("name", "bench")))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>bench {name}</title>"
             f"<style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>bench {name}</h1>")
    env = result.environment
    facts = [f"{result.created_at}", f"{result.mode} loop", f"{len(result.trials)} trial(s)"]
    if result.server_url:
        facts.append(f"server {html.escape(result.server_url)}")
    if env.get("git_commit"):
        facts.append(f"commit <code>{html.escape(str(env['git_commit'])[:12])}</code>" + (" (dirty)" if env.get("git_dirty") else ""))
    parts.append("<p>" + " · ".join(facts) + "</p>")
    for n in notes:
        parts.append(f"<p class='note'>{html.escape(n)}</p>")
    parts.append("<h2>Per operation</h2>")
    if len(result.trials) > 1:
        parts.append("<p class='note'>median of the trials [95 % confidence interval]; percentiles per trial.</p>")
    parts.append(_table_html(_OP_COLS, _op_rows(result)))
    if result.mode == "open":
        parts.append("<h2>Phases</h2>" + _table_html(_PHASE_COLS, _phase_rows(result.trials[0].phases)))
    for t in result.trials:
        if t.knee is not None:
            where = f"{t.knee.rate:.1f}/s ({t.knee.step})" if t.knee.rate else "below the first step"
            parts.append(f"<p><b>Knee (trial {t.index + 1}): {html.escape(where)}</b>; past it: {html.escape(t.knee.reason)}</p>")
    warnings = sorted({w for t in result.trials for w in t.warnings})
    for w in warnings:
        parts.append(f"<p class='warn'>warning: {html.escape(w)}</p>")
    srv = _server_rows(result)
    if srv:
        parts.append("<h2>Server counters (GET /_local/stats) and client retries</h2>")
        parts.append(_table_html(["trial", "HTTP statuses", "work done", "peak open long polls", "client retries"], srv))
    for key, path in images.items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(key)}</h2><p class='note'>{html.escape(_READ.get(key, ''))}</p>"
                     f"<img alt='{html.escape(key)}' src='data:image/png;base64,{data}'>")
    parts.append("<h2>Workload</h2><pre>" + html.escape(_pretty(result.workload)) + "</pre>")
    if env:
        parts.append("<h2>Environment</h2><pre>" + html.escape(_pretty(env)) + "</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _pretty(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, default=str)


def op_figures(result: BenchResult, op: str) -> OpFigures | None:
    return next((f for f in result.merged if f.op == op), None)
