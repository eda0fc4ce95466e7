"""tinker_actors, used as its docs show: trio, ``async with`` a service, awaitable futures.

Every public call (``sample``, ``forward_backward``, ``optim_step``, the
``create_*`` calls) returns an ``APIFuture`` at once; the caller awaits it.
The in-flight level is a fixed number of worker tasks, as for the other
clients. This is the only module of the harness that knows tinker_actors'
API; if the entry point moves, change :func:`_open`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from .. import measure
from . import common, openloop


def _open(base_url: str, api_key: str) -> Any:
    """The service context manager: ``tinker_actors.open_service`` when exported, else the clients' one."""
    import tinker_actors

    opener = getattr(tinker_actors, "open_service", None)
    if opener is None:
        from tinker_actors.clients import open_service_client as opener
    return opener(base_url=base_url, api_key=api_key)


def _sample_args() -> tuple[Any, Any]:
    from tinker_actors import wire

    prompt = wire.ModelInput.from_ints(common.PROMPT_TOKENS)
    params = wire.SamplingParams(max_tokens=common.MAX_TOKENS, temperature=1.0)
    return prompt, params


async def _sampler(service: Any) -> Any:
    return await service.create_sampling_client(base_model=common.BASE_MODEL)


async def _workers(k: int, n: int, one: Any) -> None:
    import trio

    it = iter(range(n))

    async def worker() -> None:
        for _ in it:
            await one()

    async with trio.open_nursery() as nursery:
        for _ in range(k):
            nursery.start_soon(worker)


async def sampling(service: Any, base_url: str, p: dict[str, Any]) -> dict[str, Any]:
    sampler = await _sampler(service)
    prompt, params = _sample_args()

    async def one() -> None:
        await sampler.sample(prompt, 1, params)

    phase = measure.Phase().start()
    await _workers(p["in_flight"], p["n"], one)
    phase.stop()
    return phase.figures(p["n"])


def _datum() -> Any:
    from tinker_actors import wire

    toks = common.TRAIN_TOKENS
    n = len(toks) - 1
    return wire.Datum(
        model_input=wire.ModelInput.from_ints(toks[:-1]),
        loss_fn_inputs={
            "target_tokens": wire.TensorData(data=toks[1:], dtype="int64", shape=[n]),
            "weights": wire.TensorData(data=[1.0] * n, dtype="float32", shape=[n]),
        },
    )


def _adam() -> Any:
    from tinker_actors import wire

    a = common.ADAM
    return wire.AdamParams(learning_rate=a["learning_rate"], beta1=a["beta1"], beta2=a["beta2"], eps=a["eps"])


async def _trainer(service: Any) -> Any:
    return await service.create_lora_training_client(base_model=common.BASE_MODEL, rank=common.LORA_RANK)


async def _step(tc: Any, data: list[Any], adam: Any, probe: Any = None, after_s: float = 0.0) -> None:
    fb = tc.forward_backward(data, "cross_entropy")
    opt = tc.optim_step(adam)
    if probe is not None:
        await probe.check(after_s)
    await fb
    await opt


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
    import trio

    tc = await _trainer(service)
    data, adam = [_datum()], _adam()
    probe = common.PipelineProbe(base_url, trio.sleep)
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
    drained = await common.drain(futs, p.get("deadline_s"), lambda f: f)
    phase.stop()
    return {**phase.figures(p["n"]), **common.scale_figures(rss0, queued_rss, p["n"]), **drained}


async def _with_service(fn: Any, base_url: str, api_key: str, params: dict[str, Any]) -> dict[str, Any]:
    async with _open(base_url, api_key) as service:
        return await fn(service, base_url, params)


async def _first_request(base_url: str, api_key: str) -> None:
    async with _open(base_url, api_key) as service:
        sampler = await _sampler(service)
        prompt, params = _sample_args()
        await sampler.sample(prompt, 1, params)


class _Target:
    """One sample of the common prompt per request (the bench engine's target protocol)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    async def setup(self) -> None:
        self.sampler = await _sampler(self.service)
        self.prompt, self.params = _sample_args()

    def issue(self, i: int) -> Any:
        return self.sampler.sample(self.prompt, 1, self.params)


def target(base_url: str, api_key: str) -> Any:
    @contextlib.asynccontextmanager
    async def open_target() -> Any:
        async with _open(base_url, api_key) as service:
            yield _Target(service)

    return open_target


def run(scenario: str, base_url: str, api_key: str, params: dict[str, Any]) -> dict[str, Any]:
    if scenario == "openloop":
        return openloop.run(target(base_url, api_key), params)
    if scenario == "startup":
        t0 = time.perf_counter()
        import tinker_actors.clients  # noqa: F401  (what a user's first import pulls in)
        import trio

        t1 = time.perf_counter()
        trio.run(_first_request, base_url, api_key)
        t2 = time.perf_counter()
        return common.startup_figures(t0, t1, t2)
    import trio

    fn = {"sampling": sampling, "training": training,
          "pipeline": pipeline, "scale": scale}[scenario]
    return trio.run(_with_service, fn, base_url, api_key, params)
