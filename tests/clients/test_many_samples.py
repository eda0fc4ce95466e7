"""10,000 sample requests against the null-compute server: all resolve, long-polls stay bounded."""

from __future__ import annotations

import pytest
import trio

from tinker_actors.clients import FutureState
from tinker_actors.wire import types as wt

N = 10_000
FUTURES_POOL = 20


@pytest.mark.slow
async def test_ten_thousand_samples_resolve_with_bounded_long_polls(tmp_path, h, base_model) -> None:
    async with h.local_server(tmp_path, null_compute=True) as url:
        pools = {"session": 5, "sampling": 50, "futures": FUTURES_POOL, "training": 5, "telemetry": 5}
        async with h.client_on(url, pool_limits=pools) as service:
            sampler = await service.create_sampling_client(base_model=base_model)
            prompt = wt.ModelInput.from_ints([104, 105])
            params = wt.SamplingParams(max_tokens=2, seed=0)
            futures = [sampler.sample(prompt, 1, params) for _ in range(N)]
            with trio.fail_after(240):
                results = [await fut for fut in futures]
            assert all(len(r.sequences) == 1 and r.sequences[0].sequence_id for r in results)
            assert all(f.state is FutureState.DONE for f in futures)
            assert len({f.request_id for f in futures}) == N
            # the client never had more polls open than its futures pool has connections
            peak_polls = service._ctx.service._transport.statistics()["futures"].peak_in_flight
        stats = await h.server_stats(url)
    assert stats["requests"].get("asample", 0) >= N
    assert 0 < peak_polls <= FUTURES_POOL
    # (a server that computes quickly answers most polls at once: few or none park)
    assert stats["peak_long_polls"] <= FUTURES_POOL
