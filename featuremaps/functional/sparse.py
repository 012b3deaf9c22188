"""The sparse activations of Keras 3: `sparse_plus`, `sparse_sigmoid` (Blondel et al. 2019) and
`sparsemax` (Martins & Astudillo 2016), each one forward/backward pair run through
`featuremaps.tensor.apply` that keeps a floating input's dtype.

`sparse_plus` and `sparse_sigmoid` are Keras's piecewise definitions, with the gradient PyTorch's
autograd gives Keras's torch code at the joins. `sparsemax` is the Euclidean projection onto the
probability simplex (outputs ≥ 0 that sum to 1). Keras up to 3.15 computes its threshold τ from the sum
of the cumulative sums over the support instead of the k-th one, so its output is wrong whenever two or
more values are in the support (keras-team/keras#23425); this is the paper's algorithm.
"""
from __future__ import annotations

import numpy as np

from ..tensor import apply
from .activation import _axis, _floating

__all__ = ["sparse_plus", "sparse_sigmoid", "sparsemax"]


def _sparse_plus_forward(x, needs):
    t = x.dtype.type
    with np.errstate(over="ignore"):  # (x + 1)² of a huge |x| overflows only where np.where drops it
        quad = (x + t(1)) * (x + t(1)) / t(4)
    return np.where(x <= -1, t(0), np.where(x < 1, quad, x)).astype(x.dtype, copy=False), x


def _sparse_plus_backward(x, g, needs):
    t = x.dtype.type  # 0, (x + 1)/2, 1: continuous, so no kink convention is needed
    slope = np.where(x <= -1, t(0), np.where(x < 1, (x + t(1)) / t(2), t(1)))
    return ((g * slope).astype(g.dtype, copy=False),)


def sparse_plus(x):
    """0 for x ≤ −1, (x + 1)²/4 for −1 < x < 1, x for x ≥ 1 (Keras's `sparse_plus`)."""
    return apply(_sparse_plus_forward, _sparse_plus_backward, _floating(x, "sparse_plus"))


def _sparse_sigmoid_forward(x, needs):
    t = x.dtype.type
    out = np.where(x <= -1, t(0), np.where(x >= 1, t(1), (x + t(1)) / t(2)))
    return out.astype(x.dtype, copy=False), x


def _sparse_sigmoid_backward(x, g, needs):
    inside = (x > -1) & (x < 1)  # 1/2 on the open interval, 0 at both joins (torch autograd on Keras's code)
    return (np.where(inside, g / g.dtype.type(2), 0).astype(g.dtype, copy=False),)


def sparse_sigmoid(x):
    """0 for x ≤ −1, (x + 1)/2 for −1 < x < 1, 1 for x ≥ 1 (Keras's `sparse_sigmoid`)."""
    return apply(_sparse_sigmoid_forward, _sparse_sigmoid_backward, _floating(x, "sparse_sigmoid"))


def _sparsemax_forward(x, needs, axis):
    z = np.moveaxis(x, axis, -1)  # (..., n): the axis last
    n = z.shape[-1]
    srt = -np.sort(-z, axis=-1)  # descending
    csum = np.cumsum(srt, axis=-1)
    r = np.arange(1, n + 1, dtype=x.dtype)
    k = np.sum(1 + r * srt > csum, axis=-1, keepdims=True)  # the support's size: a prefix of the sorted values
    tau = (np.take_along_axis(csum, np.maximum(k, 1) - 1, axis=-1) - 1) / k.astype(x.dtype)  # (..., 1)
    out = np.moveaxis(np.maximum(z - tau, 0), -1, axis).astype(x.dtype, copy=False)
    return out, (out > 0, axis)


def _sparsemax_backward(ctx, g, needs):
    support, axis = ctx  # Jacobian diag(s) − s·sᵀ/|s| on the support s
    k = np.sum(support, axis=axis, keepdims=True)
    mean = np.sum(np.where(support, g, 0), axis=axis, keepdims=True) / np.maximum(k, 1)
    return (np.where(support, g - mean, 0).astype(g.dtype, copy=False),)


def sparsemax(x, axis: int = -1):
    """max(x − τ, 0) along `axis`, τ chosen so that the outputs sum to 1: the Euclidean projection of x
    onto the probability simplex (Martins & Astudillo 2016, the sort-based Algorithm 1). Keras's
    `sparsemax` up to 3.15 differs when the support holds two or more values (see the module docstring)."""
    x = _floating(x, "sparsemax")
    return apply(_sparsemax_forward, _sparsemax_backward, x, axis=_axis(axis, x.ndim, "sparsemax"))
