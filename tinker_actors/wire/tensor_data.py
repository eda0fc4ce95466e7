"""TensorData: a tensor as it crosses the wire, and the top-k matrices.

Representation (the one place to read about it):

* ``TensorData.data`` holds *either* a flat Python list (what a JSON decode
  gives, or what a caller passed) *or* a numpy array (what ``from_numpy`` and
  every protobuf decode give; there it is an ``np.frombuffer`` view over the
  message bytes, read-only, no copy). Code that wants numbers calls
  ``to_numpy()``, which returns a view whenever the data already is an array
  of the right dtype; JSON encoding flattens arrays through the codec's hook,
  so both forms encode to the SDK's ``{"data":[...],"dtype":...}``.
* ``sparse_crow_indices``/``sparse_col_indices`` likewise hold a list or an
  int64 array. A CSR tensor lists only some cells; ``to_numpy(pad_value)``
  densifies it.
* Equality compares values (dtype, shape, layout and numbers), not the
  container, so a list-backed and an array-backed tensor can be equal.

``TopkLogprobs`` is the pair of dense ``(length, k)`` matrices of the SDK;
padding cells are ``(0, MASK_LOGPROB)``. It is not a Struct: when a response
holding one is JSON-encoded, the codec writes the SDK's list form
``[[[token, logprob], ...] | null, ...]``.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence, TypeAlias

import msgspec
import numpy as np
import numpy.typing as npt

from ._base import WireStruct

__all__ = [
    "TensorDtype",
    "TensorData",
    "TopkLogprobs",
    "MASK_LOGPROB",
    "numpy_dtype",
    "tensor_dtype_of",
    "topk_to_lists",
    "topk_from_lists",
]

TensorDtype: TypeAlias = Literal["int64", "float32"]

MASK_LOGPROB = -99999.0

_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype(np.float32),
    "int64": np.dtype(np.int64),
}


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The numpy dtype of a wire dtype name."""
    try:
        return _NUMPY_DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unsupported tensor dtype {dtype!r}") from None


def tensor_dtype_of(dtype: np.dtype[Any]) -> TensorDtype:
    """The wire dtype a numpy dtype travels as (floats -> float32, signed ints -> int64)."""
    if dtype.kind == "f":
        return "float32"
    if dtype.kind == "i":
        return "int64"
    raise ValueError(f"unsupported numpy dtype {dtype}")


class TensorData(WireStruct, frozen=True, kw_only=True, eq=False):
    """A dense or CSR-sparse tensor: flat ``data`` plus ``dtype`` and ``shape``."""

    data: list[int | float]
    dtype: TensorDtype
    shape: list[int] | None = None
    sparse_crow_indices: list[int] | None = None
    sparse_col_indices: list[int] | None = None

    def __post_init__(self) -> None:
        # The SDK casts arrays to the declared dtype on construction; do the
        # same so the protobuf encoder can ship the buffer as is. Lists (what
        # JSON decoding gives) pass through untouched.
        data = self.data
        if isinstance(data, np.ndarray):
            want = numpy_dtype(self.dtype)
            if data.dtype != want:
                msgspec.structs.force_setattr(self, "data", data.astype(want))

    @classmethod
    def from_numpy(cls, array: npt.ArrayLike) -> TensorData:
        """Wrap an array (no copy when it is already float32/int64)."""
        arr = np.asarray(array)
        return cls(data=arr, dtype=tensor_dtype_of(arr.dtype), shape=list(arr.shape))

    @classmethod
    def from_list(cls, values: Sequence[Any], dtype: TensorDtype) -> TensorData:
        """Build from a (possibly nested, rectangular) list with an explicit dtype."""
        arr = np.asarray(values, dtype=numpy_dtype(dtype))
        return cls(data=arr, dtype=dtype, shape=list(arr.shape))

    @property
    def is_sparse(self) -> bool:
        return self.sparse_crow_indices is not None

    def values(self) -> npt.NDArray[Any]:
        """The listed values as a flat array of this dtype (a view when possible)."""
        arr = np.asarray(self.data, dtype=numpy_dtype(self.dtype))
        return arr.reshape(-1) if arr.ndim != 1 else arr

    def to_numpy(self, pad_value: int | float = 0) -> npt.NDArray[Any]:
        """The dense array; CSR cells that are not listed take ``pad_value``."""
        vals = self.values()
        if self.sparse_crow_indices is None:
            if self.shape is not None and list(vals.shape) != list(self.shape):
                return vals.reshape(self.shape)
            return vals
        if self.shape is None or len(self.shape) != 2 or self.sparse_col_indices is None:
            raise ValueError("a CSR tensor needs a 2-D shape and column indices")
        crow = np.asarray(self.sparse_crow_indices, dtype=np.int64)
        col = np.asarray(self.sparse_col_indices, dtype=np.int64)
        nrows, ncols = self.shape
        dense = np.full((nrows, ncols), pad_value, dtype=vals.dtype)
        rows = np.repeat(np.arange(nrows), np.diff(crow))
        dense[rows, col] = vals
        return dense

    def tolist(self, pad_value: int | float = 0) -> list[Any]:
        return self.to_numpy(pad_value).tolist()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorData):
            return NotImplemented
        if self.dtype != other.dtype or _as_list(self.shape) != _as_list(other.shape):
            return False
        if _as_list(self.sparse_crow_indices) != _as_list(other.sparse_crow_indices):
            return False
        if _as_list(self.sparse_col_indices) != _as_list(other.sparse_col_indices):
            return False
        return bool(np.array_equal(self.values(), other.values(), equal_nan=self.dtype == "float32"))

    __hash__ = None  # type: ignore[assignment]


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return np.asarray(value).tolist() if isinstance(value, np.ndarray) else list(value)


class TopkLogprobs:
    """Top-k (token id, logprob) pairs per position as two ``(length, k)`` matrices."""

    __slots__ = ("token_ids", "logprobs")

    def __init__(self, token_ids: npt.ArrayLike, logprobs: npt.ArrayLike) -> None:
        self.token_ids = np.asarray(token_ids, dtype=np.int32)
        self.logprobs = np.asarray(logprobs, dtype=np.float32)
        if self.token_ids.shape != self.logprobs.shape or self.token_ids.ndim != 2:
            raise ValueError("token_ids and logprobs must be matrices of one shape")

    @property
    def length(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def k(self) -> int:
        return int(self.token_ids.shape[1])

    def to_lists(self) -> list[list[tuple[int, float]] | None]:
        return topk_to_lists(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TopkLogprobs):
            return NotImplemented
        return bool(
            np.array_equal(self.token_ids, other.token_ids)
            and np.array_equal(self.logprobs, other.logprobs, equal_nan=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TopkLogprobs(length={self.length}, k={self.k})"


def topk_to_lists(topk: TopkLogprobs) -> list[list[tuple[int, float]] | None]:
    """Rows as lists of pairs; trailing padding dropped, an all-padding row is None."""
    n, k = topk.token_ids.shape
    if n == 0 or k == 0:
        return []
    ids = topk.token_ids.tolist()
    lps = topk.logprobs.tolist()
    out: list[list[tuple[int, float]] | None] = []
    for row_ids, row_lps in zip(ids, lps):
        end = k
        while end > 0 and row_ids[end - 1] == 0 and row_lps[end - 1] == MASK_LOGPROB:
            end -= 1
        out.append(list(zip(row_ids[:end], row_lps[:end])) if end else None)
    return out


def topk_from_lists(rows: Sequence[Sequence[Sequence[float]] | None], k: int | None = None) -> TopkLogprobs:
    """Pack list rows (None rows allowed) into padded matrices."""
    if k is None:
        k = max((len(r) for r in rows if r is not None), default=0)
    ids = np.zeros((len(rows), k), dtype=np.int32)
    lps = np.full((len(rows), k), MASK_LOGPROB, dtype=np.float32)
    for i, row in enumerate(rows):
        for j, pair in enumerate(row or ()):
            ids[i, j] = int(pair[0])
            lps[i, j] = float(pair[1])
    return TopkLogprobs(ids, lps)
