"""Request decoding through the wire Structs, and the endpoints added for SDK parity:
external weights, copy_weights, session search/project/trace export, restart hints."""

from __future__ import annotations

import json

from server_helpers import BASE, SESSION_BODY, new_model, new_session, open_app, result

from tinker_actors import wire
from tinker_actors.server import ServerConfig


async def test_wrong_typed_fields_get_400_naming_the_field(served) -> None:
    _app, client = served
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    r = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": "one", "adam_params": {}})
    assert r.status_code == 400
    assert "Expected `int | null`, got `str` - at `$.seq_id`" in r.json()["detail"]
    r = await client.post("/api/v1/create_model", json={"session_id": sid, "model_seq_id": 1})
    assert r.status_code == 400 and "missing required field `base_model`" in r.json()["detail"]
    r = await client.post("/api/v1/create_session", json={**SESSION_BODY, "tags": [1]})
    assert r.status_code == 400 and "$.tags[0]" in r.json()["detail"]
    body = {
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]},
        "sampling_params": {"temperature": -1.0},
        "sampling_session_id": "x",
    }
    r = await client.post("/api/v1/asample", json=body)
    assert r.status_code == 400 and "sampling_params.temperature" in r.json()["detail"]
    r = await client.post("/api/v1/weights_info", json={"tinker_path": "http://nope"})
    assert r.status_code == 400 and "tinker_path" in r.json()["detail"]


async def _trained_checkpoint(client) -> tuple[str, str, str]:
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    r = await client.post("/api/v1/save_weights", json={"model_id": model_id, "path": "ck", "seq_id": 1})
    return sid, model_id, (await result(client, r.json()["request_id"])).json()["path"]


async def test_external_weights_have_signed_file_urls(served) -> None:
    _app, client = served
    sid = await new_session(client)
    model_id = await new_model(client, sid)
    r = await client.post("/api/v1/save_weights_external", json={"model_id": model_id, "path": "hf", "seq_id": 1})
    out = (await result(client, r.json()["request_id"])).json()
    assert out["path"] == f"tinker://{model_id}/external_weights/hf" and out["size_bytes"] > 0
    listed = (await client.get(f"/api/v1/training_runs/{model_id}/checkpoints")).json()["checkpoints"]
    assert [c["checkpoint_type"] for c in listed] == ["external"]
    urls = (await client.get(f"/api/v1/training_runs/{model_id}/checkpoints/external_weights/hf/external_weights_urls")).json()
    assert "config.json" in urls["urls"] and urls["expires"].endswith("Z")
    wire.decode(wire.ExternalWeightsUrlsResponse, json.dumps(urls))  # the SDK's shape
    got = await client.get(urls["urls"]["config.json"], headers={"X-API-Key": ""})
    assert got.status_code == 200 and json.loads(got.content)
    forged = urls["urls"]["config.json"].replace("config.json", "weights.npz")
    assert (await client.get(forged)).status_code == 403
    r = await client.post("/api/v1/save_weights", json={"model_id": model_id, "path": "plain", "seq_id": 2})
    await result(client, r.json()["request_id"])
    r = await client.get(f"/api/v1/training_runs/{model_id}/checkpoints/weights/plain/external_weights_urls")
    assert r.status_code == 404 and "not an external checkpoint" in r.json()["detail"]


async def test_copy_weights_makes_a_new_run_that_loads(served) -> None:
    _app, client = served
    _sid, model_id, path = await _trained_checkpoint(client)
    r = await client.post("/api/v1/copy_weights", json={"source_path": path, "destination_project_id": "proj-b"})
    assert r.status_code == 200, r.text
    copied = r.json()["tinker_path"]
    assert copied != path and copied.endswith("/weights/ck")
    new_run = copied[len("tinker://") :].split("/")[0]
    run = (await client.get(f"/api/v1/training_runs/{new_run}")).json()
    assert run["base_model"] == BASE and run["last_checkpoint"]["tinker_path"] == copied
    sid2 = await new_session(client)
    r = await client.post("/api/v1/load_weights", json={"session_id": sid2, "model_seq_id": 0, "path": copied, "optimizer": True})
    assert (await result(client, r.json()["request_id"])).json()["model_id"] == f"{sid2}:train:0"
    r = await client.post("/api/v1/copy_weights", json={"source_path": "tinker://nope/weights/ck"})
    assert r.status_code == 404


async def test_session_search_project_and_trace_export(served) -> None:
    _app, client = served
    ids = []
    for i in range(3):
        r = await client.post("/api/v1/create_session", json={**SESSION_BODY, "user_metadata": {"team": "a" if i else "b"}})
        ids.append(r.json()["session_id"])
    await client.post(f"/api/v1/sessions/{ids[2]}/finish", json={"reason": {"type": "success"}})
    found = (await client.post("/api/v1/sessions/search", json={"user_metadata": {"team": "a"}})).json()
    assert [s["session_id"] for s in found["sessions"]] == [ids[2], ids[1]]  # newest first
    active = (await client.post("/api/v1/sessions/search", json={"user_metadata": {"team": "a"}, "statuses": [{"type": "active"}]})).json()
    assert [s["session_id"] for s in active["sessions"]] == [ids[1]]
    r = await client.post("/api/v1/sessions/search", json={"limit": 2})
    wire.decode(wire.SessionSearchResponse, r.content)  # the SDK's shape
    page = r.json()
    assert len(page["sessions"]) == 2 and page["next_cursor"]["last_session_id"] == page["sessions"][1]["session_id"]
    rest = (await client.post("/api/v1/sessions/search", json={"limit": 2, "cursor": page["next_cursor"]})).json()
    assert [s["session_id"] for s in rest["sessions"]] == [ids[0]] and "next_cursor" not in rest
    assert (await client.put(f"/api/v1/sessions/{ids[0]}/project", json={"project_id": "proj-x"})).status_code == 204
    inproj = (await client.post("/api/v1/sessions/search", json={"project_ids": ["proj-x"]})).json()
    assert [s["session_id"] for s in inproj["sessions"]] == [ids[0]]
    assert (await client.put("/api/v1/sessions/sess-none/project", json={"project_id": "p"})).status_code == 404
    r = await client.get(f"/api/v1/sessions/{ids[0]}/trace_export")
    wire.decode(wire.SessionTraceExportResponse, r.content)
    trace = r.json()
    assert trace["status"] == "ready"
    doc = (await client.get(trace["url"], headers={"X-API-Key": ""})).json()
    assert doc["session"]["session_id"] == ids[0] and doc["session"]["project_id"] == "proj-x"


async def test_models_live_at_shutdown_answer_404_with_the_way_back(data_dir) -> None:
    async with open_app(ServerConfig(data_dir=data_dir)) as (_app, client):
        _sid, model_id, path = await _trained_checkpoint(client)
    async with open_app(ServerConfig(data_dir=data_dir)) as (_app, client):
        r = await client.post("/api/v1/optim_step", json={"model_id": model_id, "seq_id": 2, "adam_params": {}})
        assert r.status_code == 404
        detail = r.json()["detail"]
        assert "not restored on restart" in detail and "reload it from a checkpoint" in detail and path in detail
        runs = (await client.get("/api/v1/training_runs")).json()["training_runs"]
        assert [run["training_run_id"] for run in runs] == [model_id]
