"""The floor: the fewest requests the protocol allows, sent with httpcore on trio.

No retries, no validation, no pools to scan: every worker task owns one
HTTP/1.1 keep-alive connection (``httpcore.AsyncHTTPConnection``) and sends
pre-built bytes. A sample is one ``asample`` and then ``retrieve_future`` long
polls with ``allow_metadata_only: false`` until the protobuf result arrives
(one poll when the server answers within its long-poll window). Nothing is
decoded beyond the request id. This is the cost of the protocol itself, the
number no client can beat.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Awaitable, Callable

from .. import measure
from . import common, openloop

_JSON = (b"content-type", b"application/json")
_ACCEPT_PROTO = (b"accept", b"application/x-protobuf")
_PROTO_CT = b"application/x-protobuf"
_PROTO_BODY = (b"content-type", _PROTO_CT)


class FloorError(RuntimeError):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection; ``post`` returns (status, content type, body)."""

    def __init__(self, base_url: str, api_key: str):
        import httpcore

        scheme, rest = base_url.split("://", 1)
        host, port = rest.rstrip("/").split(":")
        self._httpcore = httpcore
        self._origin = httpcore.Origin(scheme.encode(), host.encode(), int(port))
        self._conn = httpcore.AsyncHTTPConnection(origin=self._origin)
        self._host = f"{host}:{port}".encode()
        self._key = api_key.encode()

    async def post(self, path: bytes, body: bytes, accept_proto: bool = False,
                   content_type: tuple[bytes, bytes] = _JSON) -> tuple[int, bytes, bytes]:
        headers = [(b"host", self._host), (b"x-api-key", self._key), content_type]
        if accept_proto:
            headers.append(_ACCEPT_PROTO)
        url = self._httpcore.URL(scheme=self._origin.scheme, host=self._origin.host, port=self._origin.port, target=path)
        resp = await self._conn.request(b"POST", url, headers=headers, content=body)
        ctype = b""
        for name, value in resp.headers:
            if name.lower() == b"content-type":
                ctype = value
                break
        return resp.status, ctype, resp.content

    async def aclose(self) -> None:
        await self._conn.aclose()


async def _post_json(conn: Conn, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    status, _, body = await conn.post(b"/api/v1/" + path.encode(), json.dumps(obj).encode())
    if status != 200:
        raise FloorError(f"{path}: HTTP {status}: {body[:200]!r}")
    return json.loads(body)


async def wait_future(conn: Conn, request_id: str) -> bytes:
    """Long-poll one future until its result; returns the raw result body."""
    poll = b'{"request_id":"%s","allow_metadata_only":false}' % request_id.encode()
    while True:
        status, ctype, body = await conn.post(b"/api/v1/retrieve_future", poll, accept_proto=True)
        if status == 200 and ctype.startswith(_PROTO_CT):
            return body
        if status not in (200, 408):
            raise FloorError(f"retrieve_future: HTTP {status}: {body[:200]!r}")
        obj = json.loads(body)
        if "error" in obj:
            raise FloorError(f"future failed: {obj['error']}")
        if obj.get("type") == "try_again" or obj.get("status") == "complete_metadata":
            continue
        return body  # a JSON result


class Session:
    """Session and sampling session, made once before any timed phase."""

    def __init__(self, conn: Conn):
        self.conn = conn
        self.session_id = ""
        self.sampling_session_id = ""

    async def open(self, sampler: bool = True) -> "Session":
        out = await _post_json(
            self.conn, "create_session",
            {"tags": [], "user_metadata": {}, "sdk_version": "floor", "type": "create_session"},
        )
        self.session_id = out["session_id"]
        if sampler:
            out = await _post_json(
                self.conn, "create_sampling_session",
                {"session_id": self.session_id, "sampling_session_seq_id": 0,
                 "base_model": common.BASE_MODEL, "type": "create_sampling_session"},
            )
            self.sampling_session_id = out["sampling_session_id"]
        return self

    def sample_bodies(self, n: int) -> list[bytes]:
        return [common.sample_body_json(self.sampling_session_id, i) for i in range(n)]


async def sample_once(conn: Conn, body: bytes) -> bytes:
    status, _, data = await conn.post(b"/api/v1/asample", body)
    if status != 200:
        raise FloorError(f"asample: HTTP {status}: {data[:200]!r}")
    return await wait_future(conn, json.loads(data)["request_id"])


async def _workers(base_url: str, api_key: str, k: int, bodies: list[bytes],
                   each: Callable[[Conn, bytes], Awaitable[Any]]) -> None:
    """k tasks, one connection each, taking bodies in order until none are left."""
    import trio

    it = iter(bodies)

    async def worker() -> None:
        conn = Conn(base_url, api_key)
        try:
            for body in it:
                await each(conn, body)
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(k):
            nursery.start_soon(worker)


# -- scenarios ---------------------------------------------------------------
async def sampling(base_url: str, api_key: str, p: dict[str, Any]) -> dict[str, Any]:
    setup = Conn(base_url, api_key)
    sess = await Session(setup).open()
    await setup.aclose()
    bodies = sess.sample_bodies(p["n"])
    phase = measure.Phase().start()
    await _workers(base_url, api_key, p["in_flight"], bodies, sample_once)
    phase.stop()
    return phase.figures(p["n"])


def _fb_body(model_id: str, seq_id: int) -> bytes:
    return common.forward_backward_proto(model_id, seq_id)


def _optim_body(model_id: str, seq_id: int) -> bytes:
    return json.dumps({"model_id": model_id, "seq_id": seq_id, "type": "optim_step",
                       "adam_params": common.ADAM}).encode()


async def _training_setup(conn: Conn) -> str:
    sess = await Session(conn).open(sampler=False)
    out = await _post_json(conn, "create_model", common.create_model_body(sess.session_id))
    result = await wait_future(conn, out["request_id"])
    return out.get("model_id") or json.loads(result)["model_id"]


async def _step(fb_conn: Conn, opt_conn: Conn, model_id: str, step: int,
                probe: Callable[[], Awaitable[None]] | None = None) -> None:
    """fb POST, then optim POST at once, then both results (pipelined, two connections)."""
    import trio

    seq = 2 * step + 1
    status, _, data = await fb_conn.post(b"/api/v1/forward_backward", _fb_body(model_id, seq),
                                         content_type=_PROTO_BODY)
    if status != 200:
        raise FloorError(f"forward_backward: HTTP {status}: {data[:200]!r}")
    fb_id = json.loads(data)["request_id"]
    opt = await _post_json(opt_conn, "optim_step", json.loads(_optim_body(model_id, seq + 1)))
    if probe is not None:
        await probe()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_future, fb_conn, fb_id)
        nursery.start_soon(wait_future, opt_conn, opt["request_id"])


async def training(base_url: str, api_key: str, p: dict[str, Any]) -> dict[str, Any]:
    fb_conn, opt_conn = Conn(base_url, api_key), Conn(base_url, api_key)
    model_id = await _training_setup(fb_conn)
    steps = measure.Latencies()
    phase = measure.Phase().start()
    for step in range(p["steps"]):
        t = time.perf_counter()
        await _step(fb_conn, opt_conn, model_id, step)
        steps.add(time.perf_counter() - t)
    phase.stop()
    await fb_conn.aclose()
    await opt_conn.aclose()
    return {**phase.figures(p["steps"]), "step": steps.summary_ms()}


async def pipeline(base_url: str, api_key: str, p: dict[str, Any]) -> dict[str, Any]:
    import trio

    fb_conn, opt_conn = Conn(base_url, api_key), Conn(base_url, api_key)
    model_id = await _training_setup(fb_conn)
    probe = common.PipelineProbe(base_url, trio.sleep)
    for step in range(p["steps"]):
        await _step(fb_conn, opt_conn, model_id, step, probe=lambda: probe.check(p["probe_after_s"]))
    await fb_conn.aclose()
    await opt_conn.aclose()
    return probe.figures()


async def scale(base_url: str, api_key: str, p: dict[str, Any]) -> dict[str, Any]:
    """All n requests exist at once as pre-built bodies; a fixed set of workers drains them."""
    setup = Conn(base_url, api_key)
    sess = await Session(setup).open()
    await setup.aclose()
    rss0 = measure.rss_bytes()
    phase = measure.Phase().start()
    bodies = sess.sample_bodies(p["n"])
    queued_rss = measure.rss_bytes()
    await _workers(base_url, api_key, p["workers"], bodies, sample_once)
    phase.stop()
    return {**phase.figures(p["n"]), **common.scale_figures(rss0, queued_rss, p["n"]),
            "drained": p["n"], "drain_s": phase.wall_s, "projected_drain_s": phase.wall_s}


async def first_request(base_url: str, api_key: str) -> None:
    conn = Conn(base_url, api_key)
    sess = await Session(conn).open()
    await sample_once(conn, sess.sample_bodies(1)[0])
    await conn.aclose()


class _Target:
    """One asample + long polls per request, on an idle keep-alive connection (a new one when none is idle)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url, self.api_key = base_url, api_key
        self.idle: list[Conn] = []
        self.seq = 0

    async def setup(self) -> None:
        conn = Conn(self.base_url, self.api_key)
        self.session = await Session(conn).open()
        self.idle.append(conn)

    async def _one(self, body: bytes) -> None:
        conn = self.idle.pop() if self.idle else Conn(self.base_url, self.api_key)
        await sample_once(conn, body)
        self.idle.append(conn)

    def issue(self, i: int) -> Any:
        self.seq += 1
        return self._one(common.sample_body_json(self.session.sampling_session_id, self.seq))


def target(base_url: str, api_key: str) -> Any:
    @contextlib.asynccontextmanager
    async def open_target() -> Any:
        t = _Target(base_url, api_key)
        try:
            yield t
        finally:
            for conn in t.idle:
                await conn.aclose()

    return open_target


def run(scenario: str, base_url: str, api_key: str, params: dict[str, Any]) -> dict[str, Any]:
    if scenario == "openloop":
        return openloop.run(target(base_url, api_key), params)
    if scenario == "startup":
        t0 = time.perf_counter()
        import httpcore  # noqa: F401
        import trio

        t1 = time.perf_counter()
        trio.run(first_request, base_url, api_key)
        t2 = time.perf_counter()
        return common.startup_figures(t0, t1, t2)
    import trio

    fn = {"sampling": sampling, "training": training,
          "pipeline": pipeline, "scale": scale}[scenario]
    return trio.run(fn, base_url, api_key, params)

