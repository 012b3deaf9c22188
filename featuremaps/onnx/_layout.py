"""Per-tensor layout tags: ONNX is NCHW, featuremaps' spatial ops are NHWC.

A `Value` holds an array and whether that array is the channels-last form of a 4-D NCHW tensor.
Spatial ops and element-wise ops keep NHWC so a chain of them never transposes; a layout-sensitive
op (Reshape, Flatten, Transpose, Shape, Gather, Slice, ... and the graph outputs) asks for
`.nchw()`, the tensor as ONNX sees it.
"""
from __future__ import annotations

import numpy as np

# axis a of NCHW is axis NCHW_TO_NHWC[a] of NHWC
NCHW_TO_NHWC = (0, 3, 1, 2)


class Value:
    __slots__ = ("a", "nhwc")

    def __init__(self, a, nhwc: bool = False):
        self.a = a
        self.nhwc = bool(nhwc)

    @property
    def shape(self) -> tuple:
        """The ONNX (NCHW) shape."""
        s = self.a.shape
        return (s[0], s[3], s[1], s[2]) if self.nhwc else s

    def nchw(self) -> np.ndarray:
        if self.nhwc:
            return self.a.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        return self.a

    def channels_last(self) -> np.ndarray:
        """The 4-D tensor in NHWC (transposed once if it is held as NCHW)."""
        if self.nhwc:
            return self.a
        if self.a.ndim != 4:
            raise ValueError(f"expected a 4-D (N, C, H, W) tensor; received shape {self.a.shape}")
        return np.ascontiguousarray(self.a.transpose(0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C)


def nhwc(a) -> Value:
    return Value(a, True)


def as_nhwc_operand(b: np.ndarray) -> np.ndarray:
    """An NCHW-broadcastable operand of rank ≤ 4, rearranged to broadcast against an NHWC array."""
    b = np.asarray(b)
    b4 = b.reshape((1,) * (4 - b.ndim) + b.shape)  # left-pad to rank 4, as NumPy broadcasting does
    return b4.transpose(0, 2, 3, 1)  # (n, c, h, w) -> (n, h, w, c)


def broadcast_operands(values: list) -> tuple[list, bool]:
    """Arrays for an element-wise op, and whether the result is NHWC.

    If any operand is NHWC and every operand has rank ≤ 4 the op runs channels-last (the others
    rearranged by `as_nhwc_operand`); otherwise everything is NCHW.
    """
    if any(v.nhwc for v in values) and all(v.a.ndim <= 4 for v in values):
        return [v.a if v.nhwc else as_nhwc_operand(v.a) for v in values], True
    return [v.nchw() for v in values], False
