"""Hostile input (issue 11): every refusal is a 4xx naming the field, decided
before anything the request sizes is allocated, and the server keeps serving.

Over ``httpx.ASGITransport`` an exception the app lets out reaches the test
itself, so each of these failed on the old server with the exception (or the
wrong status) that a real client saw as a 500.
"""

from __future__ import annotations

import httpx
import pytest
import trio
from server_helpers import BASE, SESSION_BODY, new_model, new_session, open_app, result

from tinker_actors.server import ServerConfig


async def _sampler(client: httpx.AsyncClient) -> str:
    sid = await new_session(client)
    r = await client.post(
        "/api/v1/create_sampling_session", json={"session_id": sid, "sampling_session_seq_id": 0, "base_model": BASE}
    )
    return r.json()["sampling_session_id"]


def _sample_body(sampler: str, tokens: list[int], **extra: object) -> dict[str, object]:
    params = {"max_tokens": 2, **extra.pop("params", {})}  # type: ignore[dict-item]
    return {
        "sampling_session_id": sampler,
        "seq_id": 1,
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": tokens}]},
        "sampling_params": params,
        **extra,
    }


async def _refused(client: httpx.AsyncClient, path: str, body: object, field: str, status: int = 400) -> str:
    r = await client.post(path, json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert field in detail, detail
    return detail


async def test_token_id_of_2_pow_63_is_a_400_naming_the_tokens(served) -> None:
    _app, client = served
    sampler = await _sampler(client)
    for bad in (2**63, 2**64 + 5, -(2**63) - 1, -1, 264, 2**31):
        await _refused(client, "/api/v1/asample", _sample_body(sampler, [1, bad]), "prompt.chunks[0].tokens")
    r = await client.post("/api/v1/asample", json=_sample_body(sampler, [1, 263]))
    assert r.status_code == 200, r.text


async def test_topk_logprobs_of_a_billion_is_refused_before_allocation(served) -> None:
    _app, client = served
    sampler = await _sampler(client)
    for name in ("topk_sample_logprobs", "topk_prompt_logprobs"):
        detail = await _refused(client, "/api/v1/asample", _sample_body(sampler, [1, 2], **{name: 10**9}), name)
        assert "64" in detail  # the documented maximum
    await _refused(client, "/api/v1/asample", _sample_body(sampler, [1], num_samples=10**6), "num_samples")
    await _refused(client, "/api/v1/asample", _sample_body(sampler, [1], params={"max_tokens": 10**12}), "max_tokens")
    # many samples x many tokens: over the per-request token budget
    await _refused(client, "/api/v1/asample", _sample_body(sampler, [1], num_samples=1024, params={"max_tokens": 4000}), "num_samples")
    await _refused(client, "/api/v1/asample", _sample_body(sampler, [1], params={"stop": list(range(100))}), "stop")
    await _refused(client, "/api/v1/asample", _sample_body(sampler, [1], params={"seed": 2**64}), "seed")
    await _refused(client, "/api/v1/asample", _sample_body(sampler, []), "prompt")
    # a large top-k is still served, never wider than the vocabulary
    r = await client.post("/api/v1/asample", json=_sample_body(sampler, [1, 2], topk_sample_logprobs=64))
    assert r.status_code == 200
    out = await result(client, r.json()["request_id"])
    assert out.status_code == 200 and len(out.json()["sequences"][0]["topk_logprobs"][0]) == 64


async def test_user_metadata_nested_5000_deep_is_a_400(served) -> None:
    _app, client = served
    deep = b'{"tags":[],"sdk_version":"x","user_metadata":' + b'{"k":' * 5000 + b"1" + b"}" * 5001
    r = await client.post("/api/v1/create_session", content=deep)
    assert r.status_code == 400 and "nests deeper" in r.json()["detail"]
    # shallower than the decoder's own limit, deeper than ours: the field is named
    meta: object = "leaf"
    for _ in range(40):
        meta = {"k": meta}
    await _refused(client, "/api/v1/create_session", {**SESSION_BODY, "user_metadata": meta}, "$.user_metadata.k.k")
    assert (await client.post("/api/v1/create_session", json=SESSION_BODY)).status_code == 200


async def test_strings_lists_and_integers_have_limits(served) -> None:
    _app, client = served
    await _refused(client, "/api/v1/create_session", {**SESSION_BODY, "display_name": "x" * 100_000}, "$.display_name")
    await _refused(client, "/api/v1/create_session", {**SESSION_BODY, "tags": ["t"] * 20_000}, "$.tags")
    await _refused(client, "/api/v1/create_session", {**SESSION_BODY, "user_metadata": {"n": 2**70}}, "$.user_metadata.n")
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    body = {"model_id": model_id, "seq_id": 2**70, "adam_params": {}}
    await _refused(client, "/api/v1/optim_step", body, "$.seq_id")
    body = {"session_id": sid, "model_seq_id": 2**64, "base_model": BASE}
    await _refused(client, "/api/v1/create_model", body, "$.model_seq_id")


async def test_seq_id_far_ahead_is_refused_at_once(data_dir, autojump_clock) -> None:
    # it used to hold the request for seq_wait_timeout_s (120 s) first
    async with open_app(ServerConfig(data_dir=data_dir, compute_inline=True)) as (_app, client):
        sid = await new_session(client)
        model_id = await new_model(client, sid)
        start = trio.current_time()
        body = {"model_id": model_id, "seq_id": 10**12, "adam_params": {}}
        detail = await _refused(client, "/api/v1/optim_step", body, "seq_id")
        assert "ahead" in detail and trio.current_time() - start < 1


async def test_huge_checkpoint_ttl_is_refused_and_listing_keeps_working(served) -> None:
    _app, client = served
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    r = await client.post("/api/v1/save_weights", json={"model_id": model_id, "path": "ck", "seq_id": 1})
    assert (await result(client, r.json()["request_id"])).status_code == 200
    base = f"/api/v1/training_runs/{model_id}/checkpoints/weights/ck"
    r = await client.put(f"{base}/ttl", json={"ttl_seconds": 10**20})
    assert r.status_code == 400 and "ttl_seconds" in r.json()["detail"]
    assert (await client.get("/api/v1/checkpoints")).status_code == 200


@pytest.mark.parametrize("sig", ["%C3%A9", "%FF%FE", "\u00e9" * 64, ""])
async def test_signed_link_with_a_non_ascii_sig_is_403(served, sig) -> None:
    _app, client = served
    for path in ("/_local/archive/run/weights/x", "/_local/files/run/external_weights/x/f", "/_local/trace/sess-x"):
        r = await client.get(f"{path}?expires=9999999999&sig={sig}")
        assert r.status_code == 403, (path, r.status_code, r.text)
    r = await client.get("/_local/archive/run/weights/x?expires=" + "9" * 5000 + "&sig=ab")
    assert r.status_code == 403


async def test_non_ascii_content_length_digits_are_not_a_crash(served) -> None:
    _app, client = served
    # "²".isdigit() is True in Python, and int("²") raises
    r = await client.post("/api/v1/create_session", json=SESSION_BODY, headers={"content-length": "\u00b2".encode("latin-1")})
    assert r.status_code < 500


async def test_made_up_clone_ids_leave_nothing_behind(served) -> None:
    app, client = served
    sampler = await _sampler(client)
    store = app.server.futures
    before = (len(store._completions), len(store._completion_events))
    for i in range(50):
        body = {"target": {"sampling_session_id": sampler, "cloned_sampler_id": 1000 + i}, "prev_cursor": 0, "timeout": 0.001}
        r = await client.post("/api/v1/retrieve_futures", json=body)
        assert r.status_code == 200, r.text
    assert (len(store._completions), len(store._completion_events)) == before
