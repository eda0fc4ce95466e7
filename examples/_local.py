"""Shared by the examples: connect to $TINKER_BASE_URL, or start the local server in-process."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import trio

from tinker_actors.clients import open_service_client


@contextlib.asynccontextmanager
async def service_client() -> AsyncIterator[Any]:
    url = os.environ.get("TINKER_BASE_URL")
    key = os.environ.get("TINKER_API_KEY", "tml-local")
    if url:
        async with open_service_client(base_url=url, api_key=key) as service:
            yield service
        return
    from tinker_actors.server import ServerConfig, serve

    with tempfile.TemporaryDirectory(prefix="tinker-example-") as data_dir:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, ServerConfig(data_dir=data_dir))
            async with open_service_client(base_url=f"http://127.0.0.1:{port}", api_key=key, telemetry=False) as service:
                yield service
            nursery.cancel_scope.cancel()
