"""Running the app on a socket: hypercorn's trio worker (default) or uvicorn.

``serve`` lets hypercorn bind ``host:port`` itself (port 0 picks a free port),
reads the bound port back from hypercorn's own startup report and hands it to
``task_status``, so a trio test does ``port = await nursery.start(serve, cfg)``.
Hypercorn owns the listening socket from creation to close: there is no
descriptor handed over between owners, so teardown closes it exactly once.
"""

from __future__ import annotations

from typing import Any

import trio

from .app import create_app
from .config import ServerConfig


def _port_of(binds: list[str]) -> int:
    # hypercorn reports binds as "http://HOST:PORT" (IPv6 hosts in brackets)
    return int(binds[0].rsplit(":", 1)[1])


async def serve(config: ServerConfig, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``config`` with hypercorn-trio until cancelled; ``task_status`` gets the port."""
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve as hyper_serve

    app = create_app(config)
    hc = HyperConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hc.bind = [f"{host}:{config.port}"]
    hc.backlog = 1024
    hc.accesslog = None
    hc.errorlog = None
    # hypercorn's idle timer runs from the connection's start (and from each
    # response) until a request's headers are complete, so it is also the
    # header timeout; body stalls are the app's (limits.body_*_timeout_s)
    hc.keep_alive_timeout = config.limits.connection_idle_timeout_s
    hc.graceful_timeout = 0.5
    hc.h11_max_incomplete_size = 64 * 1024  # the largest request head
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(hyper_serve, app, hc)
        task_status.started(_port_of(binds))


def serve_uvicorn(config: ServerConfig) -> None:
    """Blocking: serve with uvicorn (asyncio) when a benchmark needs the speed."""
    import uvicorn

    app = create_app(config)
    # keep-alive as long as hypercorn's: a pooled client connection idle for a
    # few seconds must not race the server's close
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=config.limits.connection_idle_timeout_s,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=64 * 1024,
    )
