"""Helpers for the local-server tests: the app in-process over httpx.ASGITransport."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from tinker_actors.server import ServerConfig, create_app

HEADERS = {"X-API-Key": "tml-test"}
BASE = "tinker-actors/byte-lm-tiny"
# what the SDK sends to create_session (tags and sdk_version are required)
SESSION_BODY = {"tags": [], "user_metadata": {}, "sdk_version": "t", "type": "create_session"}


@contextlib.asynccontextmanager
async def open_app(config: ServerConfig) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(config)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://local", headers=HEADERS) as client:
            yield app, client


async def new_session(client: httpx.AsyncClient) -> str:
    r = await client.post("/api/v1/create_session", json=SESSION_BODY)
    assert r.status_code == 200, r.text
    return r.json()["session_id"]


async def result(client: httpx.AsyncClient, request_id: str, *, accept: str = "application/json", metadata: bool = False) -> httpx.Response:
    """Poll retrieve_future until it answers something other than try_again."""
    # bounded by real time: under an autojump clock a long poll may time out at
    # once while the compute thread still works
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = await client.post(
            "/api/v1/retrieve_future",
            json={"request_id": request_id, "allow_metadata_only": metadata},
            headers={"Accept": accept},
        )
        if r.status_code != 200 or "protobuf" in r.headers["content-type"] or r.json().get("type") != "try_again":
            return r
    raise AssertionError("future never finished")


async def new_model(client: httpx.AsyncClient, sid: str, seq: int = 0, rank: int = 4) -> str:
    r = await client.post(
        "/api/v1/create_model",
        json={"session_id": sid, "model_seq_id": seq, "base_model": BASE, "lora_config": {"rank": rank}, "type": "create_model"},
    )
    assert r.status_code == 200, r.text
    out = await result(client, r.json()["request_id"])
    assert out.json()["model_id"] == f"{sid}:train:{seq}"
    return out.json()["model_id"]


def fb_body(model_id: str, seq_id: int, text: bytes = b"hello world") -> dict[str, Any]:
    toks = list(text)
    return {
        "model_id": model_id,
        "seq_id": seq_id,
        "type": "forward_backward",
        "forward_backward_input": {
            "loss_fn": "cross_entropy",
            "data": [
                {
                    "model_input": {"chunks": [{"type": "encoded_text", "tokens": toks[:-1]}]},
                    "loss_fn_inputs": {
                        "target_tokens": {"data": toks[1:], "dtype": "int64", "shape": [len(toks) - 1]},
                        "weights": {"data": [1.0] * (len(toks) - 1), "dtype": "float32", "shape": [len(toks) - 1]},
                    },
                }
            ],
        },
    }
