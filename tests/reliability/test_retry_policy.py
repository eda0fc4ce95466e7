"""The per-endpoint retry policy, seen from the public clients, on the virtual clock.

Regressions from issue 10: a save that met one 5xx ended a trainer run (case 4:
save and load had ``max_retries=0`` and nothing above retried them), and plain
``sample()`` failed at once on a 5xx (case 6). A resubmission after a 410
reused the caller's idempotency key, which the server maps to the dead
request (case 2's mechanism).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from harness import BASE_MODEL, control, in_process

from tinker_actors.errors import GoneError, InternalServerError, RateLimitError
from tinker_actors.jobs.trainer import sft_datum
from tinker_actors.server import FaultConfig, ServerConfig
from tinker_actors.wire import types as wt

PROMPT = wt.ModelInput.from_ints([72, 105])
PARAMS = wt.SamplingParams(max_tokens=3, seed=1)


def server(tmp_path: Path, *, null_compute: bool = True, **faults: object) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "data", null_compute=null_compute, compute_inline=True,
                        long_poll_timeout_s=20, faults=FaultConfig(seed=3, **faults))


@pytest.mark.parametrize("route", ["save_weights", "save_weights_for_sampler", "load_weights"])
async def test_checkpoint_calls_ride_out_5xx(tmp_path: Path, autojump_clock: trio.abc.Clock, route: str) -> None:
    with trio.fail_after(900):
        async with in_process(server(tmp_path, null_compute=False)) as (app, client):
            training = await client.create_lora_training_client(BASE_MODEL, rank=4)
            await training.forward_backward([sft_datum([72, 105, 33])], "cross_entropy")
            saved = await training.save_state("ckpt")
            await control(app, "/_local/faults", {"rate_5xx": 1.0, "max_faults": 3, "routes": [route]})
            await control(app, "/_local/stats/reset", {})
            if route == "save_weights":
                assert (await training.save_state("again")).path.endswith("/weights/again")
            elif route == "save_weights_for_sampler":
                assert (await training.save_weights_for_sampler("s1")).path.endswith("/sampler_weights/s1")
            else:
                await training.load_state(saved.path)
            # the same client goes on in order at once (no 120 s wait for a lost seq_id)
            start = trio.current_time()
            await training.optim_step(wt.AdamParams(learning_rate=1e-3))
            assert trio.current_time() - start < 5
            s = await control(app, "/_local/stats")
    assert s["faults"]["5xx"] == 3
    assert s["handled"][route] == 1  # three refused, one served


async def test_sample_rides_out_30_percent_5xx(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(900):
        async with in_process(server(tmp_path, rate_5xx=0.3, routes=["asample"])) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            futures = [sampler.sample(PROMPT, 1, PARAMS) for _ in range(20)]
            results = [await f for f in futures]
            s = await control(app, "/_local/stats")
    assert len(results) == 20 and all(len(r.sequences) == 1 for r in results)
    assert s["faults"]["5xx"] > 0 and s["work_done"]["Sample"] == 20


async def test_429_waits_the_servers_retry_after(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(900):
        async with in_process(server(tmp_path)) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            await control(app, "/_local/faults", {"rate_429": 1.0, "retry_after_s": 7, "max_faults": 2, "routes": ["asample"]})
            start = trio.current_time()
            await sampler.sample(PROMPT, 1, PARAMS)
            took = trio.current_time() - start
            s = await control(app, "/_local/stats")
    assert 14 <= took < 20  # two waits of 7 s, not the 1 s floor
    assert s["work_done"]["Sample"] == 1


async def test_resubmit_after_410_uses_a_new_key(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    # The caller's key names the request the server forgot: re-sending it would
    # only replay the dead request id. Round r sends "<key>~r<r>" instead.
    with trio.fail_after(900):
        async with in_process(server(tmp_path)) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            await control(app, "/_local/faults", {"rate_410": 1.0, "max_faults": 2, "routes": ["retrieve_future"]})
            out = await sampler.sample(PROMPT, 1, PARAMS, idempotency_key="my-sample-1")
            s = await control(app, "/_local/stats")
            keys = [k for k in app.server.idempotency._entries if k.startswith("my-sample-1")]
    assert len(out.sequences) == 1
    assert keys == ["my-sample-1", "my-sample-1~r1", "my-sample-1~r2"]
    assert s["faults"]["gone"] == 2 and s["work_done"]["Sample"] == 3  # two results forgotten, one delivered


async def test_sample_gives_up_at_its_budget_with_a_typed_error(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(900):
        async with in_process(server(tmp_path)) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            await control(app, "/_local/faults", {"rate_5xx": 1.0, "status_5xx": 503, "routes": ["asample"]})
            start = trio.current_time()
            with pytest.raises(InternalServerError) as info:
                await sampler.sample(PROMPT, 1, PARAMS, total_retry_timeout=60)
            assert trio.current_time() - start <= 60
            assert info.value.attempts > 3 and "gave up after" in str(info.value) and "503" in str(info.value)
            await control(app, "/_local/faults", {"rate_429": 1.0, "routes": ["asample"]})
            with pytest.raises(RateLimitError, match="gave up after"):
                await sampler.sample(PROMPT, 1, PARAMS, total_retry_timeout=30)
            await control(app, "/_local/faults", {"rate_410": 1.0, "routes": ["retrieve_future"]})
            with pytest.raises(GoneError, match="gave up after"):
                await sampler.sample(PROMPT, 1, PARAMS, total_retry_timeout=30)
            # the same client samples at once when the server is healthy again
            await control(app, "/_local/faults", {})
            assert len((await sampler.sample(PROMPT, 1, PARAMS)).sequences) == 1


async def test_default_sample_budget_outlasts_a_ten_minute_outage(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    # The SDK retries a sample for as long as 2 h pass without progress: so do we
    with trio.fail_after(7200):
        async with in_process(server(tmp_path)) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            await control(app, "/_local/faults", {"rate_5xx": 1.0, "routes": ["asample"]})
            fut = sampler.sample(PROMPT, 1, PARAMS)
            await trio.sleep(600)
            assert not fut.done()
            await control(app, "/_local/faults", {})
            assert len((await fut).sequences) == 1


def test_docs_show_the_retry_policy_of_every_endpoint() -> None:
    from doc_sections import check_section

    from tinker_actors.api.endpoints import ENDPOINTS, retry_table

    table = retry_table()
    assert all(f"| `{name}` |" in table for name in ENDPOINTS)
    check_section("docs/reliability.md", "retry-policy", table)


async def test_a_shedding_server_is_waited_out(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    cfg = ServerConfig(data_dir=tmp_path / "data", null_compute=True, compute_inline=True, long_poll_timeout_s=20,
                       max_pending_futures=4, faults=FaultConfig(pause_futures_s=3))
    with trio.fail_after(3600):
        async with in_process(cfg) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            results = [await f for f in [sampler.sample(PROMPT, 1, PARAMS) for _ in range(20)]]
            s = await control(app, "/_local/stats")
    assert len(results) == 20
    assert s["shed"] > 0 and s["work_done"]["Sample"] == 20
