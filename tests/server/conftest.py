"""Fixtures: the local server app in-process, reached through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import open_app

from tinker_actors.server import ServerConfig


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def served(data_dir: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    async with open_app(ServerConfig(data_dir=data_dir)) as pair:
        yield pair
