"""sample_join_sampling_session: a copied SamplingClient asks the server for its clone id before sampling."""

from __future__ import annotations

import pytest

from tinker_actors.clients import SamplingClient
from tinker_actors.wire import types as wt

BASE = "tinker-actors/byte-lm-tiny"
PROMPT = wt.ModelInput.from_ints([104, 105])
PARAMS = wt.SamplingParams(max_tokens=2, seed=0)


@pytest.mark.parametrize("join", [True, False])
async def test_copies_join_only_when_the_server_asks(tmp_path, h, join: bool) -> None:
    flags = {"sample_join_sampling_session": join}
    async with h.local_server(tmp_path, null_compute=True, client_config_overrides=flags) as url:
        async with h.client_on(url) as service:
            sampler = await service.create_sampling_client(base_model=BASE)
            handle = sampler.get_sampler_handle()
            copies = [SamplingClient.from_sampler_handle(handle, service) for _ in range(2)]
            for copy in copies:
                out = await copy.sample(PROMPT, 1, PARAMS)
                assert len(out.sequences) == 1
                await copy.sample(PROMPT, 1, PARAMS)  # joins once, not per sample
            joins = (await h.server_stats(url))["requests"].get("join_sampling_session", 0)
    if join:
        assert joins == 2
        assert sorted(c._clone_id for c in copies) == [1, 2]  # the server's counters, never colliding
        assert all(c._next_seq == c._clone_id * 1_000_000_000 + 2 for c in copies)
    else:
        assert joins == 0
