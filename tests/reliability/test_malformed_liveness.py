"""Malformed server answers, a session whose heartbeats fail for good, futures whose polls only fail,
and the trainer's error shape.

* Any 2xx body retrieve_future can send (hypothesis: random bytes under every
  content type, corrupt protobuf, JSON of the wrong shape) ends the future
  with a typed error; a body the client cannot read is a ResponseDecodeError
  naming ``POST /api/v1/retrieve_future`` and the problem, never a raw
  msgspec or protobuf exception.
* In a real runtime, a corrupted result fails its own sample while a
  concurrent sample completes and later work succeeds.
* Heartbeats answering 5xx forever (no 410) end the session after
  ``session_dead_after_s``, the same way a 410 does.
* A future whose polls only get connection errors says so: its status carries
  the failure count and last error, and one (debounced) warning is logged.
* ``Trainer.run``'s nursery lets a single failure out as itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing
from harness import BASE_MODEL, KEY, LOCAL_URL, control, in_process, record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tinker_actors.errors import (
    APIConnectionError,
    ResponseDecodeError,
    SessionExpiredError,
    TinkerActorsError,
)
from tinker_actors.jobs.trainer import _one_error_nursery
from tinker_actors.runtime.config import PollSettings
from tinker_actors.runtime.poller import FuturePoller, FutureSpec
from tinker_actors.server import FaultConfig, ServerConfig, create_app
from tinker_actors.transport import RawResponse, Transport
from tinker_actors.wire import protobuf as wpb
from tinker_actors.wire import types as wt

ENDPOINT = "POST /api/v1/retrieve_future"
PROTO = "application/x-protobuf"


class Answers:
    """A requester whose retrieve_future answers are whatever the test says."""

    def __init__(self, content_type: str, body: bytes | None = None, error: Exception | None = None) -> None:
        self.content_type = content_type
        self.body = body
        self.error = error
        self.calls = 0

    async def request(self, resource: Any, method: str, path: str, **kwargs: Any) -> Any:
        self.calls += 1
        await trio.sleep(0.01)
        if self.error is not None:
            raise self.error
        return RawResponse(200, {"content-type": self.content_type}, self.body or b"", 0.0)


def outcome_of(content_type: str, body: bytes) -> BaseException | Any:
    async def main() -> Any:
        poller = FuturePoller(Answers(content_type, body), settings=PollSettings(progress_timeout=30, min_poll_interval=1))
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.run)
            handle = poller.register(FutureSpec(request_id="req-1", result_type=wt.SampleResponse, request_type="Sample"))
            with trio.fail_after(120):
                try:
                    value = await handle.result()
                except BaseException as exc:  # noqa: BLE001 - the test inspects it
                    value = exc
            nursery.cancel_scope.cancel()
        return value

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def good_sample_proto() -> bytes:
    return wpb.sample_response_to_proto(wt.SampleResponse(sequences=[wt.SampledSequence(stop_reason="length", tokens=[1, 2, 3], logprobs=[-0.1, -0.2, -0.3])]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content_type=st.sampled_from(["application/json", PROTO, "text/html", "application/octet-stream", ""]),
    body=st.one_of(
        st.binary(max_size=300),
        st.builds(lambda n: good_sample_proto()[:n], st.integers(1, 40)),  # truncated protobuf
        st.sampled_from([b"[1, 2]", b'{"sequences": "x"}', b'{"sequences": [{"tokens": "a"}]}', b"null", b'"text"', b"{"]),
    ),
)
def test_any_retrieve_future_body_ends_typed(content_type: str, body: bytes) -> None:
    result = outcome_of(content_type, body)
    if isinstance(result, BaseException):
        assert isinstance(result, TinkerActorsError), repr(result)  # never a raw msgspec/protobuf error
        assert not isinstance(result, (msgspec.MsgspecError,))
        if isinstance(result, ResponseDecodeError):
            assert str(result).startswith(ENDPOINT) and "req-1" in str(result)
            assert result.endpoint == ENDPOINT
    else:
        assert isinstance(result, wt.SampleResponse)


def test_truncated_protobuf_names_endpoint_and_problem() -> None:
    result = outcome_of(PROTO, good_sample_proto()[:7])
    assert isinstance(result, ResponseDecodeError), repr(result)
    message = str(result)
    assert message.startswith(ENDPOINT) and "SampleResponse" in message and PROTO in message


def test_wrong_json_shape_names_the_field() -> None:
    result = outcome_of("application/json", b'{"sequences": [{"tokens": "not a list"}]}')
    assert isinstance(result, ResponseDecodeError), repr(result)
    assert "tokens" in str(result) and ENDPOINT in str(result)


async def test_corrupt_result_fails_its_sample_and_the_runtime_keeps_serving(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    cfg = ServerConfig(data_dir=tmp_path / "data", null_compute=True, compute_inline=True, long_poll_timeout_s=20, faults=FaultConfig(seed=1))
    app = create_app(cfg)
    inner = httpx.ASGITransport(app=app)
    corrupted: list[str] = []

    class CorruptFirstResult(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            if request.url.path.endswith("/retrieve_future") and response.status_code == 200:
                body = await response.aread()
                if not corrupted and (PROTO in response.headers.get("content-type", "") or b"sequences" in body):
                    corrupted.append(msgspec.json.decode(request.content)["request_id"])
                    return httpx.Response(200, headers={"content-type": response.headers["content-type"]}, content=body[: len(body) // 2] + b"\xff\xff")
                return httpx.Response(response.status_code, headers=response.headers, content=body)
            return response

    from harness import open_client

    with trio.fail_after(300):
        async with app.lifespan():
            async with Transport(LOCAL_URL, KEY, http_transport=CorruptFirstResult()) as transport:
                async with open_client(transport, LOCAL_URL) as client:
                    sampler = await client.create_sampling_client(base_model=BASE_MODEL)
                    futs = [sampler.sample(wt.ModelInput.from_ints([65 + i]), 1, wt.SamplingParams(max_tokens=2, seed=i)) for i in range(2)]
                    outcomes: list[Any] = []
                    for f in futs:
                        try:
                            outcomes.append(await f)
                        except TinkerActorsError as exc:
                            outcomes.append(exc)
                    later = await sampler.sample(wt.ModelInput.from_ints([80]), 1, wt.SamplingParams(max_tokens=2))
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(corrupted) == 1 and len(errors) == 1, outcomes
    assert isinstance(errors[0], ResponseDecodeError) and str(errors[0]).startswith(ENDPOINT) and corrupted[0] in str(errors[0])
    assert sum(isinstance(o, wt.SampleResponse) for o in outcomes) == 1 and later.sequences
    record("corrupt_result", load="3 samples", faults={"corrupt_retrieve_future": 1}, typed_errors=1, lost=0, hangs=0)


async def test_heartbeat_5xx_forever_expires_the_session(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    cfg = ServerConfig(
        data_dir=tmp_path / "data", null_compute=True, compute_inline=True, long_poll_timeout_s=20,
        faults=FaultConfig(seed=2, rate_5xx=1.0, routes=["session_heartbeat"], pause_futures_s=10**6, pause_rate=1.0),
    )  # the server never expires the session: no 410 ever comes
    with trio.fail_after(900):
        async with in_process(cfg, heartbeat_interval=10, session_dead_after_s=120) as (app, client):
            heartbeat = client.service.heartbeat
            sampler = await client.create_sampling_client(base_model=BASE_MODEL)
            start = trio.current_time()
            pending = sampler.sample(wt.ModelInput.from_ints([65]), 1, wt.SamplingParams(max_tokens=2))
            await trio.sleep(60)
            assert heartbeat.health.state == "degraded"
            await heartbeat.expired.wait()
            ended = trio.current_time() - start
            with pytest.raises(SessionExpiredError) as info:
                await pending
            with pytest.raises(SessionExpiredError):
                await sampler.sample(wt.ModelInput.from_ints([66]), 1, wt.SamplingParams(max_tokens=2))
            s = await control(app, "/_local/stats")
    assert heartbeat.health.state == "expired"
    assert 120 <= ended <= 135
    assert "no successful heartbeat" in str(info.value) and "session_dead_after_s=120" in str(info.value)
    record("heartbeat_5xx_forever", load="1 sample pending", faults={"5xx": s["faults"]["5xx"]}, session_ended_after_s=round(ended, 1), lost=0, hangs=0)


async def test_polls_that_only_fail_are_visible(autojump_clock: trio.abc.Clock) -> None:
    down = Answers("", error=APIConnectionError("ConnectError: connection refused", endpoint=ENDPOINT))
    poller = FuturePoller(down, settings=PollSettings(progress_timeout=7200, backoff_max=10, warn_debounce_s=60))
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.run)
            handles = [poller.register(FutureSpec(request_id=f"req-{i}", request_type="Sample")) for i in range(2)]
            await trio.sleep(50)
            status = handles[0].status()
            nursery.cancel_scope.cancel()
    assert status.state == "queued" and status.poll_errors >= 5
    assert "connection refused" in (status.last_poll_error or "")
    warnings = [e for e in logs if e["event"] == "future_poll_failing"]
    assert len(warnings) == 1  # two failing futures, one warning per debounce window
    assert warnings[0]["failed_polls"] == 5 and "connection refused" in warnings[0]["error"] and warnings[0]["gives_up_in_s"] > 7000


async def test_trainer_nursery_lets_one_error_out_as_itself() -> None:
    class StepFailed(TinkerActorsError):
        pass

    async def fails() -> None:
        raise StepFailed("step 3 failed")

    with pytest.raises(StepFailed) as info:
        async with _one_error_nursery() as nursery:
            nursery.start_soon(fails)
    assert any(frame.name == "fails" for frame in info.traceback)  # traceback kept
    with pytest.raises(ExceptionGroup):  # two failures stay a group
        async with _one_error_nursery() as nursery:
            nursery.start_soon(fails)
            nursery.start_soon(fails)
