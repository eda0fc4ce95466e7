"""A local server in a subprocess on 127.0.0.1, for the drop-in tests (tests/sdk)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def start_server(data_dir: Path, log_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    errlog = open(log_path, "w")  # a file: a full pipe would stall the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinker_actors.server", "serve", "--port", "0", "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE, stderr=errlog, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    errlog.close()
    assert "http://" in line, (line, log_path.read_text())
    return proc, line.strip().rsplit(" ", 1)[-1]


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("server")
    proc, url = start_server(root / "data", root / "server.log")
    try:
        yield url
    finally:
        stop_server(proc)


@pytest.fixture
def sdk_env(server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TINKER_API_KEY", "tml-test")
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    monkeypatch.setenv("TINKER_BASE_URL", server_url)
    return server_url
