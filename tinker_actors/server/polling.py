"""Futures from the client's side: long polls (single and batched), cancel, and
whether a future can still be collected (idempotency asks)."""

from __future__ import annotations

from typing import Any

import anyio

from .. import wire
from ._state import ServerState, visible
from .futures import Future, FutureState, Lookup
from .http import ApiError, bad, dumps


class Polling(ServerState):
    """``retrieve_future`` long polls, batched ``retrieve_futures``, ``cancel_future``."""

    def future_is_gone(self, request_id: str) -> bool:
        """True when nobody can collect this future's result any more.

        Expired or swept (410), unknown (issued before a restart), cancelled,
        or failed on the server's side: a resend with its idempotency key
        deserves fresh work rather than this id.
        """
        fut = self.futures.get(request_id)
        if not isinstance(fut, Future):
            return True
        if fut.state == FutureState.CANCELLED:
            return True
        return fut.state == FutureState.FAILED and fut.category == "server"

    def lookup_future(self, request_id: str) -> Future:
        fut = self.futures.get(request_id)
        if fut is Lookup.EXPIRED and visible(self.futures.expired_tenant(request_id)):
            self.stats.faults["future_expired"] += 1
            raise ApiError(410, f"future {request_id!r} has expired")
        if not isinstance(fut, Future) or not visible(fut.tenant):
            raise ApiError(404, f"unknown future {request_id!r}")
        return fut

    async def retrieve_future(self, req: wire.FutureRetrieveRequest, accept: str) -> tuple[bytes, str]:
        """Long-poll one future; returns (body, content type)."""
        fut = self.lookup_future(req.request_id)
        if not fut.finished:
            self.stats.long_poll_started()
            try:
                await self.futures.wait(fut, self.config.long_poll_timeout_s)
            finally:
                self.stats.long_poll_ended()
        fut = self.lookup_future(fut.request_id)  # may have expired meanwhile
        if not fut.finished:
            out: dict[str, Any] = {"type": "try_again", "request_id": fut.request_id, "queue_state": fut.queue_state}
            if fut.queue_state_reason:
                out["queue_state_reason"] = fut.queue_state_reason
            return dumps(out), "application/json"
        if fut.result is None:
            err = {"error": fut.error or "failed", "category": fut.category}
            self.futures.mark_retrieved(fut)
            return dumps(err), "application/json"
        result = fut.result
        kind = "proto" if result.proto and "application/x-protobuf" in accept else "json"
        if result.proto and not self.inline and not result.encoded(kind):
            # encoding a large numpy result is real work: keep it off the loop
            payload = await anyio.to_thread.run_sync(result.body, kind)
        else:
            payload = result.body(kind)
        if req.allow_metadata_only and len(payload) > self.config.metadata_threshold_bytes:
            meta = {"status": "complete_metadata", "response_payload_size": len(payload)}
            return dumps(meta), "application/json"
        self.futures.mark_retrieved(fut)
        return payload, ("application/x-protobuf" if kind == "proto" else "application/json")

    async def retrieve_futures(self, req: wire.FuturesRetrieveRequest) -> dict[str, Any]:
        sid = req.target.sampling_session_id
        self._sampler_rec(sid)
        key = f"{sid}#{req.target.cloned_sampler_id}"
        cursor = req.prev_cursor
        if cursor < 0:
            raise bad("prev_cursor: must be a non-negative integer")
        timeout = req.timeout
        wait_s = self.config.futures_batch_timeout_s if timeout is None else min(timeout, self.config.futures_batch_timeout_s)
        if wait_s > 0:
            self.stats.long_poll_started()
            try:
                await self.futures.wait_completion(key, cursor, wait_s)
            finally:
                self.stats.long_poll_ended()
        done, new_cursor = self.futures.completions_since(key, cursor)
        completions: list[dict[str, Any]] = []
        for fut in done:
            if fut.result is not None:
                item: dict[str, Any] = {"state": "finished", "request_id": fut.request_id}
                completions.append(item)
            else:
                completions.append({"state": "failed", "request_id": fut.request_id})
        return {"completions": completions, "cursor": new_cursor}

    def cancel_future(self, req: wire.CancelFutureRequest) -> dict[str, Any]:
        fut = self.lookup_future(req.request_id)
        if fut.request_type != "Sample":
            raise bad("only sampling futures can be cancelled")
        self.futures.cancel(fut)
        return {}
