"""Fixtures for the CLI tests: a local server started through the real entry point.

``python -m tinker_actors serve --port 0`` runs as a subprocess for the whole
module; every test then runs ``python -m tinker_actors ...`` against it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import CLI, env


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
