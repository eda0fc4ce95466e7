"""Every public client method against the local server, with its result checked."""

from __future__ import annotations

import io
import pickle
import tarfile

import httpx
import numpy as np
import pytest
import trio

from tinker_actors.clients import FutureState, SamplingClient
from tinker_actors.clients.rest import parse_tinker_path
from tinker_actors.errors import NotFoundError, ValidationError
from tinker_actors.transport.options import RawResponse, SignedURL
from tinker_actors.wire import types as wt

TEXT = "the quick brown fox jumps over the lazy dog. "


def _datum(tok, text: str) -> wt.Datum:
    ids = tok.encode(text)
    return wt.Datum(
        model_input=wt.ModelInput.from_ints(ids[:-1]),
        loss_fn_inputs={"target_tokens": ids[1:], "weights": [1.0] * (len(ids) - 1)},
    )


async def test_service_training_sampling_rest_end_to_end(tmp_path, base_model, h) -> None:
    async with h.local_server(tmp_path) as url, h.client_on(url) as service:
        # -- service ------------------------------------------------------------------------
        caps = await service.get_server_capabilities()
        assert base_model in [m.model_name for m in caps.supported_models]
        assert (await service.health_check()).status == "ok"
        raw = await service.with_raw_response.health_check()
        assert isinstance(raw, RawResponse) and raw.status == 200
        assert raw.headers["content-type"].startswith("application/json")

        training = await service.create_lora_training_client(base_model, rank=4, seed=0, user_metadata={"t": "1"})
        info = await service.get_info(training.model_id)
        assert info.model_id == training.model_id and info.lora_rank == 4
        assert (await training.get_info()).lora_rank == 4
        tok = training.get_tokenizer()
        assert tok.decode(tok.encode("héllo")) == "héllo"

        # -- training: loss falls; fb and optim pipelined --------------------------------------
        batch = [_datum(tok, TEXT)] * 4
        losses = []
        for _ in range(6):
            fb = training.forward_backward(batch, "cross_entropy")
            opt = training.optim_step(wt.AdamParams(learning_rate=2e-2))
            out = await fb
            await opt
            assert fb.state is FutureState.DONE and fb.request_id
            assert len(out.loss_fn_outputs) == 4
            losses.append(out.metrics["loss:sum"])
        assert losses[-1] < losses[0] * 0.8
        fwd = await training.forward(batch[:1], "cross_entropy")
        assert fwd.metrics["loss:sum"] < losses[0] / 4
        fwd_logprobs = fwd.loss_fn_outputs[0]["logprobs"].to_numpy()

        # -- custom loss (numpy): gradient of -sum(logprobs) equals cross_entropy's ---------
        def neg_ll(data, logprobs):
            return sum(-lp.sum() for lp in logprobs), [-np.ones_like(lp) for lp in logprobs], {"custom/n:sum": 1.0}

        custom = await training.forward_backward_custom(batch[:1], neg_ll)
        assert custom.metrics["loss:sum"] == pytest.approx(-fwd_logprobs.sum(), rel=1e-4)
        assert custom.metrics["custom/n:sum"] == 1.0
        handle = await service.create_custom_loss(
            lambda logprobs, weights: (-(logprobs * weights).sum(), -weights, {}), {"logprobs": 1, "weights": 1}
        )
        via_handle = await training.forward_backward_custom(batch[:1], handle)
        assert via_handle.metrics["loss:sum"] == pytest.approx(-fwd_logprobs.sum(), rel=1e-3)
        await training.optim_step(wt.AdamParams(learning_rate=0.0))

        # -- checkpoints -----------------------------------------------------------------------
        state = await training.save_state("step6", ttl_seconds=7200)
        parsed = parse_tinker_path(state.path)
        sampler_path = (await training.save_weights_for_sampler("s6")).path
        assert parse_tinker_path(sampler_path).kind == "sampler_weights"
        await training.load_state(state.path)
        await training.load_state_with_optimizer(state.path)
        resumed = await service.create_training_client_from_state_with_optimizer(state.path)
        fresh = await service.create_training_client_from_state(state.path)
        same = await resumed.forward(batch[:1], "cross_entropy")
        assert same.metrics["loss:sum"] == pytest.approx(fwd.metrics["loss:sum"], rel=1e-4)
        assert (await fresh.forward(batch[:1], "cross_entropy")).metrics["loss:sum"] == pytest.approx(
            same.metrics["loss:sum"], rel=1e-4
        )
        await service.unload_model(fresh.model_id)

        # -- sampling ----------------------------------------------------------------------------
        sampler = await service.create_sampling_client(model_path=sampler_path)
        assert sampler.get_base_model() == base_model
        prompt = wt.ModelInput.from_ints(tok.encode(TEXT[:20]))
        response = await sampler.sample(
            prompt, 3, wt.SamplingParams(max_tokens=8, seed=3, temperature=0.7),
            include_prompt_logprobs=True, topk_sample_logprobs=2,
        )
        assert len(response.sequences) == 3 and len({s.sequence_id for s in response.sequences}) == 3
        text = tok.decode(response.sequences[0].tokens_list)
        assert isinstance(text, str) and len(response.sequences[0].tokens_list) <= 8
        logprobs = await sampler.compute_logprobs(prompt)
        assert logprobs[0] is None and len(logprobs) == prompt.length
        assert logprobs[1:] == pytest.approx(response.prompt_logprobs_list[1:], abs=1e-4)
        base_sampler = await service.create_sampling_client(base_model=base_model)
        assert (await base_sampler.sample(prompt, 1, wt.SamplingParams(max_tokens=2))).sequences
        via_training = await training.create_sampling_client(sampler_path)
        assert via_training.sampling_session_id
        copy = pickle.loads(pickle.dumps(sampler))
        assert (await copy.sample(prompt, 1, wt.SamplingParams(max_tokens=2))).sequences
        from_handle = SamplingClient.from_sampler_handle(sampler.get_sampler_handle(), service)
        assert from_handle.sampling_session_id == sampler.sampling_session_id

        # -- REST -----------------------------------------------------------------------------------
        rest = service.create_rest_client()
        run = await rest.get_training_run(parsed.training_run_id)
        assert run.training_run_id == parsed.training_run_id and run.corrupted is False
        assert (await rest.get_training_run_by_tinker_path(state.path)).base_model == base_model
        runs = await rest.list_training_runs(limit=50)
        assert parsed.training_run_id in [r.training_run_id for r in runs.training_runs]
        assert [r.training_run_id async for r in rest.iter_training_runs(page_size=1)]
        ckpts = await rest.list_checkpoints(parsed.training_run_id)
        assert {c.tinker_path for c in ckpts.checkpoints} >= {state.path, sampler_path}
        mine = await rest.list_user_checkpoints(limit=100)
        assert state.path in [c.tinker_path for c in mine.checkpoints]
        weights_info = await rest.get_weights_info_by_tinker_path(state.path)
        assert weights_info.lora_rank == 4 and weights_info.base_model == base_model
        await rest.set_checkpoint_ttl_from_tinker_path(state.path, 3600)
        ttl = next(c for c in (await rest.list_checkpoints(parsed.training_run_id)).checkpoints if c.tinker_path == state.path)
        assert ttl.expires_at is not None
        await rest.publish_checkpoint_from_tinker_path(state.path)
        published = next(c for c in (await rest.list_checkpoints(parsed.training_run_id)).checkpoints if c.tinker_path == state.path)
        assert published.public is True
        await rest.unpublish_checkpoint_from_tinker_path(state.path)

        signed = await rest.get_checkpoint_archive_url_from_tinker_path(state.path)
        assert isinstance(signed, SignedURL) and signed.expires_at is not None
        async with httpx.AsyncClient() as http:
            archive = await http.get(signed.url)
        assert archive.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
            assert tar.getnames()
        assert isinstance(await rest.get_checkpoint_archive_url(parsed.training_run_id, parsed.checkpoint_id), SignedURL)

        session = await rest.get_session(service.session_id)
        assert training.model_id in session.training_run_ids
        assert service.session_id in (await rest.list_sessions(limit=100)).sessions
        sampler_info = await rest.get_sampler(sampler.sampling_session_id)
        assert sampler_info.base_model == base_model
        raw_runs = await rest.with_raw_response.list_training_runs(limit=1, extra_headers={"X-Test": "1"})
        assert raw_runs.status == 200 and b"training_runs" in raw_runs.content

        await rest.delete_checkpoint_from_tinker_path(sampler_path)
        await rest.delete_checkpoint(parsed.training_run_id, parsed.checkpoint_id)
        left = {c.tinker_path for c in (await rest.list_checkpoints(parsed.training_run_id)).checkpoints}
        assert state.path not in left and sampler_path not in left
        with pytest.raises(NotFoundError):
            await rest.delete_checkpoint(parsed.training_run_id, parsed.checkpoint_id)
        with pytest.raises(ValidationError):
            rest.delete_checkpoint_from_tinker_path("tinker://not-a-path")


async def test_ephemeral_sampler_from_training(tmp_path, base_model, h) -> None:
    async with h.local_server(tmp_path) as url, h.client_on(url) as service:
        training = await service.create_lora_training_client(base_model, rank=2)
        sampler = await training.save_weights_and_get_sampling_client()
        response = await sampler.sample(wt.ModelInput.from_ints([104, 105]), 1, wt.SamplingParams(max_tokens=3))
        assert response.sequences[0].sequence_id


async def test_options_and_cancel(tmp_path, base_model, h) -> None:
    async with h.local_server(tmp_path, faults=_paused(), long_poll_timeout_s=0.5) as url, h.client_on(url) as service:
        sampler = await service.create_sampling_client(base_model=base_model)
        fut = sampler.sample(wt.ModelInput.from_ints([1, 2]), 1, wt.SamplingParams(max_tokens=2), timeout=10)
        with trio.fail_after(10):
            while fut.state is not FutureState.PAUSED_CAPACITY:
                await trio.sleep(0.05)
        assert fut.request_id and fut.time_in_state >= 0
        assert fut.cancel()
        assert fut.state is FutureState.CANCELLED
        with pytest.raises(TypeError):
            sampler.sample(wt.ModelInput.from_ints([1]), 1, wt.SamplingParams(), not_an_option=1)


def _paused():
    from tinker_actors.server import FaultConfig

    return FaultConfig(pause_futures_s=30.0, pause_kind="paused_capacity")
