"""Fixtures: a local server on 127.0.0.1 per test, and a client session on it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import support

from tinker_actors.clients import ServiceClient, open_service_client

API_KEY = "tml-clients-test"
BASE_MODEL = "tinker-actors/byte-lm-tiny"


@contextlib.asynccontextmanager
async def local_server(tmp_path: Any, **config: Any) -> AsyncIterator[str]:
    """Serve a local server for the block; yields its base URL."""
    async with support.local_server(tmp_path / "server", **config) as url:
        yield url


@contextlib.asynccontextmanager
async def client_on(base_url: str, **config: Any) -> AsyncIterator[ServiceClient]:
    config.setdefault("telemetry", False)
    async with open_service_client(base_url=base_url, api_key=API_KEY, **config) as client:
        yield client


async def server_stats(base_url: str) -> dict[str, Any]:
    return await support.server_stats(base_url, API_KEY)


@pytest.fixture
def base_model() -> str:
    return BASE_MODEL


class Helpers:
    """The helpers above, handed to tests as the ``h`` fixture (tests/ is not a package)."""

    local_server = staticmethod(local_server)
    client_on = staticmethod(client_on)
    server_stats = staticmethod(server_stats)
    API_KEY = API_KEY


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers
