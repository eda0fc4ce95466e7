"""The five scenarios: what each client child is asked to do, at full and quick size.

A ``Run`` is one client child process. Each scenario yields its runs in groups
(one group per setting, e.g. one in-flight level); within a group the three
clients run back to back against the same server, in an order that rotates
from group to group so slow drift on a shared machine does not always hurt the
same client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLIENTS = ("floor", "sdk", "tinker_actors")
SCENARIOS = ("sampling", "futures", "training", "scale", "startup", "knee")


@dataclass
class Run:
    scenario: str  # the result section it belongs to
    setting: str  # e.g. "in_flight=100"
    client: str
    child_scenario: str  # what the child runs (training has a "pipeline" part)
    params: dict[str, Any]
    timeout_s: float
    faults: dict[str, Any] = field(default_factory=dict)
    count_sockets: bool = False
    repeat: int = 1  # start-up runs several fresh processes and keeps the medians


FULL = {
    "sampling_n": 20_000, "in_flight": [1, 10, 100, 1000],
    "futures_n": 10_000, "futures_rate": 100.0, "futures_delay_s": 2.0,
    "training_steps": 200, "pipeline_steps": 10, "pipeline_pause_s": 0.3,
    "scale_n": 100_000, "scale_workers": 100, "scale_deadline_s": 150.0,
    "startup_repeat": 5,
    # open loop (the bench engine): a x1.41 ramp from 50/s, then each client at 50 % and 80 % of its knee
    "knee_ramp": {"start": 50.0, "stop": 6400.0, "steps": 15, "step_s": 5.0}, "knee_warmup_s": 2.0,
    "knee_hold_s": 20.0,
}
QUICK = {
    "sampling_n": 2_000, "in_flight": [1, 10, 100, 1000],
    "futures_n": 1_000, "futures_rate": 100.0, "futures_delay_s": 1.0,
    "training_steps": 40, "pipeline_steps": 4, "pipeline_pause_s": 0.3,
    "scale_n": 10_000, "scale_workers": 100, "scale_deadline_s": 30.0,
    "startup_repeat": 2,
    "knee_ramp": {"start": 50.0, "stop": 6400.0, "steps": 8, "step_s": 3.0}, "knee_warmup_s": 1.0,
    "knee_hold_s": 8.0,
}
KNEE_SHARES = (0.5, 0.8)


def _rotate(group: int) -> tuple[str, ...]:
    k = group % len(CLIENTS)
    return CLIENTS[k:] + CLIENTS[:k]


def _timeout(n: int, per_request_s: float, floor_s: float = 120.0) -> float:
    """Generous: a run ten times slower than the official SDK still finishes."""
    return max(floor_s, n * per_request_s)


def plan(names: list[str], size: dict[str, Any], clients: tuple[str, ...] = CLIENTS) -> list[list[Run]]:
    groups: list[list[Run]] = []

    def add(runs: list[Run]) -> None:
        groups.append([r for c in _rotate(len(groups)) for r in runs if r.client == c and c in clients])

    if "sampling" in names:
        n = size["sampling_n"]
        for k in size["in_flight"]:
            per = 0.03 if k == 1 else 0.01
            add([Run("sampling", f"in_flight={k}", c, "sampling", {"n": n, "in_flight": k}, _timeout(n, per))
                 for c in CLIENTS])
    if "futures" in names:
        n, rate, delay = size["futures_n"], size["futures_rate"], size["futures_delay_s"]
        # open loop on the bench engine: n arrivals at rate/s, latency from each intended send
        params = {"rate": rate, "duration_s": n / rate, "warmup_s": 0.0, "delay_s": delay}
        faults = {"pause_futures_s": delay, "pause_rate": 1.0}
        add([Run("futures", f"{n} futures, {rate:g}/s, {delay:g} s server delay", c, "openloop", params,
                 _timeout(n, 0.02, 180 + n / rate), faults=faults, count_sockets=True) for c in CLIENTS])
    if "training" in names:
        steps = size["training_steps"]
        add([Run("training", f"{steps} steps", c, "training", {"steps": steps}, _timeout(steps, 1.0))
             for c in CLIENTS])
        pause = size["pipeline_pause_s"]
        add([Run("training", "pipelining", c, "pipeline",
                 {"steps": size["pipeline_steps"], "probe_after_s": pause / 2}, 180,
                 faults={"pause_futures_s": pause, "pause_rate": 1.0}) for c in CLIENTS])
    if "scale" in names:
        n = size["scale_n"]
        deadline = size["scale_deadline_s"]
        add([Run("scale", f"{n} queued", c, "scale",
                 {"n": n, "workers": size["scale_workers"], "deadline_s": deadline},
                 deadline + 240) for c in CLIENTS])
    if "knee" in names:
        params = {"ramp": size["knee_ramp"], "warmup_s": size["knee_warmup_s"], "drain_s": 20.0}
        budget = size["knee_ramp"]["steps"] * size["knee_ramp"]["step_s"] + 180
        add([Run("knee", "ramp", c, "openloop", params, budget) for c in CLIENTS])
    if "startup" in names:
        add([Run("startup", "fresh process", c, "startup", {}, 120, repeat=size["startup_repeat"])
             for c in CLIENTS])
    return groups


def knee_followups(knees: dict[str, float | None], size: dict[str, Any], clients: tuple[str, ...] = CLIENTS) -> list[list[Run]]:
    """After the ramp: each client at 50 % and 80 % of its own knee, open loop, constant rate."""
    groups = []
    for share in KNEE_SHARES:
        runs = []
        for c in clients:
            knee = knees.get(c)
            if not knee:
                continue
            params = {"rate": share * knee, "duration_s": size["knee_hold_s"], "warmup_s": size["knee_warmup_s"],
                      "drain_s": 20.0}
            runs.append(Run("knee", f"{share:.0%} of the knee", c, "openloop", params, size["knee_hold_s"] + 180))
        k = len(groups) % len(CLIENTS)
        order = CLIENTS[k:] + CLIENTS[:k]
        groups.append([r for c in order for r in runs if r.client == c])
    return groups
