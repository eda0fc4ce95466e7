"""Undoing a response's Content-Encoding in bounded steps, under a size cap.

A few KiB of gzip or zstd can claim gigabytes. Decoding the whole body at
once (as httpx's decoders do) would build all of it before the size could be
checked, so each step here produces at most ``STEP`` bytes and the total is
checked as it grows: a body over the cap stops with :class:`TooLarge` having
held about cap + ``STEP`` bytes. We ask for gzip, deflate and zstd
(``Accept-Encoding``); an encoding we did not ask for is left as it is, as
httpx does, and the decoder that reads the body then reports it.
"""

from __future__ import annotations

import io
import zlib

import zstandard

__all__ = ["inflate", "TooLarge", "BadEncoding", "STEP"]

STEP = 1 << 20  # bytes of output per step


class TooLarge(Exception):
    """The decoded body passed the cap; ``size`` is how much was decoded when it stopped."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(size)


class BadEncoding(Exception):
    """The body is not valid for its Content-Encoding."""


def _zlib(data: bytes, wbits: int, cap: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out: list[bytes] = []
    size = 0
    pending = data
    while True:
        # at most STEP bytes out; input that would make more waits in unconsumed_tail
        piece = inflater.decompress(pending, STEP)
        size += len(piece)
        if size > cap:
            raise TooLarge(size)
        out.append(piece)
        pending = inflater.unconsumed_tail
        if inflater.eof or (not pending and not piece):
            break  # bytes after the end of the stream are ignored, as zlib and httpx do
    return b"".join(out)


def _gzip(data: bytes, cap: int) -> bytes:
    return _zlib(data, 16 + zlib.MAX_WBITS, cap)


def _deflate(data: bytes, cap: int) -> bytes:
    # "deflate" is zlib-wrapped by the RFC, raw deflate in practice as often
    try:
        return _zlib(data, zlib.MAX_WBITS, cap)
    except zlib.error:
        return _zlib(data, -zlib.MAX_WBITS, cap)


def _zstd(data: bytes, cap: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    out: list[bytes] = []
    size = 0
    while piece := reader.read(STEP):
        size += len(piece)
        if size > cap:
            raise TooLarge(size)
        out.append(piece)
    return b"".join(out)


_DECODERS = {"gzip": _gzip, "x-gzip": _gzip, "deflate": _deflate, "zstd": _zstd}


def inflate(encoding: str, content: bytes, cap: int | None) -> bytes:
    """``content`` with ``encoding`` undone (last applied first), never more than ``cap`` bytes."""
    limit = cap if cap is not None else 1 << 62
    for name in reversed([part.strip().lower() for part in encoding.split(",") if part.strip()]):
        decode = _DECODERS.get(name)
        if decode is None:
            continue  # identity, or one we never asked for
        try:
            content = decode(content, limit)
        except TooLarge:
            raise
        except (zlib.error, zstandard.ZstdError) as exc:
            raise BadEncoding(f"{name}: {exc}") from None
    return content
