"""``Content-Encoding: zstd`` bodies (the SDK compresses forward_backward when
the server's ``proto_compress_fwdbwd`` flag is on)."""

from __future__ import annotations

import io

import zstandard

__all__ = ["ZSTD", "compress", "decompress", "DEFAULT_MAX_SIZE"]

ZSTD = "zstd"
DEFAULT_MAX_SIZE = 1 << 30  # a body that inflates past 1 GiB is refused, not buffered


def compress(body: bytes, *, level: int = 3) -> bytes:
    """zstd frame of ``body`` (content size recorded in the frame header)."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(body)


def decompress(body: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Inflate a zstd body; raises ValueError when it is corrupt or bigger than ``max_size``."""
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)) as reader:
            out = reader.read(max_size + 1)
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt zstd body: {exc}") from None
    if len(out) > max_size:
        raise ValueError(f"zstd body inflates past {max_size} bytes")
    return out
