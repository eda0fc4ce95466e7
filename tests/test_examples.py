"""The examples run as a user runs them, against the local server, and do what they say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, child_env


def run_example(name: str, run_dir: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), str(run_dir)],
        capture_output=True, text=True, timeout=300, env=child_env(), cwd=str(run_dir.parent),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.slow
def test_sft_example_learns_and_checkpoints(tmp_path: Path) -> None:
    out = run_example("sft.py", tmp_path / "sft")
    first, last = map(float, re.search(r"loss ([\d.]+) -> ([\d.]+)", out).groups())
    assert last < 0.5 * first, out
    assert "tinker://" in out and (tmp_path / "sft" / "metrics.jsonl").stat().st_size > 0


@pytest.mark.slow
def test_rl_example_raises_the_reward(tmp_path: Path) -> None:
    out = run_example("rl_loop.py", tmp_path / "rl")
    first, last = map(float, re.search(r"mean reward ([\d.]+) .*-> ([\d.]+)", out).groups())
    assert last > first + 0.3, out
