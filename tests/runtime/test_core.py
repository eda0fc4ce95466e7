import pytest
import trio
import trio.testing

from runtime_fakes import FakeTransport, Raw, http_error, session_server
from tinker_actors.errors import ActorCrashedError, APIStatusError, ConfigError, RateLimitError, ServiceClosedError
from tinker_actors.runtime.admission import SamplingAdmission
from tinker_actors.runtime.config import ServiceConfig
from tinker_actors.runtime.mailbox import Mailbox, call
from tinker_actors.runtime.pool_actor import HttpCall, PoolActor
from tinker_actors.runtime.sequencer import TrainingSequencer
from tinker_actors.runtime.service import open_service
from tinker_actors.runtime.supervisor import RestartPolicy, run_supervised

KEY = "tml-testkey"


async def test_supervisor_restarts_with_backoff_then_escalates(autojump_clock):
    starts = []

    async def actor(task_status=trio.TASK_STATUS_IGNORED):
        starts.append(trio.current_time())
        task_status.started()
        raise RuntimeError("boom")

    policy = RestartPolicy(max_restarts=3, within_s=60, backoff_initial=1, backoff_max=4)
    with pytest.raises(ActorCrashedError) as info:
        await run_supervised(actor, name="a", policy=policy)
    assert len(starts) == 4
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert 1 <= gaps[0] < 1.2 and 2 <= gaps[1] < 2.3 and 4 <= gaps[2] < 4.5
    assert info.value.actor == "a"


async def test_supervisor_healthy_runs_never_escalate_and_cancel_is_not_crash(autojump_clock):
    runs = 0

    async def actor(task_status=trio.TASK_STATUS_IGNORED):
        nonlocal runs
        runs += 1
        await trio.sleep(100)  # healthy for a while, then crash
        raise RuntimeError("rare")

    with trio.move_on_after(1000):
        await run_supervised(actor, name="a", policy=RestartPolicy(max_restarts=2, within_s=60, healthy_after_s=30))
    assert runs >= 9  # restarted every time, never escalated, then cancelled cleanly


async def test_pool_actor_bounded_concurrency_and_statistics(nursery, autojump_clock):
    async def slow(call):
        await trio.sleep(1)
        return "ok"

    pool = PoolActor("sampling", FakeTransport(slow), concurrency=2, mailbox_size=2)
    await nursery.start(pool.run)
    results = []

    async def one():
        results.append(await call(pool.mailbox, HttpCall(method="POST", path="/x")))

    for _ in range(8):
        nursery.start_soon(one)
    await trio.sleep(0.5)
    s = pool.statistics()
    # 2 running, 2 in the mailbox, 1 held by the actor waiting for a slot, 3 callers blocked
    assert s.in_flight == 2 and s.queued == 6
    await trio.sleep(10)
    s = pool.statistics()
    assert results == ["ok"] * 8 and s.completed == 8 and s.in_flight == 0
    assert trio.current_time() >= 4  # 8 requests, 2 at a time, 1 s each
    assert s.latency.count == 8 and s.latency.p50 == pytest.approx(1)


async def test_pool_actor_direct_requests_share_slots_fifo(nursery, autojump_clock):
    order = []

    async def slow(call):
        order.append(call.json["i"])
        await trio.sleep(1)
        if call.json["i"] == 3:
            raise http_error(500)
        return call.json["i"]

    pool = PoolActor("sampling", FakeTransport(slow), concurrency=2, mailbox_size=2)
    await nursery.start(pool.run)
    results, errors = {}, []

    async def one(i):
        try:
            results[i] = await pool.request("POST", "/x", json={"i": i})
        except APIStatusError as exc:
            errors.append((i, exc.status_code))

    for i in range(6):
        nursery.start_soon(one, i)
        await trio.sleep(0.01)  # a known arrival order
    s = pool.statistics()
    assert s.in_flight == 2 and s.queued == 4  # the rest wait in their own tasks
    await trio.sleep(10)
    assert order == list(range(6))  # FIFO
    assert results == {i: i for i in range(6) if i != 3} and errors == [(3, 500)]
    s = pool.statistics()
    assert s.completed == 6 and s.errors == 1 and s.in_flight == 0 and s.queued == 0
    await pool.wait_idle()
    pool.mailbox.close(ServiceClosedError("closed"))
    with pytest.raises(ServiceClosedError):
        await pool.request("POST", "/x", json={"i": 9})


async def test_mailbox_fail_in_flight(autojump_clock):
    mb = Mailbox(4, name="m")
    got = []

    async def caller():
        try:
            await call(mb, "hello")
        except ActorCrashedError as exc:
            got.append(exc)

    async with trio.open_nursery() as n:
        n.start_soon(caller)
        env = await mb.receive()
        assert mb.in_flight == 1
        assert mb.fail_in_flight(ActorCrashedError("crashed", actor="x")) == 1
    assert len(got) == 1 and mb.in_flight == 0


async def test_admission_fifo_release_on_ack(autojump_clock):
    adm = SamplingAdmission(max_concurrent=1, byte_budget=1000)
    order = []
    acks = trio.Event()

    async def post(i):
        order.append(i)
        await trio.sleep(1)  # the POST until the server's ack
        return i

    async with trio.open_nursery() as n:
        for i in range(5):
            n.start_soon(lambda i=i: adm.submit(lambda: post(i), estimated_bytes=100))
            await trio.testing.wait_all_tasks_blocked()
        assert adm.statistics().in_flight == 1 and adm.statistics().waiting == 4
    assert order == [0, 1, 2, 3, 4]
    assert trio.current_time() == pytest.approx(5)
    assert adm.statistics().in_flight == 0  # nothing held after the acks


async def test_admission_429_tightens_and_resubmits_same_request(autojump_clock):
    adm = SamplingAdmission(max_concurrent=100, byte_budget=10_000_000, backoff_concurrent=2)
    bodies = []

    async def post():
        bodies.append(("seq", 7, trio.current_time()))
        if len(bodies) == 1:
            raise RateLimitError("slow down", status_code=429)
        return "ack"

    assert await adm.submit(post, estimated_bytes=1000) == "ack"
    assert [b[1] for b in bodies] == [7, 7]
    assert bodies[1][2] - bodies[0][2] == pytest.approx(1.0)
    assert adm.tightened  # still inside the 10 s window
    big = []

    async def big_post():
        big.append(trio.current_time())
        if len(big) == 1:
            raise RateLimitError("slow", status_code=429)
        return "ok"

    await adm.submit(big_post, estimated_bytes=200 * 1024)
    assert big[1] - big[0] == pytest.approx(5.0)

    # while tightened at most backoff_concurrent run at once
    adm.note_rate_limited()
    running = peak = 0

    async def hold():
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    async with trio.open_nursery() as n:
        for _ in range(6):
            n.start_soon(lambda: adm.submit(hold, estimated_bytes=1))
    assert peak == 2


async def test_sequencer_order_and_pipelining(autojump_clock):
    seq = TrainingSequencer("m")
    log = []
    ids = seq.reserve(3)
    assert ids == [1, 2, 3]
    results = {}

    async def post(n, delay):
        log.append(("start", n, trio.current_time()))
        await trio.sleep(delay)
        log.append(("returned", n, trio.current_time()))
        return {"request_id": f"r{n}"}

    async def submit_and_wait_result(n, delay):
        ack = await seq.submit(n, lambda seq_id: seq_id, lambda seq_id: post(seq_id, delay))
        await trio.sleep(50)  # the result takes a long time
        results[n] = ack

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit_and_wait_result, 3, 0.1)
        nursery.start_soon(submit_and_wait_result, 2, 0.5)
        nursery.start_soon(submit_and_wait_result, 1, 1.0)
    starts = [e for e in log if e[0] == "start"]
    assert [e[1] for e in starts] == [1, 2, 3]
    # POST 2 left when POST 1 returned (t=1), long before result 1 (t=51)
    assert starts[1][2] == pytest.approx(1.0) and starts[2][2] == pytest.approx(1.5)
    assert seq.reserve(2) == [4, 5]


def test_config_from_env_and_repr():
    cfg = ServiceConfig.from_env({"TINKER_API_KEY": "tml-supersecret", "TINKER_BASE_URL": "http://127.0.0.1:9/", "TINKER_TAGS": "a, b,a", "TINKER_PROJECT_ID": "p", "TINKER_TELEMETRY": "0"})
    assert cfg.base_url == "http://127.0.0.1:9" and cfg.tags == ("a", "b") and cfg.project_id == "p" and cfg.telemetry is False
    assert "supersecret" not in repr(cfg) and "supersecret" not in str(cfg)
    with pytest.raises(ConfigError):
        ServiceConfig(api_key="sk-wrong")
    with pytest.raises(ConfigError):
        ServiceConfig.from_env({})


async def test_open_service_startup_and_success_close(autojump_clock):
    t = session_server(flags={"sample_max_concurrent_requests": 7, "sample_use_retrieve_futures": True}, dynamic=None)
    async with open_service(transport=t, api_key=KEY, base_url="http://x") as service:
        assert service.session_id == "sess-1"
        assert service.server_flags.sample_use_retrieve_futures is True
        assert service.sampling_admission.max_concurrent == 7
        assert [c.path for c in t.calls][:3] == ["/api/v1/client/config", "/api/v1/client/dynamic_config", "/api/v1/create_session"]
        await trio.sleep(21)
        assert service.health.state == "healthy"
        stats = service.statistics()
        assert set(stats.pools) == {"session", "sampling", "futures", "training", "telemetry"}
    finish = t.paths("/api/v1/sessions/sess-1/finish")
    assert finish[0].json == {"reason": {"type": "success"}, "detail": None}
    events = [e["event"] for c in t.paths("/api/v1/telemetry") for e in c.json["events"]]
    assert events[0] == "SESSION_START" and events[-1] == "SESSION_END"
    assert t.calls[-1].path == "/api/v1/telemetry"  # finish first, then the final flush


async def test_open_service_errored_and_interrupted(autojump_clock):
    t = session_server()
    with pytest.raises(ValueError):
        async with open_service(transport=t, api_key=KEY, telemetry=False):
            raise ValueError("user bug")
    assert t.paths("/api/v1/sessions/sess-1/finish")[0].json["reason"] == {"type": "errored"}

    t2 = session_server()
    with trio.move_on_after(5):
        async with open_service(transport=t2, api_key=KEY, telemetry=False):
            await trio.sleep_forever()
    assert t2.paths("/api/v1/sessions/sess-1/finish")[0].json["reason"] == {"type": "interrupted"}


async def test_open_service_request_goes_through_pool_actor(autojump_clock):
    async def extra(call):
        return Raw({"ok": 1})

    t = session_server(extra)
    async with open_service(transport=t, api_key=KEY, telemetry=False) as service:
        await service.request("training", "POST", "/api/v1/optim_step", json={"a": 1})
        assert service.pool_statistics("training").completed == 1


async def test_heartbeat_410_fails_pending_futures(autojump_clock):
    from tinker_actors.errors import SessionExpiredError
    from tinker_actors.runtime.poller import FutureSpec

    async def extra(call):
        await trio.sleep(30)
        return Raw({"type": "try_again", "request_id": call.json["request_id"], "queue_state": "active"})

    t = session_server(extra)
    base = t.handler

    async def handler(call):
        if call.path == "/api/v1/session_heartbeat":
            raise http_error(410)
        return await base(call)

    t.handler = handler
    async with open_service(transport=t, api_key=KEY, telemetry=False) as service:
        handle = service.poller.register(FutureSpec(request_id="r1", request_type="Sample"))
        with pytest.raises(SessionExpiredError):
            await handle.result()
        assert trio.current_time() == pytest.approx(10, abs=0.5)
        assert service.health.state == "expired"


async def test_actor_crash_escalates_out_of_open_service(autojump_clock):
    t = session_server()
    policy = RestartPolicy(max_restarts=2, within_s=60, backoff_initial=0.1)
    with pytest.raises(ActorCrashedError):
        async with open_service(transport=t, api_key=KEY, telemetry=False, restart_policy=policy) as service:
            # a malformed message crashes the poller; one per restart exhausts the budget
            for _ in range(10):
                service.poller._inbox_send.send_nowait(None)
                await trio.sleep(1)
            raise AssertionError("the crash budget was never exhausted")
    assert t.paths("/api/v1/sessions/sess-1/finish")[0].json["reason"]["type"] == "errored"
