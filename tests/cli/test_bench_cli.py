"""``tinker-actors bench``: outputs and their safety, open loop, progress, compare, history, and the docs' commands."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from cli_runner import CLI

from tinker_actors.cli import build_parser
from tinker_actors.jobs.bench.compare import median_interval
from tinker_actors.jobs.bench.results import BenchResult, write_result

ROOT = Path(__file__).resolve().parents[2]


def test_bench_writes_its_files_and_never_silently_overwrites_them(cli: CLI) -> None:
    r = cli("bench", "mixed", "--count", "12", "--concurrency", "4", "--out", "b", "--history", "h.sqlite")
    assert "p99.9 ms" in r.stdout and "train_step" in r.stdout and "sample" in r.stdout
    out = cli.cwd / "b"
    report = json.loads((out / "bench.json").read_text())
    assert report["schema"] == "tinker-actors-bench/1" and report["mode"] == "closed"
    merged = {f["op"]: f for f in report["merged"]}
    assert merged["all"]["count"] == 12 and merged["all"]["errors"] == 0
    for name in ("report.html", "timeline.png", "cdf.png", "queued.png"):
        assert (out / name).stat().st_size > 0, name
    # the local server's counters were joined into the run
    assert report["trials"][0]["server"] and "200" in report["trials"][0]["server"][-1]["statuses"]
    before = (out / "bench.json").read_bytes()

    again = cli("bench", "sampling", "--count", "4", "--out", "b", check=2)
    assert again.stderr.count("\n") == 1 and "already holds a bench result" in again.stderr and "--overwrite" in again.stderr
    assert (out / "bench.json").read_bytes() == before

    replaced = cli.json("bench", "sampling", "--count", "4", "--out", "b", "--overwrite", "--no-plot", "--no-history")
    assert replaced["files"]["json"] == "b/bench.json" and (out / "bench.json").read_bytes() != before

    # without --out every run gets its own directory
    fresh = cli.json("bench", "sampling", "--rate", "10", "--duration", "1", "--warmup", "0", "--history", "h.sqlite",
                     "--no-plot")
    assert re.fullmatch(r"bench-out/\d{8}-\d{6}-\d{6}/bench\.json", fresh["files"]["json"])
    assert fresh["summary"][-1]["count"] == 10

    history = cli.json("bench", "history", "p99", "--history", "h.sqlite")
    assert len(history["rows"]) == 2 and history["rows"][0]["workload"] == "mixed"
    assert Path(cli.cwd / history["plot"]).read_bytes()[:4] == b"\x89PNG"
    missing = cli("bench", "history", "p42", "--history", "h.sqlite", check=2)
    assert "metrics: " in missing.stderr and missing.stderr.count("\n") == 1


def test_progress_off_a_terminal_is_log_lines_with_rate_and_eta(cli: CLI) -> None:
    r = cli("bench", "sampling", "--count", "6", "--concurrency", "2", "--out", "p", "--no-plot", "--no-history",
            "--log-level", "info")
    lines = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    final = [e for e in lines if e.get("event") == "sweep_progress_final"]
    assert final and final[-1]["job"] == "bench sampling"
    assert (final[-1]["done"], final[-1]["total"], final[-1]["eta_s"]) == (6, 6, 0.0) and final[-1]["rate_per_s"] > 0
    bar = cli("bench", "sampling", "--count", "4", "--out", "q", "--no-plot", "--no-history", "--progress")
    # forced on a non-terminal stderr (80 columns) rich crops the bar's columns, not the bar
    assert "bench sampli" in bar.stderr and "ETA" in bar.stderr and "in flight" in bar.stderr


def _synthetic(path: Path, thr: list[float]) -> None:
    write_result(BenchResult(created_at="2026-01-01T00:00:00+00:00", workload={"name": "s"}, mode="open", trials=[],
                             aggregate={"sample": {"throughput": median_interval(thr)}}, merged=[]), path)


def test_compare_prints_verdicts_and_refuses_what_is_not_a_result(cli: CLI) -> None:
    _synthetic(cli.cwd / "a.json", [100, 101, 99, 100.5, 99.5, 100.2])
    _synthetic(cli.cwd / "b.json", [110, 111, 109, 110.5, 109.5, 110.2])
    out = cli.json("bench", "compare", "a.json", "b.json", server=False)
    (row,) = out["rows"]
    assert (row["op"], row["metric"], row["verdict"]) == ("sample", "throughput", "better")
    text = cli("bench", "compare", "a.json", "b.json", server=False).stdout
    assert "better" in text and "+10.0%" in text
    (cli.cwd / "junk.json").write_text("{}")
    bad = cli("bench", "compare", "a.json", "junk.json", server=False, check=2)
    assert "junk.json: not a bench result" in bad.stderr and bad.stderr.count("\n") == 1


def _doc_commands() -> list[str]:
    text = (ROOT / "docs" / "bench.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.S)
    cmds = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("tinker-actors "):
                cmds.append(line)
    return cmds


def test_every_command_in_bench_md_parses_with_no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/bench.md once had `--api-key $TINKER_API_KEY bench mixed`: with the key unset
    # the shell drops the word and --api-key swallows `bench`.
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.delenv("TINKER_BASE_URL", raising=False)
    cmds = _doc_commands()
    assert len(cmds) >= 10
    parser = build_parser()
    for cmd in cmds:
        words = shlex.split(os.path.expandvars(cmd.split(">")[0].split("|")[0]))[1:]
        ns = parser.parse_args(words)
        assert ns.command == "bench", cmd
