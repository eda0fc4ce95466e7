"""Test support shared by every test folder: a local server on loopback and its counters.

pytest puts ``tests/`` on ``sys.path`` (``pythonpath`` in pyproject.toml), so any
test module can ``import support``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from tinker_actors.server import ServerConfig, serve

ROOT = Path(__file__).resolve().parents[1]


@contextlib.asynccontextmanager
async def on_loopback(cfg: ServerConfig) -> AsyncIterator[str]:
    """Serve ``cfg`` on 127.0.0.1 (ephemeral port) for the block; yields its base URL."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, cfg)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            nursery.cancel_scope.cancel()


def local_server(data_dir: Path, **config: Any) -> contextlib.AbstractAsyncContextManager[str]:
    """A local server with data under ``data_dir``; ``config`` is any ServerConfig field."""
    return on_loopback(ServerConfig(data_dir=data_dir, **config))


async def server_stats(url: str, api_key: str) -> dict[str, Any]:
    """The server's counters (GET /_local/stats)."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{url}/_local/stats", headers={"X-API-Key": api_key})
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def child_env() -> dict[str, str]:
    """Environment for a child ``python -m tinker_actors``: this checkout first, no configured server."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TINKER_BASE_URL", None)
    return env
