"""Client CPU per request through the transport, at 1, 50 and 500 concurrent callers.

    /work/venv/bin/python benchmarks/transport_cpu.py [--requests 3000]

A trivial JSON endpoint runs under uvicorn in a child process on 127.0.0.1, so
the client's CPU (``time.process_time`` of this process) is measured alone. Each
variant sends the same number of requests through 100 connections:

* ``httpcore``      raw ``httpcore.AsyncConnectionPool``: the floor
* ``httpx-1``       one ``httpx.AsyncClient`` of 100 connections, no gate (DESIGN.md's case)
* ``httpx-1+gate``  the same client behind a FIFO CapacityLimiter(100)
* ``pool/S``        ``transport.Pool`` (gate + clients of at most S connections)
* ``transport``     the whole ``Transport.request`` (headers, retry loop, JSON decode)

Not part of the test suite: it takes tens of seconds and needs both cores.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpcore
import httpx
import trio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tinker_actors.transport import PoolLimits, ResourceType, Transport  # noqa: E402
from tinker_actors.transport.pool import Pool  # noqa: E402

CONNECTIONS = 100
BODY = b'{"type":"session_heartbeat"}'


async def app(scope, receive, send):  # a minimal ASGI app (lifespan answered: see DESIGN.md)
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                backlog=4096, limit_concurrency=None, timeout_keep_alive=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


Send = Callable[[], Awaitable[None]]


async def drive(send: Send, concurrency: int, requests: int) -> tuple[float, float]:
    """Run ``requests`` calls from ``concurrency`` callers; return (cpu s, wall s)."""
    remaining = requests

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await send()

    # warm-up: open the connections this concurrency will use
    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, CONNECTIONS)):
            nursery.start_soon(send)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(caller)
    return time.process_time() - cpu0, time.perf_counter() - wall0


async def run_httpcore(url: str, concurrency: int, requests: int) -> tuple[float, float]:
    async with httpcore.AsyncConnectionPool(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS) as pool:
        async def send() -> None:
            r = await pool.request("POST", url, headers=[(b"content-type", b"application/json")], content=b"{}")
            assert r.status == 200
        return await drive(send, concurrency, requests)


async def run_httpx(url: str, concurrency: int, requests: int, gate: bool) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    limiter = trio.CapacityLimiter(CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        async def send() -> None:
            if gate:
                async with limiter:
                    r = await client.post(url, content=b"{}")
            else:
                r = await client.post(url, content=b"{}")
            assert r.status_code == 200
        return await drive(send, concurrency, requests)


async def run_pool(url: str, concurrency: int, requests: int, shard: int) -> tuple[float, float]:
    async with Pool(ResourceType.SAMPLING, CONNECTIONS, shard_size=shard) as pool:
        async def send() -> None:
            request = httpx.Request("POST", url, content=b"{}")
            response, _ = await pool.send(request)
            assert response.status_code == 200
        return await drive(send, concurrency, requests)


async def run_transport(base: str, concurrency: int, requests: int) -> tuple[float, float]:
    limits = PoolLimits(sampling=CONNECTIONS)
    async with Transport(base, "tml-benchmark", limits=limits) as transport:
        async def send() -> None:
            await transport.request(ResourceType.SAMPLING, "POST", "session_heartbeat", json={"session_id": "s"})
        return await drive(send, concurrency, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 500])
    parser.add_argument("--shards", type=int, nargs="+", default=[10, 25, 100])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    port = free_port()
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(port)])
    try:
        wait_listening(port)
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/api/v1/session_heartbeat"
        variants: dict[str, Callable[[int], Awaitable[tuple[float, float]]]] = {
            "httpcore": lambda c: run_httpcore(url, c, args.requests),
            "httpx-1": lambda c: run_httpx(url, c, args.requests, gate=False),
            "httpx-1+gate": lambda c: run_httpx(url, c, args.requests, gate=True),
        }
        for shard in args.shards:
            variants[f"pool/{shard}"] = lambda c, s=shard: run_pool(url, c, args.requests, s)
        variants["transport"] = lambda c: run_transport(base, c, args.requests)

        results: dict[tuple[str, int], tuple[float, float]] = {}
        for name, run in variants.items():
            for c in args.concurrency:
                results[name, c] = trio.run(run, c)
                cpu, wall = results[name, c]
                print(f"  {name:<13} c={c:<4} {cpu / args.requests * 1e3:6.3f} ms CPU/req  "
                      f"{args.requests / wall:7.0f} req/s", file=sys.stderr)

        floor = results["httpcore", args.concurrency[0]][0] / args.requests
        cols = args.concurrency
        print(f"\nclient CPU per request (ms), {args.requests} requests, {CONNECTIONS} connections, "
              f"server: uvicorn in another process")
        header = "| variant | " + " | ".join(f"c={c}" for c in cols) + " | " + " | ".join(
            f"c={c} / c={cols[0]}" for c in cols[1:]) + f" | c={cols[-1]} / httpcore c={cols[0]} |"
        print(header)
        print("|" + "---|" * (1 + 2 * len(cols)))
        for name in variants:
            per = [results[name, c][0] / args.requests for c in cols]
            ratios = [p / per[0] for p in per[1:]]
            print(f"| {name} | " + " | ".join(f"{p * 1e3:.3f}" for p in per) + " | "
                  + " | ".join(f"{r:.2f}" for r in ratios) + f" | {per[-1] / floor:.2f} |")
        print("\nthroughput (req/s)")
        for name in variants:
            print(f"| {name} | " + " | ".join(f"{args.requests / results[name, c][1]:.0f}" for c in cols) + " |")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
