"""Reading a request body with bounded memory and bounded time.

:func:`read_body` is the one place a request body enters the server:

* the raw body is capped at ``max_bytes`` (413) and must arrive within
  ``Limits.body_timeout_s``, with no gap longer than ``body_idle_timeout_s``
  (408, and the connection is closed: a client that sends half a body no
  longer holds a connection for minutes);
* ``Content-Encoding: gzip | deflate | zstd`` bodies are inflated in bounded
  steps of ``_STEP`` bytes, yielding to the event loop between steps, and
  refused with 413 as soon as the output passes the inflated cap
  (``Limits.inflated_cap``, by default the body limit itself). A decompression
  bomb therefore costs at most the cap in memory and never stalls other
  requests. zstd frames asking for a window above ``_ZSTD_MAX_WINDOW`` are
  refused before the decoder allocates it.
"""

from __future__ import annotations

import io
import zlib
from typing import Any, Awaitable, Callable

import anyio
import anyio.lowlevel

from .http import ApiError, bad

__all__ = ["ClientGone", "read_body", "inflate", "replay_receive"]

_STEP = 1 << 20  # inflate at most this much before letting other requests run
_ZSTD_MAX_WINDOW = 1 << 23  # 8 MiB; the SDK's level-3 frames use 2 MiB or less


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is no one to answer."""


async def read_body(
    receive: Callable[[], Awaitable[dict[str, Any]]],
    *,
    max_bytes: int,
    idle_timeout_s: float,
    total_timeout_s: float,
) -> bytes:
    """The raw body from ASGI ``receive``: 413 past ``max_bytes``, 408 when it stalls."""
    chunks: list[bytes] = []
    size = 0
    deadline = anyio.current_time() + total_timeout_s
    while True:
        wait = min(idle_timeout_s, deadline - anyio.current_time())
        with anyio.move_on_after(max(wait, 0)) as scope:
            message = await receive()
        if scope.cancelled_caught:
            total = "" if wait >= idle_timeout_s else f" (the whole body must arrive within {total_timeout_s:g} s)"
            raise ApiError(
                408,
                f"request body incomplete after {size} bytes: nothing arrived for {max(wait, 0):g} s{total}",
                headers={"connection": "close"},
            )
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body exceeds the limit of {max_bytes} bytes", headers={"connection": "close"})
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def inflate(body: bytes, encoding: str, cap: int) -> bytes:
    """``body`` decoded per ``Content-Encoding``; 413 past ``cap`` bytes, 400 when corrupt, 415 when unknown."""
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        return await _inflate_zlib(body, 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS, encoding, cap)
    if encoding == "zstd":
        return await _inflate_zstd(body, cap)
    raise ApiError(415, f"unsupported Content-Encoding {encoding[:40]!r}: use gzip, deflate or zstd")


def _too_big(cap: int, encoding: str) -> ApiError:
    return ApiError(413, f"{encoding} request body inflates past the limit of {cap} bytes")


async def _inflate_zlib(body: bytes, wbits: int, encoding: str, cap: int) -> bytes:
    out: list[bytes] = []
    size = 0
    pending = body
    try:
        while pending:
            d = zlib.decompressobj(wbits)
            data = pending
            # past the end marker the rest of the input is unused_data (and
            # zlib keeps echoing it in unconsumed_tail: stop at eof)
            while data and not d.eof:
                piece = d.decompress(data, min(_STEP, cap - size + 1))
                size += len(piece)
                if size > cap:
                    raise _too_big(cap, encoding)
                out.append(piece)
                data = d.unconsumed_tail
                await anyio.lowlevel.checkpoint()
            tail = d.flush()  # output still inside the window (at most 32 KiB)
            size += len(tail)
            if size > cap:
                raise _too_big(cap, encoding)
            out.append(tail)
            if not d.eof:
                raise bad(f"request body is not valid {encoding}: it ends before its end marker")
            # gzip allows several members back to back; anything else is trailing junk
            pending = d.unused_data if wbits > zlib.MAX_WBITS else b""
            if d.unused_data and wbits <= zlib.MAX_WBITS:
                raise bad(f"request body is not valid {encoding}: data after the end marker")
    except zlib.error as exc:
        raise bad(f"request body is not valid {encoding}: {exc}") from None
    return b"".join(out)


async def _inflate_zstd(body: bytes, cap: int) -> bytes:
    import zstandard

    out: list[bytes] = []
    size = 0
    try:
        dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        with dctx.stream_reader(io.BytesIO(body), read_across_frames=True) as reader:
            while True:
                piece = reader.read(min(_STEP, cap - size + 1))
                if not piece:
                    break
                size += len(piece)
                if size > cap:
                    raise _too_big(cap, "zstd")
                out.append(piece)
                await anyio.lowlevel.checkpoint()
    except zstandard.ZstdError as exc:
        raise bad(f"request body is not valid zstd: {exc}") from None
    return b"".join(out)


def replay_receive(body: bytes, receive: Callable[[], Awaitable[dict[str, Any]]]) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI ``receive`` that hands out ``body`` once, then waits on the real one (disconnect)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
