"""Attach the arithmetic and shape ops to `Tensor` as operators and methods."""
from __future__ import annotations

from ..tensor import Tensor
from . import arith, shape


def bind_tensor_methods() -> None:
    T = Tensor
    T.__add__ = lambda a, b: arith.add(a, b)
    T.__radd__ = lambda a, b: arith.add(b, a)
    T.__sub__ = lambda a, b: arith.sub(a, b)
    T.__rsub__ = lambda a, b: arith.sub(b, a)
    T.__mul__ = lambda a, b: arith.mul(a, b)
    T.__rmul__ = lambda a, b: arith.mul(b, a)
    T.__truediv__ = lambda a, b: arith.div(a, b)
    T.__rtruediv__ = lambda a, b: arith.div(b, a)
    T.__neg__ = lambda a: arith.neg(a)
    T.__pow__ = lambda a, p: arith.power(a, p)
    T.__matmul__ = lambda a, b: arith.matmul(a, b)
    T.__rmatmul__ = lambda a, b: arith.matmul(b, a)
    T.__getitem__ = lambda a, i: shape.getitem(a, i)
    T.exp, T.log, T.sqrt, T.abs = arith.exp, arith.log, arith.sqrt, arith.abs
    T.sum, T.mean, T.max, T.min = arith.sum, arith.mean, arith.max, arith.min
    T.reshape, T.transpose, T.flatten = shape.reshape, shape.transpose, shape.flatten
    for name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
                 "__rtruediv__", "__neg__", "__pow__", "__matmul__", "__rmatmul__", "__getitem__"):
        getattr(T, name).__name__ = name
