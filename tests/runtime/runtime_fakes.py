"""A fake transport: records every request and answers through a handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from tinker_actors.errors import status_error


class Raw:
    def __init__(self, body: Any, content_type: str = "application/json") -> None:
        self.content = body if isinstance(body, bytes) else msgspec.json.encode(body)
        self.headers = {"content-type": content_type}


def http_error(status: int, body: Any = None, **kw: Any) -> Exception:
    return status_error(status)("fake", status_code=status, body=body, endpoint="fake", **kw)


class Call(msgspec.Struct):
    at: float
    resource: str
    method: str
    path: str
    json: Any
    headers: dict[str, str] | None
    accept: str | None


class FakeTransport:
    def __init__(self, handler: Callable[[Call], Awaitable[Any]]) -> None:
        self.handler = handler
        self.calls: list[Call] = []

    async def request(self, resource: Any, method: str, path: str, *, json: Any = None, content: Any = None,
                      content_type: Any = None, accept: Any = None, headers: Any = None, options: Any = None,
                      decode: Any = None) -> Any:
        call = Call(trio.current_time(), str(resource), method, path, json, headers, accept)
        self.calls.append(call)
        await trio.lowlevel.checkpoint()
        return await self.handler(call)

    def paths(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]


def session_server(extra: Callable[[Call], Awaitable[Any]] | None = None, *, flags: dict | None = None,
                   dynamic: Any = None) -> FakeTransport:
    """A fake that answers the start-up routes; `extra` handles the rest."""

    async def handler(call: Call) -> Any:
        if call.path == "/api/v1/client/config":
            return Raw(flags or {})
        if call.path == "/api/v1/client/dynamic_config":
            if dynamic is None:
                raise http_error(404)
            return Raw(dynamic)
        if call.path == "/api/v1/create_session":
            return Raw({"session_id": "sess-1"})
        if call.path in ("/api/v1/session_heartbeat", "/api/v1/telemetry") or call.path.endswith("/finish"):
            return Raw({})
        if extra is not None:
            return await extra(call)
        raise http_error(404)

    return FakeTransport(handler)
