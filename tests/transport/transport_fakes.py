"""Helpers: a Transport in front of an httpx.MockTransport handler."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from tinker_actors.transport import PoolLimits, RetryPolicy, Transport

API_KEY = "tml-UNIT-TEST-SECRET-0123456789"
BASE_URL = "http://tinker.test/base/"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


@contextlib.asynccontextmanager
async def mock_transport(handler: Handler, **kwargs: Any) -> AsyncIterator[Transport]:
    kwargs.setdefault("random", lambda: 1.0)  # backoff waits its ceiling: exact times in tests
    kwargs.setdefault("limits", PoolLimits(sampling=4, futures=4))
    kwargs.setdefault("retry", RetryPolicy())
    async with Transport(
        kwargs.pop("base_url", BASE_URL), kwargs.pop("api_key", API_KEY),
        http_transport=httpx.MockTransport(handler), **kwargs
    ) as transport:
        yield transport


def answer(status: int = 200, **kwargs: Any) -> Callable[[httpx.Request], httpx.Response]:
    """A script step: a fresh httpx.Response per call (a Response can be read only once)."""
    return lambda request: httpx.Response(status, **kwargs)


def fail(exc_type: type[Exception], message: str = "boom") -> Callable[[httpx.Request], httpx.Response]:
    def step(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return step


class Recorder:
    """A handler that answers from a script (the last step repeats) and keeps every request."""

    def __init__(self, *responses: Callable[[httpx.Request], Any]) -> None:
        self.script = list(responses)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(await request.aread())
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        result = step(request)
        if hasattr(result, "__await__"):
            result = await result
        return result

    def header(self, name: str) -> list[str | None]:
        return [r.headers.get(name) for r in self.requests]
