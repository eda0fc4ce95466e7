"""Every command of ``tinker-actors``, run through ``python -m tinker_actors``."""

from __future__ import annotations

import json
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cli_runner import CLI


@pytest.fixture(scope="module")
def trained(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short training run on the module's server: checkpoints to manage."""
    d = tmp_path_factory.mktemp("train")
    (d / "data.jsonl").write_text(
        "".join(json.dumps({"prompt": f"Q{i}:", "completion": f" answer {i}."}) + "\n" for i in range(8))
        + json.dumps({"text": "plain text works too"}) + "\n"
    )
    run = CLI(server_url, d)
    out = run.json("train", "--data", "data.jsonl", "--run-dir", "run", "--steps", "4", "--batch-size", "4", "--save-every", "2")
    return {"dir": d, **out}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ basics


def test_help_lists_every_command_and_exit_codes(cli: CLI) -> None:
    out = cli("--help", server=False).stdout
    for name in ("serve", "demo", "sweep", "train", "bench", "checkpoints", "runs", "sessions", "health", "capabilities"):
        assert f"\n  {name}" in out
    assert "130 interrupted" in out
    assert "journal" in cli("sweep", "--help", server=False).stdout


def test_usage_errors_exit_2_with_one_line(cli: CLI) -> None:
    bad = cli("sweep", server=False, check=2)
    assert bad.stderr.strip().count("\n") == 0 and "error" in bad.stderr
    missing = cli("sweep", "nope.toml", server=False, check=2)
    assert "nope.toml" in missing.stderr and "Traceback" not in missing.stderr
    assert cli("no-such-command", server=False, check=2).stderr.startswith("tinker-actors: error:")


def test_unreachable_server_exits_3_and_debug_shows_traceback(cli: CLI) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    args = ["--base-url", url, "--api-key", "tml-x", "capabilities"]
    r = cli(*args, server=False, check=3)
    assert "cannot reach the server" in r.stderr and "Traceback" not in r.stderr
    assert "Traceback" in cli("--debug", *args, server=False, check=3).stderr
    assert cli("--base-url", url, "health", server=False, check=3).returncode == 3


def test_health_and_capabilities(cli: CLI) -> None:
    assert cli.json("health")["status"] == "ok"
    caps = cli.json("capabilities")
    assert "tinker-actors/byte-lm-tiny" in {m["model_name"] for m in caps["supported_models"]}
    assert "byte-lm-tiny" in cli("capabilities").stdout  # the table


# ------------------------------------------------------------------ jobs


def test_demo_on_its_embedded_server(cli: CLI, tmp_path: Path) -> None:
    r = cli("demo", "--data-dir", str(tmp_path / "data"), server=False, timeout=120)
    for word in ("trained", "journal", "results", "metrics"):
        assert word in r.stdout
    out = cli.json("demo", "--data-dir", str(tmp_path / "data"), server=False, timeout=120)
    assert Path(out["results"]).exists() and Path(out["journal"]).exists() and Path(out["metrics"]).exists()
    assert out["sweep_counts"]["done"] == out["sweep_counts"]["total"] == 16
    assert out["steps"] == 6 and out["losses"]["6"] < out["losses"]["1"]
    assert str(tmp_path / "data") in out["out_dir"]


def test_sweep_runs_reports_status_and_exports(cli: CLI) -> None:
    d = cli.cwd
    (d / "p.jsonl").write_text('{"text": "hello"}\n{"tokens": [72, 105]}\n')
    (d / "s.toml").write_text(
        '[model]\nbase_model = "tinker-actors/byte-lm-tiny"\n[input]\nprompts = "p.jsonl"\n'
        "[sampling]\ntemperature = [0.5, 1.0]\nmax_tokens = 5\nseed = 1\n"
        '[output]\njournal = "j.sqlite"\nresults = "out/r.jsonl"\n'
    )
    assert cli.json("sweep", "s.toml", "--status", server=False) == {"journal": "j.sqlite", "exists": False}
    out = cli.json("sweep", "s.toml", "--no-progress")
    assert out["counts"]["done"] == 4 and out["sent_this_run"] == 4
    lines = [json.loads(x) for x in (d / "out" / "r.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(line["sequences"][0]["text"] is not None for line in lines)
    again = cli.json("sweep", "s.toml")
    assert again["sent_this_run"] == 0 and again["skipped"] == 4
    (d / "out" / "r.jsonl").unlink()
    cli("sweep", "s.toml", "--export-only", server=False)
    assert len((d / "out" / "r.jsonl").read_text().splitlines()) == 4
    status = cli.json("sweep", "s.toml", "--status", server=False)
    assert status["done"] == 4 and status["total"] == 4


def test_train_writes_metrics_and_resumes_to_more_steps(trained: dict[str, Any], server_url: str) -> None:
    d = trained["dir"]
    assert trained["steps_done"] == 4 and not trained["interrupted"]
    assert trained["last_checkpoint"].endswith("step-000004")
    metrics = [json.loads(x) for x in (d / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    more = CLI(server_url, d).json("train", "--data", "data.jsonl", "--run-dir", "run", "--steps", "6", "--batch-size", "4")
    assert more["resumed_from"] == trained["last_checkpoint"] and sorted(more["losses"]) == ["5", "6"]


# ------------------------------------------------------------------ REST surface


def test_checkpoints_list_ttl_publish_download_delete(cli: CLI, trained: dict[str, Any]) -> None:
    path = trained["last_checkpoint"]
    run_id = path.split("/")[2]
    listed = cli.json("checkpoints", "list", "--run", run_id)
    assert path in {c["tinker_path"] for c in listed["checkpoints"]}
    assert path in cli("checkpoints", "list").stdout

    cli("checkpoints", "ttl", path, "3600")
    [ck] = [c for c in cli.json("checkpoints", "list", "--run", run_id)["checkpoints"] if c["tinker_path"] == path]
    assert ck["expires_at"] is not None
    cli("checkpoints", "ttl", path, "none")
    cli("checkpoints", "publish", path)
    [ck] = [c for c in cli.json("checkpoints", "list", "--run", run_id)["checkpoints"] if c["tinker_path"] == path]
    assert ck["public"] is True
    cli("checkpoints", "unpublish", path)

    got = cli.json("checkpoints", "download", path, "-o", "ck")
    assert got["members"] >= 1 and len(got["sha256"]) == 64
    assert (cli.cwd / "ck").is_dir() and any((cli.cwd / "ck").rglob("*"))
    with tarfile.open(got["path"]) as tar:
        assert len([m for m in tar if m.isfile()]) == got["members"]
    assert cli("checkpoints", "ttl", path, "soon", check=2).returncode == 2

    victim = path.replace("step-000004", "step-000002")
    cli("checkpoints", "delete", victim)
    assert victim not in {c["tinker_path"] for c in cli.json("checkpoints", "list", "--run", run_id)["checkpoints"]}
    gone = cli("checkpoints", "delete", victim, check=None)
    assert gone.returncode == 1 and "404" in gone.stderr


def test_runs_and_sessions(cli: CLI, trained: dict[str, Any]) -> None:
    run_id = trained["last_checkpoint"].split("/")[2]
    runs = cli.json("runs", "list", "--limit", "100")
    assert run_id in {r["training_run_id"] for r in runs["training_runs"]}
    shown = cli.json("runs", "show", run_id)
    assert shown["run"]["training_run_id"] == run_id and shown["checkpoints"]
    assert run_id in cli("runs", "show", trained["last_checkpoint"]).stdout

    sessions = cli.json("sessions", "list", "--limit", "100")["sessions"]
    assert sessions
    owner = next(s for s in sessions if run_id.startswith(s))
    shown = cli.json("sessions", "show", owner)
    assert run_id in shown["training_run_ids"]
