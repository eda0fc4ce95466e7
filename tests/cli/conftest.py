"""Fixtures for the CLI tests: a local server started through the real entry point.

``python -m tinker_actors serve --port 0`` runs as a subprocess for the whole
module; every test then runs ``python -m tinker_actors ...`` against it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "tml-cli-test"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    for name in ("TINKER_BASE_URL", "TINKER_API_KEY"):
        e.pop(name, None)
    return e


class CLI:
    def __init__(self, base_url: str | None, cwd: Path) -> None:
        self.base_url = base_url
        self.cwd = cwd

    def __call__(self, *args: str, server: bool = True, timeout: float = 60, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tinker_actors"]
        if server and self.base_url:
            cmd += ["--base-url", self.base_url, "--api-key", KEY]
        proc = subprocess.run([*cmd, *args], env=env(), cwd=self.cwd, capture_output=True, text=True, timeout=timeout)
        if check is not None:
            assert proc.returncode == check, f"{args}: rc={proc.returncode}\nstdout:{proc.stdout[-2000:]}\nstderr:{proc.stderr[-3000:]}"
        return proc

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self(*args, "--json", **kw).stdout)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("server-data")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinker_actors", "serve", "--port", "0", "--data-dir", str(data)],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        url = None
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
        assert url, "the server did not print its address"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def cli(server_url: str, tmp_path: Path) -> CLI:
    return CLI(server_url, tmp_path)
