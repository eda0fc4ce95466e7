"""The client methods added to close the seed gaps, each against the local server."""

from __future__ import annotations

import base64
import json
import types

import httpx
import msgspec
import pytest
import trio

from tinker_actors.clients import FutureState, sync
from tinker_actors.clients._base import ClientContext
from tinker_actors.clients.rest import RestClient, parse_tinker_path, whoami_from_credential
from tinker_actors.clients.training import _post_parallel
from tinker_actors.errors import ConfigError, NotFoundError, RequestFailedError
from tinker_actors.runtime.config import ServerFlags
from tinker_actors.wire import types as wt

TEXT = "pack my box with five dozen liquor jugs. "


def _datum(tok, text: str) -> wt.Datum:
    ids = tok.encode(text)
    return wt.Datum(
        model_input=wt.ModelInput.from_ints(ids[:-1]),
        loss_fn_inputs={"target_tokens": ids[1:], "weights": [1.0] * (len(ids) - 1)},
    )


def _set_flags(service, **changes) -> None:
    runtime = service.service
    runtime.server_flags = msgspec.structs.replace(runtime.server_flags, **changes)


async def test_future_handles_aliases_and_reattach_by_request_id(tmp_path, base_model, h) -> None:
    async with h.local_server(tmp_path) as url, h.client_on(url) as service:
        training = await service.create_lora_training_client(base_model, rank=2, seed=1)
        tok = training.get_tokenizer()
        batch = [_datum(tok, TEXT)] * 2

        # *_future: back once the server accepted it, request_id set, result not awaited
        fwd = await training.forward_future(batch, "cross_entropy")
        assert fwd.request_id and not fwd.state.final or fwd.done()
        # a second process would only have the id: re-attach by it
        again = await service.retrieve_future(fwd.request_id, "forward")
        first = await fwd
        assert again.metrics["loss:sum"] == pytest.approx(first.metrics["loss:sum"])
        assert len(again.loss_fn_outputs) == 2

        fb = await training.forward_backward_future(batch, "cross_entropy")
        opt = await training.optim_step_future(wt.AdamParams(learning_rate=1e-2))
        assert fb.request_id and opt.request_id and fb.request_id != opt.request_id
        await fb
        assert isinstance(await opt, wt.OptimStepResponse)

        # SDK *_async aliases: awaiting the call gives the future
        fut = await training.forward_backward_async(batch, "cross_entropy")
        step = await training.optim_step_async(wt.AdamParams(learning_rate=1e-2))
        assert (await fut).metrics["loss:sum"] < first.metrics["loss:sum"]
        await step
        assert (await (await training.forward_async(batch, "cross_entropy"))).loss_fn_outputs

        # a submit refused by the server raises from the *_future call itself
        with pytest.raises(ValueError):
            await training.forward_future(batch, "no_such_loss")

        # re-attaching to an id the server never issued is a 404, not a hang
        with pytest.raises(NotFoundError):
            await service.retrieve_future("req-does-not-exist", "sample")
        with pytest.raises(ValueError, match="unknown future kind"):
            service.retrieve_future("x", "bogus")


async def test_typed_aliases_external_weights_and_copies(tmp_path, base_model, h) -> None:
    async with h.local_server(tmp_path) as url, h.client_on(url) as service:
        training = await service.create_lora_training_client(base_model, rank=2)
        rest = service.create_rest_client()
        saved = await training.save_weights_typed("typed")
        assert isinstance(saved, wt.SaveWeightsResponse) and parse_tinker_path(saved.path).name == "typed"
        loaded = await training.load_weights_typed(saved.path, optimizer=True)
        assert isinstance(loaded, wt.LoadWeightsResponse)
        sampler = await training.save_weights_for_sampler_typed("typed-s")
        assert isinstance(sampler, wt.SaveWeightsForSamplerResponse)
        assert parse_tinker_path(sampler.path).kind == "sampler_weights"

        external = await training.save_weights_external("ext")
        assert isinstance(external, wt.SaveWeightsExternalResponse)
        assert parse_tinker_path(external.path).kind == "external_weights"
        urls = await rest.get_external_weights_urls(external.path)
        assert urls.urls
        # signed URLs work without the API key, like the service's storage links
        async with httpx.AsyncClient() as http:
            name, link = next(iter(urls.urls.items()))
            got = await http.get(link)
            assert got.status_code == 200 and got.content, (name, link, got.status_code, got.text[:200])
        with pytest.raises(ValueError, match="at most 10"):
            training.save_weights_external("x", age_encryption_recipients=["age1x"] * 11)

        # ServiceClient.copy_weights: into this session (no project configured)
        copied = await service.copy_weights(saved.path)
        assert parse_tinker_path(copied).training_run_id != parse_tinker_path(saved.path).training_run_id
        clone = await service.create_training_client_from_state(copied)
        assert (await clone.get_info()).lora_rank == 2
        # RestClient.copy_weights: into a named project
        into_project = await rest.copy_weights(saved.path, "proj-archive")
        assert parse_tinker_path(into_project).kind == "weights"
        run = await rest.get_training_run_by_tinker_path(into_project)
        assert run.training_run_id == parse_tinker_path(into_project).training_run_id


async def test_sessions_search_project_trace_whoami_telemetry(tmp_path, base_model, h) -> None:
    async with h.local_server(tmp_path) as url, h.client_on(url, display_name="gap-test") as service:
        rest = service.create_rest_client()
        page = await rest.search_sessions(wt.SessionSearchRequest(session_id=service.session_id))
        assert [s.session_id for s in page.sessions] == [service.session_id]
        await rest.assign_session_project(service.session_id, "proj-7")
        found = await rest.search_sessions(wt.SessionSearchRequest(project_ids=["proj-7"]))
        assert service.session_id in [s.session_id for s in found.sessions]
        assert [s.session_id async for s in rest.iter_sessions(wt.SessionSearchRequest(project_ids=["proj-7"]))] \
            == [service.session_id]

        trace_url = await rest.export_session_trace(service.session_id)
        async with httpx.AsyncClient() as http:
            trace = (await http.get(trace_url)).json()
        assert trace["session"]

        # a tml- key has no identity claims: a clear error, never the key
        with pytest.raises(ConfigError, match="JWT") as info:
            await rest.whoami()
        assert h.API_KEY not in str(info.value)

        assert service.get_telemetry() is None  # the fixture turns telemetry off
    async with h.local_server(tmp_path / "t") as url, h.client_on(url, telemetry=True) as service:
        batcher = service.get_telemetry()
        assert batcher.log_event("gap_test", {"n": 1})
        assert batcher.statistics().enabled


def test_whoami_reads_jwt_claims_locally() -> None:
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    jwt = f"{part({'alg': 'none'})}.{part({'sub': 'tml:user:u1', 'org_id': 'o9', 'email': 'a@b'})}.sig"
    assert whoami_from_credential(jwt) == wt.WhoamiResponse(
        user_urn="tml:user:u1", org_urn="tml:organization:o9", email="a@b")
    no_email = f"{part({'alg': 'none'})}.{part({'sub': 's', 'org_id': 'o', 'email': ''})}.x"
    assert whoami_from_credential(no_email).email is None
    with pytest.raises(ConfigError):
        whoami_from_credential(f"{part({'alg': 'none'})}.{part({'sub': 's'})}.x")


async def _rest_over_mock(nursery, handler, api_key="tml-x") -> RestClient:
    from tinker_actors.transport import Transport

    transport = Transport("http://tinker.test", api_key, http_transport=httpx.MockTransport(handler))
    await nursery.start(_hold, transport)
    service = types.SimpleNamespace(request=transport.request, session_id="sess-1", poller=None,
                                    sampling_admission=None, server_flags=ServerFlags(),
                                    config=types.SimpleNamespace(api_key=api_key, project_id=None,
                                                                 base_url="http://tinker.test"))
    return RestClient(ClientContext(service, nursery))


async def _hold(transport, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with transport:
        task_status.started()
        await trio.sleep_forever()


async def test_export_session_trace_polls_until_ready_or_failed(autojump_clock) -> None:
    answers = iter([{"status": "pending"}, {"status": "pending"}, {"status": "ready", "url": "https://x/t.pftrace"},
                    {"status": "failed", "error": "disk full"}])
    seen: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, trio.current_time()))
        return httpx.Response(200, json=next(answers))

    async with trio.open_nursery() as nursery:
        rest = await _rest_over_mock(nursery, handler)
        start = trio.current_time()
        assert await rest.export_session_trace("sess-1") == "https://x/t.pftrace"
        assert [p for p, _ in seen] == ["/api/v1/sessions/sess-1/trace_export"] * 3
        assert seen[-1][1] - start == pytest.approx(10.0, abs=0.5)  # two 5 s waits
        with pytest.raises(RequestFailedError, match="disk full"):
            await rest.export_session_trace("sess-1")
        nursery.cancel_scope.cancel()


async def test_parallel_chunks_send_the_first_chunk_last_within_a_window(autojump_clock) -> None:
    started: list[int] = []
    live = 0
    peak_before_first = 0

    async def post(i: int) -> str:
        nonlocal live, peak_before_first
        started.append(i)
        live += 1
        if 0 not in started:
            peak_before_first = max(peak_before_first, live)
        await trio.sleep(1.0 + 0.1 * i)
        live -= 1
        return f"r{i}"

    answers = await _post_parallel(6, post, window=2)
    assert answers == [f"r{i}" for i in range(6)]
    assert started.index(0) == 2 and set(started[:2]) == {1, 2}
    assert peak_before_first == 2
    assert await _post_parallel(2, post, window=4) == ["r0", "r1"]


@pytest.mark.parametrize("parallel", [True, False])
async def test_chunked_forward_backward_matches_one_request(tmp_path, base_model, h, parallel) -> None:
    async with h.local_server(tmp_path) as url, h.client_on(url) as service:
        training = await service.create_lora_training_client(base_model, rank=2, seed=3)
        tok = training.get_tokenizer()
        batch = [_datum(tok, TEXT[: 12 + i]) for i in range(5)]
        whole = await training.forward(batch, "cross_entropy")
        before = (await h.server_stats(url))["requests"].get("forward_backward", 0)
        _set_flags(service, fwdbwd_max_chunk_len=2, parallel_fwdbwd_chunks=parallel)
        fb = training.forward_backward(batch, "cross_entropy")
        opt = training.optim_step(wt.AdamParams(learning_rate=1e-2))  # queued behind all three chunks
        chunked = await fb
        await opt
        assert fb.state is FutureState.DONE and fb.request_id
        assert (await h.server_stats(url))["requests"]["forward_backward"] - before == 3
        assert chunked.metrics["loss:sum"] == pytest.approx(whole.metrics["loss:sum"], rel=1e-5)
        assert len(chunked.loss_fn_outputs) == len(batch)
        for got, want in zip(chunked.loss_fn_outputs, whole.loss_fn_outputs, strict=True):
            assert got["logprobs"].to_numpy().tolist() == pytest.approx(want["logprobs"].to_numpy().tolist(), rel=1e-5)
        after = await training.forward(batch, "cross_entropy")  # the optim step applied after the chunks
        assert after.metrics["loss:sum"] < whole.metrics["loss:sum"]


def test_blocking_facade_new_methods(tmp_path, h, base_model) -> None:
    from test_sync_and_degraded import _run_server_in_thread

    url, stop = _run_server_in_thread(tmp_path, h)
    try:
        with sync.ServiceClient(base_url=url, api_key=h.API_KEY, telemetry=False) as service:
            assert service.get_telemetry() is None
            training = service.create_lora_training_client(base_model, rank=2).result(timeout=30)
            tok = training.get_tokenizer()
            fb = training.forward_backward_future([_datum(tok, TEXT)], "cross_entropy")
            assert isinstance(fb, sync.SyncFuture) and fb.request_id
            again = service.retrieve_future(fb.request_id, "forward_backward").result(timeout=30)
            assert again.metrics["loss:sum"] == pytest.approx(fb.result(timeout=30).metrics["loss:sum"])
            saved = training.save_weights_typed("s").result(timeout=30)
            rest = service.create_rest_client()
            runs = list(rest.iter_training_runs(page_size=1))
            assert training.model_id in [r.training_run_id for r in runs]
            assert [c.checkpoint_id for c in rest.iter_user_checkpoints()] == ["weights/s"]
            assert parse_tinker_path(saved.path).name == "s"
            with pytest.raises(ConfigError):
                rest.whoami().result(timeout=5)
    finally:
        stop()


async def test_weights_resource_positional_ids_and_telemetry_send_sync(tmp_path, base_model, h) -> None:
    from tinker_actors.api import API
    from tinker_actors.transport.options import SignedURL

    async with h.local_server(tmp_path) as url, h.client_on(url) as service:
        training = await service.create_lora_training_client(base_model, rank=2)
        saved = await training.save_state("w1")
        run, ckpt = parse_tinker_path(saved.path).training_run_id, parse_tinker_path(saved.path).checkpoint_id
        api = API(service.service)
        assert [c.checkpoint_id for c in (await api.weights.list(run)).checkpoints] == [ckpt]
        assert isinstance(await api.weights.get_checkpoint_archive_url(run, ckpt), SignedURL)
        await api.weights.delete_checkpoint(run, ckpt)
        assert (await api.weights.list(training_run_id=run)).checkpoints == []
        sent = await api.telemetry.send_sync(wt.TelemetrySendRequest(
            session_id=service.session_id, platform="test", sdk_version="0", process_uuid="p-1", events=[]))
        assert sent.status == "accepted"
