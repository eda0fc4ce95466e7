"""open_service: one trio nursery that owns the whole runtime.

::

    async with open_service(...) as service:          # the only way in
        ┌──────────── one nursery ─────────────────────────────────────────┐
        │ Transport (one sharded connection pool per resource)             │
        │ start-up: client/config ─▶ client/dynamic_config (404: defaults) │
        │           ─▶ create_session; server flags take effect            │
        │ supervised actors:                                               │
        │   PoolActor × 5 (session, sampling, futures, training, telemetry)│
        │   FuturePoller        (polls through the futures pool actor)     │
        │   HeartbeatActor      (session pool, its own schedule)           │
        │   DynamicConfigRefresher (session pool; every max(refresh, 10) s │
        │                        updates server_flags; not started on 404) │
        │   TelemetryBatcher    (telemetry pool)                           │
        │ plain objects: SamplingAdmission, TrainingSequencer per model    │
        └──────────────────────────────────────────────────────────────────┘
    leaving the block (shielded, within close_grace seconds):
        1. refuse new work; fail futures nobody waits for (ServiceClosedError)
        2. drain in-flight requests (success only; errored/interrupted don't wait)
        3. POST sessions/{sid}/finish {"reason": {"type": success|errored|interrupted}}
           (older servers without the route: logged, ignored)
        4. SESSION_END + final telemetry flush
        5. cancel the nursery; the Transport closes every pool

An actor that crashes more than its restart policy allows raises
``ActorCrashedError`` out of the ``async with`` (reason ``errored``). A body
that raises ends the session as ``errored``; cancellation or Ctrl-C as
``interrupted``. The body's own exception leaves the block unwrapped.
No thread, no ``__del__``: when the block is left nothing is running.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from .._log import get_logger
from ..errors import ActorCrashedError, NotFoundError, ResponseDecodeError, ServiceClosedError, SessionExpiredError
from ..transport.responses import status_error_from
from .admission import SamplingAdmission
from .config import ServerFlags, ServiceConfig
from .dynamic_config import DYNAMIC_FIELDS, DynamicConfigRefresher
from .heartbeat import HeartbeatActor, SessionHealth
from .poller import FuturePoller, PollerStatistics
from .pool_actor import ActorRequester, PoolActor
from .requester import Requester, Resource, options, raw_parts, resource
from .sequencer import TrainingSequencer
from .stats import PoolStatistics
from .supervisor import run_supervised
from .telemetry import TelemetryBatcher, TelemetryStatistics

__all__ = ["Service", "ServiceStatistics", "open_service"]

log = get_logger(__name__)


class ServiceStatistics(msgspec.Struct, frozen=True, kw_only=True):
    pools: dict[str, PoolStatistics]
    poller: PollerStatistics
    telemetry: TelemetryStatistics
    admission: Any
    health: SessionHealth


async def _json_call(
    requester: Requester, res: Resource, path: str, body: Any, *, timeout: float | None = None, max_retries: int | None = None
) -> dict[str, Any]:
    """POST a start-up call and read its answer as a JSON object.

    Anything else (HTML from a proxy, bad JSON, a redirect, a JSON array) is a
    typed error naming the endpoint, the status and the first bytes of the
    body, never a bare decoder exception.
    """
    reply = await requester.request(
        resource(res), "POST", path, json=body, options=options(timeout=timeout, max_retries=max_retries, raw=True)
    )
    if isinstance(reply, dict):
        return reply
    if reply is None:
        return {}
    endpoint = f"POST {path}"
    content_type, data = raw_parts(reply)
    status = getattr(reply, "status", None)
    if status is not None and not 200 <= status < 300:  # a raw call hands back redirects as they are
        headers = dict(getattr(reply, "headers", None) or {})
        raise status_error_from(status, headers, data, endpoint=endpoint, now=time.time(), secrets=())
    if not data:
        return {}
    try:
        value = _object_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ResponseDecodeError(
            f"expected a JSON object: {exc}", endpoint=endpoint, content_type=content_type, status=status, body=data
        ) from None
    return value


_object_decoder = msgspec.json.Decoder(dict[str, Any])


class Service:
    """The runtime's internal API, used by the public clients."""

    def __init__(self, config: ServiceConfig, transport: Requester) -> None:
        self.config = config
        self._transport = transport
        self.session_id: str = ""
        self.server_flags = ServerFlags()
        self.pools: dict[str, PoolActor] = {
            r.value: PoolActor(resource(r), transport, concurrency=config.pool_size(r.value), mailbox_size=config.mailbox_factor * config.pool_size(r.value))
            for r in Resource
        }
        self.requester = ActorRequester(self.pools)
        self.poller = FuturePoller(
            self.requester,
            settings=config.poll,
            max_open_polls=config.poll.max_open_polls or config.pool_size("futures"),
            flags=lambda: self.server_flags,
        )
        self.sampling_admission = SamplingAdmission()
        self.telemetry: TelemetryBatcher
        self.heartbeat: HeartbeatActor
        self.dynamic_config: DynamicConfigRefresher | None = None  # None: the server has no dynamic config
        self._has_dynamic_config = True
        self.closing = False
        self.crashed: BaseException | None = None

    # --- the internal API ----------------------------------------------------
    async def request(self, res: Resource | str, method: str, path: str, **kwargs: Any) -> Any:
        """One HTTP request through the resource's pool actor."""
        if self.closing:
            raise ServiceClosedError("the service is closing")
        if self.heartbeat.expired.is_set():
            raise SessionExpiredError(
                f"session {self.session_id} has expired; open a new ServiceClient and resume from your last checkpoint (or journal)"
            )
        return await self.requester.request(resource(res), method, path, **kwargs)

    def new_sequencer(self, model_id: str, *, first_seq_id: int = 1) -> TrainingSequencer:
        return TrainingSequencer(model_id, first_seq_id=first_seq_id)

    @property
    def health(self) -> SessionHealth:
        return self.heartbeat.health

    def pool_statistics(self, res: Resource | str) -> PoolStatistics:
        return self.pools[str(Resource(str(res)))].statistics()

    def statistics(self) -> ServiceStatistics:
        return ServiceStatistics(
            pools={name: pool.statistics() for name, pool in self.pools.items()},
            poller=self.poller.statistics(),
            telemetry=self.telemetry.statistics(),
            admission=self.sampling_admission.statistics(),
            health=self.health,
        )

    # --- start-up ------------------------------------------------------------
    async def _start_up(self) -> None:
        cfg = self.config
        version = {"sdk_version": cfg.sdk_version}
        flags: dict[str, Any] = {}
        try:
            flags.update(await _json_call(self._transport, Resource.SESSION, "/api/v1/client/config", version))
        except NotFoundError:
            log.warning("client_config_unavailable", fallback="defaults")
        try:
            dynamic = await _json_call(self._transport, Resource.SESSION, "/api/v1/client/dynamic_config", version, timeout=10, max_retries=0)
            # as on every refresh: only the dynamic fields, so it cannot override client/config
            flags.update({k: v for k, v in dynamic.items() if k in DYNAMIC_FIELDS})
        except NotFoundError:  # older servers lack it; the SDK falls back to defaults too
            self._has_dynamic_config = False
            log.info("dynamic_config_unavailable", fallback="defaults")
        except Exception as exc:  # a transient failure: defaults now, the refresher tries again
            log.info("dynamic_config_unavailable", error=repr(exc))
        self.server_flags, unreadable = ServerFlags.read(flags)
        if unreadable:
            log.warning("server_flags_unreadable", fields=unreadable, fallback="defaults for these")
        body: dict[str, Any] = {"tags": list(cfg.tags), "user_metadata": dict(cfg.user_metadata), "sdk_version": cfg.sdk_version, "type": "create_session"}
        if cfg.project_id:
            body["project_id"] = cfg.project_id
        if cfg.display_name:
            body["display_name"] = cfg.display_name
        reply = await _json_call(self._transport, Resource.SESSION, "/api/v1/create_session", body)
        session_id = reply.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise ResponseDecodeError(
                f"the answer has no session_id string (keys: {', '.join(sorted(reply))[:200] or 'none'})",
                endpoint="POST /api/v1/create_session", content_type="application/json", status=200,
            )
        self.session_id = session_id
        for key, level in (("info_message", "info"), ("warning_message", "warning"), ("error_message", "error")):
            if reply.get(key):
                getattr(log, level)("session_message", session_id=self.session_id, message=reply[key])
        f = self.server_flags
        max_concurrent = f.sample_max_concurrent_requests
        if cfg.sampling_max_concurrent is not None:
            max_concurrent = min(max_concurrent, cfg.sampling_max_concurrent)
        self.sampling_admission.configure(max_concurrent=max_concurrent, byte_budget=f.sample_dispatch_bytes_semaphore_size)
        self.poller._bytes.set_limits(None, f.inflight_response_bytes_semaphore_size)

    def _build_session_actors(self) -> None:
        cfg = self.config
        self.heartbeat = HeartbeatActor(
            self._transport,
            self.session_id,
            interval=cfg.heartbeat_interval,
            timeout=cfg.heartbeat_timeout,
            warn_after_failures=cfg.heartbeat_warn_after_failures,
            warn_after_s=cfg.heartbeat_warn_after_s,
            dead_after_s=cfg.session_dead_after_s,
        )
        self.heartbeat.on_expired(lambda exc: self.poller.fail_all(exc))
        self.telemetry = TelemetryBatcher(
            self._transport,
            session_id=self.session_id,
            sdk_version=cfg.sdk_version,
            enabled=cfg.telemetry,
            max_queue=cfg.telemetry_queue_size,
            batch_size=cfg.telemetry_batch_size,
            flush_interval=cfg.telemetry_flush_interval,
            secrets=(cfg.api_key,),
        )
        if self._has_dynamic_config:
            self.dynamic_config = DynamicConfigRefresher(
                self._transport,
                sdk_version=cfg.sdk_version,
                get_flags=lambda: self.server_flags,
                set_flags=lambda flags: setattr(self, "server_flags", flags),
            )

    async def _supervise(self, nursery: trio.Nursery, name: str, actor_fn: Any, on_crash: Any = None) -> None:
        async def guarded(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await run_supervised(actor_fn, name=name, policy=self.config.restart_policy, on_crash=on_crash, task_status=task_status)
            except ActorCrashedError as exc:
                self.crashed = exc
                raise

        await nursery.start(guarded)

    # --- shut-down -----------------------------------------------------------
    async def _wait_pools_idle(self) -> None:
        for pool in self.pools.values():
            await pool.wait_idle()

    async def _shut_down(self, reason: str, detail: str | None) -> None:
        cfg = self.config
        self.closing = True
        with trio.CancelScope(shield=True):
            deadline = trio.current_time() + cfg.close_grace
            self.poller.fail_all(ServiceClosedError("the service closed before this future finished"))
            if reason == "success":
                with trio.move_on_at(deadline):
                    await self._wait_pools_idle()
            if self.session_id and not self.heartbeat.expired.is_set():
                with trio.move_on_at(min(deadline, trio.current_time() + 10)):
                    try:
                        await self._transport.request(
                            resource(Resource.SESSION),
                            "POST",
                            f"/api/v1/sessions/{self.session_id}/finish",
                            json={"reason": {"type": reason}, "detail": detail},
                            options=options(timeout=10, total_retry_timeout=10),
                        )
                    except NotFoundError:
                        log.info("session_finish_unavailable", session_id=self.session_id)
                    except Exception as exc:
                        log.warning("session_finish_failed", session_id=self.session_id, error=repr(exc))
            await self.telemetry.close(max(0.0, deadline - trio.current_time()))
            for pool in self.pools.values():
                pool.mailbox.close(ServiceClosedError("the service closed"))


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _close_reason(exc: BaseException, crashed: BaseException | None) -> str:
    if crashed is not None:
        return "errored"
    leaves = _leaves(exc)
    if all(isinstance(e, (trio.Cancelled, KeyboardInterrupt)) for e in leaves):
        return "interrupted"
    return "errored"


async def _open_transport(config: ServiceConfig) -> Any:
    from ..transport import PoolLimits, Transport
    from ..transport.retry import RetryPolicy

    known = {k: v for k, v in config.pool_limits.items() if k in PoolLimits.__struct_fields__}
    return Transport(
        config.base_url,
        config.api_key or "",
        limits=PoolLimits(**known),
        retry=RetryPolicy(max_retries=config.max_retries, total_timeout=config.retry_budget_s),
        timeout=config.request_timeout,
        connect_timeout=config.connect_timeout,
        verify=config.verify_tls,
        response_deadline=config.response_deadline,
        max_response_bytes=config.max_response_bytes,
    )


@asynccontextmanager
async def open_service(config: ServiceConfig | None = None, *, transport: Requester | None = None, **kwargs: Any) -> AsyncIterator[Service]:
    """Open the runtime; ``kwargs`` are ``ServiceConfig`` fields (the environment fills the rest).

    ``transport`` injects any object with the transport's ``request`` method
    (tests use fakes); it is then not opened or closed here.
    """
    if config is None:
        config = ServiceConfig.from_env(**kwargs)
    try:
        if transport is None:
            owned = await _open_transport(config)
            async with owned as opened:
                async with _run(config, opened if opened is not None else owned) as service:
                    yield service
        else:
            async with _run(config, transport) as service:
                yield service
    except BaseExceptionGroup as group:
        leaves = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


@asynccontextmanager
async def _run(config: ServiceConfig, transport: Requester) -> AsyncIterator[Service]:
    service = Service(config, transport)
    async with trio.open_nursery() as nursery:
        reason, detail = "success", None
        try:
            for name, pool in service.pools.items():
                await service._supervise(
                    nursery,
                    f"pool:{name}",
                    pool.run,
                    on_crash=lambda exc, p=pool: p.mailbox.fail_in_flight(ActorCrashedError(f"pool actor crashed: {exc!r}", actor=f"pool:{p.resource}")),
                )
            await service._start_up()
            service._build_session_actors()
            await service._supervise(nursery, "poller", service.poller.run)
            await service._supervise(nursery, "heartbeat", service.heartbeat.run)
            await service._supervise(nursery, "telemetry", service.telemetry.run)
            if service.dynamic_config is not None:
                await service._supervise(nursery, "dynamic_config", service.dynamic_config.run)
            service.telemetry.session_start()
            log.info("service_open", session_id=service.session_id, base_url=config.base_url)
            yield service
        except BaseException as exc:
            reason = _close_reason(exc, service.crashed)
            detail = f"{type(exc).__name__}: {exc}"[:500] if reason == "errored" else None
            if reason == "errored" and not isinstance(exc, ActorCrashedError) and service.session_id:
                service.telemetry.log_exception(exc)
            raise
        finally:
            if service.session_id:
                await service._shut_down(reason, detail)
            log.info("service_closed", session_id=service.session_id, reason=reason)
            nursery.cancel_scope.cancel()
