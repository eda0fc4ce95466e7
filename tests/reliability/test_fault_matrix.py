"""The fault matrix: every endpoint the public clients call x every fault a real service shows.

For each cell the local server injects one fault kind, twice in a row, on
one route (``max_faults=2``), and the test runs the public call that uses
that route. It asserts:

* the call succeeds when the fault is transient, or raises a typed error
  within its retry budget when it is not (a 410 on a training future: the
  model may have applied it, so it is never resubmitted);
* the server did the work at most once: its handler for a route that
  changes something ran once (``handled``), replays and refused attempts
  excluded; a sample whose future the server forgot is computed again, once
  per 410;
* the same client is usable right after: the same call, faults off, succeeds.

Everything runs in-process on trio's virtual clock (minutes of back-off and
read timeouts cost milliseconds). An app that aborts its connection
(``drop``, ``lost``) is turned into the transport error a socket would give
(the loopback behaviour is ``test_fault_kinds.py``'s). The run renders the
matrix and asserts that docs/reliability.md holds it verbatim;
``TINKER_UPDATE_DOCS=1`` rewrites that section instead.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio
from doc_sections import check_section
from harness import BASE_MODEL, KEY, LOCAL_URL, control, open_client

from tinker_actors.api.endpoints import ENDPOINTS
from tinker_actors.clients import ServiceClient
from tinker_actors.errors import GoneError, TinkerActorsError
from tinker_actors.jobs.trainer import sft_datum
from tinker_actors.server import FaultConfig, ServerConfig, create_app
from tinker_actors.server.faults import DroppedConnection
from tinker_actors.transport import Transport
from tinker_actors.wire import types as wt

READ_TIMEOUT_FAULT_S = 100.0  # longer than every client read timeout (60 s; 45 s for polls)
FAULTS: dict[str, dict[str, Any]] = {
    "429 + Retry-After": {"rate_429": 1.0, "retry_after_s": 2.0},
    "500": {"rate_5xx": 1.0},
    "503": {"rate_5xx": 1.0, "status_5xx": 503},
    "drop before response": {"rate_drop": 1.0},
    "lost after work": {"rate_lost": 1.0},
    "read timeout": {"rate_timeout": 1.0, "timeout_s": READ_TIMEOUT_FAULT_S},
    "410 on the future": {"rate_410": 1.0},
}
GONE = "410 on the future"
TIMES = 2  # each fault hits this many attempts in a row
SAMPLE_BUDGET_S = 7200.0
CALL_BUDGET_S = 300.0
BATCH = [sft_datum([72, 105, 33, 10])]
PROMPT = wt.ModelInput.from_ints([72, 105])
PARAMS = wt.SamplingParams(max_tokens=3, seed=1)


class Sockets(httpx.AsyncBaseTransport):
    """The app in-process, failing as a socket would: an aborted connection is a transport error."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except DroppedConnection:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body") from None

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class World:
    """The objects every row's call needs, made once; a row's ``prepare`` adds its own."""

    app: Any
    transport: Transport
    service: ServiceClient
    training: Any
    sampler: Any
    rest: Any
    checkpoint: str  # tinker://<run>/weights/base
    sampler_path: str
    external: str
    names: itertools.count

    def name(self, stem: str) -> str:
        return f"{stem}-{next(self.names)}"


Call = Callable[[World, Any], Awaitable[Any]]


@dataclass
class Row:
    endpoint: str  # ENDPOINTS name
    route: str  # the server's counter key
    call: str  # the public call, as the doc shows it
    run: Call
    prepare: Callable[[World], Awaitable[Any]] | None = None
    sample: bool = False  # whole-sample retry: a 410 means a resubmission

    @property
    def futures(self) -> bool:
        return self.sample or ENDPOINTS[self.endpoint].returns_future or self.endpoint == "retrieve_future"

    @property
    def read_only(self) -> bool:
        return ENDPOINTS[self.endpoint].method == "GET" or self.endpoint == "retrieve_future"


async def _open_and_close(w: World, _: Any) -> None:
    async with open_client(w.transport, LOCAL_URL) as other:
        await other.get_server_capabilities()


async def _new_model(w: World) -> Any:
    return await w.service.create_lora_training_client(BASE_MODEL, rank=4)


async def _new_checkpoint(w: World) -> str:
    return (await w.training.save_state(w.name("tmp"))).path


def _ckpt_id(path: str) -> tuple[str, str]:
    run, _, rest = path.removeprefix("tinker://").partition("/")
    return run, rest


ROWS: list[Row] = [
    Row("client_config", "client/config", "open_service_client()", _open_and_close),
    Row("create_session", "create_session", "open_service_client()", _open_and_close),
    Row("get_server_capabilities", "get_server_capabilities", "ServiceClient.get_server_capabilities()",
        lambda w, _: w.service.get_server_capabilities()),
    Row("health_check", "healthz", "ServiceClient.health_check()", lambda w, _: w.service.health_check()),
    Row("create_model", "create_model", "ServiceClient.create_lora_training_client()", lambda w, _: _new_model(w)),
    Row("create_sampling_session", "create_sampling_session", "ServiceClient.create_sampling_client()",
        lambda w, _: w.service.create_sampling_client(base_model=BASE_MODEL)),
    Row("get_info", "get_info", "ServiceClient.get_info(model_id)", lambda w, _: w.service.get_info(w.training.model_id)),
    Row("unload_model", "unload_model", "ServiceClient.unload_model(model_id)",
        lambda w, model: w.service.unload_model(model.model_id), prepare=_new_model),
    Row("forward", "forward_backward", "TrainingClient.forward()", lambda w, _: w.training.forward(BATCH, "cross_entropy")),
    Row("forward_backward", "forward_backward", "TrainingClient.forward_backward()",
        lambda w, _: w.training.forward_backward(BATCH, "cross_entropy")),
    Row("optim_step", "optim_step", "TrainingClient.optim_step()",
        lambda w, _: w.training.optim_step(wt.AdamParams(learning_rate=1e-3))),
    Row("save_weights", "save_weights", "TrainingClient.save_state()", lambda w, _: w.training.save_state(w.name("s"))),
    Row("save_weights_for_sampler", "save_weights_for_sampler", "TrainingClient.save_weights_for_sampler()",
        lambda w, _: w.training.save_weights_for_sampler(w.name("sw"))),
    Row("save_weights_external", "save_weights_external", "TrainingClient.save_weights_external()",
        lambda w, _: w.training.save_weights_external(w.name("ext"))),
    Row("load_weights", "load_weights", "TrainingClient.load_state()", lambda w, _: w.training.load_state(w.checkpoint)),
    Row("asample", "asample", "SamplingClient.sample()", lambda w, _: w.sampler.sample(PROMPT, 1, PARAMS), sample=True),
    Row("retrieve_future", "retrieve_future", "SamplingClient.sample() (its polls)",
        lambda w, _: w.sampler.sample(PROMPT, 1, PARAMS), sample=True),
    Row("list_training_runs", "training_runs", "RestClient.list_training_runs()", lambda w, _: w.rest.list_training_runs()),
    Row("get_training_run", "training_runs/{run}", "RestClient.get_training_run()",
        lambda w, _: w.rest.get_training_run(w.training.model_id)),
    Row("list_checkpoints", "training_runs/{run}/checkpoints", "RestClient.list_checkpoints()",
        lambda w, _: w.rest.list_checkpoints(w.training.model_id)),
    Row("list_user_checkpoints", "checkpoints", "RestClient.list_user_checkpoints()",
        lambda w, _: w.rest.list_user_checkpoints()),
    Row("delete_checkpoint", "checkpoint", "RestClient.delete_checkpoint()",
        lambda w, path: w.rest.delete_checkpoint(*_ckpt_id(path)), prepare=_new_checkpoint),
    Row("publish_checkpoint", "checkpoint/publish", "RestClient.publish_checkpoint_from_tinker_path()",
        lambda w, _: w.rest.publish_checkpoint_from_tinker_path(w.checkpoint)),
    Row("unpublish_checkpoint", "checkpoint/publish", "RestClient.unpublish_checkpoint_from_tinker_path()",
        lambda w, _: w.rest.unpublish_checkpoint_from_tinker_path(w.checkpoint)),
    Row("set_checkpoint_ttl", "checkpoint/ttl", "RestClient.set_checkpoint_ttl_from_tinker_path()",
        lambda w, _: w.rest.set_checkpoint_ttl_from_tinker_path(w.checkpoint, 86400)),
    Row("get_checkpoint_archive_url", "checkpoint/archive", "RestClient.get_checkpoint_archive_url_from_tinker_path()",
        lambda w, _: w.rest.get_checkpoint_archive_url_from_tinker_path(w.checkpoint)),
    Row("get_external_weights_urls", "checkpoint/external_weights_urls", "RestClient.get_external_weights_urls()",
        lambda w, _: w.rest.get_external_weights_urls(w.external)),
    Row("weights_info", "weights_info", "RestClient.get_weights_info_by_tinker_path()",
        lambda w, _: w.rest.get_weights_info_by_tinker_path(w.checkpoint)),
    Row("copy_weights", "copy_weights", "RestClient.copy_weights()", lambda w, _: w.rest.copy_weights(w.checkpoint, "p-matrix")),
    Row("list_sessions", "sessions", "RestClient.list_sessions()", lambda w, _: w.rest.list_sessions()),
    Row("get_session", "sessions/{sid}", "RestClient.get_session()", lambda w, _: w.rest.get_session(w.service.session_id)),
    Row("set_session_project", "sessions/{sid}/project", "RestClient.assign_session_project()",
        lambda w, _: w.rest.assign_session_project(w.service.session_id, "p-matrix")),
    Row("search_sessions", "sessions/search", "RestClient.search_sessions()", lambda w, _: w.rest.search_sessions()),
    Row("session_trace_export", "sessions/{sid}/trace_export", "RestClient.export_session_trace()",
        lambda w, _: w.rest.export_session_trace(w.service.session_id)),
    Row("get_sampler", "samplers/{id}", "RestClient.get_sampler()",
        lambda w, _: w.rest.get_sampler(w.sampler.sampling_session_id)),
    Row("get_audit_log", "audit", "RestClient.get_audit_log()", lambda w, _: w.rest.get_audit_log()),
    Row("get_billing_usage", "billing", "RestClient.get_billing_usage()",
        lambda w, _: w.rest.get_billing_usage("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")),
    Row("get_current_checkpoint_storage_usage", "billing", "RestClient.get_current_checkpoint_storage_usage()",
        lambda w, _: w.rest.get_current_checkpoint_storage_usage()),
]

# Endpoints the matrix leaves out, and why (the doc lists them under the table).
NOT_IN_MATRIX = {
    "dynamic_config": "re-fetched by its actor on a schedule; a failure keeps the last flags (`test_dynamic_config.py`)",
    "session_heartbeat": "sent by the heartbeat actor every 10 s; failures are `test_expiry_heartbeat.py` and `test_malformed_liveness.py`",
    "telemetry": "best effort by design: 3 attempts, then the batch is dropped and counted",
    "cancel_future": "best effort by design: the server drops the work of a session whose heartbeats lapse",
    "finish_session": "sent once while the service closes, within `close_grace`",
    "retrieve_futures": "used only when the server sets `sample_use_retrieve_futures`; any failure falls back to `retrieve_future`",
    "join_sampling_session": "used only when the server sets `sample_join_sampling_session`",
    "create_custom_loss": "not called: custom losses run client-side (`forward_backward_custom`)",
}


@contextlib.asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    cfg = ServerConfig(data_dir=tmp_path / "data", null_compute=True, compute_inline=True, long_poll_timeout_s=20,
                       faults=FaultConfig(seed=11))
    app = create_app(cfg)
    async with app.lifespan():
        transport = Transport(LOCAL_URL, KEY, http_transport=Sockets(app))
        async with transport, open_client(transport, LOCAL_URL) as service:
            training = await service.create_lora_training_client(BASE_MODEL, rank=4)
            await training.forward_backward(BATCH, "cross_entropy")
            checkpoint = (await training.save_state("base")).path
            sampler_path = (await training.save_weights_for_sampler("base-sampler")).path
            external = (await training.save_weights_external("base-ext")).path
            sampler = await service.create_sampling_client(base_model=BASE_MODEL)
            yield World(app, transport, service, training, sampler, service.create_rest_client(),
                        checkpoint, sampler_path, external, itertools.count())


@dataclass
class Cell:
    outcome: str  # "ok" or the typed error's class name
    handled: int  # times the route's handler ran
    elapsed: float
    problem: str | None = None

    def render(self) -> str:
        return f"{self.outcome} ({self.handled}x)"


async def run_cell(w: World, row: Row, fault: str) -> Cell:
    prepared = await row.prepare(w) if row.prepare is not None else None
    route = "retrieve_future" if fault == GONE else row.route
    await control(w.app, "/_local/faults", {**FAULTS[fault], "seed": 11, "max_faults": TIMES, "routes": [route]})
    await control(w.app, "/_local/stats/reset", {})
    start = trio.current_time()
    outcome, problem = "ok", None
    try:
        await row.run(w, prepared)
    except TinkerActorsError as exc:
        outcome = type(exc).__name__
    except Exception as exc:  # an untyped error is a failure of the cell
        outcome, problem = type(exc).__name__, f"untyped error: {exc!r}"
    elapsed = trio.current_time() - start
    stats = await control(w.app, "/_local/stats")
    await control(w.app, "/_local/faults", {})
    cell = Cell(outcome, stats["handled"].get(row.route, 0), elapsed, problem)
    # the same client, right after, faults off
    again = await row.prepare(w) if row.prepare is not None else None
    try:
        await row.run(w, again)
    except Exception as exc:
        cell.problem = cell.problem or f"the same call failed right after: {exc!r}"
    return cell


def check(row: Row, fault: str, cell: Cell) -> str | None:
    """What is wrong with a cell, or None."""
    if cell.problem:
        return cell.problem
    budget = SAMPLE_BUDGET_S if row.sample else CALL_BUDGET_S
    if cell.elapsed > budget:
        return f"took {cell.elapsed:.0f} s, over its {budget:.0f} s budget"
    if fault != GONE:
        if cell.outcome != "ok":
            return f"a transient fault ended the call with {cell.outcome}"
        if not row.read_only and cell.handled != 1:
            return f"the server did the work {cell.handled} times"
        return None
    if row.sample:
        # each 410 loses one computed result; the resubmission computes it again, once
        expected = TIMES + 1 if row.endpoint == "asample" else 0
        if cell.outcome != "ok" or (expected and cell.handled != expected):
            return f"a forgotten sample was not resubmitted once per 410 ({cell.outcome}, {cell.handled}x)"
        return None
    if cell.outcome != GoneError.__name__ or cell.handled != 1:
        return f"a 410 on a non-sample future should be a GoneError after one submit, got {cell.outcome} ({cell.handled}x)"
    return None


def render(cells: dict[tuple[str, str], Cell]) -> str:
    columns = list(FAULTS)
    lines = [
        "| endpoint | public call | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for row in ROWS:
        values = [cells[row.endpoint, f].render() if (row.endpoint, f) in cells else "n/a" for f in columns]
        lines.append(f"| `{row.endpoint}` | `{row.call}` | " + " | ".join(values) + " |")
    lines += ["", "Not in the matrix:", ""]
    lines += [f"* `{name}`: {why}" for name, why in NOT_IN_MATRIX.items()]
    return "\n".join(lines) + "\n"


async def test_fault_matrix(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    assert {r.endpoint for r in ROWS} | set(NOT_IN_MATRIX) == set(ENDPOINTS), "every endpoint is in the matrix or excused"
    cells: dict[tuple[str, str], Cell] = {}
    problems: list[str] = []
    with trio.fail_after(24 * 3600):
        async with world(tmp_path) as w:
            for row in ROWS:
                for fault in FAULTS:
                    if fault == GONE and not row.futures:
                        continue
                    cell = cells[row.endpoint, fault] = await run_cell(w, row, fault)
                    if (problem := check(row, fault, cell)) is not None:
                        problems.append(f"{row.endpoint} x {fault}: {problem}")
    assert not problems, "\n".join(problems)
    check_section("docs/reliability.md", "fault-matrix", render(cells))
