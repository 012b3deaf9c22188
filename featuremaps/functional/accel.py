"""Optional compiled kernels (numba) for the work around the GEMMs; results are bit-identical.

The NumPy path is the definition. The kernels only replace steps that move or select values
(max-pool over tiling windows and its gradient routing, the row windows of the conv input
gradient) or do element-wise arithmetic (the row adds of that gradient, tanh's backward, the
plain-momentum SGD update) with exactly the NumPy code's operations in its order, so every result
is bit-for-bit the same; the GEMMs stay with NumPy's BLAS either way. tests/test_accel.py checks
that identity on random shapes, and `bench/train_mnist.py` measures what it is worth.

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

__all__ = ["numba_available", "numba_enabled", "use_numba", "numba_disabled"]

_state: dict = {"tried": False, "kernels": None,
                "on": os.environ.get("FEATUREMAPS_NUMBA", "1").strip().lower() not in ("0", "false", "no", "off")}


def _compile():
    """The kernels module (compiled lazily), or None when numba is missing."""
    if not _state["tried"]:
        _state["tried"] = True
        try:
            from . import _kernels  # imports numba
        except ImportError:
            _state["kernels"] = None
        else:
            _state["kernels"] = _kernels
    return _state["kernels"]


def numba_available() -> bool:
    """True when numba can be imported (the `fast` extra is installed)."""
    return _compile() is not None


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


def kernels():
    """The compiled kernels when they are to be used, else None (take the NumPy path)."""
    return _compile() if _state["on"] else None


def kernels_or_compile():
    """The compiled kernels, switch or no switch: for a backward pass whose forward used them."""
    return _compile()
