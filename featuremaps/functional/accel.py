"""Optional compiled kernels (numba) for the work around the GEMMs; results are bit-identical.

The NumPy path is the definition. The kernels replace only two kinds of step. Some move or select
values: max-pool over tiling windows with its gradient routing (when a backward pass follows) and
the row windows of the conv input gradient. Others do element-wise arithmetic: the row adds and
col2im block adds of that gradient, tanh's backward and the plain-momentum SGD update. Each does
exactly the NumPy code's operations in its order, so every result is bit-for-bit the same. The
GEMMs stay with NumPy's BLAS either way. tests/test_accel.py checks that identity on random shapes,
and `bench/train_mnist.py` and `bench/ops.py` measure what it is worth.

They are used when numba is installed (`pip install 'featuremaps[fast]'`) and not switched off with
``FEATUREMAPS_NUMBA=0`` or `use_numba(False)`. They are compiled on first use (a few seconds, then
cached on disk) and split the batch over two threads (`featuremaps.functional.threads`). Tried and
dropped because NumPy was as fast or faster: the im2col copies and the channel-major row adds.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np

__all__ = ["numba_available", "numba_enabled", "use_numba", "numba_disabled", "numba_unavailable_reason"]

_state: dict = {"tried": False, "kernels": None,
                "on": os.environ.get("FEATUREMAPS_NUMBA", "1").strip().lower() not in ("0", "false", "no", "off")}


_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # what the kernels are compiled for


def _compile():
    """The kernels module (compiled lazily), or None when numba is missing or fails to import."""
    if not _state["tried"]:
        _state["tried"] = True
        try:
            from . import _kernels  # imports numba
        except Exception as e:  # not installed, or built for another NumPy: stay on the NumPy path
            _state["kernels"], _state["why"] = None, f"{type(e).__name__}: {e}"
        else:
            _state["kernels"] = _kernels
    return _state["kernels"]


def numba_available() -> bool:
    """True when numba can be imported (the `fast` extra is installed); see `numba_unavailable_reason`."""
    return _compile() is not None


def numba_unavailable_reason() -> str | None:
    """Why the kernels cannot be used (the import error), or None when they can."""
    return None if _compile() is not None else _state.get("why")


def numba_enabled() -> bool:
    """True when the ops use the numba kernels: numba is installed and not switched off."""
    return _state["on"] and numba_available()


def use_numba(flag: bool) -> None:
    """Switch the numba kernels on (the default when numba is installed) or off (pure NumPy)."""
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"use_numba: flag must be True or False; received {flag!r}")
    _state["on"] = bool(flag)


@contextlib.contextmanager
def numba_disabled() -> Iterator[None]:
    """Context manager: run the ops on the pure NumPy path inside it."""
    prev = _state["on"]
    _state["on"] = False
    try:
        yield
    finally:
        _state["on"] = prev


def kernels(*arrays: np.ndarray):
    """The compiled kernels when they are to be used for `arrays` (all float32 or all float64),
    else None: take the NumPy path."""
    if not _state["on"] or any(a.dtype != arrays[0].dtype or a.dtype not in _DTYPES for a in arrays):
        return None
    return _compile()


def kernels_or_compile():
    """The compiled kernels, switch or no switch: for a backward pass whose forward used them."""
    return _compile()
