"""Parent side of the local server: start it, read and reset its counters, set faults."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    """user+sys CPU of a process, read from /proc (the parent never runs clients)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LocalServer:
    """One server process for the whole run: ``with LocalServer(log) as srv: ...``."""

    def __init__(self, log_path: Path, kind: str = "uvicorn"):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.kind = kind
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "LocalServer":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.serve", "--port", str(self.port), "--server", self.kind],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the local server exited at start-up (see {self.log_path})")
            try:
                self._call("GET", "/api/v1/healthz")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the local server did not answer within 60 s (see {self.log_path})")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"content-type": "application/json", "x-api-key": "tml-bench"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_local/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/_local/stats/reset", {})

    def set_faults(self, faults: dict[str, Any]) -> None:
        self._call("POST", "/_local/faults", faults)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return proc_cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
