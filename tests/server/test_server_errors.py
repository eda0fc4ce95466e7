"""A bug on the server is a logged 500 with a request id, never a dead process."""

from __future__ import annotations

import pytest
from server_helpers import BASE, SESSION_BODY, new_session, result
from structlog.testing import capture_logs


async def test_an_unexpected_exception_is_a_logged_500_with_a_request_id(served, monkeypatch) -> None:
    app, client = served
    r = await client.post("/api/v1/get_info", json={"model_id": "nope"})
    assert r.status_code == 404 and "request_id" not in r.json()  # a user error stays a 4xx
    sid = await new_session(client)
    # every handler that names a session looks it up through this method
    monkeypatch.setattr(app.server, "session", _raiser(KeyError("session registry corrupted")))
    with capture_logs() as logs:
        r = await client.post("/api/v1/session_heartbeat", json={"session_id": sid})
    assert r.status_code == 500
    request_id = r.json()["request_id"]
    assert request_id.startswith("srv-") and r.headers["x-request-id"] == request_id
    assert request_id in r.json()["detail"]
    [event] = [e for e in logs if e["event"] == "local_server.unhandled_error"]
    assert event["request_id"] == request_id and event["route"] == "session_heartbeat"
    assert event["log_level"] == "error" and event.get("exc_info")
    assert app.server.stats.statuses["500"] == 1
    # and the server keeps serving
    monkeypatch.undo()
    assert (await client.post("/api/v1/create_session", json=SESSION_BODY)).status_code == 200
    assert (await client.get("/api/v1/healthz")).status_code == 200


def _raiser(exc: Exception):
    def raise_(*_a: object, **_k: object) -> object:
        raise exc

    return raise_


@pytest.mark.parametrize("where", ["pause_for_future", "expiry_for_future"])
async def test_a_crashing_job_fails_its_future_and_the_server_lives(served, monkeypatch, where) -> None:
    # `POST /_local/faults {"pause_futures_s": "1"}` made every sample job raise
    # TypeError in the server's task group, which took the process down.
    app, client = served
    sid = await new_session(client)
    r = await client.post(
        "/api/v1/create_sampling_session", json={"session_id": sid, "sampling_session_seq_id": 0, "base_model": BASE}
    )
    sampler = r.json()["sampling_session_id"]
    monkeypatch.setattr(app.server.faults, where, _raiser(TypeError("'<=' not supported between 'str' and 'int'")))
    body = {
        "sampling_session_id": sampler,
        "seq_id": 1,
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]},
        "sampling_params": {"max_tokens": 2},
    }
    with capture_logs() as logs:
        r = await client.post("/api/v1/asample", json=body)
        if r.status_code == 200:
            out = await result(client, r.json()["request_id"])
            assert out.status_code == 200 and out.json()["category"] == "server"
            assert out.json()["error"].startswith("internal server error (TypeError)")
            events = {e["event"] for e in logs}
            assert "local_server.job_crashed" in events
        else:  # the fault config is read while the future is created: a logged 500
            assert r.status_code == 500 and r.json()["request_id"]
            assert "local_server.unhandled_error" in {e["event"] for e in logs}
    monkeypatch.undo()
    r = await client.post("/api/v1/asample", json={**body, "seq_id": 2})
    assert r.status_code == 200
    assert (await result(client, r.json()["request_id"])).status_code == 200


_PLANTED = """
import sys
from tinker_actors.server import service

def boom(self, req):
    raise RuntimeError("planted bug")

service.LocalServer.heartbeat = boom
from tinker_actors.server.cli import main
sys.exit(main(["serve", "--port", "0", "--data-dir", sys.argv[1]]))
"""


def test_serve_logs_the_500_to_stderr_through_logging_and_never_the_key(tmp_path) -> None:
    import re
    import subprocess
    import sys

    import httpx

    key = "tml-secret-do-not-log-4d2f"
    script = tmp_path / "planted.py"
    script.write_text(_PLANTED)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"http://\S+", line).group(0)  # type: ignore[union-attr]
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
            r = client.post("/api/v1/session_heartbeat", json={"session_id": "x"})
            assert r.status_code == 500
            request_id = r.json()["request_id"]
            assert client.get("/api/v1/healthz").status_code == 200  # still serving
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert f"local_server.unhandled_error request_id='{request_id}'" in err
    assert "RuntimeError: planted bug" in err and "Traceback" in err
    assert key not in err
