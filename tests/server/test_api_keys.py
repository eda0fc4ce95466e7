"""``serve --api-keys FILE``: several keys, each seeing only its own things."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from server_helpers import BASE, SESSION_BODY, fb_body, new_model, new_session, result
from structlog.testing import capture_logs

from tinker_actors.server import ServerConfig, create_app
from tinker_actors.server.cli import build_parser, config_from_args
from tinker_actors.server.tenancy import KeysFileError, load_keys

ALICE, BOB = "tml-alice-7f3a9c", "sk-bob-e41d05"


@contextlib.asynccontextmanager
async def two_keys(data_dir: Path, keys: list[str] | None = None) -> AsyncIterator[tuple[object, httpx.AsyncClient, httpx.AsyncClient]]:
    app = create_app(ServerConfig(data_dir=data_dir, api_keys=keys or [ALICE, BOB]))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://local", headers={"X-API-Key": ALICE}) as alice,
            httpx.AsyncClient(transport=transport, base_url="http://local", headers={"X-API-Key": BOB}) as bob,
        ):
            yield app, alice, bob


async def _alices_world(alice: httpx.AsyncClient) -> dict[str, str]:
    sid = await new_session(alice)
    model = await new_model(alice, sid)
    r = await alice.post("/api/v1/save_weights", json={"model_id": model, "path": "ck", "seq_id": 1})
    path = (await result(alice, r.json()["request_id"])).json()["path"]
    r = await alice.post(
        "/api/v1/create_sampling_session", json={"session_id": sid, "sampling_session_seq_id": 0, "base_model": BASE}
    )
    sampler = r.json()["sampling_session_id"]
    body = {
        "sampling_session_id": sampler, "seq_id": 1, "sampling_params": {"max_tokens": 2},
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]},
    }
    sample = (await alice.post("/api/v1/asample", json=body)).json()["request_id"]
    return {"sid": sid, "model": model, "path": path, "sampler": sampler, "sample": sample}


async def test_each_key_sees_only_its_own_sessions_runs_checkpoints_and_futures(data_dir) -> None:
    async with two_keys(data_dir) as (_app, alice, bob):
        w = await _alices_world(alice)
        sid, model, path, sampler, sample = w["sid"], w["model"], w["path"], w["sampler"], w["sample"]
        ck = f"/api/v1/training_runs/{model}/checkpoints/weights/ck"
        sample_body = {
            "sampling_session_id": sampler, "seq_id": 2, "sampling_params": {"max_tokens": 2},
            "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1]}]},
        }
        refused = [
            ("GET", f"/api/v1/sessions/{sid}", None),
            ("GET", f"/api/v1/sessions/{sid}/trace_export", None),
            ("POST", "/api/v1/session_heartbeat", {"session_id": sid}),
            ("POST", f"/api/v1/sessions/{sid}/finish", {"reason": {"type": "success"}}),
            ("PUT", f"/api/v1/sessions/{sid}/project", {"project_id": "p"}),
            ("POST", "/api/v1/create_model", {"session_id": sid, "model_seq_id": 1, "base_model": BASE}),
            ("POST", "/api/v1/get_info", {"model_id": model}),
            ("POST", "/api/v1/forward_backward", fb_body(model, 2)),
            ("POST", "/api/v1/optim_step", {"model_id": model, "seq_id": 2, "adam_params": {}}),
            ("POST", "/api/v1/save_weights", {"model_id": model, "path": "x", "seq_id": 2}),
            ("POST", "/api/v1/unload_model", {"model_id": model}),
            ("GET", f"/api/v1/training_runs/{model}", None),
            ("GET", f"/api/v1/training_runs/{model}/checkpoints", None),
            ("POST", "/api/v1/weights_info", {"tinker_path": path}),
            ("POST", "/api/v1/copy_weights", {"source_path": path}),
            ("POST", "/api/v1/load_weights", {"session_id": await new_session(bob), "model_seq_id": 0, "path": path, "optimizer": True}),
            ("POST", "/api/v1/create_sampling_session", {"session_id": await new_session(bob), "sampling_session_seq_id": 0, "model_path": path}),
            ("GET", f"/api/v1/samplers/{sampler}", None),
            ("POST", "/api/v1/join_sampling_session", {"sampling_session_id": sampler}),
            ("POST", "/api/v1/asample", sample_body),
            ("POST", "/api/v1/retrieve_future", {"request_id": sample}),
            ("POST", "/api/v1/retrieve_futures", {"target": {"sampling_session_id": sampler}, "timeout": 0}),
            ("POST", "/api/v1/cancel_future", {"request_id": sample}),
            ("GET", f"{ck}/archive", None),
            ("POST", f"{ck}/publish", None),
            ("PUT", f"{ck}/ttl", {"ttl_seconds": 60}),
            ("DELETE", ck, None),
        ]
        for method, url, body in refused:
            r = await bob.request(method, url, json=body)
            assert r.status_code == 404, (method, url, r.status_code, r.text)
            asked = url + json.dumps(body)
            for secret in (sid, model, sampler, sample):  # never an id of Alice's that Bob did not send himself
                assert secret in asked or secret not in r.text, (url, secret, r.text)
        # the listings hold only Bob's own things
        assert (await bob.get("/api/v1/training_runs")).json()["training_runs"] == []
        assert (await bob.get("/api/v1/checkpoints")).json()["checkpoints"] == []
        assert sid not in (await bob.get("/api/v1/sessions")).json()["sessions"]
        found = (await bob.post("/api/v1/sessions/search", json={})).json()["sessions"]
        assert sid not in [s["session_id"] for s in found]
        # and Alice still has everything
        assert (await alice.get(f"/api/v1/training_runs/{model}")).status_code == 200
        assert (await alice.post("/api/v1/weights_info", json={"tinker_path": path})).status_code == 200
        assert (await result(alice, sample)).status_code == 200
        assert sid in (await alice.get("/api/v1/sessions")).json()["sessions"]
        assert [c["tinker_path"] for c in (await alice.get("/api/v1/checkpoints")).json()["checkpoints"]] == [path]


async def test_idempotency_keys_do_not_cross_api_keys(data_dir) -> None:
    async with two_keys(data_dir) as (_app, alice, bob):
        headers = {"X-Idempotency-Key": "shared-key-1"}
        a = await alice.post("/api/v1/create_session", json=SESSION_BODY, headers=headers)
        b = await bob.post("/api/v1/create_session", json={**SESSION_BODY, "tags": ["bob"]}, headers=headers)
        assert a.status_code == b.status_code == 200
        assert a.json()["session_id"] != b.json()["session_id"]


async def test_unknown_keys_are_refused_and_one_key_means_no_isolation(data_dir) -> None:
    async with two_keys(data_dir) as (_app, alice, bob):
        r = await alice.post("/api/v1/create_session", json=SESSION_BODY, headers={"X-API-Key": "tml-anything"})
        assert r.status_code == 401 and "tml-anything" not in r.text
    async with two_keys(data_dir / "one", keys=[ALICE]) as (_app, alice, bob):
        sid = await new_session(alice)
        assert (await bob.get(f"/api/v1/sessions/{sid}")).status_code == 401  # Bob's key is not in the file
        r = await alice.get(f"/api/v1/sessions/{sid}")
        assert r.status_code == 200


async def test_isolation_survives_a_restart_with_the_same_keys(data_dir) -> None:
    async with two_keys(data_dir) as (_app, alice, _bob):
        sid = await new_session(alice)
    async with two_keys(data_dir) as (_app, alice, bob):
        assert (await alice.get(f"/api/v1/sessions/{sid}")).status_code == 200
        assert (await bob.get(f"/api/v1/sessions/{sid}")).status_code == 404
    # the records on disk carry a digest of the key, never the key
    raw = (data_dir / "meta.sqlite3").read_bytes()
    assert ALICE.encode() not in raw and BOB.encode() not in raw


async def test_keys_are_never_logged_or_shown(data_dir, monkeypatch) -> None:
    config = ServerConfig(data_dir=data_dir, api_keys=[ALICE, BOB])
    assert ALICE not in repr(config) and BOB not in repr(config)
    async with two_keys(data_dir) as (app, alice, bob):
        monkeypatch.setattr(app.server, "session", _boom)
        with capture_logs() as logs:
            r = await alice.post("/api/v1/session_heartbeat", json={"session_id": "x"})
            assert r.status_code == 500
            await bob.post("/api/v1/create_session", json=SESSION_BODY, headers={"X-API-Key": BOB + "x"})
        assert logs and all(ALICE not in str(e) and BOB not in str(e) for e in logs)


def _boom(*_a: object, **_k: object) -> object:
    raise RuntimeError("bug")


def test_the_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# team keys\n{ALICE}\n\n  {BOB}  \n")
    assert load_keys(path) == [ALICE, BOB]
    ns = build_parser().parse_args(["--api-keys", str(path)])
    assert config_from_args(ns).api_keys == [ALICE, BOB]
    for text in ("", "# only a comment\n", f"{ALICE} extra\n", f"{ALICE}\n{ALICE}\n", "tml-\x07bell\n"):
        path.write_text(text)
        with pytest.raises(KeysFileError) as info:
            load_keys(path)
        assert ALICE not in str(info.value)
    with pytest.raises(SystemExit):  # one or the other
        build_parser().parse_args(["--api-key", "tml-x", "--api-keys", str(path)])
    path.write_text(f"{ALICE} {BOB}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tinker_actors.server", "serve", "--api-keys", str(path), "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "line 1" in proc.stderr
    assert ALICE not in proc.stderr + proc.stdout and BOB not in proc.stderr + proc.stdout
