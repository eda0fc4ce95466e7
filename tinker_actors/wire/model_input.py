"""ModelInput and its chunks (protocol §4), tagged on ``type``.

Chunk tags are ``encoded_text``, ``image``, ``image_asset_pointer`` and
``dmel``. ``bytes`` fields (image data, dmel) are base64 in JSON, as in the
SDK. ``EncodedTextChunk.tokens`` may hold a list or an int array (the
protobuf decoder gives an int32 view); both encode to a JSON list.
"""

from __future__ import annotations

from typing import Literal, Sequence, TypeAlias

import numpy as np

from ._base import WireStruct

__all__ = [
    "EncodedTextChunk",
    "ImageChunk",
    "ImageAssetPointerChunk",
    "DmelChunk",
    "ModelInputChunk",
    "ModelInput",
    "dmel_shape",
]

ImageFormat: TypeAlias = Literal["png", "jpeg"]


class EncodedTextChunk(WireStruct, frozen=True, kw_only=True, eq=False, tag_field="type", tag="encoded_text"):
    tokens: list[int]

    @property
    def length(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncodedTextChunk):
            return NotImplemented
        return bool(np.array_equal(np.asarray(self.tokens), np.asarray(other.tokens)))

    __hash__ = None  # type: ignore[assignment]


class ImageChunk(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="image"):
    data: bytes
    format: ImageFormat
    expected_tokens: int | None = None

    @property
    def length(self) -> int:
        if self.expected_tokens is None:
            raise ValueError("ImageChunk needs expected_tokens to know its length")
        return self.expected_tokens


class ImageAssetPointerChunk(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="image_asset_pointer"):
    format: ImageFormat
    location: str
    expected_tokens: int | None = None

    @property
    def length(self) -> int:
        if self.expected_tokens is None:
            raise ValueError("ImageAssetPointerChunk needs expected_tokens to know its length")
        return self.expected_tokens


class DmelChunk(WireStruct, frozen=True, kw_only=True, tag_field="type", tag="dmel"):
    dmel: bytes

    @property
    def length(self) -> int:
        shape = dmel_shape(self.dmel)
        if not shape:
            raise ValueError("dmel tensor has no dimension 0")
        return shape[0]


ModelInputChunk: TypeAlias = EncodedTextChunk | ImageChunk | ImageAssetPointerChunk | DmelChunk


class ModelInput(WireStruct, frozen=True, kw_only=True):
    """A prompt or training input: a list of chunks."""

    chunks: list[ModelInputChunk]

    @classmethod
    def from_ints(cls, tokens: Sequence[int]) -> ModelInput:
        return cls(chunks=[EncodedTextChunk(tokens=list(tokens))])

    @classmethod
    def empty(cls) -> ModelInput:
        return cls(chunks=[])

    def to_ints(self) -> list[int]:
        """All tokens; raises ValueError when a chunk is not text."""
        out: list[int] = []
        for chunk in self.chunks:
            if not isinstance(chunk, EncodedTextChunk):
                raise ValueError(f"to_ints needs text chunks only, found {type(chunk).__name__}")
            out.extend(int(t) for t in chunk.tokens)
        return out

    @property
    def length(self) -> int:
        return sum(chunk.length for chunk in self.chunks)

    def append(self, chunk: ModelInputChunk) -> ModelInput:
        return ModelInput(chunks=[*self.chunks, chunk])

    def append_int(self, token: int) -> ModelInput:
        return self.append(EncodedTextChunk(tokens=[token]))


# A dmel payload is a serialized TensorContainer whose header is:
# [254 (constant-tensor marker)]? dtype-byte ndim-varint dim-varint*.
_CONSTANT_MARKER = 254
_MAX_DTYPE_BYTE = 7


def dmel_shape(data: bytes) -> tuple[int, ...]:
    """Read the tensor shape from a dmel TensorContainer header."""
    if not data:
        raise ValueError("dmel payload is empty")
    pos = 1 if data[0] == _CONSTANT_MARKER else 0
    if pos >= len(data) or data[pos] > _MAX_DTYPE_BYTE:
        raise ValueError("dmel payload has no valid dtype byte")
    pos += 1
    ndim, pos = _varint(data, pos)
    dims = []
    for _ in range(ndim):
        dim, pos = _varint(data, pos)
        dims.append(dim)
    return tuple(dims)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("dmel header is truncated")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("dmel header varint is too long")
