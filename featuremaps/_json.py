"""`jsonable`: any nesting of dicts, lists, tuples, NumPy arrays and scalars as plain JSON types.

One home for the conversion that layer configs (`nn`), explanations (`inspect`), the report and the
CLI's `--json` output all need. It imports only NumPy, so every layer of the package can use it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["jsonable"]

_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def jsonable(value: Any, *, nonfinite: str = "name") -> Any:
    """`value` with dicts (keys as str), lists (from lists, tuples and ndarrays), bools, ints and
    floats as plain Python types, recursively; NumPy scalars become Python scalars. Anything else
    (str, None, a Path, ...) is returned as is.

    JSON has no NaN or infinity. `nonfinite="name"` (the default) writes them as the strings "NaN",
    "Infinity" and "-Infinity" (which JavaScript's `Number()` reads back); `nonfinite="null"` as None.
    """
    if nonfinite not in ("name", "null"):
        raise ValueError(f"jsonable: nonfinite must be 'name' or 'null'; received {nonfinite!r}")
    return _convert(value, nonfinite == "name")


def _convert(v: Any, names: bool) -> Any:
    if isinstance(v, dict):
        return {str(k): _convert(x, names) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_convert(x, names) for x in v]
    if isinstance(v, np.ndarray):
        return _convert(v.tolist(), names)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isfinite(v):
            return v
        return _NAMES[repr(v)] if names else None
    return v
