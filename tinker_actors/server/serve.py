"""Running the app on a socket: hypercorn's trio worker (default) or uvicorn.

``serve`` binds first (port 0 picks a free port), reports the bound port
through ``task_status`` and then serves until cancelled, so a trio test does
``port = await nursery.start(serve, cfg)``.
"""

from __future__ import annotations

import socket
from typing import Any

import trio

from .app import create_app
from .config import ServerConfig


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(config: ServerConfig, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``config`` with hypercorn-trio until cancelled; ``task_status`` gets the port."""
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve as hyper_serve

    app = create_app(config)
    sock = _bind(config.host, config.port)
    port = sock.getsockname()[1]
    hc = HyperConfig()
    # hypercorn adopts (and at shutdown closes) the descriptor
    hc.bind = [f"fd://{sock.detach()}"]
    hc.accesslog = None
    hc.errorlog = None
    hc.keep_alive_timeout = 75
    hc.graceful_timeout = 0.5
    hc.h11_max_incomplete_size = 64 * 1024
    async with trio.open_nursery() as nursery:
        await nursery.start(hyper_serve, app, hc)
        task_status.started(port)


def serve_uvicorn(config: ServerConfig) -> None:
    """Blocking: serve with uvicorn (asyncio) when a benchmark needs the speed."""
    import uvicorn

    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", lifespan="on")
