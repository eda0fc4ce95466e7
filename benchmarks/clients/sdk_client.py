"""The official SDK (`tinker` from PyPI), used the way its docs show for async code.

The SDK runs its own asyncio loop on a daemon thread; public methods such as
``SamplingClient.sample`` return an ``APIFuture`` at once. High-concurrency
users write asyncio code that awaits those futures (``await fut`` /
``result_async``; the ``*_async`` methods are deprecated in 0.38), bounded by
a fixed number of worker coroutines, which is what this adapter does. CPU time
is the whole process (both loops, every thread), as a user would pay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from .. import measure
from . import common, openloop


def _service(base_url: str, api_key: str) -> Any:
    import tinker

    os.environ["TINKER_API_KEY"] = api_key
    return tinker.ServiceClient(base_url=base_url)


def _sample_args() -> tuple[Any, Any]:
    from tinker import types

    prompt = types.ModelInput.from_ints(common.PROMPT_TOKENS)
    params = types.SamplingParams(max_tokens=common.MAX_TOKENS, temperature=1.0)
    return prompt, params


async def _sampler(service: Any) -> Any:
    return await service.create_sampling_client(base_model=common.BASE_MODEL).result_async()


async def _workers(k: int, n: int, one: Any) -> None:
    it = iter(range(n))

    async def worker() -> None:
        for _ in it:
            await one()

    await asyncio.gather(*(worker() for _ in range(k)))


async def sampling(service: Any, base_url: str, p: dict[str, Any]) -> dict[str, Any]:
    sampler = await _sampler(service)
    prompt, params = _sample_args()

    async def one() -> None:
        await sampler.sample(prompt, 1, params).result_async()

    phase = measure.Phase().start()
    await _workers(p["in_flight"], p["n"], one)
    phase.stop()
    return phase.figures(p["n"])


def _datum() -> Any:
    from tinker import types

    toks = common.TRAIN_TOKENS
    n = len(toks) - 1
    return types.Datum(
        model_input=types.ModelInput.from_ints(toks[:-1]),
        loss_fn_inputs={
            "target_tokens": types.TensorData(data=toks[1:], dtype="int64", shape=[n]),
            "weights": types.TensorData(data=[1.0] * n, dtype="float32", shape=[n]),
        },
    )


async def _trainer(service: Any) -> Any:
    return await service.create_lora_training_client(
        base_model=common.BASE_MODEL, rank=common.LORA_RANK).result_async()


async def _step(tc: Any, data: list[Any], adam: Any, probe: Any = None, after_s: float = 0.0) -> None:
    fb = tc.forward_backward(data, "cross_entropy")
    opt = tc.optim_step(adam)
    if probe is not None:
        await probe.check(after_s)
    await fb.result_async()
    await opt.result_async()


def _adam() -> Any:
    from tinker import types

    a = common.ADAM
    return types.AdamParams(learning_rate=a["learning_rate"], beta1=a["beta1"], beta2=a["beta2"], eps=a["eps"])


async def training(service: Any, base_url: str, p: dict[str, Any]) -> dict[str, Any]:
    tc = await _trainer(service)
    data, adam = [_datum()], _adam()
    steps = measure.Latencies()
    phase = measure.Phase().start()
    for _ in range(p["steps"]):
        t = time.perf_counter()
        await _step(tc, data, adam)
        steps.add(time.perf_counter() - t)
    phase.stop()
    return {**phase.figures(p["steps"]), "step": steps.summary_ms()}


async def pipeline(service: Any, base_url: str, p: dict[str, Any]) -> dict[str, Any]:
    tc = await _trainer(service)
    data, adam = [_datum()], _adam()
    probe = common.PipelineProbe(base_url, asyncio.sleep)
    for _ in range(p["steps"]):
        await _step(tc, data, adam, probe, p["probe_after_s"])
    return probe.figures()


async def scale(service: Any, base_url: str, p: dict[str, Any]) -> dict[str, Any]:
    """Queue every request at once (``sample`` returns a future), then wait for all."""
    sampler = await _sampler(service)
    prompt, params = _sample_args()
    rss0 = measure.rss_bytes()
    phase = measure.Phase().start()
    futs = [sampler.sample(prompt, 1, params) for _ in range(p["n"])]
    queued_rss = measure.rss_bytes()
    drained = await common.drain(futs, p.get("deadline_s"), lambda f: f.result_async())
    phase.stop()
    return {**phase.figures(p["n"]), **common.scale_figures(rss0, queued_rss, p["n"]), **drained}


class _Target:
    """One sample of the common prompt per request, awaited from trio through its concurrent future."""

    def __init__(self, service: Any) -> None:
        self.service = service

    async def setup(self) -> None:
        import trio

        self.sampler = await trio.to_thread.run_sync(
            lambda: self.service.create_sampling_client(base_model=common.BASE_MODEL).result())
        self.prompt, self.params = _sample_args()

    def issue(self, i: int) -> Any:
        return openloop.SdkFuture(self.sampler.sample(self.prompt, 1, self.params).future())


def target(base_url: str, api_key: str) -> Any:
    @contextlib.asynccontextmanager
    async def open_target() -> Any:
        import trio

        service = await trio.to_thread.run_sync(_service, base_url, api_key)
        try:
            yield _Target(service)
        finally:
            await trio.to_thread.run_sync(_close, service)

    return open_target


def run(scenario: str, base_url: str, api_key: str, params: dict[str, Any]) -> dict[str, Any]:
    if scenario == "openloop":
        return openloop.run(target(base_url, api_key), params)
    if scenario == "startup":
        t0 = time.perf_counter()
        import tinker  # noqa: F401

        t1 = time.perf_counter()
        service = _service(base_url, api_key)
        sampler = service.create_sampling_client(base_model=common.BASE_MODEL).result()
        prompt, params_ = _sample_args()
        sampler.sample(prompt, 1, params_).result()
        t2 = time.perf_counter()
        _close(service)
        return common.startup_figures(t0, t1, t2)
    fn = {"sampling": sampling, "training": training,
          "pipeline": pipeline, "scale": scale}[scenario]
    service = _service(base_url, api_key)
    figures = asyncio.run(fn(service, base_url, params))
    if figures.get("drained", params.get("n")) == params.get("n"):
        _close(service)  # an abandoned drain is left to process exit, not waited for
    return figures


def _close(service: Any) -> None:
    closing = service.close("success")  # sends sessions/{id}/finish; returns a future
    if hasattr(closing, "result"):
        closing.result(timeout=30)
