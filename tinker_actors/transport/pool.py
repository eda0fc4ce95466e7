"""One resource type's connections: a FIFO admission gate in front of httpx clients.

httpcore re-scans its connection list for every queued request and, for each
idle connection, counts every connection again; with one client of 50-100
connections and more callers than connections that bookkeeping dominated
client CPU (DESIGN.md). So a pool

* admits at most as many requests as it has connections, through one FIFO
  ``trio.CapacityLimiter`` (so httpcore never holds a queued request), and
* splits its connections over several small ``httpx.AsyncClient`` shards of at
  most ``shard_size`` connections each (so each scan is short).

The limiter's total equals the sum of the shards' sizes, so an admitted request
always finds a free slot on the pool's stack of free slots (an O(1) pop in sync
code). The clients are opened and closed by ``async with pool``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import ssl
from collections.abc import Sequence

import httpx
import trio

from .limits import ResourceType
from .stats import LatencyWindow, PoolStatistics

__all__ = ["Pool", "split_connections", "tls_context"]


@functools.cache
def tls_context(verify: bool) -> ssl.SSLContext:
    """One shared TLS context per setting: building one loads the CA bundle (tens of ms)."""
    return httpx.create_ssl_context(verify=verify)


def split_connections(connections: int, shard_size: int) -> tuple[int, ...]:
    """Sizes of the shards for ``connections``, none above ``shard_size``, as even as can be."""
    shards = max(1, math.ceil(connections / shard_size))
    base, extra = divmod(connections, shards)
    return tuple(base + (1 if i < extra else 0) for i in range(shards))


class _Shard:
    __slots__ = ("client", "size", "in_flight", "peak")

    def __init__(self, client: httpx.AsyncClient, size: int) -> None:
        self.client = client
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
            for size in self._sizes:
                client = httpx.AsyncClient(
                    limits=httpx.Limits(
                        max_connections=size,
                        # Keep every connection: closing and reopening under load costs more.
                        max_keepalive_connections=size,
                        keepalive_expiry=self._keepalive_expiry,
                    ),
                    verify=self._verify,
                    http1=True,
                    http2=False,
                    follow_redirects=False,
                    trust_env=False,
                    transport=self._http_transport,
                )
                await stack.enter_async_context(client)
                self._shards.append(_Shard(client, size))
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

    @property
    def shard_sizes(self) -> Sequence[int]:
        return self._sizes

    def set_proxy_budget(self, budget: int) -> None:
        self._proxy_budget = self._proxy_budget_max = budget

    def take_proxy_budget(self) -> bool:
        """Spend one proxy-rejection retry; False when the budget is used up."""
        if self._proxy_budget <= 0:
            return False
        self._proxy_budget -= 1
        return True

    async def send(self, request: httpx.Request, *, guard: float | None = None) -> tuple[httpx.Response, float]:
        """Send ``request`` and read its whole body; return the response and its latency.

        ``guard`` bounds the wait for the response headers (seconds), for
        transports that enforce no timeouts of their own; raises trio.TooSlowError.
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
                if guard is None:
                    response = await shard.client.send(request, stream=True)
                else:
                    with trio.fail_after(guard):
                        response = await shard.client.send(request, stream=True)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            finally:
                shard.in_flight -= 1
                self._free.append(shard)
            elapsed = trio.current_time() - start
            self._latency.add(elapsed)
            return response, elapsed

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
