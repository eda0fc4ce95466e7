import msgspec
import pytest
import trio

from runtime_fakes import FakeTransport, Raw, http_error
from tinker_actors.errors import FutureTimeoutError, GoneError, RequestFailedError, SessionExpiredError
from tinker_actors.runtime.config import PollSettings, ServerFlags
from tinker_actors.runtime.poller import FuturePoller, FutureSpec, FutureState


class Result(msgspec.Struct):
    value: int


def spec(rid="r1", **kw):
    return FutureSpec(request_id=rid, result_type=Result, request_type="Sample", **kw)


async def start(nursery, transport, **kw):
    poller = FuturePoller(transport, settings=kw.pop("settings", PollSettings()), **kw)
    await nursery.start(poller.run)
    return poller


@pytest.mark.parametrize("status", [408, 500, 503, 429])
async def test_errors_back_off_never_tight_loop(nursery, autojump_clock, status):
    async def handler(call):
        raise http_error(status)

    t = FakeTransport(handler)
    poller = await start(nursery, t, settings=PollSettings(progress_timeout=60))
    handle = poller.register(spec())
    with pytest.raises(FutureTimeoutError) as info:
        await handle.result()
    polls = t.paths("/api/v1/retrieve_future")
    # 60 virtual seconds: a tight loop would make thousands of polls
    assert 2 <= len(polls) <= 130
    times = [c.at for c in polls]
    assert all(b - a > 0.2 for a, b in zip(times, times[1:]))
    assert info.value.request_id == "r1"
    assert trio.current_time() == pytest.approx(60, abs=0.01)


async def test_try_again_answered_instantly_is_rate_limited(nursery, autojump_clock):
    count = 0

    async def handler(call):
        nonlocal count
        count += 1
        if count < 20:
            return Raw({"type": "try_again", "request_id": "r1", "queue_state": "active"})
        return Raw({"value": 7})

    t = FakeTransport(handler)
    poller = await start(nursery, t)
    handle = poller.register(spec())
    assert await handle.result() == Result(7)
    assert trio.current_time() >= 19 * 0.75  # at most ~1 poll per second
    assert handle.state is FutureState.DONE
    headers = t.calls[0].headers
    assert headers["X-Tinker-Request-Type"] == "Sample" and headers["X-Tinker-Request-Iteration"] == "0"
    assert t.calls[5].headers["X-Tinker-Request-Iteration"] == "5"


async def test_progress_deadline_paused_but_progressing_survives(nursery, autojump_clock):
    async def handler(call):
        now = trio.current_time()
        if now > 600:
            return Raw({"value": 1})
        await trio.sleep(30)  # a long poll
        # the state alternates: the server keeps moving
        state = "paused_capacity" if int(now / 60) % 2 else "active"
        return Raw({"type": "try_again", "request_id": call.json["request_id"], "queue_state": state, "queue_state_reason": "busy"})

    t = FakeTransport(handler)
    poller = await start(nursery, t, settings=PollSettings(progress_timeout=120))
    handle = poller.register(spec())
    assert await handle.result() == Result(1)
    assert trio.current_time() > 600
    times = handle.time_in_state()
    assert times["paused_capacity"] > 100 and times["active"] > 100


async def test_progress_deadline_stuck_future_fails(nursery, autojump_clock):
    async def handler(call):
        await trio.sleep(30)
        return Raw({"type": "try_again", "request_id": call.json["request_id"], "queue_state": "paused_capacity", "queue_state_reason": "no capacity"})

    poller = await start(nursery, FakeTransport(handler), settings=PollSettings(progress_timeout=120))
    handle = poller.register(spec())
    with pytest.raises(FutureTimeoutError) as info:
        await handle.result()
    assert info.value.queue_state == "paused_capacity"
    assert "r1" in str(info.value)
    # the first answer (a state change) was progress at t=30; then nothing moved
    assert trio.current_time() == pytest.approx(150, abs=0.01)
    assert poller.statistics().timed_out == 1


async def test_complete_metadata_then_full_result(nursery, autojump_clock):
    async def handler(call):
        if call.json["allow_metadata_only"]:
            return Raw({"status": "complete_metadata", "response_payload_size": 1000})
        return Raw({"value": 3})

    t = FakeTransport(handler)
    poller = await start(nursery, t)
    handle = poller.register(spec())
    assert await handle.result() == Result(3)
    assert [c.json["allow_metadata_only"] for c in t.calls] == [True, False]
    assert poller._bytes.used_bytes == 0  # the reservation was returned


async def test_small_expected_result_skips_complete_metadata(nursery, autojump_clock):
    seen_during_poll = []

    async def handler(call):
        seen_during_poll.append(poller._bytes.used_bytes)
        if call.json["allow_metadata_only"]:
            return Raw({"status": "complete_metadata", "response_payload_size": 1000})
        return Raw({"value": 4})

    t = FakeTransport(handler)
    poller = await start(nursery, t, inflight_bytes=10_000)
    handle = poller.register(spec(expected_bytes=500))
    assert await handle.result() == Result(4)
    # one poll, straight to the payload, with the expected bytes held meanwhile
    assert [c.json["allow_metadata_only"] for c in t.calls] == [False]
    assert seen_during_poll == [500]
    assert poller._bytes.used_bytes == 0


@pytest.mark.parametrize("expected", [None, 200_000, 9_000])
async def test_unknown_large_or_unaffordable_result_asks_metadata_first(nursery, autojump_clock, expected):
    async def handler(call):
        if call.json["allow_metadata_only"]:
            return Raw({"status": "complete_metadata", "response_payload_size": 10})
        return Raw({"value": 5})

    t = FakeTransport(handler)
    poller = await start(nursery, t, inflight_bytes=10_000)
    poller._bytes.try_acquire(slots=0, nbytes=2_000)  # someone else holds part of the budget
    handle = poller.register(spec(expected_bytes=expected))
    assert await handle.result() == Result(5)
    assert [c.json["allow_metadata_only"] for c in t.calls] == [True, False]
    assert poller._bytes.used_bytes == 2_000


async def test_request_failed_and_gone(nursery, autojump_clock):
    async def handler(call):
        if call.json["request_id"] == "bad":
            return Raw({"error": "bad input", "category": "user"})
        raise http_error(410)

    poller = await start(nursery, FakeTransport(handler))
    bad, gone = poller.register(spec("bad")), poller.register(spec("gone"))
    with pytest.raises(RequestFailedError) as info:
        await bad.result()
    assert info.value.category == "user" and info.value.request_id == "bad"
    with pytest.raises(GoneError):
        await gone.result()
    assert gone.state is FutureState.EXPIRED


async def test_proto_result_type_sends_accept_header(nursery, autojump_clock, monkeypatch):
    import tinker_actors.runtime.poller as poller_mod

    class SampleResponse:
        pass

    monkeypatch.setattr(poller_mod, "_classify", lambda ctype, body, rt: ("proto", body) if "protobuf" in ctype else None)

    async def handler(call):
        return Raw(b"\x01\x02", "application/x-protobuf")

    t = FakeTransport(handler)
    poller = await start(nursery, t)
    handle = poller.register(FutureSpec(request_id="p", result_type=SampleResponse, request_type="Sample"))
    assert await handle.result() == ("proto", b"\x01\x02")
    assert t.calls[0].accept == "application/x-protobuf"


async def test_open_polls_are_bounded(nursery, autojump_clock):
    open_now = peak = 0

    async def handler(call):
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        await trio.sleep(5)
        open_now -= 1
        return Raw({"value": 1})

    poller = await start(nursery, FakeTransport(handler), max_open_polls=4)
    handles = [poller.register(spec(f"r{i}")) for i in range(20)]
    for h in handles:
        await h.result()
    assert peak == 4
    assert trio.current_time() == pytest.approx(25, abs=0.1)


async def test_cancel_sends_cancel_future_when_enabled(nursery, autojump_clock):
    async def handler(call):
        if call.path == "/api/v1/cancel_future":
            return Raw({})
        await trio.sleep(30)
        return Raw({"type": "try_again", "request_id": call.json["request_id"], "queue_state": "active"})

    t = FakeTransport(handler)
    poller = await start(nursery, t, flags=lambda: ServerFlags(sample_cancel_enabled=True))
    handle = poller.register(spec())
    with trio.move_on_after(5):
        await handle.result(cancel_on_abandon=True)
    await trio.sleep(1)
    assert handle.state is FutureState.CANCELLED
    assert [c.json for c in t.paths("/api/v1/cancel_future")] == [{"request_id": "r1"}]
    polls = len(t.paths("/api/v1/retrieve_future"))
    await trio.sleep(100)
    assert len(t.paths("/api/v1/retrieve_future")) == polls  # polling stopped


async def test_cancel_not_sent_when_server_lacks_it(nursery, autojump_clock):
    async def handler(call):
        await trio.sleep(30)
        return Raw({"type": "try_again", "request_id": call.json["request_id"], "queue_state": "active"})

    t = FakeTransport(handler)
    poller = await start(nursery, t)
    handle = poller.register(spec())
    await trio.sleep(1)
    assert handle.cancel()
    await trio.sleep(1)
    assert t.paths("/api/v1/cancel_future") == []


async def test_batched_polling(nursery, autojump_clock):
    async def handler(call):
        if call.path == "/api/v1/retrieve_futures":
            await trio.sleep(2)
            ids = ["s1", "s2"] if call.json["prev_cursor"] == 0 else []
            return Raw({"completions": [{"state": "finished", "request_id": i, "response_payload_uncompressed_size": 10} for i in ids], "cursor": 1})
        return Raw({"value": int(call.json["request_id"][1])})

    t = FakeTransport(handler)
    poller = await start(nursery, t, flags=lambda: ServerFlags(sample_use_retrieve_futures=True))
    h1 = poller.register(spec("s1", sampling_session_id="ss"))
    h2 = poller.register(spec("s2", sampling_session_id="ss"))
    assert await h1.result() == Result(1) and await h2.result() == Result(2)
    batch_calls = t.paths("/api/v1/retrieve_futures")
    assert batch_calls[0].json["target"] == {"type": "sampling_session", "sampling_session_id": "ss", "cloned_sampler_id": 0}
    # one payload fetch per future, straight to the full result
    fetches = t.paths("/api/v1/retrieve_future")
    assert sorted(c.json["request_id"] for c in fetches) == ["s1", "s2"]
    assert all(c.json["allow_metadata_only"] is False for c in fetches)


async def test_batched_polling_404_falls_back(nursery, autojump_clock):
    async def handler(call):
        if call.path == "/api/v1/retrieve_futures":
            raise http_error(404)
        return Raw({"value": 5})

    t = FakeTransport(handler)
    poller = await start(nursery, t, flags=lambda: ServerFlags(sample_use_retrieve_futures=True))
    handle = poller.register(spec("s5", sampling_session_id="ss"))
    assert await handle.result() == Result(5)
    assert poller.statistics().batched_available is False
    later = poller.register(spec("s6", sampling_session_id="ss"))
    assert await later.result() == Result(5)
    assert len(t.paths("/api/v1/retrieve_futures")) == 1


async def test_fail_all_ends_pending_futures(nursery, autojump_clock):
    async def handler(call):
        await trio.sleep(30)
        return Raw({"type": "try_again", "request_id": call.json["request_id"], "queue_state": "active"})

    poller = await start(nursery, FakeTransport(handler))
    handles = [poller.register(spec(f"r{i}")) for i in range(3)]
    await trio.sleep(1)
    poller.fail_all(SessionExpiredError("gone"))
    for h in handles:
        with pytest.raises(SessionExpiredError):
            await h.result()
    with pytest.raises(SessionExpiredError):
        await poller.register(spec("late")).result()
    assert poller.live == 0
