"""Fault injection, counters, auth, path safety, persistence and archives."""

from __future__ import annotations

import io
import tarfile
import urllib.parse

import httpx
import pytest
import trio
from server_helpers import BASE, HEADERS, SESSION_BODY, fb_body, new_model, new_session, open_app, result

from tinker_actors.server import FaultConfig, ServerConfig, serve


async def _fault_pattern(data_dir, seed: int) -> list[int]:
    cfg = ServerConfig(data_dir=data_dir, faults=FaultConfig(seed=seed, rate_429=0.3, rate_5xx=0.2, retry_after_s=2))
    async with open_app(cfg) as (app, client):
        codes = [(await client.post("/api/v1/telemetry", json={"events": []})).status_code for _ in range(40)]
        r429 = next(c for c in codes if c == 429)
        assert r429 == 429
        assert app.stats.faults["429"] == codes.count(429)
        assert app.stats.faults["5xx"] == codes.count(500)
        return codes


async def test_faults_are_seeded_and_replayable(tmp_path) -> None:
    a = await _fault_pattern(tmp_path / "a", seed=7)
    b = await _fault_pattern(tmp_path / "b", seed=7)
    c = await _fault_pattern(tmp_path / "c", seed=8)
    assert a == b
    assert a != c
    assert set(a) == {200, 429, 500}


async def test_429_carries_retry_after(served) -> None:
    app, client = served
    r = await client.post("/_local/faults", json={"seed": 1, "rate_429": 1.0, "retry_after_s": 3})
    assert r.status_code == 200
    r = await client.post("/api/v1/create_session", json=SESSION_BODY)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert (await client.post("/_local/faults", json={"rate_429": 2})).status_code == 400
    assert (await client.post("/_local/faults", json={"bogus": 1})).status_code == 400
    await client.post("/_local/faults", json={})
    assert (await client.post("/api/v1/create_session", json=SESSION_BODY)).status_code == 200
    stats = (await client.get("/_local/stats")).json()
    assert stats["requests"]["create_session"] == 2 and stats["faults"]["429"] == 1


async def test_expired_futures_answer_410(data_dir, autojump_clock) -> None:
    cfg = ServerConfig(data_dir=data_dir, compute_inline=True, faults=FaultConfig(expire_futures_s=10))
    async with open_app(cfg) as (_app, client):
        sid = await new_session(client)
        model_id = await new_model(client, sid)
        r = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 1, "adam_params": {}})
        rid = r.json()["request_id"]
        assert (await result(client, rid)).status_code == 200
        await trio.sleep(11)
        assert (await client.post("/api/v1/retrieve_future", json={"request_id": rid})).status_code == 410


async def test_sessions_expire_when_heartbeats_stop(data_dir, autojump_clock) -> None:
    cfg = ServerConfig(data_dir=data_dir, compute_inline=True, faults=FaultConfig(session_expiry_s=30))
    async with open_app(cfg) as (_app, client):
        sid = await new_session(client)
        model_id = await new_model(client, sid)
        for _ in range(3):
            await trio.sleep(20)
            r = await client.post("/api/v1/session_heartbeat", json={"session_id": sid, "type": "session_heartbeat"})
            assert r.json() == {"type": "session_heartbeat"}
        await trio.sleep(31)
        r = await client.post("/api/v1/session_heartbeat", json={"session_id": sid})
        assert r.status_code == 410
        r = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 1, "adam_params": {}})
        assert r.status_code == 410
        r = await client.post("/api/v1/create_model", json={"session_id": sid, "model_seq_id": 1, "base_model": BASE})
        assert r.status_code == 410


async def test_api_key_is_checked(data_dir) -> None:
    async with open_app(ServerConfig(data_dir=data_dir)) as (_app, client):
        r = await client.post("/api/v1/create_session", json={}, headers={"X-API-Key": "nope"})
        assert r.status_code == 401 and "nope" not in r.text
    async with open_app(ServerConfig(data_dir=data_dir, api_key="tml-secret")) as (_app, client):
        assert (await client.post("/api/v1/create_session", json={})).status_code == 401
        r = await client.post("/api/v1/create_session", json=SESSION_BODY, headers={"X-API-Key": "tml-secret"})
        assert r.status_code == 200


async def test_oversized_body_is_413(data_dir) -> None:
    async with open_app(ServerConfig(data_dir=data_dir, max_body_bytes=1000)) as (_app, client):
        r = await client.post("/api/v1/create_session", content=b"x" * 2000)
        assert r.status_code == 413


@pytest.mark.parametrize(
    "path",
    ["tinker://../../etc/weights/x", "tinker://run/weights/..", "tinker://run/weights/../x", "tinker://run/weights/a\x00b", "/etc/passwd", "tinker://run/other/x"],
)
async def test_unsafe_paths_are_refused(served, data_dir, path) -> None:
    _app, client = served
    sid = await new_session(client)
    before = sorted(p.name for p in data_dir.rglob("*"))
    body = {"session_id": sid, "model_seq_id": 0, "path": path, "optimizer": False}
    r = await client.post("/api/v1/load_weights", json=body)
    assert r.status_code == 400, r.text
    model_id = await new_model(client, sid, seq=1)
    r = await client.post("/api/v1/save_weights", json={"model_id": model_id, "path": "../escape", "seq_id": 1})
    assert r.status_code == 400
    r = await client.post("/api/v1/weights_info", json={"tinker_path": path})
    assert r.status_code == 400
    after = sorted(p.name for p in data_dir.rglob("*"))
    assert not any("escape" in p for p in after)
    assert set(before) <= set(after)
    assert not (data_dir.parent / "escape").exists()


async def _save(client, model_id: str, name: str, seq: int) -> str:
    r = await client.post("/api/v1/save_weights", json={"model_id": model_id, "path": name, "seq_id": seq})
    return (await result(client, r.json()["request_id"])).json()["path"]


async def test_checkpoints_survive_a_restart_and_load(data_dir) -> None:
    async with open_app(ServerConfig(data_dir=data_dir)) as (_app, client):
        sid = await new_session(client)
        model_id = await new_model(client, sid)
        r = await client.post("/api/v1/forward_backward", json=fb_body(model_id, 1))
        await result(client, r.json()["request_id"])
        r = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 2, "adam_params": {"learning_rate": 0.01}})
        await result(client, r.json()["request_id"])
        path = await _save(client, model_id, "step-1", 3)
        r = await client.post("/api/v1/forward", json=fb_body(model_id, 4))
        loss_before = (await result(client, r.json()["request_id"])).json()["metrics"]["loss:sum"]
    async with open_app(ServerConfig(data_dir=data_dir)) as (_app, client):
        listed = (await client.get(f"/api/v1/training_runs/{model_id}/checkpoints")).json()
        assert [c["tinker_path"] for c in listed["checkpoints"]] == [path]
        runs = (await client.get("/api/v1/training_runs")).json()
        assert runs["cursor"]["total_count"] == 1 and runs["training_runs"][0]["last_checkpoint"]["tinker_path"] == path
        assert (await client.get("/api/v1/sessions")).json()["sessions"] == [sid]
        sid2 = await new_session(client)
        r = await client.post("/api/v1/load_weights", json={"session_id": sid2, "model_seq_id": 0, "path": path, "optimizer": True})
        assert (await result(client, r.json()["request_id"])).json()["model_id"] == f"{sid2}:train:0"
        r = await client.post("/api/v1/forward", json=fb_body(f"{sid2}:train:0", 1))
        loss_after = (await result(client, r.json()["request_id"])).json()["metrics"]["loss:sum"]
        assert loss_after == pytest.approx(loss_before, rel=1e-6)
        info = (await client.post("/api/v1/weights_info", json={"tinker_path": path})).json()
        assert info["base_model"] == BASE and info["lora_rank"] == 4


async def test_checkpoint_rest_and_signed_archive(served) -> None:
    _app, client = served
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    path = await _save(client, model_id, "ck", 1)
    base = f"/api/v1/training_runs/{model_id}/checkpoints/weights/ck"
    assert (await client.post(f"{base}/publish")).status_code == 204
    assert (await client.get("/api/v1/checkpoints")).json()["checkpoints"][0]["public"] is True
    assert (await client.delete(f"{base}/publish")).status_code == 204
    assert (await client.put(f"{base}/ttl", json={"ttl_seconds": 3600})).status_code == 204
    assert "expires_at" in (await client.get("/api/v1/checkpoints")).json()["checkpoints"][0]
    r = await client.get(f"{base}/archive")
    assert r.status_code == 302 and "expires" in r.headers
    url = r.headers["location"]
    got = await client.get(url, headers={"X-API-Key": ""})
    assert got.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(got.content), mode="r:gz") as tar:
        assert "config.json" in tar.getnames()
    parts = urllib.parse.urlsplit(url)
    forged = url.replace(parts.query, parts.query[:-4] + "0000")
    assert (await client.get(forged)).status_code == 403
    expired = url.replace("expires=", "expires=1")
    assert (await client.get(expired)).status_code == 403
    assert (await client.delete(base)).status_code == 204
    assert (await client.get(f"/api/v1/training_runs/{model_id}/checkpoints")).json()["checkpoints"] == []
    assert (await client.post("/api/v1/weights_info", json={"tinker_path": path})).status_code == 404


async def test_served_port_drops_connections_on_purpose(data_dir) -> None:
    cfg = ServerConfig(data_dir=data_dir, faults=FaultConfig(seed=3, rate_drop=1.0, routes=["telemetry"]))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, cfg)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=HEADERS) as client:
            assert (await client.get("/api/v1/healthz")).status_code == 200
            with pytest.raises(httpx.TransportError):
                await client.post("/api/v1/telemetry", json={"events": []})
            stats = (await client.get("/_local/stats")).json()
            assert stats["faults"] == {"drop": 1}
        nursery.cancel_scope.cancel()
