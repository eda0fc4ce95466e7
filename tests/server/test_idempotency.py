"""Idempotency that cannot lie (issue 10): a key covers its request's content,
and a key whose future is gone gets fresh work instead of a dead id."""

from __future__ import annotations

import httpx
import trio
from server_helpers import BASE, SESSION_BODY, new_model, new_session, open_app, result

from tinker_actors.server import FaultConfig, ServerConfig


async def _sampler(client: httpx.AsyncClient, sid: str | None = None, seq: int = 0) -> str:
    sid = sid or await new_session(client)
    r = await client.post(
        "/api/v1/create_sampling_session", json={"session_id": sid, "sampling_session_seq_id": seq, "base_model": BASE}
    )
    assert r.status_code == 200, r.text
    return r.json()["sampling_session_id"]


def _sample(sampler: str, seq_id: int, text: bytes = b"ab", **params: object) -> dict[str, object]:
    return {
        "sampling_session_id": sampler,
        "seq_id": seq_id,
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": list(text)}]},
        "sampling_params": {"max_tokens": 2, "seed": 1, **params},
    }


def _key(k: str) -> dict[str, str]:
    return {"X-Idempotency-Key": k}


async def test_a_reused_key_with_another_body_is_422_not_the_other_answer(served) -> None:
    app, client = served
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    key = _key("sweep-0123456789abcdef-stable")
    first = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 1, "adam_params": {}}, headers=key)
    assert first.status_code == 200
    other = {"model_id": model_id, "seq_id": 1, "adam_params": {"learning_rate": 0.5}}
    r = await client.post("/api/v1/optim_step", json=other, headers=key)
    assert r.status_code == 422, r.text
    assert r.headers["x-should-retry"] == "false"
    detail = r.json()["detail"]
    assert "'sweep-012345...'" in detail and "different request" in detail
    assert first.json()["request_id"] not in r.text
    # the same key on another route is another request too
    r = await client.post("/api/v1/create_session", json=SESSION_BODY, headers=key)
    assert r.status_code == 422
    # the original request still replays
    again = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 1, "adam_params": {}}, headers=key)
    assert again.json() == first.json()
    await result(client, first.json()["request_id"])
    assert app.stats.work_done["OptimStep"] == 1
    assert app.stats.idempotency_conflicts == 2


async def test_sample_keys_cover_the_content_not_the_seq_id(served) -> None:
    app, client = served
    sampler = await _sampler(client)
    key = _key("sweep-row-17")
    a = await client.post("/api/v1/asample", json=_sample(sampler, 1), headers=key)
    # a resubmission must use a new seq_id (protocol): still the same request
    b = await client.post("/api/v1/asample", json=_sample(sampler, 2), headers=key)
    assert b.status_code == 200 and b.json()["request_id"] == a.json()["request_id"]
    for changed in (_sample(sampler, 3, text=b"xy"), _sample(sampler, 3, temperature=0.5), _sample(sampler, 3, seed=2)):
        r = await client.post("/api/v1/asample", json=changed, headers=key)
        assert r.status_code == 422, changed
    # a sampler of the same base model in a new session (a resumed sweep) is the same model
    other = await _sampler(client)
    c = await client.post("/api/v1/asample", json=_sample(other, 1), headers=key)
    assert c.json()["request_id"] == a.json()["request_id"]
    assert (await result(client, a.json()["request_id"])).status_code == 200
    assert app.stats.work_done["Sample"] == 1


async def test_a_key_whose_future_expired_gets_fresh_work_and_a_new_id(data_dir, autojump_clock) -> None:
    # issue 10, case 2: the resent request got the old, dead request id and
    # the client polled 410s forever
    cfg = ServerConfig(data_dir=data_dir, compute_inline=True, faults=FaultConfig(expire_futures_s=10))
    async with open_app(cfg) as (app, client):
        sampler = await _sampler(client)
        key = _key("sweep-row-3")
        first = (await client.post("/api/v1/asample", json=_sample(sampler, 1), headers=key)).json()["request_id"]
        assert (await result(client, first)).status_code == 200
        await trio.sleep(11)
        assert (await client.post("/api/v1/retrieve_future", json={"request_id": first})).status_code == 410
        r = await client.post("/api/v1/asample", json=_sample(sampler, 2), headers=key)
        fresh = r.json()["request_id"]
        assert fresh != first
        assert (await result(client, fresh)).status_code == 200
        assert app.stats.work_done["Sample"] == 2 and app.stats.idempotency_reruns == 1
        # and the fresh answer is what the key replays from now on
        r = await client.post("/api/v1/asample", json=_sample(sampler, 3), headers=key)
        assert r.json()["request_id"] == fresh


async def test_a_key_whose_future_was_swept_by_its_ttl_gets_fresh_work(data_dir, autojump_clock) -> None:
    cfg = ServerConfig(data_dir=data_dir, compute_inline=True, future_result_ttl_s=5)
    async with open_app(cfg) as (app, client):
        sid = await new_session(client)
        model_id = await new_model(client, sid)
        key = _key("train-step-1")
        body = {"model_id": model_id, "seq_id": 1, "adam_params": {}}
        first = (await client.post("/api/v1/optim_step", json=body, headers=key)).json()["request_id"]
        assert (await result(client, first)).status_code == 200
        await trio.sleep(10)
        r = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 2, "adam_params": {}})  # sweeps
        assert (await result(client, r.json()["request_id"])).status_code == 200
        r = await client.post("/api/v1/retrieve_future", json={"request_id": first})
        assert r.status_code == 410
        # not a dead id, and not a second run of step 1 (the model moved on):
        # a 410 that says what to do
        r = await client.post("/api/v1/optim_step", json=body, headers=key)
        assert r.status_code == 410 and "reload the model from its last checkpoint" in r.json()["detail"]
        assert first not in r.text
        assert app.stats.work_done["OptimStep"] == 2


async def test_cancelled_and_server_failed_futures_are_not_replayed(served, monkeypatch) -> None:
    app, client = served
    sampler = await _sampler(client)
    key = _key("k-cancel")
    first = (await client.post("/api/v1/asample", json=_sample(sampler, 1), headers=key)).json()["request_id"]
    fut = app.server.futures.get(first)
    app.server.futures.cancel(fut)
    second = (await client.post("/api/v1/asample", json=_sample(sampler, 2), headers=key)).json()["request_id"]
    assert second != first
    assert (await result(client, second)).status_code == 200
    # a server-side failure: the same key deserves another try
    key = _key("k-fail")
    monkeypatch.setattr(app.server.engine, "sample", _boom)
    failed = (await client.post("/api/v1/asample", json=_sample(sampler, 3), headers=key)).json()["request_id"]
    assert (await result(client, failed)).json()["category"] == "server"
    monkeypatch.undo()
    retried = (await client.post("/api/v1/asample", json=_sample(sampler, 4), headers=key)).json()["request_id"]
    assert retried != failed and (await result(client, retried)).status_code == 200


def _boom(*_a: object, **_k: object) -> object:
    raise RuntimeError("model bug")


async def test_a_restarted_server_runs_a_known_key_afresh(data_dir) -> None:
    key = _key("survives-nothing")
    async with open_app(ServerConfig(data_dir=data_dir)) as (_app, client):
        sampler = await _sampler(client)
        first = (await client.post("/api/v1/asample", json=_sample(sampler, 1), headers=key)).json()["request_id"]
    async with open_app(ServerConfig(data_dir=data_dir)) as (app, client):
        r = await client.post("/api/v1/asample", json=_sample(sampler, 2), headers=key)
        assert r.status_code == 200 and r.json()["request_id"] != first
        assert (await result(client, r.json()["request_id"])).status_code == 200


async def test_concurrent_duplicates_wait_and_share_one_answer(served) -> None:
    app, client = served
    sampler = await _sampler(client)
    key = _key("concurrent")
    answers: list[str] = []

    async def send(seq: int) -> None:
        r = await client.post("/api/v1/asample", json=_sample(sampler, seq), headers=key)
        answers.append(r.json()["request_id"])

    async with trio.open_nursery() as nursery:
        for seq in range(1, 6):
            nursery.start_soon(send, seq)
    assert len(set(answers)) == 1 and len(answers) == 5
    await result(client, answers[0])
    assert app.stats.work_done["Sample"] == 1


async def test_an_overlong_key_is_refused(served) -> None:
    _app, client = served
    r = await client.post("/api/v1/create_session", json=SESSION_BODY, headers=_key("k" * 10_000))
    assert r.status_code == 400 and "X-Idempotency-Key" in r.json()["detail"]


def test_the_cache_is_bounded_by_bytes() -> None:
    from tinker_actors.server.idempotency import IdempotencyCache

    cache = IdempotencyCache(max_entries=1000, max_bytes=10_000)
    for i in range(100):
        rec = cache.begin(f"key-{i}", "r")
        rec.body = b"x" * 1000
        cache.finish(f"key-{i}", rec, keep=True)
    assert len(cache) <= 10 and cache._bytes <= 10_000
    assert cache.lookup("key-99") is not None and cache.lookup("key-0") is None
