"""Expired futures (410), expired sessions and failing heartbeats, on the virtual clock."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from harness import BASE_MODEL, control, in_process, record

from tinker_actors.errors import GoneError, SessionExpiredError
from tinker_actors.jobs.trainer import sft_datum
from tinker_actors.server import FaultConfig, ServerConfig
from tinker_actors.wire import types as wt


def server(tmp_path: Path, **faults: object) -> ServerConfig:
    return ServerConfig(
        data_dir=tmp_path / "data", null_compute=True, compute_inline=True, long_poll_timeout_s=20, faults=FaultConfig(seed=5, **faults)
    )


async def test_expired_sample_futures_are_resubmitted(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    # every finished future answers 410 with probability 0.4: the sample is resubmitted under a new seq_id
    with trio.fail_after(600):
        async with in_process(server(tmp_path, expire_futures_s=0.0, expire_rate=0.4)) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            futs = [sampler.sample(wt.ModelInput.from_ints([70 + i]), 1, wt.SamplingParams(max_tokens=3, seed=i)) for i in range(20)]
            results = [await f for f in futs]
            s = await control(app, "/_local/stats")
    assert len(results) == 20 and all(len(r.sequences) == 1 for r in results)
    expired = s["faults"]["future_expired"]
    assert expired > 0
    assert s["work_done"]["Sample"] == 20 + expired  # each 410 cost exactly one resubmission
    record("expired_sample_futures", load="20 samples", faults={"future_expired": expired}, resubmits=expired, lost=0, duplicates=0, hangs=0)


async def test_expired_training_future_says_what_to_do(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(600):
        async with in_process(server(tmp_path)) as (app, client):
            training = await client.create_lora_training_client(BASE_MODEL, rank=4)
            await control(app, "/_local/faults", {"seed": 1, "expire_futures_s": 0.0, "expire_rate": 1.0})
            with pytest.raises(GoneError) as info:
                await training.forward_backward([sft_datum([72, 105, 33, 10])], "cross_entropy")
            s = await control(app, "/_local/stats")
    message = str(info.value)
    assert "retrieve_future" in message and "410" in message
    assert "create_training_client_from_state_with_optimizer" in message and "checkpoint" in message
    assert s["work_done"]["ForwardBackward"] == 1  # not resubmitted: the model may have applied it
    record("expired_training_future", load="1 forward_backward", faults={"future_expired": s["faults"]["future_expired"]}, lost=0, duplicates=0, hangs=0)


async def test_heartbeat_failing_for_a_minute_then_recovering(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(600):
        async with in_process(server(tmp_path, rate_5xx=1.0, routes=["session_heartbeat"]), heartbeat_interval=10) as (app, client):
            health = client.service.heartbeat
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            during = sampler.sample(wt.ModelInput.from_ints([65]), 1, wt.SamplingParams(max_tokens=2))
            await trio.sleep(55)
            degraded = health.health
            assert degraded.state == "degraded" and degraded.failures >= 5 and degraded.since is not None
            assert "500" in (degraded.last_error or "")
            await control(app, "/_local/faults", {})  # the network comes back
            await trio.sleep(15)
            recovered = health.health
            assert recovered.state == "healthy" and recovered.failures == 0
            assert len((await during).sequences) == 1  # work went on through the outage
            after = await sampler.sample(wt.ModelInput.from_ints([66]), 1, wt.SamplingParams(max_tokens=2))
            assert after.sequences
            s = await control(app, "/_local/stats")
    record(
        "heartbeat_fails_60s_recovers",
        load="2 samples, heartbeat every 10 s",
        faults={"5xx": s["faults"]["5xx"]},
        degraded_failures=degraded.failures,
        final_state=recovered.state,
        lost=0,
        duplicates=0,
        hangs=0,
    )


async def test_heartbeat_failing_for_good_ends_the_session_cleanly(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    # The heartbeats fail; the server expires the session after 45 s without one,
    # so once the link is back the heartbeat gets 410: the session is over.
    cfg = server(tmp_path, rate_5xx=1.0, routes=["session_heartbeat"], session_expiry_s=45.0)
    start = None
    with trio.fail_after(900):
        async with in_process(cfg, heartbeat_interval=10) as (app, client):
            heartbeat = client.service.heartbeat
            training = await client.create_lora_training_client(BASE_MODEL, rank=4)
            start = trio.current_time()
            await trio.sleep(60)
            assert heartbeat.health.state == "degraded"
            await control(app, "/_local/faults", {"session_expiry_s": 45.0})
            await heartbeat.expired.wait()
            ended_after = trio.current_time() - start
            assert heartbeat.health.state == "expired"
            with pytest.raises(SessionExpiredError) as info:
                await training.forward_backward([sft_datum([72, 105, 33])], "cross_entropy")
            s = await control(app, "/_local/stats")
    message = str(info.value)
    assert "expired" in message and "new ServiceClient" in message and "checkpoint" in message
    assert ended_after <= 80
    record(
        "heartbeat_fails_for_good",
        load="1 training client, heartbeat every 10 s",
        faults={"5xx": s["faults"]["5xx"], "session_expired": s["faults"]["session_expired"]},
        session_ended_after_s=round(ended_after, 1),
        lost=0,
        duplicates=0,
        hangs=0,
    )
