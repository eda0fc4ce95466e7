"""tinker-cookbook 0.6.1, unmodified, on the drop-in against the local server.

The programs are the two in docs/cookbook.md, run as written (so the page
stays runnable): each only builds the cookbook's own config and calls its
``train.main``; ``tinker_actors.sdk.install()`` makes ``import tinker`` inside
the cookbook resolve to the drop-in.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sdk, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cookbook.md"


def doc_program(heading: str, dest: Path) -> Path:
    """The python block under ``## heading`` in docs/cookbook.md, written to ``dest``."""
    section = DOC.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, heading
    dest.write_text(blocks[0])
    return dest


def _env(base_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TINKER_API_KEY="tml-test", TINKER_TELEMETRY="0", TINKER_BASE_URL=base_url,
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    return env


def _metrics(log_path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (log_path / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_supervised_train_loss_falls_and_a_killed_run_resumes(server_url: str, tmp_path: Path) -> None:
    # 16 conversations in batches of 4, 3 epochs: 12 steps, a checkpoint every 2
    cmd = [sys.executable, str(doc_program("A supervised run", tmp_path / "sl_local.py"))]
    log_path = tmp_path / "sl-run"
    checkpoints = log_path / "checkpoints.jsonl"
    with open(tmp_path / "first.log", "w") as out:
        first = subprocess.Popen(cmd, env=_env(server_url), stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 240
            while not (checkpoints.exists() and checkpoints.read_text().strip()):
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint within 240 s"
                time.sleep(0.02)
            first.send_signal(signal.SIGKILL)  # mid-run, right after its first checkpoint
        finally:
            first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    saved_at_kill = [json.loads(line) for line in checkpoints.read_text().splitlines()]
    assert saved_at_kill and all(c["name"] != "final" for c in saved_at_kill)

    second = subprocess.run(cmd, env=_env(server_url), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"Resumed training from {saved_at_kill[-1]['state_path']}" in second.stdout + second.stderr

    rows = {int(r["step"]): r for r in _metrics(log_path) if "train_mean_nll" in r}
    assert sorted(rows) == list(range(12))  # every step logged once, across the kill
    nll = [float(rows[s]["train_mean_nll"]) for s in range(12)]
    assert nll[-1] < 0.5 * nll[0], nll
    final = [json.loads(line) for line in checkpoints.read_text().splitlines()][-1]
    assert final["name"] == "final" and final["state_path"].startswith("tinker://")


def test_rl_train_reward_rises(server_url: str, tmp_path: Path) -> None:
    program = doc_program("An RL run", tmp_path / "rl_local.py")
    run = subprocess.run([sys.executable, str(program)], env=_env(server_url), capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rewards = [float(r["env/all/reward/total"]) for r in _metrics(tmp_path / "rl-run") if "env/all/reward/total" in r]
    assert len(rewards) == 6, (rewards, run.stderr[-2000:])
    # the reward rises from the base rate (5/256) past 0.5; a high learning rate on a tiny
    # model may overshoot and fall back afterwards, so the peak is what shows learning
    assert rewards[0] < 0.1 and max(rewards[1:]) > 0.5, (rewards, run.stderr[-2000:])
