"""``serve`` on a real socket: it reports its port and tears down cleanly when cancelled."""

from __future__ import annotations

import httpx
import trio
from server_helpers import HEADERS, SESSION_BODY

from tinker_actors.server import ServerConfig, serve


async def test_cancelled_serve_tears_down_without_errors(data_dir) -> None:
    # Cancelled with keep-alive connections open and a long poll in flight, the
    # nursery must exit with nothing but the cancellation (no OSError from a
    # socket closed twice, no lifespan failure), twice in a row.
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, ServerConfig(data_dir=data_dir, null_compute=True))
            client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=HEADERS)
            r = await client.post("/api/v1/create_session", json=SESSION_BODY)
            assert r.status_code == 200
            sid = r.json()["session_id"]
            r = await client.post("/api/v1/create_sampling_session", json={"session_id": sid, "sampling_session_seq_id": 0, "base_model": "tinker-actors/byte-lm-tiny"})
            target = {"sampling_session_id": r.json()["sampling_session_id"]}

            async def long_poll() -> None:
                try:
                    await client.post("/api/v1/retrieve_futures", json={"target": target, "prev_cursor": 0})
                except httpx.TransportError:
                    pass  # the server went away under it: expected

            nursery.start_soon(long_poll)
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
        await client.aclose()
        # the port is free again: a new server can bind it
        async with trio.open_nursery() as nursery:
            again = await nursery.start(serve, ServerConfig(data_dir=data_dir, port=port))
            assert again == port
            nursery.cancel_scope.cancel()
