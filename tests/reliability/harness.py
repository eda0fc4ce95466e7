"""Shared harness of the reliability scenarios.

* ``in_process``: the local server app driven through ``httpx.ASGITransport``
  and a client runtime on top of it, for scenarios on the virtual clock.
* ``on_loopback``: the server under hypercorn on 127.0.0.1, for real-clock
  scenarios that need real connections (dropped connections are a transport
  error only on a real socket).
* ``subprocess_server``: ``python -m tinker_actors serve`` in a child process,
  for scenarios that SIGKILL the server.
* ``record``: figures of a scenario. They are printed and, when
  ``TINKER_RELIABILITY_FIGURES`` names a file, appended to it as JSON lines
  (docs/reliability.md is written from that file).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from support import server_stats

from tinker_actors.clients import ServiceClient, open_service_client
from tinker_actors.server import ServerConfig, create_app
from tinker_actors.transport import Transport

# The local server encodes protobuf results (and may import this module) in a
# worker thread; on the virtual clock a first import there takes "forever".
from tinker_actors.wire.proto import tinker_public_pb2  # noqa: F401

KEY = "tml-reliability-Secret0123456789"
BASE_MODEL = "tinker-actors/byte-lm-tiny"
ROOT = Path(__file__).resolve().parents[2]
LOCAL_URL = "http://local"


def record(scenario: str, **figures: Any) -> dict[str, Any]:
    row = {"scenario": scenario, **figures}
    print(f"\nRELIABILITY {json.dumps(row, sort_keys=True)}")
    path = os.environ.get("TINKER_RELIABILITY_FIGURES")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    return row


@contextlib.asynccontextmanager
async def open_client(transport: Any, base_url: str, **config: Any) -> AsyncIterator[ServiceClient]:
    """A ServiceClient over an already-open transport."""
    config.setdefault("telemetry", False)
    async with open_service_client(base_url=base_url, api_key=KEY, transport=transport, **config) as client:
        yield client


@contextlib.asynccontextmanager
async def in_process(server: ServerConfig, **config: Any) -> AsyncIterator[tuple[Any, ServiceClient]]:
    """The app in-process (virtual-clock friendly) and a client on it."""
    app = create_app(server)
    async with app.lifespan():
        transport = Transport(LOCAL_URL, KEY, http_transport=httpx.ASGITransport(app=app))
        async with transport:
            async with open_client(transport, LOCAL_URL, **config) as client:
                yield app, client


async def stats(url: str) -> dict[str, Any]:
    return await server_stats(url, KEY)


async def set_faults(url: str, faults: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{url}/_local/faults", json=faults, headers={"X-API-Key": KEY})
        r.raise_for_status()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m tinker_actors serve`` on a fixed port and data dir; killable and restartable."""

    def __init__(self, data_dir: Path, port: int, *extra: str) -> None:
        self.data_dir = data_dir
        self.port = port
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"
        self.starts = 0

    def start(self) -> None:
        args = [sys.executable, "-m", "tinker_actors", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), *self.extra]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/api/v1/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not come up in 30 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def subprocess_server(data_dir: Path, *extra: str) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir, free_port(), *extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def control(app: Any, path: str, body: Any = None) -> Any:
    """Call a /_local route of an in-process app (faults, stats)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=LOCAL_URL, headers={"X-API-Key": KEY}) as http:
        r = await (http.post(path, json=body) if body is not None else http.get(path))
        r.raise_for_status()
        return r.json()
