"""Shape ops: reshape, transpose, indexing, flatten, concat and padding (constant, reflect, edge)."""
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


PAD_MODES = ("constant", "reflect", "edge")


def _pad_forward(x, needs, pad_width, value, mode):
    if mode == "constant":
        return np.pad(x, pad_width, mode="constant", constant_values=value), (pad_width, mode, x.shape)
    return np.pad(x, pad_width, mode=mode), (pad_width, mode, x.shape)


def _pad_backward(ctx, g, needs):
    pad_width, mode, shape = ctx
    index = tuple(slice(lo, g.shape[i] - hi) for i, (lo, hi) in enumerate(pad_width))
    if mode == "constant":
        return (g[index],)
    for axis, (lo, hi) in enumerate(pad_width):  # fold each padded axis back onto its sources
        if lo == 0 and hi == 0:
            continue
        n = shape[axis]
        source = np.pad(np.arange(n), (lo, hi), mode=mode)  # padded cell j copies input cell source[j]
        moved = np.moveaxis(g, axis, 0)  # (padded n, ...)
        folded = np.zeros((n,) + moved.shape[1:], dtype=g.dtype)  # (n, ...)
        np.add.at(folded, source, moved)
        g = np.moveaxis(folded, 0, axis)
    return (np.ascontiguousarray(g),)


def pad(x, pad_width, value: float = 0.0, mode: str = "constant"):
    """Pad `x`; `pad_width` is one (before, after) pair per axis, as in `np.pad`.

    `mode` is 'constant' (cells set to `value`), 'reflect' (mirrored about the edge cell, which is not
    repeated: `np.pad`'s 'reflect' = PyTorch's 'reflect'; each pad must be smaller than its axis) or
    'edge' (the edge cell repeated: PyTorch's 'replicate'). In the two copying modes the gradient of
    every padded cell adds into the cell it copies.
    """
    arr = as_array(x)
    nd = arr.ndim
    try:
        pw = tuple((int(lo), int(hi)) for lo, hi in pad_width)
    except (TypeError, ValueError):
        raise TypeError(f"pad: pad_width must be {nd} (before, after) pairs; received {pad_width!r}") from None
    if len(pw) != nd or any(lo < 0 or hi < 0 for lo, hi in pw):
        raise ValueError(f"pad: pad_width must be {nd} non-negative (before, after) pairs; received {pad_width!r}")
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode must be one of {', '.join(PAD_MODES)}; received {mode!r}")
    for axis, (lo, hi) in enumerate(pw):
        n = arr.shape[axis]
        if mode == "reflect" and max(lo, hi) >= n:
            raise ValueError(f"pad: reflect padding must be smaller than the axis it pads; received "
                             f"({lo}, {hi}) for axis {axis} of size {n}")
        if mode == "edge" and (lo or hi) and n == 0:
            raise ValueError(f"pad: edge padding needs at least one cell on the axis it pads; axis {axis} is empty")
    return apply(_pad_forward, _pad_backward, x, pad_width=pw, value=value, mode=mode)
