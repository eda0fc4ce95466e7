"""The client against servers that do not follow the protocol (issue 11, client side).

Each test starts a small fake HTTP server on 127.0.0.1 (raw trio sockets, so
it can misbehave in ways a real framework would not: drip a body, go silent
after the headers, send 10 GB) and checks that the call ends within its
deadline with a typed error naming the method, path and status, and that
memory stays bounded. Regressions from issue 11: a dripping server hung the
library for good (only a per-read timeout applied), HTML or a redirect in
answer to the start-up calls surfaced as a bare ``msgspec.DecodeError`` or
``TypeError``, and a key ending in ``\\r`` was retried for 30 s and reported
as an unreachable server.
"""

from __future__ import annotations

import contextlib
import functools
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import zstandard

from tinker_actors.clients import open_service_client
from tinker_actors.errors import APIStatusError, APITimeoutError, ConfigError, ResponseDecodeError
from tinker_actors.transport import RequestOptions, Transport
from tinker_actors.wire import types as wt

KEY = "tml-hostile-peer-Secret0123"
Reply = Callable[[trio.SocketStream, str], Awaitable[None]]


async def _read_request(stream: trio.SocketStream) -> str | None:
    """The request's path; its body is read and dropped."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        body += chunk
    return lines[0].split(" ")[1]


@contextlib.asynccontextmanager
async def fake_server(reply: Reply) -> AsyncIterator[tuple[str, list[str]]]:
    """Serve ``reply(stream, path)`` for every request on 127.0.0.1; yields (base URL, paths seen)."""
    seen: list[str] = []

    async def handle(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with stream:
                while (path := await _read_request(stream)) is not None:
                    seen.append(path)
                    await reply(stream, path)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}", seen
        nursery.cancel_scope.cancel()


def head(status: str = "200 OK", content_type: str = "application/json", length: int | None = None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{size}{extra}\r\n".encode()


async def answer(stream: trio.SocketStream, body: bytes, **kw: object) -> None:
    await stream.send_all(head(length=len(body), **kw) + body)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def transport(url: str, **kw: object) -> AsyncIterator[Transport]:
    t = Transport(url, KEY, timeout=0.5, connect_timeout=0.5, **kw)  # type: ignore[arg-type]
    async with t:
        yield t


def ends_within(seconds: float) -> contextlib.AbstractContextManager[None]:
    return trio.fail_after(seconds)


# -- bodies that never end -----------------------------------------------------------------------

async def test_a_dripping_body_ends_at_the_response_deadline() -> None:
    async def drip(stream: trio.SocketStream, path: str) -> None:
        await stream.send_all(head(length=10_000))
        for _ in range(10_000):  # a byte every 0.1 s: no single read ever times out
            await stream.send_all(b" ")
            await trio.sleep(0.1)

    async with fake_server(drip) as (url, seen), transport(url, response_deadline=1.5) as t:
        started = time.monotonic()
        with ends_within(30), pytest.raises(APITimeoutError) as info:
            await t.request("session", "POST", "create_session", json={}, options=RequestOptions(total_retry_timeout=4))
        took = time.monotonic() - started
    assert "response deadline" in str(info.value) and "POST /api/v1/create_session" in str(info.value)
    assert 1.5 <= took and len(seen) >= 2  # retried as a transient timeout, within its budget
    assert info.value.attempts == len(seen)


async def test_headers_then_silence_is_a_read_timeout() -> None:
    async def silent(stream: trio.SocketStream, path: str) -> None:
        await stream.send_all(head(length=100))
        await trio.sleep_forever()

    async with fake_server(silent) as (url, seen), transport(url) as t:
        with ends_within(30), pytest.raises(APITimeoutError, match="POST /api/v1/create_session"):
            await t.request("session", "POST", "create_session", json={}, options=RequestOptions(max_retries=0))
    assert len(seen) == 1


@pytest.mark.parametrize("declared", [True, False])
async def test_a_huge_body_is_refused_with_bounded_memory(declared: bool) -> None:
    chunk = b"x" * 65536

    async def huge(stream: trio.SocketStream, path: str) -> None:
        if declared:
            await stream.send_all(head(length=10 * 1024**3))
        else:
            await stream.send_all(head(extra="Connection: close\r\n"))  # no length: read to the end
        for _ in range(160_000):  # 10 GiB, if anyone kept reading
            await stream.send_all(chunk)

    tracemalloc.start()
    try:
        async with fake_server(huge) as (url, _), transport(url, max_response_bytes=4 * 1024 * 1024) as t:
            with ends_within(60), pytest.raises(ResponseDecodeError) as info:
                await t.request("session", "GET", "healthz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "GET /api/v1/healthz" in str(info.value) and "4194304-byte limit" in str(info.value)
    assert peak < 24 * 1024 * 1024  # the cap (4 MiB) and its copies, never the 10 GiB


# -- answers that are not the protocol -------------------------------------------------------------

HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>\r\n<p>nginx</p></body></html>"


def start_up(overrides: dict[str, Reply]) -> Reply:
    """A server that gets through start-up, with some routes answered by ``overrides``."""

    async def reply(stream: trio.SocketStream, path: str) -> None:
        name = path.removeprefix("/api/v1/")
        if name in overrides:
            await overrides[name](stream, path)
        elif name == "client/config":
            await answer(stream, b"{}")
        elif name == "client/dynamic_config":
            await answer(stream, b'{"detail":"no"}', status="404 Not Found")
        elif name == "create_session":
            await answer(stream, b'{"session_id":"sess-1"}')
        elif name == "create_sampling_session":
            await answer(stream, b'{"sampling_session_id":"sampler-1"}')
        elif name == "asample":
            await answer(stream, b'{"request_id":"req-1","sample_sequence_ids":["req-1:0"]}')
        else:
            await answer(stream, b"{}")

    return reply


def serve(body: bytes, **kw: object) -> Reply:
    async def reply(stream: trio.SocketStream, path: str) -> None:
        await answer(stream, body, **kw)

    return reply


@pytest.mark.parametrize(
    ("route", "reply", "status", "start"),
    [
        ("client/config", serve(HTML, content_type="text/html"), "HTTP 200", "<!DOCTYPE html>"),
        ("client/config", serve(b'{"pjwt_auth_enabled": tru', content_type="application/json"), "HTTP 200", "pjwt"),
        ("client/config", serve(b"[1, 2]"), "HTTP 200", "[1, 2]"),
        ("create_session", serve(HTML, content_type="text/html"), "HTTP 200", "<!DOCTYPE html>"),
        ("create_session", serve(b'{"session": 1}'), "HTTP 200", None),
    ],
)
async def test_start_up_answers_that_are_not_json_objects_are_typed_errors(route, reply, status, start) -> None:
    async with fake_server(start_up({route: reply})) as (url, seen):
        with ends_within(30), pytest.raises(ResponseDecodeError) as info:
            async with open_service_client(base_url=url, api_key=KEY, telemetry=False):
                pass
    message = str(info.value)
    assert f"POST /api/v1/{route}" in message and status in message
    if start is not None:
        assert start in message
    assert KEY not in message and len(message) < 1200


async def test_a_redirect_on_start_up_is_a_typed_error_and_never_followed() -> None:
    async def loop(stream: trio.SocketStream, path: str) -> None:
        await answer(stream, b"", status="302 Found", extra=f"Location: {path}\r\n")  # to itself, forever

    async with fake_server(start_up({"client/config": loop})) as (url, seen):
        with ends_within(30), pytest.raises(APIStatusError) as info:
            async with open_service_client(base_url=url, api_key=KEY, telemetry=False):
                pass
    assert info.value.status_code == 302 and "POST /api/v1/client/config" in str(info.value)
    assert "not followed" in str(info.value)
    assert seen == ["/api/v1/client/config"]


async def test_garbage_protobuf_result_is_a_typed_error_and_the_client_goes_on() -> None:
    calls = {"n": 0}

    async def garbage(stream: trio.SocketStream, path: str) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            await answer(stream, b"\xff\xfe\x00garbage\x07\x08" * 5, content_type="application/x-protobuf")
        else:
            await answer(stream, b'{"error": "sampler is gone", "category": "user"}')

    async with fake_server(start_up({"retrieve_future": garbage})) as (url, _):
        with ends_within(30):
            async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as client:
                sampler = await client.create_sampling_client(base_model="m")
                with pytest.raises(ResponseDecodeError) as info:
                    await sampler.sample(wt.ModelInput.from_ints([1]), 1, wt.SamplingParams(max_tokens=1))
                # the same client still works: the next answer is a protocol error, typed as such
                with pytest.raises(Exception, match="sampler is gone"):
                    await sampler.sample(wt.ModelInput.from_ints([1]), 1, wt.SamplingParams(max_tokens=1))
    message = str(info.value)
    assert "POST /api/v1/retrieve_future" in message and "HTTP 200" in message and "\\xff\\xfe\\x00garbage" in message


# -- keys that cannot be sent --------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["\r", "\n", " ", "\t", "\x00"])
async def test_a_key_with_whitespace_or_control_characters_is_refused_at_once(bad: str) -> None:
    async with fake_server(start_up({})) as (url, seen):
        started = time.monotonic()
        with pytest.raises(ConfigError) as info:
            async with open_service_client(base_url=url, api_key=KEY + bad, telemetry=False):
                pass
        assert time.monotonic() - started < 5
    assert seen == []  # refused before any request
    assert "API key" in str(info.value) and KEY not in str(info.value)
    with pytest.raises(ConfigError):
        Transport(url, KEY + bad)


def _bomb(encoding: str, size: int) -> bytes:
    zeros = bytes(1 << 20)
    if encoding == "gzip":
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return b"".join(packer.compress(zeros) for _ in range(size >> 20)) + packer.flush()
    packer = zstandard.ZstdCompressor().compressobj()
    return b"".join(packer.compress(zeros) for _ in range(size >> 20)) + packer.flush()


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
async def test_a_compressed_bomb_is_refused_with_bounded_memory(encoding: str) -> None:
    bomb = _bomb(encoding, 256 << 20)  # 256 MiB of zeros in a few hundred KiB

    async def reply(stream: trio.SocketStream, path: str) -> None:
        await answer(stream, bomb, extra=f"Content-Encoding: {encoding}\r\n")

    tracemalloc.start()
    try:
        async with fake_server(reply) as (url, _), transport(url, max_response_bytes=4 * 1024 * 1024) as t:
            with ends_within(60), pytest.raises(ResponseDecodeError, match="4194304-byte limit"):
                await t.request("session", "GET", "healthz")
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(bomb) + 24 * 1024 * 1024  # the cap and one step, never the 256 MiB
