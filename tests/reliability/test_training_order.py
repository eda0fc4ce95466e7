"""A training request that fails after taking its place in the model's order (issue 10, case 5).

On main a ``save_state`` that failed on a 5xx left a gap in the seq_ids: the
next ``forward_backward`` waited 120 s on the server and failed with "seq_id N
never became next", and the client stayed unusable. Now a failed POST is
retried under its seq_id and key for the retry budget; one that fails for
good makes every later call fail at once with TrainingOrderError, which names
the lost operation and how to continue. A request that never left (cancelled
while it waited) leaves no gap at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from harness import BASE_MODEL, control, in_process

from tinker_actors.errors import InternalServerError, TrainingOrderError
from tinker_actors.jobs.trainer import sft_datum
from tinker_actors.server import FaultConfig, ServerConfig
from tinker_actors.wire import types as wt

BATCH = [sft_datum([72, 105, 33, 10])]
ADAM = wt.AdamParams(learning_rate=1e-2)


def server(tmp_path: Path, **faults: object) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "data", compute_inline=True, long_poll_timeout_s=20,
                        faults=FaultConfig(seed=1, **faults))


async def test_a_save_that_fails_for_good_fails_later_calls_at_once(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(3600):
        async with in_process(server(tmp_path)) as (app, client):
            training = await client.create_lora_training_client(BASE_MODEL, rank=4)
            await training.forward_backward(BATCH, "cross_entropy")
            await training.optim_step(ADAM)
            good = await training.save_state("good")
            await control(app, "/_local/faults", {"rate_5xx": 1.0, "routes": ["save_weights"]})
            save = training.save_state("lost", total_retry_timeout=60)
            queued = training.optim_step(ADAM)  # called before the save failed: waits behind it
            start = trio.current_time()
            with pytest.raises(InternalServerError, match="gave up after"):
                await save
            assert trio.current_time() - start <= 60  # the retry budget, not more
            failed_at = trio.current_time()
            with pytest.raises(TrainingOrderError) as queued_error:
                await queued
            assert trio.current_time() == failed_at  # at once, not after the server's 120 s
            with pytest.raises(TrainingOrderError) as later:
                training.forward_backward(BATCH, "cross_entropy")  # refused at the call
            error = later.value
            assert error.operation == "save_state" and error.seq_id == 4 and isinstance(error.cause, InternalServerError)
            assert "create_training_client_from_state_with_optimizer" in str(error) and "seq_id 4" in str(error)
            assert queued_error.value.operation == "save_state"
            # how to continue, as the message says
            await control(app, "/_local/faults", {})
            restored = await client.create_training_client_from_state_with_optimizer(good.path)
            out = await restored.forward_backward(BATCH, "cross_entropy")
            await restored.optim_step(ADAM)
            s = await control(app, "/_local/stats")
    assert out.metrics
    assert s["statuses"].get("400", 0) == 0  # nothing was sent out of order


async def test_a_save_with_transient_5xx_keeps_the_order(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(3600):
        async with in_process(server(tmp_path, rate_5xx=0.5, routes=["save_weights", "forward_backward", "optim_step"])) as (app, client):
            training = await client.create_lora_training_client(BASE_MODEL, rank=4)
            for step in range(6):
                fb = training.forward_backward(BATCH, "cross_entropy")
                opt = training.optim_step(ADAM)
                save = training.save_state(f"step-{step}")
                await fb, await opt, await save
            s = await control(app, "/_local/stats")
    assert s["faults"]["5xx"] > 3
    assert s["work_done"]["SaveWeights"] == 6 and s["work_done"]["ForwardBackward"] == 6
    assert s["statuses"].get("400", 0) == 0


async def test_a_call_cancelled_before_it_left_leaves_no_gap(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(3600):
        async with in_process(server(tmp_path, slow_s=5, routes=["forward_backward"])) as (app, client):
            training = await client.create_lora_training_client(BASE_MODEL, rank=4)
            fb = training.forward_backward(BATCH, "cross_entropy")  # its POST takes 5 s
            opt = training.optim_step(ADAM)  # waits for its turn behind fb
            save = training.save_state("after-cancel")
            await trio.sleep(1)
            assert opt.cancel()
            start = trio.current_time()
            await fb
            saved = await save
            assert trio.current_time() - start < 10  # on main: 120 s, then "seq_id never became next"
            s = await control(app, "/_local/stats")
    assert saved.path.endswith("/weights/after-cancel")
    assert s["work_done"].get("OptimStep", 0) == 0 and s["statuses"].get("400", 0) == 0
