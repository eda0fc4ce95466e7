"""Samples queued behind sampling admission: small, FIFO, cancellable, closed with the service.

Admission is held full by taking its only slot (``admit_now``), so every
``sample()`` call waits in the admission backlog, as it does when thousands
are requested at once against a server that is not acknowledging them yet.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import trio

from tinker_actors.clients import FutureState
from tinker_actors.errors import ServiceClosedError
from tinker_actors.wire import types as wt

N = 5_000
MAX_BYTES_PER_QUEUED = 2 * 1024


def _args() -> tuple[wt.ModelInput, wt.SamplingParams]:
    return wt.ModelInput.from_ints([104, 105]), wt.SamplingParams(max_tokens=2, seed=0)


async def test_a_queued_sample_costs_under_two_kilobytes(tmp_path, h, base_model) -> None:
    async with h.local_server(tmp_path, null_compute=True) as url:
        async with h.client_on(url) as service:
            sampler = await service.create_sampling_client(base_model=base_model)
            admission = service._ctx.admission
            admission.configure(max_concurrent=1)
            held = admission.admit_now(0)
            assert held is not None
            prompt, params = _args()
            sampler.sample(prompt, 1, params).cancel()  # warm caches outside the measurement
            await trio.sleep(0)
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                futures = [sampler.sample(prompt, 1, params) for _ in range(N)]
                await trio.sleep(0.05)  # let the admission pump park on the full budget
                per_request = (tracemalloc.get_traced_memory()[0] - before) / N
            finally:
                tracemalloc.stop()
            print(f"{per_request:.0f} bytes per queued sample")
            assert per_request < MAX_BYTES_PER_QUEUED, f"{per_request:.0f} bytes per queued sample"
            assert admission.statistics().waiting == N
            assert all(f.state is FutureState.QUEUED and f.request_id is None for f in futures)
            # cancelled while queued: resolved at once, nothing sent
            for f in futures[1:]:
                f.cancel()
            assert all(f.cancelled() for f in futures[1:])
            with pytest.raises(Exception) as info:
                await futures[1]
            assert "cancelled" in str(info.value)
            admission.release(held)
            result = await futures[0]
            assert result.sequences and futures[0].request_id
        stats = await h.server_stats(url)
    assert stats["requests"].get("asample", 0) == 1


async def test_queued_samples_are_sent_in_order_and_fail_on_close(tmp_path, h, base_model) -> None:
    prompt, params = _args()
    async with h.local_server(tmp_path, null_compute=True) as url:
        async with h.client_on(url) as service:
            sampler = await service.create_sampling_client(base_model=base_model)
            admission = service._ctx.admission
            admission.configure(max_concurrent=1)
            held = admission.admit_now(0)
            assert held is not None
            first = [sampler.sample(prompt, 1, params) for _ in range(20)]
            await trio.sleep(0.01)
            admission.release(held)
            results = [await f for f in first]
            # one slot: each was admitted only after the one before it was acknowledged
            ids = [f.request_id for f in first]
            assert len(set(ids)) == 20 and all(r.sequences for r in results)
            assert ids == sorted(ids, key=lambda rid: int(rid.rsplit("-", 1)[1]))
            held = admission.admit_now(0)
            assert held is not None
            left = [sampler.sample(prompt, 1, params) for _ in range(10)]
            await trio.sleep(0.01)
        # the service closed with these still waiting for admission
        assert all(f.done() and f.state is FutureState.FAILED for f in left)
        with pytest.raises(ServiceClosedError):
            await left[0]
