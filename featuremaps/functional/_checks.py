"""Argument checks shared by the functional ops."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor


def floating(a, name: str, op: str):
    """`a` as an ndarray or Tensor with a floating dtype, or a TypeError naming `op` and `name`."""
    if not isinstance(a, Tensor):
        a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must have a floating dtype; received {a.dtype}")
    return a
