"""An httpcore network backend that sends each HTTP/1.1 request in one write.

httpcore writes a request's head and its body separately, and trio sockets set
TCP_NODELAY, so every POST costs two ``send`` syscalls and two TCP segments
(and the server two reads). On loopback the two sends were the largest single
item of the client's CPU per sample (benchmarks/profile_sample_path.py). This
backend's streams hold writes in a buffer and send it in one go when httpcore
first reads (the request is complete by then: HTTP/1.1 reads only after
sending), or when the buffer passes ``FLUSH_BYTES`` (big bodies stream as
before), or on TLS start-up and close.
"""

from __future__ import annotations

import ssl
import typing

import httpcore
import httpx

__all__ = ["CoalescingBackend", "CoalescingStream", "coalescing_pool", "FLUSH_BYTES"]

FLUSH_BYTES = 64 * 1024


class CoalescingStream(httpcore.AsyncNetworkStream):
    """A network stream whose writes wait for the next read (or a full buffer)."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._write_timeout: float | None = None

    async def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        await self._stream.write(data, self._write_timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._pending.append(buffer)
        self._pending_bytes += len(buffer)
        self._write_timeout = timeout
        if self._pending_bytes >= FLUSH_BYTES:
            await self._flush()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush()
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        # Unsent bytes of a request being torn down are dropped, as a closed socket would.
        self._pending.clear()
        self._pending_bytes = 0
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        await self._flush()
        return CoalescingStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class CoalescingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's automatic backend (trio under trio), with :class:`CoalescingStream` streams."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or _auto_backend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return CoalescingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return CoalescingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _auto_backend() -> httpcore.AsyncNetworkBackend:
    from httpcore._backends.auto import AutoBackend  # not re-exported; the default of every pool

    return AutoBackend()


def coalescing_pool(*, limits: httpx.Limits, verify: ssl.SSLContext) -> httpcore.AsyncConnectionPool:
    """An HTTP/1.1 httpcore connection pool on :class:`CoalescingBackend`."""
    return httpcore.AsyncConnectionPool(
        ssl_context=verify,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=CoalescingBackend(),
    )
