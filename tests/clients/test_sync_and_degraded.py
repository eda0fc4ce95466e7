"""The blocking facade (and asyncio bridge), and degrading against older servers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import pickle
import subprocess
import sys
import threading

import pytest
import trio

from tinker_actors.clients import FutureState
from tinker_actors.clients import sync
from tinker_actors.server import ServerConfig
from tinker_actors.wire import types as wt


def _run_server_in_thread(tmp_path, h, **config):
    """A local server on its own trio thread, for the blocking tests."""
    started = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        holder["token"] = trio.lowlevel.current_trio_token()
        stop = trio.Event()
        holder["stop"] = stop
        async with h.local_server(tmp_path, **config) as url:
            holder["url"] = url
            started.set()
            await stop.wait()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert started.wait(30)

    def stop() -> None:
        trio.from_thread.run_sync(holder["stop"].set, trio_token=holder["token"])
        thread.join(30)

    return holder["url"], stop


def test_sync_facade_and_asyncio_bridge(tmp_path, h, base_model) -> None:
    url, stop = _run_server_in_thread(tmp_path, h)
    try:
        with sync.ServiceClient(base_url=url, api_key=h.API_KEY, telemetry=False) as service:
            caps = service.get_server_capabilities()
            assert isinstance(caps, concurrent.futures.Future)
            assert base_model in [m.model_name for m in caps.result(timeout=30).supported_models]
            training = service.create_lora_training_client(base_model, rank=2).result(timeout=30)
            assert isinstance(training, sync.TrainingClient)
            tok = training.get_tokenizer()
            ids = tok.encode("sync facade")
            datum = wt.Datum(model_input=wt.ModelInput.from_ints(ids[:-1]),
                             loss_fn_inputs={"target_tokens": ids[1:], "weights": [1.0] * (len(ids) - 1)})
            fb = training.forward_backward([datum], "cross_entropy")
            opt = training.optim_step(wt.AdamParams(learning_rate=1e-2))
            assert fb.result(timeout=30).metrics["loss:sum"] > 0
            opt.result(timeout=30)
            assert fb.state is FutureState.DONE and fb.request_id

            sampler = service.create_sampling_client(base_model=base_model).result(timeout=30)

            async def from_asyncio() -> wt.SampleResponse:
                fut = sampler.sample(wt.ModelInput.from_ints(ids), 2, wt.SamplingParams(max_tokens=3))
                return await asyncio.wrap_future(fut)

            response = asyncio.run(from_asyncio())
            assert len(response.sequences) == 2
            rest = service.create_rest_client()
            assert isinstance(rest, sync.RestClient)
            assert service.session_id in rest.list_sessions(limit=100).result(timeout=30).sessions
            raw = service.with_raw_response.health_check().result(timeout=30)
            assert raw.status == 200

            # A pickled sampling client samples from another process.
            blob = pickle.dumps(sampler)
            code = (
                "import pickle,sys; from tinker_actors.wire import types as wt\n"
                "s = pickle.loads(sys.stdin.buffer.read())\n"
                "r = s.sample(wt.ModelInput.from_ints([104,105]), 1, wt.SamplingParams(max_tokens=2)).result(60)\n"
                "print('SEQS=%d' % len(r.sequences))\n"
            )
            proc = subprocess.run(
                [sys.executable, "-c", code], input=blob, capture_output=True, timeout=120,
                env={"TINKER_API_KEY": h.API_KEY, "TINKER_TELEMETRY": "0", "PYTHONPATH": ":".join(sys.path)},
            )
            assert proc.returncode == 0, proc.stderr.decode()[-2000:]
            assert "SEQS=1" in proc.stdout.decode()

            # A blocking call made on the loop thread (say, from code the loop
            # runs) is refused with a clear error instead of deadlocking.
            seen: list[BaseException] = []

            def on_loop() -> None:
                try:
                    service.health_check()
                except RuntimeError as exc:
                    seen.append(exc)

            service._loop.call(on_loop)
        assert seen and "loop thread" in str(seen[0])
        with pytest.raises(RuntimeError):
            service.health_check()
    finally:
        stop()


async def test_degrades_against_older_server(tmp_path, h, base_model) -> None:
    config = dict(
        dynamic_config=False, retrieve_futures=False, cancel_future=False,
        sessions_routes=False, sample_sequence_ids=False,
    )
    async with h.local_server(tmp_path, **config) as url, h.client_on(url) as service:
        sampler = await service.create_sampling_client(base_model=base_model)
        response = await sampler.sample(wt.ModelInput.from_ints([104, 105]), 3, wt.SamplingParams(max_tokens=2))
        ids = [s.sequence_id for s in response.sequences]
        # no sample_sequence_ids from the server: synthesized, distinct, never missing
        assert all(ids) and len(set(ids)) == 3
        training = await service.create_lora_training_client(base_model, rank=2)
        assert (await training.get_info()).lora_rank == 2
        rest = service.create_rest_client()
        from tinker_actors.errors import NotFoundError

        with pytest.raises(NotFoundError):
            await rest.get_session(service.session_id)
