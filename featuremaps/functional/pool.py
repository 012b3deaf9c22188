"""Pooling over the H and W axes of NHWC data: max, average, and their global forms.

Window positions and output sizes follow the rule stated in `featuremaps.functional.conv`; with
`ceil_mode=True` the division rounds up but the last window must start inside the input or its left
padding, as in PyTorch (`window.Axis.of`). As in PyTorch, padding may be at most half the
kernel (`kernel_size // 2`) on each side, so every window holds at least one input element
(`window.resolve_pool_padding`). The geometry is `window.Geometry`; the backward passes add each
window's gradient back with its `scatter_add` (col2im).

Max pooling pads with −inf. Its gradient goes to ONE element per window, the one PyTorch picks:
the first maximum in window order (row-major over the kernel), or, if the window holds NaN, the
last NaN. Average pooling pads with zeros and divides as PyTorch does: by the window's size clipped
to the padded input (`count_include_pad=True`) or by its number of input elements (False).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..tensor import apply, as_array
from . import accel
from .threads import in_threads
from .window import Axis, Geometry, check_nhwc, pad_hw, pair, resolve_pool_padding

__all__ = ["max_pool2d", "avg_pool2d", "global_avg_pool2d", "global_max_pool2d"]


def _geometry(x: np.ndarray, kernel_size, stride, padding, dilation, ceil_mode, op: str) -> Geometry:
    check_nhwc(x, "x", op=op)
    kernel = pair(kernel_size, "kernel_size", op=op)
    stride = kernel if stride is None else pair(stride, "stride", op=op)
    dilation = pair(dilation, "dilation", op=op)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"{op}: ceil_mode must be True or False; received {ceil_mode!r}")
    pads = resolve_pool_padding(padding, kernel, op)
    return Geometry.from_pairs(x.shape[1:3], kernel, stride, pads, dilation, bool(ceil_mode)).check(op)


# --- max pooling: general path ----------------------------------------------------------------
def _first_input_offset(axis: Axis) -> np.ndarray:
    """For each window along one axis, the first kernel offset that lands on the input."""
    start = axis.starts()  # first tap of each window, in input coordinates
    p = -(-np.maximum(-start, 0) // axis.d)  # skip the padding rows: ceil(−start / d)
    return np.where((p < axis.k) & (start + p * axis.d < axis.size), p, 0)


def _argmax(xp: np.ndarray, geo: Geometry):
    """Max of every window and the kernel offset PyTorch picks for it (see the module docstring).

    PyTorch starts each window at (−inf, its first input element) and moves to a later element when
    that is larger, or NaN. The −inf padding never wins, and every input element of a window comes
    at or after its first input element in window order, so the chosen offset only grows: it is the
    running maximum of k · [tap k is larger than everything before it].
    """
    v = geo.windows(xp)  # (n, oh, ow, kh, kw, c)
    best = v[:, :, :, 0, 0].copy()  # (n, oh, ow, c)
    taps = geo.taps()
    itype = np.uint8 if len(taps) < 256 else np.int32
    arg = np.empty(best.shape, dtype=itype)  # (n, oh, ow, c)
    p0, q0 = _first_input_offset(geo.h), _first_input_offset(geo.w)
    arg[...] = (p0[:, None] * geo.w.k + q0[None, :])[None, :, :, None]  # (oh, ow) -> (1, oh, ow, 1)
    for k, p, q in taps[1:]:
        tap = v[:, :, :, p, q]  # (n, oh, ow, c)
        np.maximum(arg, np.multiply(tap > best, itype(k), dtype=itype), out=arg)
        np.maximum(best, tap, out=best)  # NaN propagates
    nan = np.isnan(best)
    if nan.any():  # windows holding NaN: the last NaN
        last = np.zeros_like(arg)
        for k, p, q in taps:
            np.maximum(last, np.multiply(np.isnan(v[:, :, :, p, q]), itype(k), dtype=itype), out=last)
        arg = np.where(nan, last, arg)
    return best, arg


def _bits(a: np.ndarray) -> np.ndarray:
    """`a`'s bit patterns as same-sized integers (a view)."""
    return a.view(np.dtype(f"i{a.dtype.itemsize}"))


def _masked(g: np.ndarray, mask, out: np.ndarray | None = None) -> np.ndarray:
    """g where mask, else +0.0, written to `out` (or a new array).

    The bit patterns are multiplied as integers by 0 or 1, which is exact even where g is inf or NaN
    (a float multiply would turn inf · 0 into NaN) and much faster than `np.copyto(..., where=)`
    (bench/README.md).
    """
    if out is not None and out.dtype != g.dtype:
        g = g.astype(out.dtype)  # the bit trick needs one float type on both sides
    bits = np.multiply(_bits(g), mask, out=None if out is None else _bits(out))
    return out if out is not None else bits.view(g.dtype)


def _scatter_max(g: np.ndarray, arg: np.ndarray, geo: Geometry, shape: tuple, dtype) -> np.ndarray:
    """The input gradient: each window's gradient added to its chosen element (col2im of the
    masked window gradients, `Geometry.scatter_add`)."""
    gx = np.zeros(shape, dtype=dtype)
    buf = np.empty(g.shape, dtype=dtype)  # (n, oh, ow, c), reused for every offset
    kw = geo.w.k
    geo.scatter_add(gx, lambda p, q: _masked(g, arg == p * kw + q, out=buf))
    return gx


def _max_forward(x, needs, geo):
    xp = pad_hw(x, geo.array_pads, -np.inf)  # (n, h + t + b', w + l + r', c)
    if not needs[0]:
        v = geo.windows(xp)  # (n, oh, ow, kh, kw, c)
        out = v[:, :, :, 0, 0].copy()  # (n, oh, ow, c)
        for _, p, q in geo.taps()[1:]:
            np.maximum(out, v[:, :, :, p, q], out=out)
        return out, None
    out, arg = _argmax(xp, geo)
    return out, (arg, geo, x.shape, x.dtype)


def _max_backward(ctx, g, needs):
    arg, geo, shape, dtype = ctx
    return (_scatter_max(g, arg, geo, shape, dtype),)


# --- max pooling: windows that tile the input -------------------------------------------------
class _Chosen(NamedTuple):
    """What the numba forward keeps for the backward: each window's chosen offset."""
    shape: tuple
    dtype: np.dtype
    arg: np.ndarray  # (n, oh, ow, c)
    geo: Geometry


def _tile_forward(x, needs, geo):
    (kh, kw), (oh, ow) = geo.kernel, geo.out_hw
    fast = accel.kernels(x) if needs[0] else None  # without a backward, NumPy's maxima are as fast
    if fast is not None and x.flags.c_contiguous:
        out = np.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype)
        arg = np.empty(out.shape, np.uint8 if kh * kw < 256 else np.int32)  # (n, oh, ow, c)
        in_threads(len(x), lambda a, z: fast.pool_tile_forward(x[a:z], kh, kw, out[a:z], arg[a:z]), x.nbytes)
        return out, _Chosen(x.shape, x.dtype, arg, geo)
    xv = x[:, :oh * kh, :ow * kw]  # (n, oh*kh, ow*kw, c): the rows/columns some window covers
    taps = [xv[:, p::kh, q::kw] for _, p, q in geo.taps()]  # each (n, oh, ow, c), strided
    out = taps[0].copy() if len(taps) == 1 else np.maximum(taps[0], taps[1])
    for tap in taps[2:]:
        np.maximum(out, tap, out=out)
    return out, ((x, out, geo) if needs[0] else None)


def _tile_backward(ctx, g, needs):
    if isinstance(ctx, _Chosen):  # from the numba forward (even if switched off since)
        gx = np.empty(ctx.shape, ctx.dtype)
        g = np.ascontiguousarray(g, dtype=ctx.dtype)
        fast, arg, (kh, kw) = accel.loaded(), ctx.arg, ctx.geo.kernel
        in_threads(len(gx), lambda a, z: fast.pool_tile_backward(g[a:z], arg[a:z], kh, kw, gx[a:z]), gx.nbytes)
        return (gx,)
    x, out, geo = ctx
    if np.isnan(out).any():  # NaN windows send the gradient to their last NaN: take the general route
        _, arg = _argmax(x, geo)
        return (_scatter_max(g, arg, geo, x.shape, x.dtype),)
    (kh, kw), (oh, ow) = geo.kernel, geo.out_hw
    gx = np.empty_like(x)  # every covered element is written below; zero the rows/columns no window covers
    gx[:, oh * kh:] = 0
    gx[:, :, ow * kw:] = 0
    gv = gx[:, :oh * kh, :ow * kw]  # (n, oh*kh, ow*kw, c)
    xv = x[:, :oh * kh, :ow * kw]
    taps = geo.taps()
    taken = None  # windows whose gradient has been placed
    for k, p, q in taps:
        if k == len(taps) - 1:  # no earlier element matched, so the last one is the maximum
            hit = ~taken if taken is not None else True
        else:
            hit = xv[:, p::kh, q::kw] == out  # (n, oh, ow, c)
            if taken is None:
                taken = hit.copy()
            else:
                np.greater(hit, taken, out=hit)  # hit and not yet taken: the first maximum wins
                taken |= hit
        _masked(g, hit, out=gv[:, p::kh, q::kw])  # (n, oh, ow, c), strided
    return (gx,)


def max_pool2d(x, kernel_size, stride=None, padding=0, *, ceil_mode: bool = False, dilation=1):
    """Maximum over each (dilated) window of NHWC `x` → (N, OH, OW, C).

    `stride` defaults to `kernel_size`; `padding` is an int, a pair, or ((top, bottom), (left, right)),
    at most `kernel_size // 2` on each side, filled with −inf. Sizes: see `featuremaps.functional.conv`;
    `ceil_mode` rounds up as PyTorch does. The gradient goes to one element per window (module docstring).
    """
    geo = _geometry(as_array(x), kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    if geo.tiles:
        return apply(_tile_forward, _tile_backward, x, geo=geo)
    return apply(_max_forward, _max_backward, x, geo=geo)


# --- average pooling --------------------------------------------------------------------------
def _divisors(axis: Axis, include_pad: bool) -> np.ndarray:
    """PyTorch's divisor for each window along one axis."""
    start = axis.starts()  # in input coordinates
    end = np.minimum(start + axis.span, axis.size + axis.hi)  # a ceil_mode window is clipped to the padded input
    if include_pad:
        return end - start
    return np.minimum(end, axis.size) - np.maximum(start, 0)


def _avg_forward(x, needs, geo, include_pad):
    xp = pad_hw(x, geo.array_pads, 0.0)  # (n, h + t + b', w + l + r', c)
    v = geo.windows(xp)  # (n, oh, ow, kh, kw, c)
    out = v[:, :, :, 0, 0].copy()  # (n, oh, ow, c)
    for _, p, q in geo.taps()[1:]:
        out += v[:, :, :, p, q]
    dh, dw = _divisors(geo.h, include_pad), _divisors(geo.w, include_pad)
    div = (dh[:, None] * dw[None, :]).astype(x.dtype)[None, :, :, None]  # (oh, ow) -> (1, oh, ow, 1)
    out /= div
    return out, (div, geo, x.shape, x.dtype)


def _avg_backward(ctx, g, needs):
    div, geo, shape, dtype = ctx
    gs = g / div  # (n, oh, ow, c)
    gx = np.zeros(shape, dtype=dtype)
    geo.scatter_add(gx, lambda p, q: gs)  # every tap of a window gets its share
    return (gx,)


def avg_pool2d(x, kernel_size, stride=None, padding=0, *, ceil_mode: bool = False,
               count_include_pad: bool = True):
    """Mean over each window of NHWC `x` → (N, OH, OW, C).

    `stride` defaults to `kernel_size`; `padding` (zeros) is an int, a pair, or ((top, bottom),
    (left, right)), at most `kernel_size // 2` on each side. Sizes: see `featuremaps.functional.conv`.
    The divisor is the window's size clipped to the padded input when `count_include_pad` is True,
    else the number of input elements in the window, as in PyTorch (also for `ceil_mode` windows).
    """
    op = "avg_pool2d"
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"{op}: count_include_pad must be True or False; received {count_include_pad!r}")
    geo = _geometry(as_array(x), kernel_size, stride, padding, 1, ceil_mode, op)
    return apply(_avg_forward, _avg_backward, x, geo=geo, include_pad=bool(count_include_pad))


# --- global pooling ---------------------------------------------------------------------------
def _check_global(x, keepdims, op: str) -> None:
    check_nhwc(x, "x", op=op)
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{op}: x must have H, W ≥ 1; received shape {x.shape}")
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(f"{op}: keepdims must be True or False; received {keepdims!r}")


def _gap_forward(x, needs, keepdims):
    out = x.mean(axis=(1, 2), keepdims=keepdims)  # (n, c) or (n, 1, 1, c)
    return out, (x.shape, x.dtype)


def _gap_backward(ctx, g, needs):
    shape, dtype = ctx
    n, h, w, c = shape
    gx = np.empty(shape, dtype=dtype)
    gx[...] = g.reshape(n, 1, 1, c) / dtype.type(h * w)  # (n, c) or (n, 1, 1, c) -> (n, 1, 1, c), broadcast
    return (gx,)


def global_avg_pool2d(x, *, keepdims: bool = False):
    """Mean of each whole feature map: (N, H, W, C) → (N, C), or (N, 1, 1, C) with `keepdims`."""
    _check_global(as_array(x), keepdims, "global_avg_pool2d")
    return apply(_gap_forward, _gap_backward, x, keepdims=bool(keepdims))


def _gmp_forward(x, needs, keepdims):
    n, h, w, c = x.shape
    x2 = x.reshape(n, h * w, c)  # (n, h*w, c): positions in window order
    arg = np.argmax(x2, axis=1)  # (n, c): numpy's argmax is the first maximum, or the first NaN
    isnan = np.isnan(np.take_along_axis(x2, arg[:, None], axis=1)[:, 0])  # (n, c)
    if isnan.any():  # PyTorch picks the last NaN
        last = h * w - 1 - np.argmax(np.isnan(x2[:, ::-1]), axis=1)  # (n, c)
        arg = np.where(isnan, last, arg)
    out = np.take_along_axis(x2, arg[:, None], axis=1)  # (n, 1, c)
    out = out.reshape(n, 1, 1, c) if keepdims else out[:, 0]  # (n, 1, 1, c) or (n, c)
    return out, (arg, x.shape, x.dtype)


def _gmp_backward(ctx, g, needs):
    arg, (n, h, w, c), dtype = ctx
    gx = np.zeros((n, h * w, c), dtype=dtype)  # (n, h*w, c)
    np.put_along_axis(gx, arg[:, None], g.reshape(n, 1, c), axis=1)  # g (n, c) or (n, 1, 1, c) -> (n, 1, c)
    return (gx.reshape(n, h, w, c),)  # (n, h*w, c) -> (n, h, w, c)


def global_max_pool2d(x, *, keepdims: bool = False):
    """Max of each whole feature map: (N, H, W, C) → (N, C), or (N, 1, 1, C) with `keepdims`.

    Equal to `max_pool2d` with the whole map as its window, gradient rule included.
    """
    _check_global(as_array(x), keepdims, "global_max_pool2d")
    return apply(_gmp_forward, _gmp_backward, x, keepdims=bool(keepdims))
