"""Endpoints through httpx against the ASGI app: futures, formats, ordering, idempotency."""

from __future__ import annotations

import time

import trio

from tinker_actors.server import ServerConfig
from tinker_actors.wire.proto import tinker_public_pb2 as pb

from server_helpers import BASE, fb_body, new_model, new_session, open_app, result


async def test_client_config_and_capabilities(served) -> None:
    _app, client = served
    r = await client.post("/api/v1/client/config", json={"sdk_version": "0.38.0"})
    assert r.status_code == 200 and r.json()["pjwt_auth_enabled"] is False
    r = await client.post("/api/v1/client/dynamic_config", json={"sdk_version": "0.38.0"})
    assert r.json()["sample_cancel_enabled"] is False
    caps = (await client.get("/api/v1/get_server_capabilities")).json()
    assert BASE in [m["model_name"] for m in caps["supported_models"]]
    assert (await client.get("/api/v1/healthz")).json() == {"status": "ok"}


async def test_feature_switches_emulate_older_servers(data_dir) -> None:
    cfg = ServerConfig(data_dir=data_dir, dynamic_config=False, cancel_future=False, retrieve_futures=False, sessions_routes=False)
    async with open_app(cfg) as (_app, client):
        assert (await client.post("/api/v1/client/dynamic_config", json={})).status_code == 404
        assert (await client.post("/api/v1/cancel_future", json={"request_id": "x"})).status_code == 404
        assert (await client.post("/api/v1/retrieve_futures", json={})).status_code == 404
        assert (await client.get("/api/v1/sessions")).status_code == 404


async def test_train_step_json_and_proto_results(data_dir) -> None:
    # threshold 0: every result is announced with complete_metadata first
    async with open_app(ServerConfig(data_dir=data_dir, metadata_threshold_bytes=0)) as (_app, client):
        await _train_step_json_and_proto_results(client)


async def _train_step_json_and_proto_results(client) -> None:
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    r = await client.post("/api/v1/forward_backward", json=fb_body(model_id, 1))
    rid = r.json()["request_id"]
    # proto result: first a complete_metadata, then the protobuf payload
    meta = await result(client, rid, accept="application/x-protobuf", metadata=True)
    assert meta.json()["status"] == "complete_metadata"
    size = meta.json()["response_payload_size"]
    proto = await result(client, rid, accept="application/x-protobuf")
    assert proto.headers["content-type"].startswith("application/x-protobuf")
    assert len(proto.content) == size
    msg = pb.ForwardBackwardOutput.FromString(proto.content)
    assert "loss:sum" in msg.metrics and msg.loss_fn_outputs[0].num_datums == 1
    # the same future as JSON
    js = (await result(client, rid)).json()
    assert len(js["loss_fn_outputs"][0]["logprobs"]["data"]) == len(b"hello world") - 1
    r = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 2, "adam_params": {"learning_rate": 0.01}, "type": "optim_step"})
    metrics = (await result(client, r.json()["request_id"])).json()["metrics"]
    assert metrics["step:max"] == 1.0


async def test_complete_metadata_only_for_results_above_the_threshold(data_dir) -> None:
    async with open_app(ServerConfig(data_dir=data_dir, metadata_threshold_bytes=1000)) as (app, client):
        sid = await new_session(client)
        model_id = await new_model(client, sid)
        proto = {"accept": "application/x-protobuf", "metadata": True}
        # a small result costs one poll even when metadata-only is allowed
        r = await client.post("/api/v1/forward_backward", json=fb_body(model_id, 1, b"short"))
        small = await result(client, r.json()["request_id"], **proto)
        assert small.headers["content-type"].startswith("application/x-protobuf")
        assert len(small.content) <= 1000
        assert pb.ForwardBackwardOutput.FromString(small.content).loss_fn_outputs[0].num_datums == 1
        # a large one is announced first, with its exact size
        r = await client.post("/api/v1/forward_backward", json=fb_body(model_id, 2, b"y" * 400))
        rid = r.json()["request_id"]
        meta = await result(client, rid, **proto)
        assert meta.json()["status"] == "complete_metadata"
        full = await result(client, rid, accept="application/x-protobuf")
        assert len(full.content) == meta.json()["response_payload_size"] > 1000
        # JSON results follow the same rule
        r = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 3, "adam_params": {}})
        assert "metrics" in (await result(client, r.json()["request_id"], metadata=True)).json()


async def test_long_poll_wakes_promptly_on_completion(served) -> None:
    app, client = served
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    # the seq-2 request waits for seq 1; its future completes once seq 1 and 2 ran
    answers: list[tuple[float, dict]] = []

    async def poll(rid: str) -> None:
        r = await client.post("/api/v1/retrieve_future", json={"request_id": rid})
        answers.append((time.monotonic(), r.json()))

    r = await client.post("/api/v1/forward_backward", json=fb_body(model_id, 1, b"x" * 400))
    rid = r.json()["request_id"]
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll, rid)
        await trio.sleep(0)
    done_at, body = answers[0]
    assert "loss_fn_outputs" in body  # answered with the result, not try_again
    # the poll (timeout 30 s) returned as soon as the work finished
    assert done_at - started < 5
    assert app.stats.peak_long_polls >= 1 and app.stats.open_long_polls == 0


async def test_try_again_carries_queue_state_while_paused(data_dir, autojump_clock) -> None:
    cfg = ServerConfig(data_dir=data_dir, long_poll_timeout_s=5, compute_inline=True)
    cfg.faults.pause_futures_s = 60
    cfg.faults.pause_kind = "paused_rate_limit"
    async with open_app(cfg) as (app, client):
        sid = await new_session(client)
        r = await client.post(
            "/api/v1/create_model",
            json={"session_id": sid, "model_seq_id": 0, "base_model": BASE, "lora_config": {"rank": 4}},
        )
        rid = r.json()["request_id"]
        t0 = trio.current_time()
        poll = await client.post("/api/v1/retrieve_future", json={"request_id": rid})
        assert poll.json() == {
            "type": "try_again",
            "request_id": rid,
            "queue_state": "paused_rate_limit",
            "queue_state_reason": "injected pause (local server fault)",
        }
        assert trio.current_time() - t0 >= 5  # it long-polled
        final = await result(client, rid)
        assert final.json()["model_id"].endswith(":train:0")
        assert app.stats.faults["pause"] == 1


async def test_seq_ordering_holds_later_requests(served) -> None:
    app, client = served
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    order: list[int] = []

    async def send(seq: int) -> None:
        body = {"model_id": model_id, "seq_id": seq, "adam_params": {"learning_rate": 0.0}, "type": "optim_step"}
        r = await client.post("/api/v1/optim_step", json=body)
        out = await result(client, r.json()["request_id"])
        order.append(int(out.json()["metrics"]["step:max"]))

    async with trio.open_nursery() as nursery:
        for seq in (3, 2, 1):  # sent out of order: the server runs them 1, 2, 3
            nursery.start_soon(send, seq)
            await trio.sleep(0.01)
    assert sorted(order) == [1, 2, 3]
    # optim step metrics report the step count: seq k ran as step k
    r = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 4, "adam_params": {}, "type": "optim_step"})
    assert (await result(client, r.json()["request_id"])).json()["metrics"]["step:max"] == 4.0


async def test_idempotency_key_replays_without_double_work(served) -> None:
    app, client = served
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    headers = {"X-Idempotency-Key": "stainless-python-retry-abc"}
    body = {"model_id": model_id, "seq_id": 1, "adam_params": {}, "type": "optim_step"}
    a = await client.post("/api/v1/optim_step", json=body, headers=headers)
    b = await client.post("/api/v1/optim_step", json=body, headers=headers)
    assert a.json() == b.json()
    await result(client, a.json()["request_id"])
    assert app.stats.duplicate_idempotency_keys == 1
    assert app.stats.work_done["OptimStep"] == 1


async def test_sample_carries_sequence_ids_and_proto(served) -> None:
    _app, client = served
    sid = await new_session(client)
    r = await client.post("/api/v1/create_sampling_session", json={"session_id": sid, "sampling_session_seq_id": 0, "base_model": BASE})
    sampler = r.json()["sampling_session_id"]
    assert sampler == f"{sid}:sample:0"
    body = {
        "num_samples": 3,
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": list(b"abc")}]},
        "sampling_params": {"max_tokens": 5, "seed": 1, "temperature": 1.0},
        "sampling_session_id": sampler,
        "seq_id": 0,
        "prompt_logprobs": True,
        "type": "sample",
    }
    fut = (await client.post("/api/v1/asample", json=body)).json()
    assert len(fut["sample_sequence_ids"]) == 3
    proto = await result(client, fut["request_id"], accept="application/x-protobuf")
    msg = pb.SampleResponse.FromString(proto.content)
    assert len(msg.sequences) == 3 and len(msg.sequences[0].tokens) == 5 * 4
    batch = await client.post(
        "/api/v1/retrieve_futures",
        json={"target": {"type": "sampling_session", "sampling_session_id": sampler, "cloned_sampler_id": 0}, "prev_cursor": 0, "timeout": 0},
    )
    assert batch.json() == {"completions": [{"state": "finished", "request_id": fut["request_id"]}], "cursor": 1}


async def test_bad_input_is_400_with_message_and_unknown_ids_404(served) -> None:
    _app, client = served
    sid = await new_session(client)
    r = await client.post("/api/v1/create_model", json={"session_id": sid, "model_seq_id": 0, "base_model": "nope"})
    assert r.status_code == 400 and "unknown base model" in r.json()["detail"]
    r = await client.post("/api/v1/retrieve_future", json={"request_id": "req-missing"})
    assert r.status_code == 404
    r = await client.post("/api/v1/forward_backward", content=b"\x01\x02garbage", headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400
    r = await client.post("/api/v1/create_session", content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
