"""Every server flag the client honours, set by the local server and seen in what the client sends.

The server sets flags through its ServerConfig (``client_config_overrides``,
``dynamic_config_overrides``, ``sample_use_retrieve_futures``,
``sample_cancel_enabled``); the tests count requests at the server
(``GET /_local/stats``) or read the client transport's peak in-flight counts.
"""

from __future__ import annotations

import math
from typing import Any

import support
import trio

from tinker_actors.clients import FutureState
from tinker_actors.server import ServerConfig
from tinker_actors.server.config import FaultConfig
from tinker_actors.wire import types as wt

PROMPT = wt.ModelInput.from_ints([104, 105])
PARAMS = wt.SamplingParams(max_tokens=2, seed=0)


def _datum(n: int) -> wt.Datum:
    # 16 n estimated bytes: n int32 tokens, n int64 targets, n float32 weights
    return wt.Datum(
        model_input=wt.ModelInput.from_ints(list(range(1, n + 1))),
        loss_fn_inputs={"target_tokens": list(range(2, n + 2)), "weights": [1.0] * n},
    )


def _peak(service: Any, pool: str) -> int:
    return int(service.service._transport.statistics()[pool].peak_in_flight)


async def _count(h: Any, url: str, route: str) -> int:
    return int((await h.server_stats(url))["requests"].get(route, 0))


async def _fwdbwd_requests(tmp_path: Any, h: Any, base_model: str, n: int, flags: dict[str, Any]) -> tuple[int, int, Any]:
    """forward_backward of ``n`` datums under ``flags``: (server fwd/bwd requests, training peak, output)."""
    async with h.local_server(tmp_path, null_compute=True, client_config_overrides=flags) as url, h.client_on(url) as service:
        training = await service.create_lora_training_client(base_model, rank=2, seed=0)
        before = await _count(h, url, "forward_backward")
        out = await training.forward_backward([_datum(6) for _ in range(n)], "cross_entropy")
        return await _count(h, url, "forward_backward") - before, _peak(service, "training"), out


async def test_max_chunk_len_sets_the_number_of_requests(tmp_path, h, base_model) -> None:
    sent, _, out = await _fwdbwd_requests(tmp_path, h, base_model, 10, {"fwdbwd_max_chunk_len": 4})
    assert sent == math.ceil(10 / 4)
    assert len(out.loss_fn_outputs) == 10
    sent, _, _ = await _fwdbwd_requests(tmp_path / "default", h, base_model, 10, {})
    assert sent == 1


async def test_max_chunk_bytes_sets_the_number_of_requests(tmp_path, h, base_model) -> None:
    # each datum is ~96 bytes: 200 bytes hold two
    sent, _, out = await _fwdbwd_requests(tmp_path, h, base_model, 7, {"fwdbwd_max_chunk_bytes_count": 200})
    assert sent == 4
    assert len(out.loss_fn_outputs) == 7


async def test_parallel_fwdbwd_chunks_decides_whether_chunks_overlap(tmp_path, h, base_model) -> None:
    flags = {"fwdbwd_max_chunk_len": 2, "parallel_fwdbwd_chunks": True}
    sent, peak, _ = await _fwdbwd_requests(tmp_path / "on", h, base_model, 8, flags)
    assert sent == 4 and peak > 1
    sent, peak, _ = await _fwdbwd_requests(tmp_path / "off", h, base_model, 8, {**flags, "parallel_fwdbwd_chunks": False})
    assert sent == 4 and peak == 1  # one chunk after another, each in its own turn


async def _sample_peak(tmp_path: Any, h: Any, base_model: str, flags: dict[str, Any], n: int = 6) -> int:
    """``n`` concurrent samples whose asample POST takes 0.3 s; the client's peak of open asample POSTs."""
    slow = FaultConfig(slow_s=0.3, routes=["asample"])
    async with h.local_server(tmp_path, null_compute=True, faults=slow, client_config_overrides=flags) as url:
        async with h.client_on(url) as service:
            sampler = await service.create_sampling_client(base_model=base_model)
            futures = [sampler.sample(PROMPT, 1, PARAMS) for _ in range(n)]
            with trio.fail_after(30):
                for fut in futures:
                    await fut
            assert await _count(h, url, "asample") == n
            return _peak(service, "sampling")


async def test_sample_max_concurrent_requests_bounds_open_asample_posts(tmp_path, h, base_model) -> None:
    assert await _sample_peak(tmp_path / "limited", h, base_model, {"sample_max_concurrent_requests": 2}) == 2
    assert await _sample_peak(tmp_path / "default", h, base_model, {}) > 2


async def test_sample_dispatch_bytes_budget_bounds_open_asample_posts(tmp_path, h, base_model) -> None:
    # one sample is estimated at (2 prompt + 2 new tokens) × 10 = 40 bytes: 60 admit one at a time
    assert await _sample_peak(tmp_path, h, base_model, {"sample_dispatch_bytes_semaphore_size": 60}) == 1


async def test_sample_use_retrieve_futures_switches_to_batched_polling(tmp_path, h, base_model) -> None:
    for enabled in (True, False):
        async with h.local_server(tmp_path / str(enabled), null_compute=True, sample_use_retrieve_futures=enabled) as url:
            async with h.client_on(url) as service:
                assert service.service.server_flags.sample_use_retrieve_futures is enabled
                sampler = await service.create_sampling_client(base_model=base_model)
                with trio.fail_after(30):
                    results = [await fut for fut in [sampler.sample(PROMPT, 1, PARAMS) for _ in range(5)]]
                assert all(r.sequences for r in results)
            batched = await _count(h, url, "retrieve_futures")
        assert (batched > 0) is enabled


async def _cancel_a_queued_sample(service: Any, sampler: Any) -> Any:
    fut = sampler.sample(PROMPT, 1, PARAMS)
    with trio.fail_after(10):
        while not fut.request_id:  # submitted: the server holds it queued (paused)
            await trio.sleep(0.01)
    assert fut.cancel()
    assert fut.state is FutureState.CANCELLED
    return fut


async def _wait_count(h: Any, url: str, route: str, want: int) -> int:
    with trio.move_on_after(5):
        while await _count(h, url, route) < want:
            await trio.sleep(0.05)
    return await _count(h, url, route)


async def test_sample_cancel_enabled_sends_cancel_future(tmp_path, h, base_model) -> None:
    paused = FaultConfig(pause_futures_s=60)
    for enabled in (True, False):
        async with h.local_server(tmp_path / str(enabled), null_compute=True, faults=paused, sample_cancel_enabled=enabled) as url:
            async with h.client_on(url) as service:
                assert service.service.server_flags.sample_cancel_enabled is enabled
                sampler = await service.create_sampling_client(base_model=base_model)
                await _cancel_a_queued_sample(service, sampler)
                if enabled:
                    assert await _wait_count(h, url, "cancel_future", 1) == 1
                else:
                    await trio.sleep(0.5)
                    assert await _count(h, url, "cancel_future") == 0


async def test_dynamic_config_change_on_the_server_reaches_a_live_client(tmp_path, h, base_model) -> None:
    cfg = ServerConfig(data_dir=tmp_path, null_compute=True, faults=FaultConfig(pause_futures_s=60))
    async with support.on_loopback(cfg) as url, h.client_on(url) as service:
        runtime = service.service
        sampler = await service.create_sampling_client(base_model=base_model)
        await _cancel_a_queued_sample(service, sampler)
        await trio.sleep(0.3)
        assert await _count(h, url, "cancel_future") == 0

        cfg.sample_cancel_enabled = True  # flipped on the running server
        cfg.dynamic_config_overrides = {"refresh_interval_sec": 42, "sample_cancel_max_batch_size": 9}
        await runtime.dynamic_config.refresh_once()  # what the schedule does every max(refresh, 10) s
        flags = runtime.server_flags
        assert (flags.sample_cancel_enabled, flags.refresh_interval_sec, flags.sample_cancel_max_batch_size) == (True, 42, 9)
        assert runtime.dynamic_config.interval() == 42
        await _cancel_a_queued_sample(service, sampler)
        assert await _wait_count(h, url, "cancel_future", 1) == 1


async def test_server_without_dynamic_config_keeps_defaults(tmp_path, h, base_model) -> None:
    async with h.local_server(tmp_path, null_compute=True, dynamic_config=False, sample_cancel_enabled=True) as url:
        async with h.client_on(url) as service:
            assert service.service.dynamic_config is None
            assert service.service.server_flags.sample_cancel_enabled is False
