"""Bounded work per request: compressed bodies inflate under a cap and in steps,
bodies and headers that stall are cut off, the per-session completion log is trimmed."""

from __future__ import annotations

import gzip
import zlib

import httpx
import pytest
import trio
import zstandard
from server_helpers import BASE, HEADERS, SESSION_BODY, open_app, result

from tinker_actors.server import ServerConfig, create_app, serve
from tinker_actors.server.limits import Limits

MiB = 1024 * 1024


def _gzip_bomb(inflated: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * MiB
    parts = [c.compress(block) for _ in range(inflated // MiB)]
    return b"".join(parts) + c.flush()


def _zstd_bomb(inflated: int) -> bytes:
    return zstandard.ZstdCompressor(level=19).compress(b"\0" * inflated)


@pytest.mark.parametrize("encoding", ["gzip", "gzip-members", "zstd", "zstd-frames", "deflate"])
async def test_a_bomb_is_413_once_it_inflates_past_the_cap(data_dir, encoding) -> None:
    cfg = ServerConfig(data_dir=data_dir, max_body_bytes=1 * MiB)
    if encoding == "gzip":
        bomb = _gzip_bomb(64 * MiB)
    elif encoding == "gzip-members":  # many members back to back, each under the cap
        bomb, encoding = gzip.compress(b"\0" * (MiB // 2)) * 128, "gzip"
    elif encoding == "zstd-frames":
        bomb, encoding = zstandard.ZstdCompressor().compress(b"\0" * (MiB // 2)) * 128, "zstd"
    elif encoding == "zstd":
        bomb = _zstd_bomb(64 * MiB)
    else:
        bomb = zlib.compress(b"\0" * 64 * MiB, 9)
    assert len(bomb) < MiB  # under the raw limit: only the inflated size can refuse it
    async with open_app(cfg) as (app, client):
        r = await client.post("/api/v1/create_session", content=bomb, headers={"content-encoding": encoding})
        assert r.status_code == 413, r.text
        assert "inflates past the limit of 1048576 bytes" in r.json()["detail"]
        assert app.stats.statuses["413"] == 1
        # a compressed body under the cap is read as usual
        ok = gzip.compress(httpx.Request("POST", "/", json=SESSION_BODY).read())
        r = await client.post("/api/v1/create_session", content=ok, headers={"content-encoding": "gzip"})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("encoding", "body", "status"),
    [
        ("gzip", b"not gzip at all", 400),
        ("gzip", gzip.compress(b'{"tags": []}')[:-9], 400),  # truncated before its end marker
        ("deflate", zlib.compress(b"{}") + b"junk", 400),
        ("zstd", b"\x28\xb5\x2f\xfd garbage", 400),
        ("br", b"{}", 415),
        ("gzip, zstd", b"{}", 415),
    ],
)
async def test_corrupt_or_unknown_encodings_are_4xx(served, encoding, body, status) -> None:
    _app, client = served
    r = await client.post("/api/v1/create_session", content=body, headers={"content-encoding": encoding})
    assert r.status_code == status, r.text


async def test_gzip_members_back_to_back_are_one_body(served) -> None:
    _app, client = served
    raw = httpx.Request("POST", "/", json=SESSION_BODY).read()
    body = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    r = await client.post("/api/v1/create_session", content=body, headers={"content-encoding": "gzip"})
    assert r.status_code == 200, r.text


async def test_the_event_loop_keeps_serving_while_a_bomb_inflates(data_dir) -> None:
    # the old server inflated on the event loop in one call: healthz waited
    # for the whole bomb (12 s for a 2 MiB gzip body)
    order: list[str] = []
    bomb = _gzip_bomb(256 * MiB)
    async with open_app(ServerConfig(data_dir=data_dir)) as (_app, client):

        async def bomb_request() -> None:
            r = await client.post("/api/v1/create_session", content=bomb, headers={"content-encoding": "gzip"})
            order.append(f"bomb {r.status_code}")

        async def health() -> None:
            await trio.sleep(0)
            r = await client.get("/api/v1/healthz")
            order.append(f"healthz {r.status_code}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(bomb_request)
            nursery.start_soon(health)
    assert order == ["healthz 200", "bomb 413"]


async def test_a_body_that_stops_halfway_gets_408(data_dir, autojump_clock) -> None:
    app = create_app(ServerConfig(data_dir=data_dir))
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": b'{"tags": [', "more_body": True}]

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await trio.sleep_forever()  # the client never sends the rest
        raise AssertionError

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/api/v1/create_session", "query_string": b"",
        "headers": [(b"x-api-key", b"tml-x"), (b"content-length", b"100")], "server": ("local", 80),
        "scheme": "http", "root_path": "", "http_version": "1.1", "client": ("127.0.0.1", 1),
    }
    async with app.lifespan():
        start = trio.current_time()
        with trio.fail_after(600):  # the old server waited forever
            await app(scope, receive, send)
        waited = trio.current_time() - start
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert waited == pytest.approx(Limits().body_idle_timeout_s, abs=1)
    assert b"incomplete after 10 bytes" in sent[1]["body"]


async def _raw_exchange(port: int, data: bytes, wait_s: float = 30) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    got = b""
    with trio.fail_after(wait_s):
        await stream.send_all(data)
        while chunk := await stream.receive_some(65536):
            got += chunk
    await stream.aclose()
    return got


async def test_half_a_body_on_a_socket_is_answered_408_and_closed(data_dir) -> None:
    limits = Limits(body_idle_timeout_s=0.3)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, ServerConfig(data_dir=data_dir, limits=limits))
        head = (
            b"POST /api/v1/create_session HTTP/1.1\r\nhost: x\r\nx-api-key: tml-x\r\n"
            b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
        )
        got = await _raw_exchange(port, head + b'{"tags": [')
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        # the server still serves everyone else
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=HEADERS) as client:
            assert (await client.post("/api/v1/create_session", json=SESSION_BODY)).status_code == 200
        nursery.cancel_scope.cancel()


async def test_a_connection_that_never_finishes_its_headers_is_closed(data_dir) -> None:
    limits = Limits(connection_idle_timeout_s=0.3)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, ServerConfig(data_dir=data_dir, limits=limits))
        got = await _raw_exchange(port, b"POST /api/v1/create_session HTTP/1.1\r\nhost: x\r\nx-api")
        assert got == b""  # closed without an answer: there was no request to answer
        nursery.cancel_scope.cancel()


async def test_the_completion_log_is_trimmed(data_dir, autojump_clock) -> None:
    cfg = ServerConfig(data_dir=data_dir, null_compute=True, future_result_ttl_s=5)
    async with open_app(cfg) as (app, client):
        r = await client.post("/api/v1/create_session", json=SESSION_BODY)
        sid = r.json()["session_id"]
        r = await client.post(
            "/api/v1/create_sampling_session", json={"session_id": sid, "sampling_session_seq_id": 0, "base_model": BASE}
        )
        sampler = r.json()["sampling_session_id"]
        body = {
            "sampling_session_id": sampler,
            "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]},
            "sampling_params": {"max_tokens": 2},
        }
        cursor = 0
        target = {"sampling_session_id": sampler, "cloned_sampler_id": 0}
        for round_ in range(5):
            ids = []
            for i in range(40):
                r = await client.post("/api/v1/asample", json={**body, "seq_id": round_ * 40 + i + 1})
                ids.append(r.json()["request_id"])
            for rid in ids:
                assert (await result(client, rid, accept="application/x-protobuf")).status_code == 200
            r = await client.post("/api/v1/retrieve_futures", json={"target": target, "prev_cursor": cursor, "timeout": 0})
            batch = r.json()
            assert sorted(c["request_id"] for c in batch["completions"]) == sorted(ids)
            cursor = batch["cursor"]
            assert cursor == (round_ + 1) * 40  # cursors stay absolute while the log is trimmed
            await trio.sleep(10)  # past the TTL: these futures are dropped
        log = app.server.futures._completions[f"{sampler}#0"]
        assert len(log.since(0)) <= 80  # the old log held all 200
