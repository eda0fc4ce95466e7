"""Secrets never leak; bad user input is refused before sending; the server refuses hostile input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import structlog
import trio
from harness import BASE_MODEL, KEY, LOCAL_URL, in_process, record

from tinker_actors.errors import TinkerActorsError, ValidationError
from tinker_actors.jobs.trainer import sft_datum
from tinker_actors.runtime.config import ServiceConfig
from tinker_actors.server import FaultConfig, ServerConfig, create_app
from tinker_actors.transport import Transport
from tinker_actors.wire import types as wt


async def test_api_key_appears_nowhere(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    cfg = ServerConfig(data_dir=tmp_path / "data", null_compute=True, compute_inline=True, long_poll_timeout_s=5,
                       faults=FaultConfig(seed=2, rate_5xx=0.3, rate_429=0.2, routes=["asample", "forward_backward"]))
    texts: list[str] = []
    with structlog.testing.capture_logs() as events, trio.fail_after(600):
        try:
            async with in_process(cfg, telemetry=True, telemetry_flush_interval=1) as (app, client):
                texts += [repr(client), repr(client.service.config), str(client.service.config)]
                sampler = await client.create_sampling_client(base_model=BASE_MODEL)
                for i in range(10):
                    try:
                        await sampler.sample(wt.ModelInput.from_ints([65, i]), 1, wt.SamplingParams(max_tokens=2))
                    except TinkerActorsError as exc:
                        texts += [str(exc), repr(exc)]
                training = await client.create_lora_training_client(BASE_MODEL, rank=4)
                for bad in ("not-a-loss", "cross_entropy"):
                    try:
                        await training.forward_backward([sft_datum([72, 105, 300 if bad == "cross_entropy" else 33])], bad)
                    except Exception as exc:  # errors raised on purpose
                        texts += [str(exc), repr(exc)]
                raise RuntimeError(f"the job failed on purpose (session {client.session_id})")
        except* RuntimeError as group:
            texts += [str(e) for e in group.exceptions]
    texts += [repr(e) for e in events]
    telemetry = app.server.stats.snapshot()["requests"].get("telemetry", 0)
    assert events and telemetry > 0
    leaks = [t for t in texts if KEY in t or KEY[4:] in t]
    assert not leaks, leaks[:3]
    # the key's hash neither (a reversible-looking fingerprint would be a leak too)
    assert not any(hashlib.sha256(KEY.encode()).hexdigest()[:12] in t for t in texts)
    record("secrets_in_logs", load=f"{len(events)} log events, {len(texts)} messages/reprs, {telemetry} telemetry posts",
           faults={"5xx+429": "30%+20% on asample/forward_backward"}, leaks=0, lost=0, duplicates=0, hangs=0)


async def test_journal_rows_hold_no_key(tmp_path: Path) -> None:
    from support import on_loopback
    from tinker_actors.clients import open_service_client
    from tinker_actors.jobs.sweep import run_sweep
    from tinker_actors.jobs.sweep_spec import load_spec
    from test_fault_sweep import write_spec

    spec = load_spec(write_spec(tmp_path / "sweep", 20, cmax=8))
    with trio.fail_after(60):
        async with on_loopback(ServerConfig(data_dir=tmp_path / "server", null_compute=True,
                                            faults=FaultConfig(seed=3, rate_5xx=0.3, routes=["asample"]))) as url:
            async with open_service_client(base_url=url, api_key=KEY, telemetry=False) as service:
                await run_sweep(spec, service, progress=False)
    for path in (tmp_path / "sweep").iterdir():
        assert KEY.encode() not in path.read_bytes(), path


def test_tls_verification_is_on_by_default_and_off_only_explicitly() -> None:
    assert ServiceConfig(api_key=KEY, base_url="https://example.invalid").verify_tls is True
    assert Transport("https://example.invalid", KEY).verify is True


async def test_turning_tls_off_logs_a_warning() -> None:
    with structlog.testing.capture_logs() as events:
        async with Transport("https://example.invalid", KEY, verify=False):
            pass
        async with Transport("https://example.invalid", KEY):
            pass
    warnings = [e for e in events if e["log_level"] == "warning" and "tls" in e["event"]]
    assert len(warnings) == 1


BAD_INPUTS = {
    "ragged tensor": lambda: __import__("tinker_actors.wire.validate", fromlist=["x"]).validate_tensor(
        wt.TensorData(data=[1.0, 2.0, 3.0], dtype="float32", shape=[2, 2]), "t"),
    "bad dtype": lambda: wt.TensorData.from_numpy(np.zeros(3, dtype=np.complex64)),
    "invalid tinker path": lambda: __import__("tinker_actors.wire.validate", fromlist=["x"]).parse_tinker_path("tinker://../etc/passwd"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_user_input_is_a_validation_error(name: str) -> None:
    with pytest.raises((ValidationError, ValueError)):
        BAD_INPUTS[name]()


async def test_bad_requests_are_refused_before_sending(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    cfg = ServerConfig(data_dir=tmp_path / "data", null_compute=True, compute_inline=True)
    with trio.fail_after(600):
        async with in_process(cfg) as (app, client):
            training = await client.create_lora_training_client(BASE_MODEL, rank=4)
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            before = dict(app.server.stats.snapshot()["requests"])
            refused = 0
            for call in (
                lambda: training.forward_backward([sft_datum([72, 105])], "no_such_loss"),
                lambda: sampler.sample(wt.ModelInput.from_ints([65]), 0, wt.SamplingParams(max_tokens=2)),
                lambda: sampler.sample(wt.ModelInput.from_ints([65]), 1, wt.SamplingParams(max_tokens=-5)),
                lambda: sampler.sample(wt.ModelInput.from_ints([65, -1]), 1, wt.SamplingParams(max_tokens=2)),
            ):
                with pytest.raises(ValueError):  # ValidationError is a ValueError
                    await call()
                refused += 1
            after = dict(app.server.stats.snapshot()["requests"])
    assert after == before  # nothing was sent
    record("bad_user_input", load=f"{refused + len(BAD_INPUTS)} bad calls", faults={}, sent=0, lost=0, duplicates=0, hangs=0)


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and "sqlite" not in p.name}


async def test_server_refuses_hostile_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = create_app(ServerConfig(data_dir=data, null_compute=True, max_body_bytes=1 << 20, api_key=KEY))
    outside = tmp_path / "outside.txt"
    outside.write_text("do not touch")
    async with app.lifespan():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=LOCAL_URL, headers={"X-API-Key": KEY}) as http:
            before = snapshot(data)
            statuses = {}
            for name, path in {
                "traversal run": "/api/v1/training_runs/..%2F..%2Foutside.txt/checkpoints",
                "traversal checkpoint": "/api/v1/training_runs/run1/checkpoints/weights/..%2F..%2F..%2Foutside.txt",
                "traversal archive": "/api/v1/training_runs/..%2F..%2F/checkpoints/weights/x/archive",
                "local archive": "/_local/archive/..%2F..%2Foutside.txt/weights/x?expires=9999999999&sig=00",
            }.items():
                r = await http.get(path) if "archive" in name or "run" == name.split()[-1] else await http.delete(path)
                statuses[name] = r.status_code
                assert r.status_code in (400, 403, 404), (name, r.status_code)
            r = await http.post("/api/v1/weights_info", json={"tinker_path": "tinker://../../outside/weights/x"})
            statuses["weights_info traversal"] = r.status_code
            assert r.status_code in (400, 404)
            r = await http.post("/api/v1/create_session", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
            statuses["oversized body"] = r.status_code
            assert r.status_code == 413
            r = await http.post("/api/v1/create_session", json={}, headers={"X-API-Key": "tml-wrong-key"})
            statuses["bad key"] = r.status_code
            assert r.status_code == 401 and "tml-wrong-key" not in r.text
            r = await http.post("/api/v1/create_session", json={}, headers={"X-API-Key": ""})
            assert r.status_code == 401
            assert snapshot(data) == before
    assert outside.read_text() == "do not touch"
    record("hostile_input_to_server", load=f"{len(statuses) + 1} hostile requests", faults={}, statuses=statuses, lost=0, duplicates=0, hangs=0)
