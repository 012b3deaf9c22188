"""Shape ops: reshape, transpose, indexing, flatten, concat and constant padding."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, apply, as_array

__all__ = ["reshape", "transpose", "getitem", "flatten", "concat", "pad"]


def _reshape_forward(x, needs, shape):
    return x.reshape(shape), x.shape


def _reshape_backward(ctx, g, needs):
    return (g.reshape(ctx),)


def reshape(x, *shape):
    """`x` with a new shape of the same size (one entry may be -1)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    src = np.shape(as_array(x))
    try:
        np.empty(src, dtype=np.bool_).reshape(shape)  # validate without touching the data
    except (ValueError, TypeError):
        raise ValueError(f"reshape: cannot reshape an array of shape {src} (size {int(np.prod(src))}) "
                         f"into shape {shape}") from None
    return apply(_reshape_forward, _reshape_backward, x, shape=shape)


def _transpose_forward(x, needs, axes):
    return np.transpose(x, axes), axes


def _transpose_backward(ctx, g, needs):
    return (np.transpose(g, np.argsort(ctx)),)


def transpose(x, *axes):
    """Permute the axes (reverse them when none are given)."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    ndim = np.ndim(as_array(x))
    axes = tuple(reversed(range(ndim))) if not axes else tuple(a % ndim for a in axes)
    if sorted(axes) != list(range(ndim)):
        raise ValueError(f"transpose: axes must be a permutation of 0..{ndim - 1}; received {axes}")
    return apply(_transpose_forward, _transpose_backward, x, axes=axes)


def _getitem_forward(x, needs, index):
    return x[index], (x.shape, x.dtype, index)


def _getitem_backward(ctx, g, needs):
    shape, dtype, index = ctx
    gx = np.zeros(shape, dtype=dtype)
    np.add.at(gx, index, g)  # add.at accumulates repeated fancy indices correctly
    return (gx,)


def getitem(x, index):
    """`x[index]` with NumPy's basic and advanced indexing."""
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return apply(_getitem_forward, _getitem_backward, x, index=index)


def flatten(x, start_axis: int = 1):
    """Collapse axes `start_axis..` into one: (N, H, W, C) -> (N, H*W*C) by default.

    With channels-last data the flattened order is (h, w, c), as in Keras.
    """
    shape = np.shape(as_array(x))
    if not 0 <= start_axis < max(len(shape), 1):
        raise ValueError(f"flatten: start_axis must be in [0, {len(shape) - 1}]; received {start_axis}")
    return reshape(x, shape[:start_axis] + (-1,))


def _concat_forward(*xs, needs, axis):
    return np.concatenate(xs, axis=axis), (axis, np.cumsum([a.shape[axis] for a in xs])[:-1])


def _concat_backward(ctx, g, needs):
    axis, cuts = ctx
    return tuple(np.split(g, cuts, axis=axis))


def concat(xs, axis: int = -1):
    """Join arrays along `axis` (the channel axis by default)."""
    xs = list(xs)
    if not xs:
        raise ValueError("concat: xs must hold at least one array; received none")
    shapes = [np.shape(as_array(x)) for x in xs]
    nd = len(shapes[0])
    if nd == 0 or any(len(s) != nd for s in shapes):
        raise ValueError(f"concat: all inputs must have the same number of dimensions (≥ 1); received {shapes}")
    ax = axis % nd
    for s in shapes:
        if s[:ax] + s[ax + 1:] != shapes[0][:ax] + shapes[0][ax + 1:]:
            raise ValueError(f"concat: shapes must agree except on axis {axis}; received {shapes}")
    return apply(_concat_forward, _concat_backward, *xs, axis=ax)


def _pad_forward(x, needs, pad_width, value):
    return np.pad(x, pad_width, mode="constant", constant_values=value), pad_width


def _pad_backward(ctx, g, needs):
    index = tuple(slice(lo, g.shape[i] - hi) for i, (lo, hi) in enumerate(ctx))
    return (g[index],)


def pad(x, pad_width, value: float = 0.0):
    """Constant padding; `pad_width` is one (before, after) pair per axis, as in `np.pad`."""
    nd = np.ndim(as_array(x))
    try:
        pw = tuple((int(lo), int(hi)) for lo, hi in pad_width)
    except (TypeError, ValueError):
        raise TypeError(f"pad: pad_width must be {nd} (before, after) pairs; received {pad_width!r}") from None
    if len(pw) != nd or any(lo < 0 or hi < 0 for lo, hi in pw):
        raise ValueError(f"pad: pad_width must be {nd} non-negative (before, after) pairs; received {pad_width!r}")
    return apply(_pad_forward, _pad_backward, x, pad_width=pw, value=value)
