"""One resource type's connections: a FIFO admission gate in front of httpcore shards.

httpcore re-scans its connection list for every queued request and, for each
idle connection, counts every connection again; with one client of 50-100
connections and more callers than connections that bookkeeping dominated
client CPU (DESIGN.md). So a pool

* admits at most as many requests as it has connections, through one FIFO
  ``trio.CapacityLimiter`` (so httpcore never holds a queued request), and
* splits its connections over several small shards of at most ``shard_size``
  connections each (so each scan is short). A shard is an
  ``httpcore.AsyncConnectionPool`` on the coalescing backend
  (:mod:`.netstream`), called directly: ``httpx.AsyncClient`` would add
  cookie, auth and redirect handling we never use. Errors are mapped to
  httpx's exceptions and bodies decoded with httpx's decoders. An injected
  ``httpx`` transport (tests' ``MockTransport``) replaces the httpcore pools
  and is shared by every shard.

The limiter's total equals the sum of the shards' sizes, so an admitted request
always finds a free slot on the pool's stack of free slots (an O(1) pop in sync
code). The transports are opened and closed by ``async with pool``.

A body is read into memory whole, so its size is capped (``max_bytes``): a
Content-Length over the cap is refused before a byte of the body is read, a
body without one is refused as soon as the bytes read pass the cap (the
connection is then closed, not reused), and a compressed body is inflated in
bounded steps that stop as soon as the decoded size passes it (``inflate``).
Each raises :class:`ResponseTooLarge`. The whole exchange, headers and body,
has a deadline (``deadline``), on top of httpcore's per-read timeout.
"""

from __future__ import annotations

import contextlib
import functools
import math
import ssl
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import httpcore
import httpx
import trio
from httpx._transports.default import map_httpcore_exceptions as _map_httpcore_exceptions

from .inflate import BadEncoding, TooLarge, inflate
from .limits import ResourceType
from .netstream import coalescing_pool
from .responses import plain_headers
from .stats import LatencyWindow, PoolStatistics

__all__ = ["Pool", "Reply", "ResponseTooLarge", "ResponseDeadlineExceeded", "split_connections", "tls_context"]


class ResponseDeadlineExceeded(httpx.ReadTimeout):
    """The whole response (headers and body) did not arrive within the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        super().__init__(f"no complete response within {deadline:g} s (the response deadline)")


class ResponseTooLarge(Exception):
    """A response body over the size cap; the transport turns it into ResponseDecodeError."""

    def __init__(self, limit: int, size: int, *, declared: bool, status: int) -> None:
        self.limit = limit
        self.size = size
        self.declared = declared  # True: Content-Length said so; False: this many bytes were read
        self.status = status
        what = f"Content-Length {size}" if declared else f"more than {limit} bytes (read {size})"
        super().__init__(f"HTTP {status} response body of {what} is over the {limit}-byte limit")


@functools.cache
def tls_context(verify: bool) -> ssl.SSLContext:
    """One shared TLS context per setting: building one loads the CA bundle (tens of ms)."""
    return httpx.create_ssl_context(verify=verify)


def split_connections(connections: int, shard_size: int) -> tuple[int, ...]:
    """Sizes of the shards for ``connections``, none above ``shard_size``, as even as can be."""
    shards = max(1, math.ceil(connections / shard_size))
    base, extra = divmod(connections, shards)
    return tuple(base + (1 if i < extra else 0) for i in range(shards))


class Reply(NamedTuple):
    """One answer, body read and content-decoded; header names lower-cased."""

    status_code: int
    headers: dict[str, str]
    content: bytes


class _Shard:
    __slots__ = ("transport", "raw", "size", "in_flight", "peak")

    def __init__(self, transport: httpx.AsyncBaseTransport | None, raw: httpcore.AsyncConnectionPool | None, size: int) -> None:
        # exactly one of the two: our own httpcore pool, or an injected httpx transport
        self.transport = transport
        self.raw = raw
        self.size = size
        self.in_flight = 0
        self.peak = 0


class Pool:
    """Connections for one :class:`ResourceType`. Use as ``async with Pool(...) as pool``."""

    def __init__(
        self,
        resource: ResourceType | str,
        connections: int,
        *,
        shard_size: int = 1,
        verify: bool | ssl.SSLContext = True,
        keepalive_expiry: float = 30.0,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.resource = ResourceType(resource)
        self.connections = connections
        self._sizes = split_connections(connections, shard_size)
        # One TLS context for every shard, or 100 one-connection clients would load the CA bundle 100 times.
        self._verify = tls_context(verify) if isinstance(verify, bool) else verify
        self._keepalive_expiry = keepalive_expiry
        self._http_transport = http_transport
        self._limiter = trio.CapacityLimiter(connections)
        self._shards: list[_Shard] = []
        # One entry per free connection slot; popped on admission, pushed back
        # on release. LIFO so that light traffic keeps reusing warm connections.
        self._free: list[_Shard] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._latency = LatencyWindow()
        self._attempts = 0
        self._completed = 0
        self._errors = 0
        self._retries = 0
        self._peak = 0
        self._proxy_budget = 0
        self._proxy_budget_max = 0

    def __repr__(self) -> str:
        in_flight = sum(s.in_flight for s in self._shards)
        return (
            f"<Pool {self.resource.value}: {self.connections} connections in "
            f"{len(self._sizes)} clients, {in_flight} in flight, "
            f"{self._limiter.statistics().tasks_waiting} queued>"
        )

    async def __aenter__(self) -> Pool:
        if self._stack is not None:
            raise RuntimeError(f"{self!r} is already open")
        stack = contextlib.AsyncExitStack()
        try:
            if self._http_transport is not None:
                # An injected transport (tests' MockTransport) is shared by every shard: open it once.
                await stack.enter_async_context(self._http_transport)
            for size in self._sizes:
                if self._http_transport is not None:
                    self._shards.append(_Shard(self._http_transport, None, size))
                    continue
                raw = coalescing_pool(
                    limits=httpx.Limits(
                        max_connections=size,
                        # Keep every connection: closing and reopening under load costs more.
                        max_keepalive_connections=size,
                        keepalive_expiry=self._keepalive_expiry,
                    ),
                    verify=self._verify,
                )
                await stack.enter_async_context(raw)
                self._shards.append(_Shard(None, raw, size))
        except BaseException:
            await stack.aclose()
            self._shards.clear()
            raise
        # Reversed so that the first pops land on shard 0.
        self._free = [shard for shard in reversed(self._shards) for _ in range(shard.size)]
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            with trio.CancelScope(shield=True):
                await stack.aclose()

    def set_proxy_budget(self, budget: int) -> None:
        self._proxy_budget = self._proxy_budget_max = budget

    def take_proxy_budget(self) -> bool:
        """Spend one proxy-rejection retry; False when the budget is used up."""
        if self._proxy_budget <= 0:
            return False
        self._proxy_budget -= 1
        return True

    async def send(self, request: httpx.Request, *, guard: float | None = None) -> tuple[Reply, float]:
        """Send an ``httpx.Request``; see :meth:`send_parts`."""
        body = request.content
        # send_parts writes Host and Content-Length itself; httpx.Request already has them
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in (b"host", b"content-length")]
        return await self.send_parts(
            request.method, request.url, headers, body, request.extensions.get("timeout"), guard=guard
        )

    async def send_parts(
        self,
        method: str,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        timeouts: dict[str, float | None] | None,
        *,
        guard: float | None = None,
        max_bytes: int | None = None,
        deadline: float | None = None,
    ) -> tuple[Reply, float]:
        """Send one request and read its whole body; return the reply and its latency.

        ``headers`` are sent as given (plus Host and Content-Length when
        missing). ``guard`` bounds the wait for the response headers (seconds),
        for transports that enforce no timeouts of their own; raises
        trio.TooSlowError. ``deadline`` bounds the whole exchange, headers
        and body (a read timeout only bounds each read, so a server that
        drips a byte at a time would hold the call forever); raises
        :class:`ResponseDeadlineExceeded`, an ``httpx.ReadTimeout``.
        ``max_bytes`` caps the body (before and after content decoding);
        raises :class:`ResponseTooLarge`. Network failures raise httpx's
        exceptions.
        """
        if self._stack is None:
            raise RuntimeError(f"{self!r} is not open")
        async with self._limiter:
            # The limiter admits no more tasks than there are slots, so this never fails.
            shard = self._free.pop()
            shard.in_flight += 1
            if shard.in_flight > shard.peak:
                shard.peak = shard.in_flight
            total = self._limiter.borrowed_tokens
            if total > self._peak:
                self._peak = total
            self._attempts += 1
            start = trio.current_time()
            try:
                with trio.CancelScope(deadline=start + deadline if deadline is not None else math.inf) as scope:
                    if shard.raw is not None:
                        reply = await _send_raw(shard.raw, method, url, headers, body, timeouts, guard, max_bytes)
                    else:
                        reply = await _send_httpx(shard.transport, method, url, headers, body, timeouts, guard, max_bytes)
                if scope.cancelled_caught:
                    raise ResponseDeadlineExceeded(deadline)  # type: ignore[arg-type]
            finally:
                shard.in_flight -= 1
                self._free.append(shard)
            elapsed = trio.current_time() - start
            self._latency.add(elapsed)
            return reply, elapsed

    def record_completed(self) -> None:
        self._completed += 1
        if self._proxy_budget < self._proxy_budget_max:
            self._proxy_budget += 1

    def record_error(self) -> None:
        self._errors += 1

    def record_retry(self) -> None:
        self._retries += 1

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            resource=self.resource.value,
            connections=self.connections,
            shard_connections=tuple(self._sizes),
            in_flight=sum(s.in_flight for s in self._shards),
            queued=self._limiter.statistics().tasks_waiting,
            peak_in_flight=self._peak,
            peak_in_flight_per_shard=tuple(s.peak for s in self._shards),
            attempts=self._attempts,
            completed=self._completed,
            errors=self._errors,
            retries=self._retries,
            latency=self._latency.summary(),
        )


# httpcore directly, not httpx.AsyncClient nor even httpx.AsyncHTTPTransport:
# on the sample path the client's cookie jar, auth and redirect machinery and
# the httpx Request/Response models (header normalization three times over,
# URL re-parsing, stream wrappers) cost about a third of the client's CPU per
# request, and we use none of it (redirects are never followed; the key is a
# header; bodies are bytes). Exceptions are mapped to httpx's as its own
# transport maps them, so callers see the same errors.
_CONTENT_LENGTH = b"Content-Length"


async def _send_raw(
    pool: httpcore.AsyncConnectionPool,
    method: str,
    url: httpx.URL,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    timeouts: dict[str, float | None] | None,
    guard: float | None,
    max_bytes: int | None,
) -> Reply:
    raw_url = url.raw_scheme, url.raw_host, url.port, url.raw_path
    headers = [(b"Host", _host_header(raw_url[0], raw_url[1], raw_url[2])), *headers]
    if body is not None:
        headers.append((_CONTENT_LENGTH, str(len(body)).encode()))
    elif method not in ("GET", "HEAD"):
        headers.append((_CONTENT_LENGTH, b"0"))
    request = httpcore.Request(
        method.encode(),
        httpcore.URL(scheme=raw_url[0], host=raw_url[1], port=raw_url[2], target=raw_url[3]),
        headers=headers,
        content=body if body is not None else b"",
        extensions={"timeout": timeouts} if timeouts is not None else {},
    )
    with _map_httpcore_exceptions():
        # httpcore enforces connect/read/write timeouts itself: a guard scope on
        # top (one more cancel scope per request) is only needed without them.
        if guard is None or timeouts is not None:
            response = await pool.handle_async_request(request)
        else:
            with trio.fail_after(guard):
                response = await pool.handle_async_request(request)
        try:
            if max_bytes is None:
                content = await response.aread()
            else:
                _check_declared(response.headers, max_bytes, response.status)
                content = await _read_capped(response.aiter_stream(), max_bytes, response.status)
        finally:
            await response.aclose()
    plain: dict[str, str] = {}
    for name, value in response.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        plain[key] = f"{plain[key]}, {text}" if key in plain else text
    encoding = plain.get("content-encoding")
    if encoding and content:
        content = _decode_content(encoding, content, max_bytes, response.status)
    return Reply(response.status, plain, content)


def _check_declared(headers: Any, max_bytes: int, status: int) -> None:
    """Refuse a body whose Content-Length is over the cap, before reading any of it."""
    for name, value in headers:
        if (name.lower() if isinstance(name, str) else name.lower().decode("latin-1")) == "content-length":
            try:
                size = int(value)
            except ValueError:
                return  # not a number: the read below still counts the bytes
            if size > max_bytes:
                raise ResponseTooLarge(max_bytes, size, declared=True, status=status)
            return


async def _read_capped(chunks: AsyncIterator[bytes], max_bytes: int, status: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise ResponseTooLarge(max_bytes, total, declared=False, status=status)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _send_httpx(
    transport: httpx.AsyncBaseTransport | None,
    method: str,
    url: httpx.URL,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    timeouts: dict[str, float | None] | None,
    guard: float | None,
    max_bytes: int | None,
) -> Reply:
    assert transport is not None
    request = httpx.Request(method, url, headers=headers, content=body,
                            extensions={"timeout": timeouts} if timeouts is not None else {})
    if guard is None:
        response = await transport.handle_async_request(request)
    else:
        with trio.fail_after(guard):
            response = await transport.handle_async_request(request)
    response.request = request
    try:
        if max_bytes is None:
            content = await response.aread()
        else:
            _check_declared(response.headers.raw, max_bytes, response.status_code)
            if response.is_stream_consumed:  # built from bytes (MockTransport): already in memory
                content = response.content
                if len(content) > max_bytes:
                    raise ResponseTooLarge(max_bytes, len(content), declared=False, status=response.status_code)
            else:
                # decoded chunks: the cap bounds what we hold, whatever the encoding
                content = await _read_capped(response.aiter_bytes(), max_bytes, response.status_code)
    finally:
        await response.aclose()
    return Reply(response.status_code, plain_headers(response.headers), content)


def _host_header(scheme: bytes, host: bytes, port: int | None) -> bytes:
    default = {b"http": 80, b"https": 443}.get(scheme)
    if b":" in host:  # IPv6 literal
        host = b"[" + host + b"]"
    return host if port is None or port == default else host + b":" + str(port).encode()


def _decode_content(encoding: str, content: bytes, max_bytes: int | None, status: int) -> bytes:
    """Undo Content-Encoding in bounded steps (see ``inflate``); httpx.DecodingError when invalid."""
    try:
        return inflate(encoding, content, max_bytes)
    except TooLarge as exc:
        raise ResponseTooLarge(max_bytes or 0, exc.size, declared=False, status=status) from None
    except BadEncoding as exc:
        raise httpx.DecodingError(str(exc)) from None
