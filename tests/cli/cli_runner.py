"""Runs the real ``python -m tinker_actors`` entry point against a test server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import child_env

KEY = "tml-cli-test"


def env() -> dict[str, str]:
    e = child_env()
    e.pop("TINKER_API_KEY", None)
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
