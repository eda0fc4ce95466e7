"""Samples queued behind sampling admission: small, FIFO, cancellable, closed with the service.

Admission is held full by taking its only slot (``admit_now``), so every
``sample()`` call waits in the admission backlog, as it does when thousands
are requested at once against a server that is not acknowledging them yet.
Past the ack, a sample waiting for a poll slot is a record too: the peak
memory with thousands acknowledged but unresolved stays under 2 KB each.
"""

from __future__ import annotations

import gc
import tracemalloc

import httpx
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


class _AckingServer:
    """Acknowledges every asample at once and keeps every future pending (30 s long polls
    answered ``try_again``), with no per-request state: the client's memory is all we measure."""

    def __init__(self) -> None:
        self.acked = 0
        self.polls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rsplit("/", 1)[-1]
        if path == "dynamic_config":
            return httpx.Response(404, json={"detail": "not here"})
        if path == "create_session":
            return httpx.Response(200, json={"session_id": "sess-1"})
        if path == "asample":
            self.acked += 1
            rid = f"req-{self.acked}"
            return httpx.Response(200, json={"request_id": rid, "sample_sequence_ids": [f"{rid}:0"]})
        if path == "retrieve_future":
            self.polls += 1
            await trio.sleep(30)
            return httpx.Response(200, json={"type": "try_again", "request_id": "x", "queue_state": "active"})
        return httpx.Response(200, json={})


async def test_acknowledged_unresolved_samples_peak_under_two_kilobytes(autojump_clock) -> None:
    from tinker_actors.clients import open_service_client
    from tinker_actors.clients.sampling import SamplingClient
    from tinker_actors.transport import Transport

    server = _AckingServer()
    url, key = "http://tinker.test", "tml-peak-test"
    transport = Transport(url, key, http_transport=httpx.MockTransport(server))
    # Admission lets 2 % of N be on their way at once, as the defaults do for the
    # 100,000-sample benchmark (2,000 slots): that window is bounded; the rest is per request.
    async with transport, open_service_client(
        base_url=url, api_key=key, transport=transport, telemetry=False, sampling_max_concurrent=N // 50
    ) as service:
        sampler = SamplingClient(service._ctx, "ss-1", base_model="m")
        prompt, params = _args()
        poller = service._ctx.poller
        warm = sampler.sample(prompt, 1, params)  # warm caches and connections outside the measurement
        await trio.sleep(1)
        warm.cancel()
        await trio.sleep(1)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            futures = [sampler.sample(prompt, 1, params) for _ in range(N)]
            with trio.fail_after(600):
                while server.acked < N + 1 or poller.live < N:
                    await trio.sleep(0.5)
            await trio.sleep(95)  # three rounds of long polls, every poll slot busy
            peak = (tracemalloc.get_traced_memory()[1] - before) / N
        finally:
            tracemalloc.stop()
        print(f"{peak:.0f} bytes per acknowledged, unresolved sample at the peak")
        stats = poller.statistics()
        # every record waits; exactly as many long polls are open as the poll slots allow
        assert stats.live == N and stats.open_polls == stats.max_open_polls
        assert server.polls >= 3 * stats.max_open_polls
        assert all(f.request_id and not f.done() for f in futures)
        assert peak < MAX_BYTES_PER_QUEUED, f"{peak:.0f} bytes per acknowledged sample at the peak"
        for f in futures:
            f.cancel()
        assert poller.live == 0
