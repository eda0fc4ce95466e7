"""The local results store: runs appended with their facts, a metric read back in time order."""

from __future__ import annotations

from pathlib import Path

from tinker_actors.jobs.bench.compare import median_interval
from tinker_actors.jobs.bench.history import HistoryStore, environment, plot_series
from tinker_actors.jobs.bench.results import BenchResult


def _result(when: str, name: str, p99s: list[float]) -> BenchResult:
    return BenchResult(created_at=when, workload={"name": name}, mode="open", trials=[],
                       aggregate={"all": {"p99": median_interval(p99s), "throughput": median_interval([10.0])}},
                       merged=[], environment=environment(), server_url="http://127.0.0.1:1")


def test_runs_are_appended_and_read_back_oldest_first(tmp_path: Path) -> None:
    db = tmp_path / "h" / "bench-history.sqlite"
    with HistoryStore.open(db) as store:
        first = store.add(_result("2026-01-01T00:00:00+00:00", "w", [0.010, 0.011, 0.012]), "a/bench.json")
        store.add(_result("2026-01-02T00:00:00+00:00", "other", [0.5]))
        third = store.add(_result("2026-01-03T00:00:00+00:00", "w", [0.020, 0.021, 0.022]))
    with HistoryStore.open(db) as store:  # reopened: it persisted
        rows = store.series("p99", workload="w")
        assert [r.run_id for r in rows] == [first, third]
        assert [r.median for r in rows] == [0.011, 0.021] and rows[0].lo == 0.010 and rows[0].hi == 0.012
        assert [r.run_id for r in store.series("p99", last=1)] == [third]
        assert ("all", "throughput") in store.metrics()
        assert store.series("p99", op="sample") == []
    env = environment()
    assert env["git_commit"] and len(env["git_commit"]) == 40  # the test runs from a checkout
    assert env["machine"]["cpus"] and env["versions"]["hdrhistogram"]
    assert rows[0].git_commit == env["git_commit"] and "CPUs" in rows[0].machine
    plot_series(rows, "p99", "all", tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
