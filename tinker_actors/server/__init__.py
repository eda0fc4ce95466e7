"""A Tinker-compatible server on loopback: ``tinker-actors serve``.

It imports only ``tinker_actors.wire``, numpy, starlette/anyio/hypercorn and
the stdlib; nothing of the client imports it.

* :func:`create_app` (``ServerConfig`` -> ASGI app; ``app.server`` holds the
  state and counters, ``app.lifespan()`` runs it without an ASGI server);
* :func:`serve` (hypercorn-trio on a socket; reports the port via task_status);
* :func:`main` (the ``serve`` command line).
"""

from __future__ import annotations

from typing import Any

from .config import FaultConfig, ServerConfig

__all__ = ["FaultConfig", "ServerConfig", "create_app", "serve", "main"]


def create_app(config: ServerConfig) -> Any:
    from .app import create_app as _create

    return _create(config)


async def serve(config: ServerConfig, *, task_status: Any = None) -> None:
    import trio

    from .serve import serve as _serve

    await _serve(config, task_status=task_status or trio.TASK_STATUS_IGNORED)


def main(argv: list[str] | None = None) -> int:
    from .cli import main as _main

    return _main(argv)
