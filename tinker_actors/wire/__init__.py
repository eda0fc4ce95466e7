"""The wire layer: every body the Tinker protocol carries, and how it is encoded.

* ``wire.types`` (re-exported here): msgspec Structs for every JSON body, under
  the official SDK's class and field names, encoding to exactly the JSON the
  SDK's ``model_dump(mode="json", exclude_none=True)`` gives.
* ``wire.codec``: ``encode(obj)``, ``decoder(T)`` / ``decode(T, data)`` -- the
  only JSON entry points (the transport uses them).
* ``wire.futures.classify_future_response``: tells retrieve_future answers
  apart (the runtime's poller uses it).
* ``wire.protobuf``: protobuf bodies both ways (forward_backward requests,
  ForwardBackwardOutput and SampleResponse results); ``wire.tensors``: numpy
  <-> proto tensors; ``wire.compression``: zstd bodies. The local server uses
  the Structs and these conversions to speak the protocol.
* ``wire.validate``: boundary checks raising ``errors.ValidationError``.

Imports point down only: this package imports numpy, msgspec and protobuf,
never transport/runtime/clients/server.
"""

from __future__ import annotations

from . import types as _types
from .codec import decode, decoder, encode
from .types import *  # noqa: F403

__all__ = [*_types.__all__, "encode", "decoder", "decode"]
