"""The local server's behaviour, independent of HTTP framing.

``LocalServer`` owns the registries (sessions, runs, samplers, checkpoints),
the futures store, per-model ordered queues and the bounded compute worker.
It is assembled from one mixin per area of the API (``sessions``,
``training``, ``sampling``, ``polling``, ``checkpoints``; their shared state
and helpers are in ``_state``); this module keeps what runs the work: the
lifetime, the job runner and the compute limiter. Handlers take decoded wire
Structs (``tinker_actors.wire``) and return JSON-able dicts (or raise
:class:`~.http.ApiError`); ``app.py`` decodes the bodies and maps the
handlers onto routes.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import anyio
import anyio.lowlevel

from .._log import get_logger
from ..errors import ValidationError
from . import engine
from ._state import UserError
from .checkpoints import Checkpoints
from .config import ServerConfig
from .faults import FaultInjector
from .futures import Future, FuturesStore, Result
from .http import ApiError
from .idempotency import IdempotencyCache
from .polling import Polling
from .records import CheckpointRec, ModelRuntime, RunRec, SamplerRec, SessionRec, from_doc
from .sampling import Sampling
from .sessions import Sessions
from .stats import ServerStats
from .storage import BadPath, Storage
from .tenancy import KeyRing
from .training import Training

__all__ = ["LocalServer", "UserError"]

log = get_logger(__name__)


class LocalServer(Sessions, Training, Sampling, Polling, Checkpoints):
    """The whole server: the areas above over one state, plus the job runner."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.stats = ServerStats()
        self.faults = FaultInjector(config.faults)
        self.futures = FuturesStore(ttl_s=config.future_result_ttl_s)
        self.idempotency = IdempotencyCache()
        self.keyring = KeyRing(config.api_keys) if config.api_keys else None
        self._tmp: str | None = None
        if config.data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="tinker-actors-server-")
            data_dir = Path(self._tmp)
        else:
            data_dir = Path(config.data_dir)
        self.storage = Storage(data_dir)
        self.engine = engine.Engine(null_compute=config.null_compute)
        self.limiter = anyio.CapacityLimiter(max(1, config.compute_threads))
        self.archive_secret = secrets.token_bytes(32)
        self.sessions: dict[str, SessionRec] = {}
        self.runs: dict[str, RunRec] = {}
        self.samplers: dict[str, SamplerRec] = {}
        self.checkpoints: dict[str, CheckpointRec] = {}
        self.models: dict[str, ModelRuntime] = {}
        self.sampler_handles: dict[str, Any] = {}
        self._create_futures: dict[str, str] = {}  # model_id -> request_id of its create
        self._join_counters: dict[str, int] = {}
        # null compute: one Result per answer shape, so its bytes are encoded once
        self._null_samples: dict[tuple[Any, ...], Result] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._load()

    # -- lifetime -------------------------------------------------------
    def _load(self) -> None:
        for sid, doc in self.storage.load("session"):
            self.sessions[sid] = from_doc(SessionRec, doc)
        for rid, doc in self.storage.load("run"):
            self.runs[rid] = from_doc(RunRec, doc)
        for sid, doc in self.storage.load("sampler"):
            self.samplers[sid] = from_doc(SamplerRec, doc)
        for key, doc in self.storage.load("checkpoint"):
            self.checkpoints[key] = from_doc(CheckpointRec, doc)

    async def run(self, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the task group that runs model workers and sample jobs."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            self.close()

    def close(self) -> None:
        self.storage.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise ApiError(503, "server is not running (ASGI lifespan not started)")
        return self._tg

    # -- running jobs ----------------------------------------------------
    async def _execute(self, fut: Future, work: Callable[[], Result]) -> None:
        """Run one job; whatever goes wrong fails its future, never the server."""
        try:
            await self._run_job(fut, work)
        except Exception as exc:
            log.exception("local_server.job_crashed", request_id=fut.request_id, request_type=fut.request_type)
            fut.cancel_scope = None
            self.futures.fail(fut, f"internal server error ({type(exc).__name__}); see the server log for {fut.request_id}", "server")

    async def _run_job(self, fut: Future, work: Callable[[], Result]) -> None:
        """An injected pause, then ``work`` on the compute thread."""
        pause = self.faults.pause_for_future()
        if pause:
            self.stats.faults["pause"] += 1
            fut.queue_state = self.config.faults.pause_kind
            fut.queue_state_reason = "injected pause (local server fault)"
            await anyio.sleep(pause)
        if fut.finished:  # cancelled while queued
            return
        self.futures.start(fut)
        with anyio.CancelScope() as scope:
            fut.cancel_scope = scope
            try:
                result = await self.compute(work)
            except UserError as exc:
                self.futures.fail(fut, str(exc), "user")
            except (ValueError, KeyError, BadPath, ValidationError) as exc:
                self.futures.fail(fut, str(exc), "user")
            except Exception as exc:  # a bug in the model: report it, keep serving
                log.exception("local_server.job_failed", request_id=fut.request_id, request_type=fut.request_type)
                self.futures.fail(fut, f"{type(exc).__name__}: {exc}", "server")
            else:
                self.stats.work_done[fut.request_type] += 1
                self.futures.complete(fut, result)
        fut.cancel_scope = None

    @property
    def inline(self) -> bool:
        """Work runs on the event loop: null compute (no math, so a thread hop
        would be pure overhead) or tests on a virtual clock (a busy thread
        would let an autojump clock leap ahead)."""
        return self.config.compute_inline or self.engine.null_compute

    async def compute(self, fn: Callable[[], Any]) -> Any:
        """Run blocking numpy work off the event loop (bounded by the limiter)."""
        if self.inline:
            await anyio.lowlevel.checkpoint()
            return fn()
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    async def _model_worker(self, receive: Any) -> None:
        async with receive:
            async for fut, work in receive:
                await self._execute(fut, work)

    def _register_model(self, run: RunRec) -> ModelRuntime:
        send, receive = anyio.create_memory_object_stream[tuple[Future, Callable[[], Result]]](10_000)
        rt = ModelRuntime(run=run, handle=None, send=send)
        self.models[run.training_run_id] = rt
        self.task_group.start_soon(self._model_worker, receive)
        return rt
