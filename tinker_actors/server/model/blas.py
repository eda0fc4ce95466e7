"""Keep numpy's BLAS single-threaded in the server process.

Measured on the 2-core CI box with other work running: a 512x64 @ 64x264
float32 matmul takes ~0.15 ms with one OpenBLAS thread and ~8 ms with two
(the threads spin against each other). The model's matrices are small, so
one thread is always the faster choice. Environment variables cannot help once
numpy is loaded, so this reaches OpenBLAS's own setter through ctypes; it is
best effort and does nothing when the BLAS is not a bundled OpenBLAS.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

__all__ = ["limit_blas_threads"]

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def limit_blas_threads(threads: int = 1) -> bool:
    """Set the bundled OpenBLAS thread count; True when a setter was found."""
    libs_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs_dir, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter(int(threads))
                return True
    return False
