"""Open-loop scenarios for every client, driven by tinker_actors' own bench engine.

The scheduler, the intended-time latency (coordinated-omission correction),
the HDR histograms and the knee are ``tinker_actors.jobs.bench``'s; each
adapter only supplies a *target*: an async context manager yielding an object
with ``async setup()`` and ``issue(i)`` returning an awaitable of one sample
of the common prompt (``common.PROMPT_TOKENS``, ``common.MAX_TOKENS``). So all
three clients are measured by exactly the same code, on trio, in their own
process; the official SDK's futures are bridged from its loop thread with one
callback each (``SdkFuture``), which is what ``asyncio.wrap_future`` does for
an asyncio caller.

Params: ``{"rate": R, "duration_s": D, "warmup_s": W}`` for one rate, or
``{"ramp": {"start", "stop", "steps", "step_s"}, "warmup_s": W}`` to find the
knee; optional ``"max_in_flight"``, ``"delay_s"`` (a server-side delay to
subtract for the futures scenario's wake lag).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from .. import measure


class SdkFuture:
    """A concurrent.futures.Future (the SDK's) awaited from trio: one done-callback, no polling."""

    __slots__ = ("_cf", "_event")

    def __init__(self, cf: Any) -> None:
        import trio

        self._cf = cf
        self._event = trio.Event()
        token = trio.lowlevel.current_trio_token()
        event = self._event
        cf.add_done_callback(lambda _: token.run_sync_soon(event.set))

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        await self._event.wait()
        return self._cf.result()


def _ms(v: Any) -> float | None:
    return None if v is None else 1e3 * float(v)


def _workload(p: dict[str, Any]) -> Any:
    from tinker_actors.jobs.bench.workload import Load, OpSpec, Ramp, Workload

    load = Load(mode="open", warmup_s=float(p.get("warmup_s", 1.0)), max_in_flight=int(p.get("max_in_flight", 10_000)))
    if "ramp" in p:
        load.ramp = Ramp(**p["ramp"])
    else:
        load.rate, load.duration_s = float(p["rate"]), float(p["duration_s"])
    return Workload(name="openloop", load=load, ops=[OpSpec(kind="sample")]).check()


async def _drive(open_target: Callable[[], Any], p: dict[str, Any]) -> dict[str, Any]:
    from tinker_actors.jobs.bench import run_workload

    wl = _workload(p)
    async with open_target() as target:
        phase = measure.Phase().start()
        result = await run_workload(target, wl, drain_s=float(p.get("drain_s", 30.0)))
        phase.stop()
    trial = result.trials[0]
    steps = []
    for ph in trial.phases:
        if not ph.measured:
            continue
        steps.append({
            "name": ph.name, "target_rate": ph.target_rate, "sent_rate": ph.achieved_rate,
            "completed_rate": ph.completed_rate, "p50_ms": _ms(ph.all.latency.get("p50")),
            "p99_ms": _ms(ph.all.latency.get("p99")), "p999_ms": _ms(ph.all.latency.get("p99.9")),
            "max_ms": _ms(ph.all.latency.get("max")), "lag_p99_ms": _ms(ph.lag.p99 if ph.lag else None),
            "behind": bool(ph.lag and ph.lag.behind), "errors": ph.all.errors, "sent": ph.sent,
        })
    total = trial.measured[-1]
    n = total.count
    out: dict[str, Any] = {
        **phase.figures(max(n, 1)),
        "steps": steps,
        "errors": total.errors,
        "error_kinds": total.error_kinds,
        "latency": {k: _ms(total.latency.get(k)) for k in ("p50", "p90", "p99", "p99.9", "max")},
        "warnings": trial.warnings,
    }
    if trial.knee is not None:
        out["knee_rate"] = trial.knee.rate
        out["knee_reason"] = trial.knee.reason
    if "delay_s" in p:
        # futures scenario: the server holds each future delay_s; what is left is the client's wake-up lag
        delay_ms = 1e3 * float(p["delay_s"])
        out["wake_lag"] = {f"{k}_ms": (None if v is None else max(0.0, v - delay_ms))
                           for k, v in out["latency"].items()}
    return out


def run(open_target: Callable[[], Any], params: dict[str, Any]) -> dict[str, Any]:
    """Run the open-loop scenario in a fresh trio loop; the figures as a dict."""
    import trio

    return trio.run(_drive, open_target, params)
