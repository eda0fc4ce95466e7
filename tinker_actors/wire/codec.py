"""The JSON entry points: one shared encoder, one cached typed decoder per type.

The transport calls ``encode(body)`` for every JSON request and
``decoder(T).decode(bytes)`` (or ``decode(T, bytes)``) for every JSON answer.
Errors are msgspec's own (``msgspec.DecodeError`` for bad JSON,
``msgspec.ValidationError`` for a body of the wrong shape); the caller maps
them to its errors (``ResponseDecodeError`` on the client,
a 400/422 on the server).

numpy arrays (and numpy scalars) inside Structs encode as flat JSON lists,
float NaN as null, and ``TopkLogprobs`` as the SDK's list-of-pairs rows.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import msgspec
import numpy as np

from .tensor_data import TopkLogprobs, topk_to_lists

__all__ = ["encode", "decoder", "decode", "to_builtins"]

T = TypeVar("T")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.ravel().tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, TopkLogprobs):
        return topk_to_lists(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__} as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode(obj: Any) -> bytes:
    """JSON bytes of a wire Struct (or any msgspec-encodable value)."""
    return _encoder.encode(obj)


@functools.cache
def decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    """A cached ``msgspec.json.Decoder`` for ``type_``."""
    return msgspec.json.Decoder(type_)


def decode(type_: type[T], data: bytes | str) -> T:
    """Decode JSON bytes as ``type_`` (raises msgspec.DecodeError / ValidationError)."""
    return decoder(type_).decode(data)  # type: ignore[no-any-return]


def to_builtins(obj: Any) -> Any:
    """Plain dicts/lists, as the JSON body would parse (for logging and tests)."""
    return msgspec.json.decode(encode(obj))
