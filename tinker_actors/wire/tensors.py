"""numpy <-> protobuf tensors (``Tensor``, ``BatchedTensor``).

Decoding never goes through Python lists: dense data and CSR parts become
``np.frombuffer`` views over the message's bytes (read-only). Only the
widenings the protocol asks for copy: bfloat16 -> float32 and int32 -> int64,
so every decoded tensor carries one of the two public dtypes. Encoding writes
little-endian bytes of the declared dtype.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from .proto import tinker_public_pb2 as pb
from .tensor_data import TensorData, TensorDtype, numpy_dtype

__all__ = [
    "DTYPE_TO_PROTO",
    "tensor_to_proto",
    "tensor_from_proto",
    "batched_from_proto",
    "batched_to_proto",
    "le_bytes",
]

DTYPE_TO_PROTO: dict[str, int] = {"float32": pb.DTYPE_FLOAT32, "int64": pb.DTYPE_INT64}

# proto dtype -> (dtype of the bytes, public dtype label)
_FROM_PROTO: dict[int, tuple[np.dtype[Any], TensorDtype]] = {
    pb.DTYPE_FLOAT32: (np.dtype("<f4"), "float32"),
    pb.DTYPE_INT64: (np.dtype("<i8"), "int64"),
    pb.DTYPE_INT32: (np.dtype("<i4"), "int64"),
    pb.DTYPE_BFLOAT16: (np.dtype("<u2"), "float32"),
}


def le_bytes(values: Any, dtype: str) -> bytes:
    """Little-endian bytes of ``values`` as ``dtype`` (a numpy dtype string)."""
    return np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def _widen(raw: npt.NDArray[Any], proto_dtype: int) -> npt.NDArray[Any]:
    if proto_dtype == pb.DTYPE_BFLOAT16:
        # bfloat16 is the top half of a float32: shift into place and reinterpret.
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if proto_dtype == pb.DTYPE_INT32:
        return raw.astype(np.int64)
    return raw


def _source_dtype(proto_dtype: int) -> tuple[np.dtype[Any], TensorDtype]:
    try:
        return _FROM_PROTO[proto_dtype]
    except KeyError:
        raise ValueError(f"unsupported protobuf tensor dtype {proto_dtype}") from None


def tensor_to_proto(td: TensorData, msg: Any | None = None) -> Any:
    """Write ``td`` into ``msg`` (a new ``Tensor`` when None) and return it."""
    msg = pb.Tensor() if msg is None else msg
    try:
        msg.dtype = DTYPE_TO_PROTO[td.dtype]
    except KeyError:
        raise ValueError(f"unsupported tensor dtype {td.dtype!r}") from None
    values = td.values()
    if td.shape is not None:
        msg.shape.extend(int(s) for s in td.shape)
    elif not td.is_sparse:
        msg.shape.append(int(values.size))
    wire = "<f4" if td.dtype == "float32" else "<i8"
    if td.is_sparse:
        if td.sparse_col_indices is None:
            raise ValueError("sparse_col_indices is required with sparse_crow_indices")
        msg.sparse_csr.values = le_bytes(values, wire)
        msg.sparse_csr.crow_indices = le_bytes(td.sparse_crow_indices, "<i8")
        msg.sparse_csr.col_indices = le_bytes(td.sparse_col_indices, "<i8")
    else:
        msg.dense = le_bytes(values, wire)
    return msg


def tensor_from_proto(msg: Any) -> TensorData:
    """A TensorData whose arrays are views over ``msg``'s bytes (CSR stays CSR)."""
    src, dtype = _source_dtype(msg.dtype)
    shape = [int(s) for s in msg.shape]
    if msg.WhichOneof("encoding") == "sparse_csr":
        csr = msg.sparse_csr
        return TensorData(
            data=_widen(np.frombuffer(csr.values, dtype=src), msg.dtype),
            dtype=dtype,
            shape=shape,
            sparse_crow_indices=np.frombuffer(csr.crow_indices, dtype="<i8"),
            sparse_col_indices=np.frombuffer(csr.col_indices, dtype="<i8"),
        )
    data = _widen(np.frombuffer(msg.dense, dtype=src), msg.dtype)
    if shape and int(np.prod(shape)) != data.size:
        raise ValueError(f"tensor shape {shape} does not match its {data.size} values")
    return TensorData(data=data, dtype=dtype, shape=shape)


def batched_from_proto(bt: Any) -> tuple[TensorDtype, list[int], list[npt.NDArray[Any]]]:
    """Split a BatchedTensor into per-datum flat arrays (views unless widened)."""
    src, dtype = _source_dtype(bt.dtype)
    offsets = np.frombuffer(bt.offsets, dtype="<i8")
    raw = np.frombuffer(bt.data, dtype=src)
    buf = _widen(raw, bt.dtype)
    item = src.itemsize
    if offsets.size and (
        int(offsets[-1]) > raw.nbytes or np.any(np.diff(offsets) < 0) or np.any(offsets % item)
    ):
        raise ValueError("BatchedTensor offsets do not fit its data")
    # Offsets count bytes of the wire dtype; widening keeps the element count.
    bounds = (offsets // item).tolist()
    parts = [buf[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
    return dtype, [int(s) for s in bt.trailing_shape], parts


def batched_to_proto(arrays: Sequence[npt.NDArray[Any]], dtype: TensorDtype, trailing_shape: Sequence[int], msg: Any | None = None) -> Any:
    """Concatenate per-datum arrays of one dtype into a BatchedTensor."""
    msg = pb.BatchedTensor() if msg is None else msg
    wire = numpy_dtype(dtype).newbyteorder("<")
    flat = [np.ascontiguousarray(a, dtype=wire).reshape(-1) for a in arrays]
    sizes = np.array([0, *(a.nbytes for a in flat)], dtype=np.int64)
    msg.data = b"".join(a.tobytes() for a in flat)
    msg.offsets = le_bytes(np.cumsum(sizes), "<i8")
    msg.dtype = DTYPE_TO_PROTO[dtype]
    msg.trailing_shape.extend(int(s) for s in trailing_shape)
    return msg
