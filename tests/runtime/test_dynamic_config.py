"""Dynamic-config refresh: cadence, last good value on failure, 404 stops, readers see changes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
from structlog.testing import capture_logs

from runtime_fakes import Call, FakeTransport, Raw, http_error
from tinker_actors.runtime.config import ServerFlags
from tinker_actors.runtime.dynamic_config import DynamicConfigRefresher, apply_dynamic
from tinker_actors.runtime.poller import FutureSpec, FutureState
from tinker_actors.runtime.service import open_service

KEY = "tml-testkey"
DYN = "/api/v1/client/dynamic_config"


class Server:
    """A fake server whose dynamic-config answer the test changes while the service runs."""

    def __init__(self, dynamic: Any = None, client: dict[str, Any] | None = None) -> None:
        self.client = client or {}
        # a dict: the answer; an int: that HTTP status; "garbage": a non-JSON body
        self.dynamic: Any = {} if dynamic is None else dynamic
        self.transport = FakeTransport(self.handle)

    async def handle(self, call: Call) -> Any:
        if call.path == "/api/v1/client/config":
            return Raw(self.client)
        if call.path == DYN:
            if isinstance(self.dynamic, int):
                raise http_error(self.dynamic)
            if self.dynamic == "garbage":
                return Raw(b"<html>oops</html>", "text/html")
            return Raw(self.dynamic)
        if call.path == "/api/v1/create_session":
            return Raw({"session_id": "sess-1"})
        if call.path == "/api/v1/retrieve_future":
            await trio.sleep(30)  # a sample that never finishes
            return Raw({"type": "try_again", "request_id": call.json["request_id"], "queue_state": "active"})
        return Raw({})

    def fetch_times(self) -> list[float]:
        return [c.at for c in self.transport.paths(DYN)]


def service_on(server: Server):
    return open_service(transport=server.transport, api_key=KEY, base_url="http://x", telemetry=False)


async def test_refresh_cadence_follows_the_server_interval_with_a_10s_floor(autojump_clock):
    server = Server({"refresh_interval_sec": 30})
    async with service_on(server) as service:
        await trio.sleep(95)
        # start-up fetch, then every 30 s (sleep first)
        assert server.fetch_times() == [0, 30, 60, 90]
        call = server.transport.paths(DYN)[-1]
        assert call.json == {"sdk_version": service.config.sdk_version} and call.resource == "session"
        server.dynamic = {"refresh_interval_sec": 1}  # below the floor
        await trio.sleep(60)
        assert server.fetch_times()[3:] == [90, 120, 130, 140, 150]
        assert service.server_flags.refresh_interval_sec == 1


async def test_failure_keeps_the_last_good_value_and_warns_once(autojump_clock):
    server = Server({"refresh_interval_sec": 10, "sample_cancel_enabled": True, "sample_cancel_max_batch_size": 8})
    async with service_on(server) as service:
        good = service.server_flags
        assert good.sample_cancel_enabled and good.sample_cancel_max_batch_size == 8
        await trio.sleep(5)  # between fetches (at 0, 10, 20...)
        with capture_logs() as logs:
            for failure in (503, "garbage", [1, 2], {"sample_cancel_max_batch_size": "many"}):
                server.dynamic = failure
                await trio.sleep(10)
                assert service.server_flags == good, failure
            assert service.dynamic_config.failures == 4
            warnings = [entry for entry in logs if entry["log_level"] == "warning"]
            assert [w["event"] for w in warnings] == ["dynamic_config_refresh_failed"]  # debounced
        # the cadence did not change while failing, and a good answer is taken again
        assert server.fetch_times() == [0, 10, 20, 30, 40]
        server.dynamic = {"refresh_interval_sec": 10}
        await trio.sleep(10)
        # fields the answer leaves out go back to the defaults, as in the SDK
        assert service.server_flags.sample_cancel_enabled is False
        assert service.server_flags.sample_cancel_max_batch_size == 64
        assert service.dynamic_config.failures == 0


async def test_a_hanging_fetch_times_out_and_keeps_the_value(autojump_clock):
    async def hang(call: Call) -> Any:
        await trio.sleep(1000)

    flags = ServerFlags(refresh_interval_sec=20, sample_cancel_enabled=True)
    box = [flags]
    t = FakeTransport(hang)
    refresher = DynamicConfigRefresher(t, sdk_version="1", get_flags=lambda: box[0], set_flags=lambda f: box.__setitem__(0, f))
    async with trio.open_nursery() as nursery:
        await nursery.start(refresher.run)
        await trio.sleep(65)
        nursery.cancel_scope.cancel()
    # 20 s sleep + 10 s timeout per round
    assert [c.at for c in t.calls] == [20, 50]
    assert box[0] is flags and refresher.failures == 2


async def test_404_stops_the_refresher_quietly(autojump_clock):
    server = Server({"refresh_interval_sec": 10, "sample_cancel_enabled": True})
    async with service_on(server) as service:
        server.dynamic = 404
        with capture_logs() as logs:
            await trio.sleep(100)
        assert server.fetch_times() == [0, 10]
        assert service.dynamic_config.stopped
        assert service.server_flags.sample_cancel_enabled is True  # the last value stays
        assert not [entry for entry in logs if entry["log_level"] in ("warning", "error")]


async def test_no_refresher_when_start_up_saw_404(autojump_clock):
    server = Server(404)
    async with service_on(server) as service:
        await trio.sleep(1000)
        assert service.dynamic_config is None
        assert server.fetch_times() == [0]
        assert service.server_flags.refresh_interval_sec == 300


async def test_start_up_failure_is_retried_on_schedule(autojump_clock):
    server = Server(503)
    async with service_on(server) as service:
        server.dynamic = {"sample_cancel_enabled": True}
        await trio.sleep(299)
        assert service.server_flags.sample_cancel_enabled is False
        await trio.sleep(2)
        assert service.server_flags.sample_cancel_enabled is True
        assert server.fetch_times() == [0, 300]


async def test_a_flipped_cancel_flag_is_seen_by_the_poller(autojump_clock):
    server = Server({"refresh_interval_sec": 10, "sample_cancel_enabled": False})
    cancels = server.transport.paths
    async with service_on(server) as service:
        first = service.poller.register(FutureSpec(request_id="r1", request_type="Sample"))
        await trio.sleep(1)
        assert first.cancel()
        await trio.sleep(1)
        assert cancels("/api/v1/cancel_future") == []

        server.dynamic = {"refresh_interval_sec": 10, "sample_cancel_enabled": True}
        await trio.sleep(10)
        assert service.server_flags.sample_cancel_enabled is True
        second = service.poller.register(FutureSpec(request_id="r2", request_type="Sample"))
        await trio.sleep(1)
        assert second.cancel() and second.state is FutureState.CANCELLED
        await trio.sleep(1)
        assert [c.json for c in cancels("/api/v1/cancel_future")] == [{"request_id": "r2"}]

        server.dynamic = {"refresh_interval_sec": 10, "sample_cancel_enabled": False}
        await trio.sleep(10)
        third = service.poller.register(FutureSpec(request_id="r3", request_type="Sample"))
        await trio.sleep(1)
        assert third.cancel()
        await trio.sleep(1)
        assert [c.json for c in cancels("/api/v1/cancel_future")] == [{"request_id": "r2"}]


async def test_refresh_changes_only_dynamic_fields(autojump_clock):
    server = Server({"refresh_interval_sec": 10})
    async with service_on(server) as service:
        # another part of the runtime (or a test) changed a client/config flag meanwhile
        service.server_flags = msgspec.structs.replace(service.server_flags, fwdbwd_max_chunk_len=7)
        server.dynamic = {"refresh_interval_sec": 10, "sample_cancel_enabled": True, "fwdbwd_max_chunk_len": 1, "new_flag": 1}
        await trio.sleep(11)
        assert service.server_flags.sample_cancel_enabled is True
        assert service.server_flags.fwdbwd_max_chunk_len == 7


async def test_start_up_reads_each_flag_on_its_own(autojump_clock):
    server = Server(
        {"sample_cancel_enabled": True, "fwdbwd_max_chunk_len": 1},
        client={"fwdbwd_max_chunk_len": 8, "fwdbwd_max_chunk_bytes_count": "lots", "sample_max_concurrent_requests": 3},
    )
    with capture_logs() as logs:
        async with service_on(server) as service:
            flags = service.server_flags
            # the dynamic answer cannot override a client/config flag
            assert flags.fwdbwd_max_chunk_len == 8 and flags.sample_cancel_enabled is True
            # one unreadable flag keeps its default; the others still apply
            assert flags.fwdbwd_max_chunk_bytes_count == ServerFlags().fwdbwd_max_chunk_bytes_count
            assert flags.sample_max_concurrent_requests == 3
            assert service.sampling_admission.max_concurrent == 3
    [warning] = [entry for entry in logs if entry["event"] == "server_flags_unreadable"]
    assert warning["fields"] == ["fwdbwd_max_chunk_bytes_count"]


def test_apply_dynamic_validates() -> None:
    flags = ServerFlags(sample_cancel_enabled=True, fwdbwd_max_chunk_len=3)
    out = apply_dynamic(flags, {"refresh_interval_sec": "60", "sample_cancel_max_batch_size": 5})
    assert (out.refresh_interval_sec, out.sample_cancel_enabled, out.sample_cancel_max_batch_size) == (60, False, 5)
    assert out.fwdbwd_max_chunk_len == 3
    with pytest.raises(msgspec.ValidationError):
        apply_dynamic(flags, None)
    with pytest.raises(msgspec.ValidationError):
        apply_dynamic(flags, {"sample_cancel_enabled": "maybe"})
