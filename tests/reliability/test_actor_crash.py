"""Actors crashing on purpose, inside a real runtime on the in-process server (virtual clock).

* The poller's task raises once while samples are in flight: the supervisor
  restarts it, the restarted poller resumes every live future, all of them
  complete, and new work afterwards succeeds.
* A pool actor's loop raises while one of its envelopes is in flight: the
  caller gets ``ActorCrashedError`` (not a misleading "abandoned" error and
  not a hang), and the restarted actor serves the next message.
* The poller crashing on every run escalates: ``ActorCrashedError`` leaves
  ``open_service`` and the server records the session as ``errored``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import httpx
from harness import BASE_MODEL, KEY, LOCAL_URL, in_process, open_client, record
from structlog.testing import capture_logs

from tinker_actors.errors import ActorCrashedError
from tinker_actors.runtime.mailbox import call
from tinker_actors.runtime.pool_actor import HttpCall
from tinker_actors.runtime.requester import options
from tinker_actors.runtime.supervisor import RestartPolicy
from tinker_actors.server import FaultConfig, ServerConfig, create_app
from tinker_actors.transport import Transport
from tinker_actors.wire import types as wt

PAUSE_S = 30.0


def server(tmp_path: Path, **faults: Any) -> ServerConfig:
    return ServerConfig(
        data_dir=tmp_path / "data", null_compute=True, compute_inline=True, long_poll_timeout_s=20, faults=FaultConfig(seed=3, **faults)
    )


def paused(tmp_path: Path) -> ServerConfig:
    # every sample waits 30 s on the server, so it is in flight when the actor crashes
    return server(tmp_path, pause_futures_s=PAUSE_S, pause_rate=1.0, routes=["asample"])


def crash_once(obj: Any, name: str, exc: Exception) -> list[int]:
    """Make ``obj.name`` raise ``exc`` on its next call only; returns the call counter."""
    real = getattr(obj, name)
    calls = [0]

    def patched(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise exc
        return real(*args, **kwargs)

    setattr(obj, name, patched)
    return calls


class Poison:
    """Put in the poller's inbox, it crashes the poller's own task (as a bug in the actor would)."""

    def __init__(self, message: str) -> None:
        self.message = message

    @property
    def done(self) -> bool:
        raise RuntimeError(self.message)


def params(i: int) -> wt.SamplingParams:
    return wt.SamplingParams(max_tokens=2, seed=i)


async def test_poller_crash_restarts_and_every_inflight_future_completes(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with capture_logs() as logs, trio.fail_after(600):
        async with in_process(paused(tmp_path)) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            poller = client.service.poller
            futs = [sampler.sample(wt.ModelInput.from_ints([65 + i]), 1, params(i)) for i in range(8)]
            await trio.sleep(5)
            assert poller.live == 8  # all in flight, being polled
            # the poller's own task crashes (samples are driven in their callers' tasks,
            # so the poller also resumes anything it was driving when it restarts)
            poller._inbox_send.send_nowait(Poison("injected poller bug"))
            futs.append(sampler.sample(wt.ModelInput.from_ints([90]), 1, params(99)))
            results = [await f for f in futs]
            after = await sampler.sample(wt.ModelInput.from_ints([91]), 1, params(100))
            s = client.service.statistics()
    crashes = [e for e in logs if e["event"] == "actor_crashed"]
    assert [(e["actor"], e["restart"]) for e in crashes] == [("poller", 1)]
    assert "injected poller bug" in crashes[0]["error"]
    assert len(results) == 9 and all(len(r.sequences) == 1 for r in results)  # none dropped
    assert after.sequences
    assert s.poller.completed == 10 and s.poller.failed == 0 and s.poller.live == 0
    record("poller_crash", load="9 samples in flight (paused 30 s)", faults={"poller_crash": 1}, restarts=1, lost=0, duplicates=0, hangs=0)


async def test_pool_actor_crash_fails_inflight_envelope_with_actor_crashed(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with capture_logs() as logs, trio.fail_after(600):
        async with in_process(paused(tmp_path)) as (app, client):
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            fut = sampler.sample(wt.ModelInput.from_ints([65]), 1, params(1))
            await trio.sleep(1)
            request_id = next(iter(client.service.poller._handles))
            pool = client.service.pools["futures"]
            # a 20 s long poll through the actor's mailbox, in flight when the actor's loop crashes
            poll = HttpCall(method="POST", path="/api/v1/retrieve_future", json={"request_id": request_id}, options=options(timeout=60, max_retries=0))
            crash_once(pool.mailbox, "receive", RuntimeError("injected pool actor bug"))
            outcome: list[BaseException] = []

            async def inflight() -> None:
                try:
                    await call(pool.mailbox, poll)
                except BaseException as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(inflight)
            # the restarted actor serves the next message
            healthy = await call(pool.mailbox, HttpCall(method="GET", path="/api/v1/healthz"))
            result = await fut
    assert len(outcome) == 1 and isinstance(outcome[0], ActorCrashedError), outcome
    assert "pool:futures" in str(outcome[0]) and "injected pool actor bug" in str(outcome[0])
    assert [e["actor"] for e in logs if e["event"] == "actor_crashed"] == ["pool:futures"]
    assert healthy is not None and result.sequences
    record("pool_actor_crash", load="1 long poll in the mailbox, 1 sample", faults={"pool_crash": 1}, restarts=1, lost=0, duplicates=0, hangs=0)


async def test_repeated_crashes_escalate_and_end_the_session_errored(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    policy = RestartPolicy(max_restarts=2, within_s=60, backoff_initial=0.5, backoff_max=2)
    session_id = ""
    started = 0.0
    app = create_app(paused(tmp_path))
    with capture_logs() as logs, trio.fail_after(600):
        async with app.lifespan():
            transport = Transport(LOCAL_URL, KEY, http_transport=httpx.ASGITransport(app=app))
            async with transport:
                # open_client is open_service plus the clients: the error must leave it as itself
                with pytest.raises(ActorCrashedError) as info:
                    async with open_client(transport, LOCAL_URL, restart_policy=policy) as client:
                        session_id = client.service.session_id
                        sampler = await client.create_sampling_client(base_model=BASE_MODEL)
                        fut = sampler.sample(wt.ModelInput.from_ints([65]), 1, params(1))
                        await trio.sleep(1)

                        started = trio.current_time()
                        for _ in range(3):  # crash, let the supervisor restart it, crash it again
                            client.service.poller._inbox_send.send_nowait(Poison("injected persistent bug"))
                            await trio.sleep(3)
                        sampler.sample(wt.ModelInput.from_ints([66]), 1, params(2))
                        await fut  # the body is cancelled when the supervisor gives up
        ended = trio.current_time() - started
    assert info.value.actor == "poller"
    assert "3 times within 60 s" in str(info.value) and "injected persistent bug" in str(info.value)
    assert ended < 10  # backoff 0.5 + 1 s, then it gives up
    assert app.server.sessions[session_id].finished == "errored"
    assert [e["event"] for e in logs if e["event"] in ("actor_crashed", "actor_gave_up")] == ["actor_crashed", "actor_crashed", "actor_gave_up"]
    record("actor_crash_escalates", load="2 samples", faults={"poller_crash": 3}, escalated_after_s=round(ended, 1), session_finished="errored", hangs=0)
