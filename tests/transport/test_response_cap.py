"""A response body over the size cap is refused while it streams, never read whole.

Mock transports cover the httpx path (injected transports); a loopback server
covers our own httpcore path on real sockets (real clock, bounded work).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from test_transport_loopback import running
from transport_fakes import mock_transport

from tinker_actors.errors import ResponseDecodeError
from tinker_actors.transport import RequestOptions, Transport

CAP = 64 * 1024
CHUNK = b"x" * 4096


class Endless:
    """A body that streams 4 KiB chunks for as long as anyone reads it, counting them."""

    def __init__(self) -> None:
        self.chunks = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.chunks < 100_000:  # 400 MB: far past any cap, still bounded
            self.chunks += 1
            yield CHUNK
            await trio.lowlevel.checkpoint()


async def test_mock_declared_length_over_the_cap_is_refused_before_reading() -> None:
    body = Endless()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": str(10 * CAP)}, content=body)

    async with mock_transport(handler, max_response_bytes=CAP) as transport:
        with pytest.raises(ResponseDecodeError) as info:
            await transport.request("futures", "POST", "retrieve_future", json={"request_id": "r"})
    assert body.chunks == 0  # not one chunk of the body was pulled
    assert info.value.endpoint == "POST /api/v1/retrieve_future"
    assert f"Content-Length {10 * CAP}" in str(info.value) and f"{CAP}-byte limit" in str(info.value)


async def test_mock_streamed_body_stops_at_the_cap() -> None:
    body = Endless()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)  # no Content-Length: chunked

    async with mock_transport(handler) as transport:
        with pytest.raises(ResponseDecodeError) as info:
            await transport.request("sampling", "POST", "asample", json={}, options=RequestOptions(max_response_bytes=CAP))
        stats = transport.statistics()["sampling"]
    assert body.chunks == CAP // len(CHUNK) + 1  # read up to the first chunk past the cap, no further
    assert "POST /api/v1/asample" in str(info.value) and f"more than {CAP} bytes" in str(info.value)
    assert stats.errors == 1 and stats.retries == 0  # refused, not retried


async def test_mock_bodies_within_the_cap_and_the_per_call_override() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": "y" * (CAP // 2)})

    async with mock_transport(handler, max_response_bytes=CAP) as transport:
        got = await transport.request("session", "GET", "healthz")
        with pytest.raises(ResponseDecodeError):
            await transport.request("session", "GET", "healthz", options=RequestOptions(max_response_bytes=CAP // 4))
    assert len(got["data"]) == CAP // 2


def test_default_cap_is_256_mib() -> None:
    assert Transport("http://tinker.test", "tml-x").max_response_bytes == 256 * 1024 * 1024


class BigServer:
    """Answers /declared with a Content-Length over the cap, /chunked with an endless chunked body."""

    def __init__(self) -> None:
        self.sent_chunks = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        while (await receive()).get("more_body"):
            pass
        path = scope["path"]
        if path.endswith("/small"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        headers = [(b"content-type", b"application/octet-stream")]
        if path.endswith("/declared"):
            headers.append((b"content-length", str(1000 * CAP).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            for _ in range(2000):  # bounded: 8 MB at most
                self.sent_chunks += 1
                await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except Exception:  # the client hung up: expected
            pass


async def test_loopback_oversized_bodies_are_refused_and_the_pool_recovers() -> None:
    app = BigServer()
    with trio.fail_after(20):
        async with running(app) as url, Transport(url, "tml-loopback", max_response_bytes=CAP) as transport:
            with pytest.raises(ResponseDecodeError) as declared:
                await transport.request("session", "GET", "declared")
            with pytest.raises(ResponseDecodeError) as chunked:
                await transport.request("session", "GET", "chunked")
            assert await transport.request("session", "GET", "small") == {}
    assert f"Content-Length {1000 * CAP}" in str(declared.value) and declared.value.endpoint == "GET /api/v1/declared"
    assert f"more than {CAP} bytes" in str(chunked.value) and chunked.value.endpoint == "GET /api/v1/chunked"
