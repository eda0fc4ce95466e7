"""What a call sends and what it returns: headers, bodies, raw answers, redirects, errors."""

from __future__ import annotations

import datetime as dt
import gzip
import platform

import httpx
import msgspec
import pytest
import structlog
import trio
import zstandard

from tinker_actors import __version__
from tinker_actors.errors import (
    APIStatusError,
    AuthenticationError,
    ConfigError,
    GoneError,
    InternalServerError,
    PermissionDeniedError,
    ResponseDecodeError,
    UnprocessableError,
    ValidationError,
)
from tinker_actors.transport import PoolLimits, RawResponse, RequestOptions, RetryPolicy, SignedURL, Transport
from transport_fakes import API_KEY, BASE_URL, Recorder, answer, mock_transport

OK = answer(200, json={"ok": True})


class Body(msgspec.Struct, kw_only=True):
    session_id: str
    seq_id: int = 0


class Result(msgspec.Struct):
    type: str
    value: int


async def test_default_header_set_and_url() -> None:
    rec = Recorder(OK)
    async with mock_transport(rec) as t:
        await t.request("session", "POST", "/create_session", json=Body(session_id="s"))
    (req,) = rec.requests
    assert str(req.url) == "http://tinker.test/base/api/v1/create_session"
    h = req.headers
    assert h["x-api-key"] == API_KEY
    assert "authorization" not in h
    assert h["user-agent"] == f"tinker_actors/{__version__} (Python {platform.python_version()}; " + h["user-agent"].split("; ", 1)[1]
    assert h["x-stainless-package-version"] == __version__
    assert h["x-stainless-runtime"] == platform.python_implementation()
    assert h["x-stainless-runtime-version"] == platform.python_version()
    assert h["x-stainless-os"] and h["x-stainless-arch"]
    assert h["x-stainless-async"] == "async:trio"
    assert h["x-stainless-retry-count"] == "0"
    assert h["x-stainless-read-timeout"] == "60"
    assert h["accept"] == "application/json"
    assert h["content-type"] == "application/json"
    assert "zstd" in h["accept-encoding"] and "gzip" in h["accept-encoding"]
    assert msgspec.json.decode(rec.bodies[0]) == {"session_id": "s", "seq_id": 0}


async def test_get_sends_no_body_headers() -> None:
    rec = Recorder(OK)
    async with mock_transport(rec) as t:
        await t.request("session", "GET", "training_runs")
    (req,) = rec.requests
    assert "content-type" not in req.headers and rec.bodies == [b""]


async def test_default_headers_and_per_call_headers() -> None:
    rec = Recorder(OK)
    async with mock_transport(rec, default_headers={"CF-Access-Client-Id": "cf"}) as t:
        await t.request(
            "futures", "POST", "retrieve_future", json={},
            headers={"X-Tinker-Request-Iteration": "3"}, accept="application/x-protobuf",
        )
    h = rec.requests[0].headers
    assert h["cf-access-client-id"] == "cf"
    assert h["x-tinker-request-iteration"] == "3"
    assert h["accept"] == "application/x-protobuf"


async def test_extra_headers_query_and_body() -> None:
    rec = Recorder(OK)
    options = RequestOptions(
        extra_headers={"X-Trace": "abc", "Accept": "text/plain"},
        extra_query={"limit": "5"},
        extra_body={"project_id": "p1", "seq_id": 9},
    )
    async with mock_transport(rec) as t:
        await t.request("session", "POST", "x?cursor=7", json=Body(session_id="s"), options=options)
        await t.request("session", "POST", "y", options=RequestOptions(extra_body={"only": True}))
    first, second = rec.requests
    assert first.headers["x-trace"] == "abc" and first.headers["accept"] == "text/plain"
    assert first.url.params["limit"] == "5" and first.url.params["cursor"] == "7"
    assert msgspec.json.decode(rec.bodies[0]) == {"session_id": "s", "seq_id": 9, "project_id": "p1"}
    assert msgspec.json.decode(rec.bodies[1]) == {"only": True}


async def test_extra_body_needs_a_json_object() -> None:
    async with mock_transport(Recorder(OK)) as t:
        with pytest.raises(ValidationError):
            await t.request("session", "POST", "x", content=b"\x00", options=RequestOptions(extra_body={"a": 1}))
        with pytest.raises(ValidationError):
            await t.request("session", "POST", "x", json=[1, 2], options=RequestOptions(extra_body={"a": 1}))


async def test_raw_content_and_zstd_request_compression() -> None:
    rec = Recorder(OK)
    payload = b"\x08\x01" * 500
    async with mock_transport(rec) as t:
        await t.request("training", "POST", "forward_backward", content=payload,
                        content_type="application/x-protobuf", options=RequestOptions(compress=True))
    req = rec.requests[0]
    assert req.headers["content-type"] == "application/x-protobuf"
    assert req.headers["content-encoding"] == "zstd"
    assert zstandard.ZstdDecompressor().decompress(rec.bodies[0], max_output_size=10**6) == payload
    assert len(rec.bodies[0]) < len(payload)


async def test_typed_decode_and_decode_function() -> None:
    rec = Recorder(answer(200, json={"type": "r", "value": 3}))
    async with mock_transport(rec) as t:
        assert await t.request("session", "POST", "x", json={}, decode=Result) == Result("r", 3)
        assert await t.request("session", "POST", "x", json={}, decode=list[Result] | Result) == Result("r", 3)
        seen = await t.request("session", "POST", "x", json={}, decode=lambda raw: (raw.status, raw.content_type))
    assert seen == (200, "application/json")


async def test_decode_failure_names_the_endpoint() -> None:
    rec = Recorder(answer(200, json={"type": "r", "value": "not an int"}))
    async with mock_transport(rec) as t:
        with pytest.raises(ResponseDecodeError, match=r"POST /api/v1/asample") as info:
            await t.request("sampling", "POST", "asample", json={}, decode=Result)
        assert t.pool("sampling").statistics().errors == 1
    assert info.value.endpoint == "POST /api/v1/asample"
    rec = Recorder(answer(200, content=b"{not json", headers={"content-type": "application/json"}))
    async with mock_transport(rec) as t:
        with pytest.raises(ResponseDecodeError):
            await t.request("sampling", "POST", "asample", json={})


async def test_raw_response(autojump_clock) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(0.3)
        return httpx.Response(201, content=b"\x01\x02", headers={"content-type": "application/x-protobuf", "x-a": "b"})

    async with mock_transport(Recorder(slow)) as t:
        raw = await t.request("futures", "POST", "retrieve_future", json={}, options=RequestOptions(raw=True))
    assert isinstance(raw, RawResponse)
    assert raw.status == 201 and raw.content == b"\x01\x02" and raw.headers["x-a"] == "b"
    assert raw.content_type == "application/x-protobuf"
    assert raw.elapsed == pytest.approx(0.3)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_to_signed_url_with_expires_header(status: int) -> None:
    location = "https://storage.test/archive.tar?sig=abc"
    rec = Recorder(answer(status, headers={"location": location, "expires": "Wed, 21 Oct 2026 07:28:00 GMT"}))
    async with mock_transport(rec) as t:
        got = await t.request("session", "GET", "training_runs/r/checkpoints/c/archive",
                              options=RequestOptions(signed_url=True))
    assert got == SignedURL(location, dt.datetime(2026, 10, 21, 7, 28, tzinfo=dt.timezone.utc))
    assert len(rec.requests) == 1  # never followed


async def test_redirect_expiry_from_query_and_relative_location() -> None:
    rec = Recorder(answer(302, headers={"location": "/blob/x?Expires=1800000000&Signature=s"}))
    async with mock_transport(rec) as t:
        got = await t.request("session", "GET", "audit", options=RequestOptions(signed_url=True))
    assert got.url == "http://tinker.test/blob/x?Expires=1800000000&Signature=s"
    assert got.expires_at == dt.datetime.fromtimestamp(1_800_000_000, tz=dt.timezone.utc)
    rec = Recorder(answer(302, headers={"location": "https://s.test/x"}))
    async with mock_transport(rec) as t:
        got = await t.request("session", "GET", "audit", options=RequestOptions(signed_url=True))
    assert got == SignedURL("https://s.test/x", None)


async def test_redirect_not_asked_for_is_an_error_and_not_followed() -> None:
    rec = Recorder(answer(302, headers={"location": "https://s.test/x"}))
    async with mock_transport(rec) as t:
        with pytest.raises(APIStatusError, match="redirect") as info:
            await t.request("session", "GET", "audit")
        raw = await t.request("session", "GET", "audit", options=RequestOptions(raw=True))
    assert info.value.status_code == 302
    assert raw.status == 302 and raw.headers["location"] == "https://s.test/x"
    assert len(rec.requests) == 2


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
async def test_compressed_response_bodies_are_decoded(encoding: str) -> None:
    plain = msgspec.json.encode({"type": "r", "value": 7})
    packed = gzip.compress(plain) if encoding == "gzip" else zstandard.ZstdCompressor().compress(plain)
    rec = Recorder(answer(200, content=packed, headers={"content-encoding": encoding, "content-type": "application/json"}))
    async with mock_transport(rec) as t:
        assert await t.request("session", "POST", "x", json={}, decode=Result) == Result("r", 7)
        raw = await t.request("session", "POST", "x", json={}, options=RequestOptions(raw=True))
    assert raw.content == plain


async def test_corrupt_compressed_body_is_a_decode_error() -> None:
    rec = Recorder(answer(200, content=b"definitely not zstd", headers={"content-encoding": "zstd"}))
    async with mock_transport(rec) as t:
        with pytest.raises(ResponseDecodeError, match="POST /api/v1/x"):
            await t.request("session", "POST", "x", json={})


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (403, PermissionDeniedError), (410, GoneError),
     (422, UnprocessableError), (418, APIStatusError), (500, InternalServerError)],
)
async def test_status_errors_map_and_carry_server_text(autojump_clock, status: int, error: type) -> None:
    rec = Recorder(answer(status, json={"detail": f"readable reason {status}"}, headers={"x-request-id": "req-1"}))
    async with mock_transport(rec, retry=RetryPolicy(max_retries=0)) as t:
        with pytest.raises(error) as info:
            await t.request("session", "POST", "create_model", json={})
    exc = info.value
    assert type(exc) is error
    assert exc.status_code == status and exc.endpoint == "POST /api/v1/create_model"
    assert f"readable reason {status}" in str(exc) and "POST /api/v1/create_model" in str(exc)
    assert exc.request_id == "req-1"
    assert exc.body == {"detail": f"readable reason {status}"}


async def test_plain_text_error_body_is_shown() -> None:
    rec = Recorder(answer(404, text="no such model: m-1"))
    async with mock_transport(rec) as t:
        with pytest.raises(APIStatusError, match="no such model: m-1"):
            await t.request("session", "GET", "models/m-1")


async def test_api_key_never_in_errors_reprs_or_logs(autojump_clock) -> None:
    echo = answer(401, json={"detail": f"key {API_KEY} is not valid", "other": API_KEY})
    with structlog.testing.capture_logs() as logs:
        async with mock_transport(Recorder(answer(503, text=API_KEY), answer(503), echo)) as t:
            with pytest.raises(AuthenticationError) as info:
                await t.request("session", "POST", "x", json={})
            texts = [str(info.value), repr(info.value), repr(info.value.body), repr(t),
                     repr(t.pool("session")), repr(t.statistics())]
        async with Transport("https://secure.test/", API_KEY, verify=False) as insecure:
            texts.append(repr(insecure))
    assert len(logs) >= 3  # two retries and the TLS warning
    assert any(e["event"] == "transport.retry" and e["endpoint"] == "POST /api/v1/x" and e["status"] == 503 for e in logs)
    assert any(e["event"] == "transport.tls_verification_disabled" and e["log_level"] == "warning" for e in logs)
    texts += [repr(e) for e in logs]
    for text in texts:
        assert API_KEY not in text
        assert API_KEY[4:] not in text


async def test_retry_log_event_fields(autojump_clock) -> None:
    with structlog.testing.capture_logs() as logs:
        async with mock_transport(Recorder(answer(429, headers={"retry-after": "3"}), OK)) as t:
            await t.request("sampling", "POST", "asample", json={})
    (event,) = [e for e in logs if e["event"] == "transport.retry"]
    assert event["attempt"] == 1 and event["delay"] == 3.0 and event["status"] == 429
    assert event["pool"] == "sampling" and event["error"] == "RateLimitError"


async def test_config_errors() -> None:
    with pytest.raises(ConfigError):
        Transport(BASE_URL, "")
    with pytest.raises(ConfigError):
        Transport("ftp://x", API_KEY)
    with pytest.raises(ConfigError):
        PoolLimits(sampling=0)


async def test_statistics_snapshot() -> None:
    rec = Recorder(OK)
    async with mock_transport(rec, limits=PoolLimits(sampling=6, shard_size=4)) as t:
        for _ in range(3):
            await t.request("sampling", "POST", "asample", json={})
        stats = t.statistics()
    s = stats["sampling"]
    assert set(stats) == {"session", "sampling", "futures", "training", "telemetry"}
    assert s.connections == 6 and s.shard_connections == (3, 3)
    assert s.completed == 3 and s.attempts == 3 and s.in_flight == 0 and s.queued == 0
    assert s.latency.count == 3 and 0 <= s.latency.p50 <= s.latency.p99 <= s.latency.max
    with pytest.raises(AttributeError):
        s.completed = 0  # type: ignore[misc]


async def test_replaced_key_is_sent_and_both_keys_stay_secret() -> None:
    new_key = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"
    rec = Recorder(answer(200, json={}), answer(403, json={"detail": f"{API_KEY} and {new_key} rejected"}))
    async with mock_transport(rec) as t:
        await t.request("session", "POST", "x", json={})
        t.replace_api_key(new_key)
        with pytest.raises(PermissionDeniedError) as info:
            await t.request("session", "POST", "x", json={})
    assert rec.header("x-api-key") == [API_KEY, new_key]
    assert API_KEY not in str(info.value) and new_key not in str(info.value)
    assert "rejected" in str(info.value)
