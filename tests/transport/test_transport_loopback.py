"""Against a real HTTP server on 127.0.0.1: the pool's limits hold on real sockets.

Real sockets and trio's autojump clock don't mix (a task waiting on a socket
looks idle, so the clock would jump), so these tests run on the real clock
under a ceiling, with bounded work.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from tinker_actors.transport import PoolLimits, RequestOptions, RetryPolicy, Transport


class Server:
    """A minimal ASGI app that counts concurrent requests and distinct client connections."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.requests = 0
        self.peers: set[tuple[str, int]] = set()
        self.fail_first = 0
        self.encode: str | None = None  # answer with this Content-Encoding
        self.seen: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # hypercorn's trio worker needs lifespan answered
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests += 1
        self.peers.add(tuple(scope["client"]))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await trio.sleep(0.005)  # overlap requests so the limit is reached
        finally:
            self.active -= 1
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.seen.append((headers, body))
        if self.fail_first > 0:
            self.fail_first -= 1
            status, payload = 503, {"detail": "warming up"}
        else:
            status, payload = 200, {"path": scope["path"], "key": headers.get("x-idempotency-key")}
        data = msgspec.json.encode(payload)
        extra: list[tuple[bytes, bytes]] = []
        if self.encode == "gzip":
            import gzip

            data, extra = gzip.compress(data), [(b"content-encoding", b"gzip")]
        elif self.encode == "zstd":
            import zstandard

            data, extra = zstandard.ZstdCompressor().compress(data), [(b"content-encoding", b"zstd")]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"x-request-id", b"req-1"), *extra]})
        await send({"type": "http.response.body", "body": data})


@contextlib.asynccontextmanager
async def running(app: Server) -> AsyncIterator[str]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = 30
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, config, shutdown_trigger=stop.wait, task_status=task_status))
        try:
            yield binds[0]
        finally:
            stop.set()


async def test_pool_never_exceeds_its_connections() -> None:
    app = Server()
    limits = PoolLimits(sampling=6, shard_size=2)
    with trio.fail_after(20):
        async with running(app) as url, Transport(url, "tml-loopback", limits=limits) as transport:
            async def caller() -> None:
                for _ in range(4):
                    await transport.request("sampling", "POST", "asample", json={"i": 1})

            async with trio.open_nursery() as nursery:
                for _ in range(30):
                    nursery.start_soon(caller)
                await trio.sleep(0.05)
                mid = transport.pool("sampling").statistics()
            stats = transport.pool("sampling").statistics()
    assert app.requests == 120
    assert app.peak == 6, "30 callers should fill, and never pass, 6 connections"
    assert len(app.peers) <= 6, "connections are kept alive and reused"
    assert stats.peak_in_flight == 6
    assert stats.shard_connections == (2, 2, 2)
    assert all(peak <= 2 for peak in stats.peak_in_flight_per_shard)
    assert mid.in_flight <= 6 and mid.queued > 0  # the rest wait in the FIFO gate, not in httpx
    assert stats.completed == 120 and stats.errors == 0 and stats.in_flight == 0


async def test_real_retry_keeps_the_idempotency_key() -> None:
    app = Server()
    app.fail_first = 2
    with trio.fail_after(20):
        async with running(app) as url, Transport(url, "tml-loopback", retry=RetryPolicy(initial_delay=0.01)) as transport:
            got = await transport.request("session", "POST", "/create_session", json={},
                                          options=RequestOptions(idempotency_key="k-1"))
            stats = transport.statistics()["session"]
    assert got == {"path": "/api/v1/create_session", "key": "k-1"}
    assert app.requests == 3 and stats.retries == 2


async def test_real_socket_request_headers_body_and_encoded_answers() -> None:
    """The pool talks httpcore directly: Host, Content-Length, our headers and gzip/zstd answers still work."""
    app = Server()
    with trio.fail_after(20):
        async with running(app) as url, Transport(url, "tml-loopback") as transport:
            plain = await transport.request("sampling", "POST", "asample", json={"i": 1}, headers={"X-Extra": "1"})
            app.encode = "gzip"
            gz = await transport.request("sampling", "POST", "asample", json={"i": 2})
            app.encode = "zstd"
            zs = await transport.request("sampling", "POST", "asample", json={"i": 3},
                                         options=RequestOptions(raw=True))
            app.encode = None
            got = await transport.request("session", "GET", "healthz")
    assert plain["path"] == gz["path"] == "/api/v1/asample" and got["key"] is None
    assert msgspec.json.decode(zs.content)["path"] == "/api/v1/asample"
    assert zs.headers["x-request-id"] == "req-1" and zs.status == 200
    headers, body = app.seen[0]
    host = url.split("//", 1)[1]
    assert headers["host"] == host and headers["content-length"] == str(len(body))
    assert body == b'{"i":1}' and headers["content-type"] == "application/json"
    assert headers["x-api-key"] == "tml-loopback" and headers["x-extra"] == "1"
    assert headers["x-idempotency-key"].startswith("tinker-actors-")
    assert headers["x-stainless-retry-count"] == "0"
    get_headers, get_body = app.seen[-1]
    assert get_body == b"" and "x-idempotency-key" not in get_headers
