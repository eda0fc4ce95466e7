import pytest
import trio
from structlog.testing import capture_logs

from runtime_fakes import FakeTransport, Raw, http_error
from tinker_actors.runtime.heartbeat import HeartbeatActor
from tinker_actors.runtime.telemetry import TelemetryBatcher


async def test_heartbeat_cadence_and_body(nursery, autojump_clock):
    async def ok(call):
        return Raw({"type": "session_heartbeat"})

    t = FakeTransport(ok)
    hb = HeartbeatActor(t, "s1")
    await nursery.start(hb.run)
    await trio.sleep(35)
    assert [c.at for c in t.calls] == [10, 20, 30]
    assert t.calls[0].json == {"session_id": "s1", "type": "session_heartbeat"}
    assert t.calls[0].resource == "session"
    assert hb.health.state == "healthy"


async def test_heartbeat_degraded_then_loud_then_recovers(nursery, autojump_clock):
    failing = True

    async def handler(call):
        if failing:
            raise http_error(503)
        return Raw({})

    hb = HeartbeatActor(FakeTransport(handler), "s1", warn_after_failures=3)
    await nursery.start(hb.run)
    with capture_logs() as logs:
        await trio.sleep(25)
        assert hb.health.state == "degraded" and hb.health.failures == 2 and hb.health.since == 10
        assert not [l for l in logs if l["log_level"] == "warning"]
        await trio.sleep(10)
        assert [l["event"] for l in logs if l["log_level"] == "warning"] == ["heartbeat_failing"]
    failing = False
    await trio.sleep(10)
    assert hb.health.state == "healthy" and hb.health.failures == 0


async def test_heartbeat_slow_beat_times_out(nursery, autojump_clock):
    async def hang(call):
        await trio.sleep(1000)

    hb = HeartbeatActor(FakeTransport(hang), "s1", timeout=10)
    await nursery.start(hb.run)
    await trio.sleep(21)
    assert hb.health.state == "degraded" and hb.health.failures == 1


async def test_heartbeat_410_expires_session(nursery, autojump_clock):
    async def gone(call):
        raise http_error(410)

    t = FakeTransport(gone)
    hb = HeartbeatActor(t, "s1")
    seen = []
    hb.on_expired(seen.append)
    await nursery.start(hb.run)
    await hb.expired.wait()
    assert trio.current_time() == 10
    assert hb.health.state == "expired"
    assert "s1" in str(seen[0])
    await trio.sleep(60)
    assert len(t.calls) == 1  # the actor stopped


def make_batcher(handler, **kw):
    t = FakeTransport(handler)
    kw.setdefault("flush_interval", 10.0)
    return t, TelemetryBatcher(t, session_id="s1", sdk_version="0.1.0", **kw)


async def ok(call):
    return Raw({"status": "accepted"})


async def test_telemetry_flushes_by_size(nursery, autojump_clock):
    t, b = make_batcher(ok, batch_size=5)
    await nursery.start(b.run)
    for i in range(5):
        b.log_event("e", {"i": i})
    await trio.sleep(0.1)
    assert len(t.calls) == 1
    body = t.calls[0].json
    assert set(body) == {"events", "platform", "sdk_version", "session_id", "process_uuid"}
    assert [e["event_session_index"] for e in body["events"]] == [0, 1, 2, 3, 4]
    assert {"event", "event_id", "severity", "timestamp", "event_name", "event_data"} <= set(body["events"][0])
    assert b.statistics().sent == 5


async def test_telemetry_flushes_by_time(nursery, autojump_clock):
    t, b = make_batcher(ok)
    await nursery.start(b.run)
    b.session_start()
    await trio.sleep(9)
    assert t.calls == []
    await trio.sleep(1.5)
    assert len(t.calls) == 1 and t.calls[0].json["events"][0]["event"] == "SESSION_START"


async def test_telemetry_drops_oldest_and_counts(autojump_clock):
    t, b = make_batcher(ok, max_queue=3)
    for i in range(5):
        b.log_event("e", {"i": i})
    assert b.statistics().dropped_overflow == 2
    await b.flush()
    assert [e["event_data"]["i"] for e in t.calls[0].json["events"]] == [2, 3, 4]


async def test_telemetry_failures_retry_then_drop_and_count(autojump_clock):
    async def fail(call):
        raise http_error(500)

    t, b = make_batcher(fail, max_attempts=3)
    b.log_event("e")
    b.log_event("f")
    await b.flush()
    s = b.statistics()
    assert len(t.calls) == 3 and s.sent == 0 and s.dropped_failed == 2 and s.send_failures == 3
    assert t.calls[1].at - t.calls[0].at >= 1.0


async def test_telemetry_close_flushes_session_end_within_grace(autojump_clock):
    t, b = make_batcher(ok)
    b.log_event("e")
    await b.close(grace=5)
    events = t.calls[0].json["events"]
    assert [e["event"] for e in events] == ["GENERIC_EVENT", "SESSION_END"]

    async def hang(call):
        await trio.sleep(100)

    t2, b2 = make_batcher(hang)
    b2.log_event("e")
    start = trio.current_time()
    await b2.close(grace=5)
    assert trio.current_time() - start == pytest.approx(5)


async def test_telemetry_disabled_sends_nothing(nursery, autojump_clock):
    t, b = make_batcher(ok, enabled=False)
    await nursery.start(b.run)
    assert b.log_event("e") is False
    await b.close()
    await trio.sleep(30)
    assert t.calls == []


async def test_telemetry_never_carries_the_key(autojump_clock):
    t, b = make_batcher(ok, secrets=("secret-key-123",))
    try:
        raise RuntimeError("failed with key secret-key-123 and tml-abcdefgh")
    except RuntimeError as exc:
        b.log_exception(exc)
    await b.flush()
    text = repr(t.calls[0].json)
    assert "secret-key-123" not in text and "tml-abcdefgh" not in text
    assert t.calls[0].json["events"][0]["event"] == "UNHANDLED_EXCEPTION"
