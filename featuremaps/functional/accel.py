"""Optional compiled kernels (numba) for the work around the GEMMs, and fused inference kernels.

The NumPy path is the definition and the default without numba. Two kinds of kernel exist:

* **Bit-identical replacements** (`_kernels`): max-pool over tiling windows with its gradient
  routing, the row windows, row adds and col2im block adds of the conv input gradient, tanh's
  backward and the plain-momentum SGD update. Each does the NumPy code's operations in its order,
  so each step's result is bit-for-bit the same (tests/test_accel.py checks that identity). The
  conv rule (`conv_algos.phases_pays`) may still pick another dx algorithm for a strided layer when
  they are on, so two whole runs, with and without numba, agree to float rounding.
* **Reordered sums** (`_fused`, through `_direct` and `featuremaps.nn.fused`): the direct conv and
  its weight gradient (the rule's choice for few input and output maps, `_direct.pays`), and
  the fused inference plan (conv + bias + activation + max-pool). Since issue 12 the compiled path
  need not be bit-identical: it must agree with the NumPy path to float rounding, with a tolerance
  derived from the dtype and the reduction length and never looser than rtol 1e-5 (float32) /
  1e-12 (float64); tests/test_fused.py checks that, and both paths stay held to the torch oracle.
  Bit-identity remains where it is the point: resume, and one path against itself run to run.

They are used when numba is installed (`pip install 'featuremaps[fast]'`) and not switched off with
``FEATUREMAPS_NUMBA=0`` or `use_numba(False)`. They are compiled on first use (a few seconds, then
cached on disk by numba's ``cache=True``) and split the batch over two threads
(`featuremaps.functional.threads`). Tried and dropped because NumPy was as fast or faster: the
im2col copies and the channel-major row adds. `bench/train_mnist.py` and `bench/ops.py` measure
what they are worth.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import numpy as np

__all__ = ["numba_available", "numba_enabled", "use_numba", "numba_disabled", "numba_unavailable_reason"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # what the kernels are compiled for


def _on_from_env() -> bool:
    value = os.environ.get("FEATUREMAPS_NUMBA", "").strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"FEATUREMAPS_NUMBA must be 0/false/no/off or 1/true/yes/on (or unset); received {value!r}")


_on = [_on_from_env()]


@functools.cache
def _load() -> tuple:
    """(the kernels module, None), or (None, why) when numba is missing or fails to import."""
    try:
        from . import _kernels  # imports numba; each kernel compiles on its first call
    except Exception as e:  # not installed, or built for another NumPy: stay on the NumPy path
        return None, f"{type(e).__name__}: {e}"
    return _kernels, None


def loaded():
    """The kernels module whether switched on or not (for a backward whose forward used it), or None."""
    return _load()[0]


def numba_available() -> bool:
    """True when numba can be imported (the `fast` extra is installed); see `numba_unavailable_reason`."""
    return loaded() is not None


def numba_unavailable_reason() -> str | None:
    """Why the kernels cannot be used (the import error), or None when they can."""
    return _load()[1]


def numba_enabled() -> bool:
    """True when the ops use the numba kernels: numba is installed and not switched off."""
    return _on[0] and numba_available()


def use_numba(flag: bool) -> None:
    """Switch the numba kernels on (the default when numba is installed) or off (pure NumPy)."""
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"use_numba: flag must be True or False; received {flag!r}")
    _on[0] = bool(flag)


@contextlib.contextmanager
def numba_disabled() -> Iterator[None]:
    """Context manager: run the ops on the pure NumPy path inside it."""
    prev, _on[0] = _on[0], False
    try:
        yield
    finally:
        _on[0] = prev


def kernels(*arrays: np.ndarray):
    """The compiled kernels when they are to be used for `arrays` (all float32 or all float64),
    else None: take the NumPy path."""
    if not _on[0] or any(a.dtype != arrays[0].dtype or a.dtype not in _DTYPES for a in arrays):
        return None
    return loaded()
