"""The local server's fault injection: a typed settings body, and every fault kind the matrix uses.

The first three tests are regressions (issue 11): bad values in ``POST
/_local/faults`` were accepted and broke the server later. Now the body is a
typed Struct and a bad value is a 400 naming the field.
"""

from __future__ import annotations

import httpx
import pytest
import trio
from harness import KEY

from tinker_actors.server import FaultConfig, ServerConfig, create_app, serve
from tinker_actors.server.faults import DroppedConnection

HEADERS = {"X-API-Key": KEY}
SESSION = {"tags": [], "user_metadata": {}, "sdk_version": "t", "type": "create_session"}
BASE = "tinker-actors/byte-lm-tiny"


class _App:
    def __init__(self, tmp_path, **faults) -> None:
        self.app = create_app(ServerConfig(data_dir=tmp_path, compute_inline=True, faults=FaultConfig(**faults)))

    async def __aenter__(self) -> tuple[object, httpx.AsyncClient]:
        self._life = self.app.lifespan()
        await self._life.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://local", headers=HEADERS)
        return self.app, self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._life.__aexit__(*exc)


async def _sample(client: httpx.AsyncClient) -> int:
    """create_session + create_sampling_session + asample; the asample status."""
    sid = (await client.post("/api/v1/create_session", json=SESSION)).json()["session_id"]
    r = await client.post("/api/v1/create_sampling_session",
                          json={"session_id": sid, "sampling_session_seq_id": 0, "base_model": BASE})
    assert r.status_code == 200, r.text
    body = {"sampling_session_id": r.json()["sampling_session_id"], "seq_id": 0, "num_samples": 1,
            "prompt": {"chunks": [{"type": "encoded_text", "tokens": [65, 66]}]}, "sampling_params": {"max_tokens": 2}}
    return (await client.post("/api/v1/asample", json=body)).status_code


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pause_futures_s": "1"}, "pause_futures_s"),  # was accepted; the next asample killed the server
        ({"retry_after_s": "soon"}, "retry_after_s"),  # was accepted; every route then answered 500
        ({"seed": [1, 2]}, "seed"),  # was a 500
    ],
)
async def test_bad_fault_settings_are_a_400_naming_the_field(tmp_path, body, field) -> None:
    async with _App(tmp_path) as (app, client):
        r = await client.post("/_local/faults", json={**body, "rate_429": 0.5})
        assert r.status_code == 400, r.text
        assert field in r.json()["detail"]
        # the settings in force did not change, and the server still serves
        assert app.server.faults.config == FaultConfig()
        assert await _sample(client) == 200
        assert (await client.get("/api/v1/healthz")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b'{"rate_5xx": 0.7, "rate_429": 0.7}', b'{"slow_s": -1}', b'{"timeout_s": 1e400}', b'{"max_faults": -1}',
     b'{"status_5xx": 404}', b'{"pause_kind": "later"}', b'{"routes": "asample"}', b'[]', b'{'],
)
async def test_out_of_range_fault_settings_are_refused(tmp_path, body) -> None:
    async with _App(tmp_path) as (app, client):
        r = await client.post("/_local/faults", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert app.server.faults.config == FaultConfig()


async def test_503_and_max_faults_fail_exactly_the_first_requests(tmp_path) -> None:
    async with _App(tmp_path) as (app, client):
        r = await client.post("/_local/faults", json={"rate_5xx": 1.0, "status_5xx": 503, "max_faults": 2,
                                                      "routes": ["create_session"]})
        assert r.status_code == 200
        codes = [(await client.post("/api/v1/create_session", json=SESSION)).status_code for _ in range(4)]
        assert codes == [503, 503, 200, 200]
        assert app.stats.faults["5xx"] == 2 and app.stats.handled["create_session"] == 2


async def test_lost_answer_is_computed_once_and_replayed(tmp_path) -> None:
    async with _App(tmp_path, rate_lost=1.0, max_faults=1, routes=["create_session"]) as (app, client):
        key = {"X-Idempotency-Key": "lost-1"}
        with pytest.raises(DroppedConnection):  # on a real socket: the connection is aborted
            await client.post("/api/v1/create_session", json=SESSION, headers=key)
        again = await client.post("/api/v1/create_session", json=SESSION, headers=key)
        assert again.status_code == 200
        assert app.stats.handled["create_session"] == 1  # the work happened once
        assert app.stats.duplicate_idempotency_keys == 1 and app.stats.faults["lost"] == 1
        assert len(app.server.sessions) == 1


async def test_late_answer_comes_timeout_s_late_and_replays_at_once(tmp_path, autojump_clock) -> None:
    async with _App(tmp_path, rate_timeout=1.0, timeout_s=90, max_faults=1, routes=["create_session"]) as (app, client):
        key = {"X-Idempotency-Key": "late-1"}
        start = trio.current_time()
        first = await client.post("/api/v1/create_session", json=SESSION, headers=key)
        assert first.status_code == 200 and trio.current_time() - start == pytest.approx(90)
        start = trio.current_time()
        again = await client.post("/api/v1/create_session", json=SESSION, headers=key)
        assert again.json() == first.json() and trio.current_time() - start < 1
        assert app.stats.handled["create_session"] == 1 and app.stats.faults["timeout"] == 1


async def test_410_on_the_future_forgets_it(tmp_path) -> None:
    async with _App(tmp_path) as (app, client):
        sid = (await client.post("/api/v1/create_session", json=SESSION)).json()["session_id"]
        r = await client.post("/api/v1/create_model", json={"session_id": sid, "model_seq_id": 0, "base_model": BASE})
        rid = r.json()["request_id"]
        await client.post("/_local/faults", json={"rate_410": 1.0, "max_faults": 1, "routes": ["retrieve_future"]})
        r = await client.post("/api/v1/retrieve_future", json={"request_id": rid})
        assert r.status_code == 410 and app.stats.faults["gone"] == 1
        # no more faults, but the server has forgotten the future, as a real 410 means
        assert (await client.post("/api/v1/retrieve_future", json={"request_id": rid})).status_code == 410


async def test_on_a_real_socket_drop_and_lost_are_transport_errors(tmp_path) -> None:
    cfg = ServerConfig(data_dir=tmp_path, faults=FaultConfig(rate_drop=0.5, rate_lost=0.5, seed=0, max_faults=6,
                                                             routes=["create_session"]))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, cfg)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=HEADERS) as client:
            for i in range(6):
                with pytest.raises(httpx.TransportError):
                    await client.post("/api/v1/create_session", json=SESSION, headers={"X-Idempotency-Key": f"k{i}"})
            stats = (await client.get("/_local/stats")).json()
            assert stats["faults"]["drop"] == 3 and stats["faults"]["lost"] == 3  # seed 0: lost, lost, drop, drop, lost, drop
            # lost answers were computed; dropped requests were not
            assert stats["handled"]["create_session"] == stats["faults"]["lost"]
            assert (await client.post("/api/v1/create_session", json=SESSION)).status_code == 200
        nursery.cancel_scope.cancel()


async def test_a_full_work_queue_sheds_submits_with_429(tmp_path) -> None:
    cfg = ServerConfig(data_dir=tmp_path, compute_inline=True, max_pending_futures=2,
                       faults=FaultConfig(pause_futures_s=1000))
    app = create_app(cfg)
    async with app.lifespan(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://local",
                                                 headers=HEADERS) as client:
        sid = (await client.post("/api/v1/create_session", json=SESSION)).json()["session_id"]
        codes = [(await client.post("/api/v1/create_model", json={"session_id": sid, "model_seq_id": i, "base_model": BASE}))
                 for i in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert 1 <= float(codes[2].headers["retry-after"]) <= 1.25  # no drain rate measured yet: the floor
        assert app.server.stats.shed == 1 and app.server.futures.pending == 2
        # polls, heartbeats and reads are never shed
        assert (await client.get("/api/v1/healthz")).status_code == 200
        r = await client.post("/api/v1/retrieve_future", json={"request_id": codes[0].json()["request_id"]})
        assert r.status_code == 200


async def test_shed_retry_after_is_the_time_to_drain_the_queue(autojump_clock) -> None:
    from tinker_actors.server.faults import LoadShedder

    shedder = LoadShedder(100, 1.0)
    assert shedder.retry_after(pending=99, finished=0) is None
    finished = 0
    for _ in range(5):  # the server finishes 20 futures a second
        assert shedder.retry_after(pending=400, finished=finished) is not None
        await trio.sleep(1)
        finished += 20
    wait = shedder.retry_after(pending=400, finished=finished)
    assert 15 <= wait <= 25  # 400 queued at 20/s: about 20 s, jittered
    assert shedder.retry_after(pending=100_000, finished=finished) == 60.0
