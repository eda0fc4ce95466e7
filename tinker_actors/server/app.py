"""The ASGI app: routes over :class:`~.service.LocalServer`.

A raw ASGI wrapper (:class:`Gate`) sits in front of the routes and does what
every request shares: counting, the API-key check, the body-size limit,
injected faults, reading the body (bounded in size and time, inflated in
steps: ``body``), ``X-Idempotency-Key`` replay, and turning an unexpected
exception into a logged 500 with a request id. Routes with a fixed path
(every hot one: asample, retrieve_future, forward_backward, ...) are found
in one dict lookup; only the REST routes with ids in the path go through
Starlette's router, whose linear regex scan cost more than the rest of the
request on the sample path. Starlette also answers the lifespan protocol,
and the lifespan owns the server's task group.

JSON bodies are decoded with the wire Structs (``wire.decoder(T)``); the
forward_backward protobuf body with ``wire.protobuf``.

Dropped connections: to drop a connection the gate starts a response that
promises a body (``content-length``) and then raises, so the server (hypercorn
or uvicorn) aborts the connection mid-response; the client sees a transport
error, never an HTTP status.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
import urllib.parse
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._log import get_logger
from .. import wire
from ..errors import ValidationError
from ..wire import protobuf as wpb
from . import admin, engine, tenancy
from .body import ClientGone, inflate, read_body, replay_receive
from .config import ServerConfig
from .faults import DroppedConnection, LoadShedder, answer_fault, deferred_send, fault_config_from_json, shed_load
from .http import ApiError, bad, decode_body, json_response
from .idempotency import fingerprint, response_request_id
from .limits import LimitError, check_body
from .service import LocalServer
from .storage import BadPath

log = get_logger(__name__)

API = "/api/v1"
# Non-GET routes whose answers are not replayed by idempotency key: polls and
# fire-and-forget traffic, whose answer depends on when they are asked.
_NO_REPLAY = {"retrieve_future", "retrieve_futures", "session_heartbeat", "telemetry", "_local"}


FORWARD_BODY = wire.ForwardRequest | wire.ForwardBackwardRequest
# methods whose body the gate reads (bounded, timed, inflated) before routing
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY = "tinker_actors.body"  # the scope key holding it
# links that carry their own signature instead of an API key
_SIGNED_LINKS = ("/_local/archive/", "/_local/files/", "/_local/trace/")

_route_names: dict[str, str] = {}


def route_name(path: str) -> str:
    """A stable label for counters (cached: a client asks few distinct paths)."""
    name = _route_names.get(path)
    if name is None:
        name = _route_name(path)
        if len(_route_names) > 4096:
            _route_names.clear()
        _route_names[path] = name
    return name


def _route_name(path: str) -> str:
    """The endpoint, ids replaced by their role."""
    if not path.startswith(API + "/"):
        return "_local" if path.startswith("/_local") else "other"
    parts = path[len(API) + 1 :].split("/")
    head = parts[0]
    if head == "client" and len(parts) > 1:
        return f"client/{parts[1]}"
    if head == "training_runs":
        if len(parts) == 1:
            return "training_runs"
        if len(parts) == 2:
            return "training_runs/{run}"
        if len(parts) == 3:
            return "training_runs/{run}/checkpoints"
        tail = parts[5] if len(parts) > 5 else ""
        return "checkpoint" + (f"/{tail}" if tail else "")
    if head == "sessions":
        if len(parts) == 1:
            return "sessions"
        if parts[1] == "search":
            return "sessions/search"
        return "sessions/{sid}" + (f"/{parts[2]}" if len(parts) > 2 else "")
    if head == "samplers":
        return "samplers/{id}"
    return head


# Routes that queue work behind a future: shed with 429 when the queue is full.
_SUBMITS = frozenset({
    "asample", "forward", "forward_backward", "optim_step", "save_weights", "save_weights_for_sampler",
    "save_weights_external", "load_weights", "create_model", "unload_model",
})


class Gate:
    """Shared per-request policy in front of the Starlette router."""

    def __init__(self, inner: Callable[..., Awaitable[None]], server: LocalServer):
        self.inner = inner
        self.server = server
        self.shedder = LoadShedder(server.config.max_pending_futures, server.config.shed_retry_after_s)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        token = tenancy.current.set(None)  # _handle sets the key's tenant once it is checked
        try:
            await self._handle(scope, receive, tracking_send)
        except DroppedConnection:
            raise
        except Exception:
            # A bug, not the client's fault: log it with an id the client also
            # gets, answer 500, keep serving. Past the response start the only
            # honest signal left is the aborted connection.
            request_id = f"srv-{uuid.uuid4().hex[:16]}"
            log.exception(
                "local_server.unhandled_error",
                request_id=request_id,
                method=scope.get("method"),
                route=route_name(scope.get("path", "")),
            )
            if started:
                raise
            self.server.stats.statuses["500"] += 1
            body = {"detail": f"internal server error (request id {request_id})", "request_id": request_id}
            await json_response(body, status=500, headers={"x-request-id": request_id})(scope, receive, send)
        finally:
            tenancy.current.reset(token)

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        srv = self.server
        path: str = scope["path"]
        name = route_name(path)
        method: str = scope["method"]
        srv.stats.requests[name] += 1
        # ASGI servers deliver header names lowercased
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            if not path.startswith(_SIGNED_LINKS) and path != f"{API}/healthz":
                tenancy.current.set(self._check_key(headers.get("x-api-key")))
            length = headers.get("content-length")
            if length is not None and length.isascii() and length.isdigit() and int(length) > srv.config.max_body_bytes:
                raise ApiError(413, f"request body of {length} bytes exceeds the limit of {srv.config.max_body_bytes}")
        except ApiError as exc:
            srv.stats.statuses[str(exc.status)] += 1
            await exc.response()(scope, receive, send)
            return
        if name in _SUBMITS and (wait := self.shedder.retry_after(srv.futures.pending, srv.futures.finished)):
            await shed_load(wait, srv.stats, scope, receive, send)
            return
        after = None
        if name != "_local" and not path.startswith("/_local") and srv.faults.config.any_request_faults():
            fault = srv.faults.for_request(name)
            if fault.slow_s:
                srv.stats.faults["slow"] += 1
                await anyio.sleep(fault.slow_s)
            forget = srv.futures.forget if name == "retrieve_future" else None
            if await answer_fault(fault, srv.faults.config, srv.stats, scope, receive, send, forget_future=forget):
                return
            if fault.kind in ("lost", "timeout"):
                send, after = deferred_send(fault, srv.faults.config, srv.stats, send)
        if method in _BODY_METHODS:
            try:
                body = await self._read_body(headers, receive)
            except ClientGone:
                return  # nobody is left to answer
            except ApiError as exc:
                srv.stats.statuses[str(exc.status)] += 1
                await exc.response()(scope, receive, send)
                return
            scope[BODY] = body
            receive = replay_receive(body, receive)
        await self._serve(scope, receive, send, name, method, headers)
        if after is not None:
            await after()

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any, name: str, method: str, headers: dict[str, str]) -> None:
        """Run the request, or replay the answer recorded for its ``X-Idempotency-Key``."""
        key = headers.get("x-idempotency-key")
        if method == "GET" or not key or name in _NO_REPLAY:
            await self._run(scope, receive, send)
            return
        await self._run_once(key, name, scope, receive, send)

    async def _run_once(self, key: str, name: str, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the request, or replay the answer its ``X-Idempotency-Key`` already has (see ``idempotency``)."""
        srv = self.server
        cache = srv.idempotency
        limit = srv.config.limits.max_idempotency_key_chars
        if len(key) > limit:
            srv.stats.statuses["400"] += 1
            await bad(f"X-Idempotency-Key: {len(key)} characters; the limit is {limit}").response()(scope, receive, send)
            return
        fp = fingerprint(name, scope.get(BODY, b""), srv.sampler_identity)
        tenant = tenancy.current.get()
        if tenant is not None:  # one tenant's keys never meet another's
            key = f"{tenant}\0{key}"
        while (rec := cache.lookup(key)) is not None:
            if rec.fingerprint != fp:
                srv.stats.idempotency_conflicts += 1
                srv.stats.statuses["422"] += 1
                await _key_conflict(key)(scope, receive, send)
                return
            srv.stats.duplicate_idempotency_keys += 1
            await rec.done.wait()
            if not rec.ok:
                continue  # its answer was not kept: look again (another try may be running)
            if rec.request_id is not None and srv.future_is_gone(rec.request_id):
                # the answer names a future nobody can collect any more: do the work again
                srv.stats.idempotency_reruns += 1
                cache.forget(key, rec)
                break
            await send({"type": "http.response.start", "status": rec.status, "headers": rec.headers})
            await send({"type": "http.response.body", "body": rec.body})
            return
        rec = cache.begin(key, name, fp)
        captured: dict[str, Any] = {"body": []}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        keep = False
        try:
            await self._run(scope, receive, capture)
            status = captured.get("status", 500)
            # answers worth replaying: success and definite client errors
            keep = status < 500 and status not in (408, 409, 429)
            rec.status = status
            rec.headers = captured.get("headers", [])
            rec.body = b"".join(captured["body"])
            rec.request_id = response_request_id(rec.body) if status == 200 else None
        finally:
            cache.finish(key, rec, keep=keep)

    async def _read_body(self, headers: dict[str, str], receive: Any) -> bytes:
        """The whole request body, inflated, within the body and time limits (see ``body``)."""
        cfg = self.server.config
        lim = cfg.limits
        raw = await read_body(
            receive, max_bytes=cfg.max_body_bytes, idle_timeout_s=lim.body_idle_timeout_s, total_timeout_s=lim.body_timeout_s
        )
        return await inflate(raw, headers.get("content-encoding", ""), lim.inflated_cap(cfg.max_body_bytes))

    async def _run(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        statuses = self.server.stats.statuses
        self.server.stats.handled[route_name(scope["path"])] += 1

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[str(message["status"])] += 1
            await send(message)

        await self.inner(scope, receive, counting_send)

    def _check_key(self, key: str | None) -> str | None:
        """401 unless ``key`` is accepted; its tenant (None unless keys are isolated)."""
        ring = self.server.keyring
        if ring is not None:
            tenant = ring.tenant(key)
            if tenant is False:
                raise ApiError(401, "invalid API key")
            return tenant  # type: ignore[return-value]
        expected = self.server.config.api_key
        if expected is None:
            if not key or not key.startswith("tml-"):
                raise ApiError(401, "invalid API key: expected an X-API-Key starting with 'tml-'")
        elif not key or not _consteq(key, expected):
            raise ApiError(401, "invalid API key")
        return None


def _key_conflict(key: str) -> Response:
    shown = key[:12] + ("..." if len(key) > 12 else "")
    message = (
        f"X-Idempotency-Key {shown!r} was already used for a different request (another body or route); "
        "a new request needs a new key"
    )
    return ApiError(422, message, headers={"x-should-retry": "false"}).response()


def _consteq(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


# -- handler helpers -------------------------------------------------------
Handler = Callable[[Request], Awaitable[Response]]


def endpoint(fn: Callable[[Request], Awaitable[Any]]) -> Handler:
    """Turn ApiError/BadPath into status answers, dicts into JSON."""

    async def wrapped(request: Request) -> Response:
        try:
            out = await fn(request)
        except ApiError as exc:
            return exc.response()
        except (BadPath, ValidationError) as exc:
            return ApiError(400, str(exc)).response()
        if isinstance(out, Response):
            return out
        return json_response(out)

    return wrapped


async def _body(request: Request, server: LocalServer) -> bytes:
    """The request body the gate read, bounded and inflated (``body.read_body``)."""
    return request.scope.get(BODY, b"")  # type: ignore[no-any-return]


def _page(request: Request, default_limit: int) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", default_limit))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        raise bad("limit and offset must be integers") from None
    if limit < 0 or offset < 0 or limit > 10_000:
        raise bad("limit must be in [0, 10000] and offset >= 0")
    return limit, offset


def build_routes(srv: LocalServer) -> list[Route]:
    cfg = srv.config

    limits = cfg.limits

    async def jbody(request: Request, type_: type[Any]) -> Any:
        return decode_body(type_, await _body(request, srv), limits)

    def post(path: str, type_: type[Any], fn: Callable[[Any], Any], *, enabled: bool = True) -> Route:
        async def handler(request: Request) -> Any:
            if not enabled:
                raise ApiError(404, f"{path} is not available on this server")
            out = fn(await jbody(request, type_))
            if hasattr(out, "__await__"):
                out = await out
            return out

        return Route(f"{API}/{path}", endpoint(handler), methods=["POST"])

    # -- special handlers ----------------------------------------------
    async def client_config(request: Request) -> Any:
        await jbody(request, wire.ClientConfigRequest)
        return {
            "pjwt_auth_enabled": False,
            "sample_use_retrieve_futures": bool(cfg.sample_use_retrieve_futures and cfg.retrieve_futures),
            "sample_join_sampling_session": False,
            "parallel_fwdbwd_chunks": True,
            **cfg.client_config_overrides,
        }

    async def dynamic_config(request: Request) -> Any:
        if not cfg.dynamic_config:
            raise ApiError(404, "client/dynamic_config is not available on this server")
        await jbody(request, wire.ClientDynamicConfigRequest)
        return {
            "refresh_interval_sec": 300,
            "sample_cancel_enabled": bool(cfg.sample_cancel_enabled and cfg.cancel_future),
            "sample_cancel_max_batch_size": 64,
            **cfg.dynamic_config_overrides,
        }

    async def forward_backward(request: Request) -> Any:
        raw = await _body(request, srv)
        if wpb.PROTOBUF_CONTENT_TYPE in request.headers.get("content-type", ""):
            try:
                decoded = wpb.forward_backward_request_from_proto(raw)
                check_body(decoded, limits)
            except msgspec.DecodeError as exc:
                raise bad(f"request body is not a valid ForwardBackwardRequest protobuf: {exc}") from None
            except LimitError as exc:
                raise bad(f"invalid ForwardBackwardRequest: {exc}") from None
        else:
            decoded = decode_body(wire.ForwardBackwardRequest, raw, limits)
        req = engine.fb_request(decoded, limits)
        return await srv.forward_backward(req, "Forward" if req.forward_only else "ForwardBackward")

    async def forward(request: Request) -> Any:
        # a forward_backward-shaped body is accepted too, and run forward only
        req = engine.fb_request(await jbody(request, FORWARD_BODY), limits)
        req.forward_only = True
        return await srv.forward_backward(req, "Forward")

    async def asample(request: Request) -> Any:
        return await srv.asample(engine.sample_request(await jbody(request, wire.SampleRequest), limits))

    async def retrieve_future(request: Request) -> Any:
        req = await jbody(request, wire.FutureRetrieveRequest)
        payload, ctype = await srv.retrieve_future(req, request.headers.get("accept", ""))
        return Response(payload, media_type=ctype)

    async def finish(request: Request) -> Any:
        return srv.finish_session(request.path_params["sid"], await jbody(request, wire.SessionFinishRequest))

    async def set_project(request: Request) -> Any:
        srv.set_project(request.path_params["sid"], await jbody(request, wire.SetSessionProjectRequest))
        return Response(status_code=204)

    async def sessions_search(request: Request) -> Any:
        return srv.search_sessions(await jbody(request, wire.SessionSearchRequest))

    async def trace_export(request: Request) -> Any:
        sid = request.path_params["sid"]
        srv.session(sid, live=False)
        return {"status": "ready", "url": signed_url(request, f"/_local/trace/{sid}", f"trace/{sid}")}

    async def trace_download(request: Request) -> Any:
        sid = request.path_params["sid"]
        check_signed(request, f"trace/{sid}")
        return srv.trace_export(sid)

    async def sessions(request: Request) -> Any:
        if not cfg.sessions_routes:
            raise ApiError(404, "sessions routes are not available on this server")
        limit, offset = _page(request, 20)
        return srv.list_sessions(limit, offset)

    async def session_get(request: Request) -> Any:
        if not cfg.sessions_routes:
            raise ApiError(404, "sessions routes are not available on this server")
        return srv.get_session(request.path_params["sid"])

    # -- admin (server/admin.py) ------------------------------------------------------
    async def audit(request: Request) -> Any:
        q = request.query_params
        return admin.audit_log(srv, q.get("event_type"), q.get("day"))

    async def billing_events(request: Request) -> Any:
        q = request.query_params
        return admin.billing_usage(srv, q.get("starting_on"), q.get("ending_before"))

    async def storage_current(request: Request) -> Any:
        return admin.checkpoint_storage_usage(srv, request.query_params.get("project_id"))

    async def capabilities(request: Request) -> Any:
        return {"supported_models": srv.engine.supported_models()}

    async def healthz(request: Request) -> Any:
        return {"status": "ok"}

    async def telemetry(request: Request) -> Any:
        await _body(request, srv)  # accepted and dropped, unread
        return {"status": "accepted"}

    async def sampler_get(request: Request) -> Any:
        return srv.get_sampler(request.path_params["sid"])

    async def runs_list(request: Request) -> Any:
        limit, offset = _page(request, 20)
        return srv.list_runs(limit, offset)

    async def run_get(request: Request) -> Any:
        return srv.get_run(request.path_params["run"])

    async def run_checkpoints(request: Request) -> Any:
        return srv.run_checkpoints(request.path_params["run"])

    async def user_checkpoints(request: Request) -> Any:
        limit, offset = _page(request, 100)
        return srv.user_checkpoints(limit, offset)

    def ck(request: Request) -> tuple[str, str, str]:
        p = request.path_params
        return p["run"], p["kind"], p["name"]

    async def ck_delete(request: Request) -> Any:
        srv.delete_checkpoint(*ck(request))
        return Response(status_code=204)

    async def ck_publish(request: Request) -> Any:
        srv.set_public(*ck(request), public=request.method == "POST")
        return Response(status_code=204)

    async def ck_ttl(request: Request) -> Any:
        srv.set_ttl(*ck(request), await jbody(request, wire.CheckpointTtlRequest))
        return Response(status_code=204)

    def signed_url(request: Request, path: str, signed: str, expires: int | None = None) -> str:
        """An absolute link to ``path`` that works without a key until ``expires``."""
        expires = expires or int(time.time() + cfg.archive_url_ttl_s)
        return f"{str(request.base_url).rstrip('/')}{path}?expires={expires}&sig={srv.sign(signed, expires)}"

    def check_signed(request: Request, signed: str) -> None:
        q = request.query_params
        srv.check_signature(signed, q.get("expires", ""), q.get("sig", ""))

    def http_date(ts: int) -> str:
        return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts))

    async def ck_archive(request: Request) -> Any:
        run, kind, name = ck(request)
        srv.checkpoint(run, kind, name)
        expires = int(time.time() + cfg.archive_url_ttl_s)
        rel = f"/_local/archive/{urllib.parse.quote(run, safe='')}/{kind}/{name}"
        url = signed_url(request, rel, f"{run}/{kind}/{name}", expires)
        return Response(status_code=302, headers={"Location": url, "Expires": http_date(expires)})

    async def ck_external_urls(request: Request) -> Any:
        run, kind, name = ck(request)
        files = srv.external_files(run, kind, name)
        expires = int(time.time() + cfg.archive_url_ttl_s)
        base = f"/_local/files/{urllib.parse.quote(run, safe='')}/{kind}/{name}"
        urls = {f: signed_url(request, f"{base}/{f}", f"{run}/{kind}/{name}/{f}", expires) for f in files}
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        return {"urls": urls, "expires": expiry}

    async def external_file(request: Request) -> Any:
        run, kind, name = ck(request)
        fname = request.path_params["file"]
        check_signed(request, f"{run}/{kind}/{name}/{fname}")
        if fname not in srv.external_files(run, kind, name):
            raise ApiError(404, f"no file {fname!r} in this checkpoint")
        data = (srv.storage.checkpoint_dir(run, kind, name) / fname).read_bytes()
        return Response(data, media_type="application/octet-stream")

    async def archive(request: Request) -> Any:
        run, kind, name = ck(request)
        check_signed(request, f"{run}/{kind}/{name}")
        srv.checkpoint(run, kind, name)
        directory = srv.storage.checkpoint_dir(run, kind, name)

        def pack() -> bytes:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                for p in sorted(directory.rglob("*")):
                    if p.is_file() and not p.is_symlink():
                        tar.add(p, arcname=str(p.relative_to(directory)))
            return buf.getvalue()

        data = await anyio.to_thread.run_sync(pack)
        fname = f"{name}.tar.gz"
        return Response(data, media_type="application/gzip", headers={"Content-Disposition": f'attachment; filename="{fname}"'})

    async def stats(request: Request) -> Any:
        return srv.stats.snapshot()

    async def set_faults(request: Request) -> Any:
        try:
            fc = fault_config_from_json(await _body(request, srv))
        except ValueError as exc:
            raise bad(str(exc)) from None
        srv.config.faults = fc
        srv.faults.set(fc)
        return {"status": "ok"}

    async def reset_stats(request: Request) -> Any:
        srv.stats.reset()
        return {"status": "ok"}

    ckpt = f"{API}/training_runs/{{run}}/checkpoints/{{kind}}/{{name}}"
    return [
        Route(f"{API}/client/config", endpoint(client_config), methods=["POST"]),
        Route(f"{API}/client/dynamic_config", endpoint(dynamic_config), methods=["POST"]),
        post("create_session", wire.CreateSessionRequest, srv.create_session),
        post("session_heartbeat", wire.SessionHeartbeatRequest, srv.heartbeat),
        Route(f"{API}/sessions/{{sid}}/finish", endpoint(finish), methods=["POST"]),
        Route(f"{API}/sessions/{{sid}}/project", endpoint(set_project), methods=["PUT"]),
        Route(f"{API}/sessions/{{sid}}/trace_export", endpoint(trace_export), methods=["GET"]),
        Route(f"{API}/sessions/search", endpoint(sessions_search), methods=["POST"]),
        Route(f"{API}/sessions", endpoint(sessions), methods=["GET"]),
        Route(f"{API}/audit", endpoint(audit), methods=["GET"]),
        Route(f"{API}/billing/usage/events", endpoint(billing_events), methods=["GET"]),
        Route(f"{API}/billing/usage/checkpoints/current", endpoint(storage_current), methods=["GET"]),
        Route(f"{API}/sessions/{{sid}}", endpoint(session_get), methods=["GET"]),
        Route(f"{API}/get_server_capabilities", endpoint(capabilities), methods=["GET"]),
        Route(f"{API}/healthz", endpoint(healthz), methods=["GET"]),
        post("create_model", wire.CreateModelRequest, srv.create_model),
        post("get_info", wire.GetInfoRequest, srv.get_info),
        post("unload_model", wire.UnloadModelRequest, srv.unload_model),
        Route(f"{API}/forward_backward", endpoint(forward_backward), methods=["POST"]),
        Route(f"{API}/forward", endpoint(forward), methods=["POST"]),
        post("optim_step", wire.OptimStepRequest, srv.optim_step),
        post("save_weights", wire.SaveWeightsRequest, srv.save_weights),
        post("save_weights_for_sampler", wire.SaveWeightsForSamplerRequest, srv.save_weights_for_sampler),
        post("save_weights_external", wire.SaveWeightsExternalRequest, srv.save_weights_external),
        post("load_weights", wire.LoadWeightsRequest, srv.load_weights),
        post("copy_weights", wire.CopyWeightsRequest, srv.copy_weights),
        post("create_sampling_session", wire.CreateSamplingSessionRequest, srv.create_sampling_session),
        post("join_sampling_session", wire.JoinSamplingSessionRequest, srv.join_sampling_session),
        Route(f"{API}/samplers/{{sid}}", endpoint(sampler_get), methods=["GET"]),
        Route(f"{API}/asample", endpoint(asample), methods=["POST"]),
        Route(f"{API}/retrieve_future", endpoint(retrieve_future), methods=["POST"]),
        post("retrieve_futures", wire.FuturesRetrieveRequest, srv.retrieve_futures, enabled=cfg.retrieve_futures),
        post("cancel_future", wire.CancelFutureRequest, srv.cancel_future, enabled=cfg.cancel_future),
        Route(f"{API}/telemetry", endpoint(telemetry), methods=["POST"]),
        post("weights_info", wire.WeightsInfoRequest, srv.weights_info),
        Route(f"{API}/training_runs", endpoint(runs_list), methods=["GET"]),
        Route(f"{API}/training_runs/{{run}}", endpoint(run_get), methods=["GET"]),
        Route(f"{API}/training_runs/{{run}}/checkpoints", endpoint(run_checkpoints), methods=["GET"]),
        Route(f"{API}/checkpoints", endpoint(user_checkpoints), methods=["GET"]),
        Route(ckpt, endpoint(ck_delete), methods=["DELETE"]),
        Route(f"{ckpt}/publish", endpoint(ck_publish), methods=["POST", "DELETE"]),
        Route(f"{ckpt}/ttl", endpoint(ck_ttl), methods=["PUT"]),
        Route(f"{ckpt}/archive", endpoint(ck_archive), methods=["GET"]),
        Route(f"{ckpt}/external_weights_urls", endpoint(ck_external_urls), methods=["GET"]),
        Route("/_local/archive/{run}/{kind}/{name}", endpoint(archive), methods=["GET"]),
        Route("/_local/files/{run}/{kind}/{name}/{file}", endpoint(external_file), methods=["GET"]),
        Route("/_local/trace/{sid}", endpoint(trace_download), methods=["GET"]),
        Route("/_local/stats", endpoint(stats), methods=["GET"]),
        Route("/_local/stats/reset", endpoint(reset_stats), methods=["POST"]),
        Route("/_local/faults", endpoint(set_faults), methods=["POST"]),
    ]


class LocalServerApp:
    """The ASGI callable returned by :func:`create_app`; ``.server`` holds the state."""

    def __init__(self, config: ServerConfig):
        self.server = LocalServer(config)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            async with anyio.create_task_group() as tg:
                await tg.start(self.server.run)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()

        routes = build_routes(self.server)
        self.starlette = Starlette(routes=routes, lifespan=lifespan)
        # fixed paths: one dict lookup instead of the router's regex scan
        self.fixed: dict[tuple[str, str], Any] = {
            (method, r.path): r.endpoint
            for r in routes
            if "{" not in r.path
            for method in (r.methods or ())
        }
        self.gate = Gate(self.dispatch, self.server)

    async def dispatch(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = self.fixed.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if handler is None:
            await self.starlette(scope, receive, send)
            return
        scope["app"] = self.starlette  # Request.url_for and friends look here
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)

    @property
    def stats(self) -> Any:
        return self.server.stats

    def lifespan(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Run the app's lifespan directly (for in-process tests over ASGITransport)."""
        return self.starlette.router.lifespan_context(self.starlette)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.gate(scope, receive, send)


def create_app(config: ServerConfig) -> LocalServerApp:
    return LocalServerApp(config)
