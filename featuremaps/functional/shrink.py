"""Shrinkage and thresholding activations: `hard_shrink`, `soft_shrink`, `tanh_shrink` and `threshold`.

Each is one forward/backward pair run through `featuremaps.tensor.apply`, keeps a floating input's
dtype and follows PyTorch's definitions (`F.hardshrink`, `F.softshrink`, `F.tanhshrink`,
`F.threshold`), which Keras's `hard_shrink`, `soft_shrink`, `tanh_shrink` and `threshold` call on its
torch backend. At a kink the gradient is PyTorch's: the shrinks pass none on the closed interval
[−λ, λ], `threshold` passes none at x ≤ threshold (its `negative_slope` there, when one is given).
A NaN input stays NaN and passes its gradient, as in PyTorch.
"""
from __future__ import annotations

import numpy as np

from ..tensor import apply
from .activation import _floating, _number, _tanh_forward

__all__ = ["hard_shrink", "soft_shrink", "tanh_shrink", "threshold"]


def _lambda(value, op: str) -> float:
    lambd = _number(value, "threshold", op)
    if not lambd >= 0:
        raise ValueError(f"{op}: threshold (λ) must be ≥ 0; received {lambd:g}")
    return lambd


def _inside(x, lambd):
    return (x >= -lambd) & (x <= lambd)  # False at NaN, so a NaN passes through as PyTorch's


def _shrink_backward(ctx, g, needs):
    x, lambd = ctx
    return (np.where(_inside(x, lambd), 0, g).astype(g.dtype, copy=False),)


def _hard_forward(x, needs, lambd):
    return np.where(_inside(x, lambd), 0, x).astype(x.dtype, copy=False), (x, lambd)


def hard_shrink(x, threshold: float = 0.5):
    """x where |x| > threshold, else 0 (PyTorch's `hardshrink` with lambd = threshold; ONNX Shrink with
    bias 0); threshold ≥ 0."""
    x = _floating(x, "hard_shrink")
    return apply(_hard_forward, _shrink_backward, x, lambd=_lambda(threshold, "hard_shrink"))


def _soft_forward(x, needs, lambd):
    t = x.dtype.type
    out = np.where(x > lambd, x - t(lambd), np.where(x < -lambd, x + t(lambd), np.where(x == x, t(0), x)))
    # (the last: 0, or NaN at a NaN input, as PyTorch's x·0)
    return out.astype(x.dtype, copy=False), (x, lambd)


def soft_shrink(x, threshold: float = 0.5):
    """x − threshold where x > threshold, x + threshold where x < −threshold, else 0 (PyTorch's
    `softshrink`; ONNX Shrink with bias = lambd); threshold ≥ 0."""
    x = _floating(x, "soft_shrink")
    return apply(_soft_forward, _shrink_backward, x, lambd=_lambda(threshold, "soft_shrink"))


def _tanh_shrink_forward(x, needs):
    t = _tanh_forward(x, needs)[0]
    return (x - t).astype(x.dtype, copy=False), t


def _tanh_shrink_backward(t, g, needs):
    return ((g * (t * t)).astype(g.dtype, copy=False),)  # d/dx (x − tanh x) = tanh² x


def tanh_shrink(x):
    """x − tanh(x) (PyTorch's `tanhshrink`, Keras's `tanh_shrink`)."""
    return apply(_tanh_shrink_forward, _tanh_shrink_backward, _floating(x, "tanh_shrink"))


def _threshold_forward(x, needs, th, value, slope):
    t = x.dtype.type
    low = t(value) if slope == 0 else t(value) + t(slope) * (x - t(th))
    return np.where(x <= th, low, x).astype(x.dtype, copy=False), (x, th, slope)


def _threshold_backward(ctx, g, needs):
    x, th, slope = ctx
    return (np.where(x <= th, g * g.dtype.type(slope), g).astype(g.dtype, copy=False),)


def threshold(x, threshold: float, value: float, negative_slope: float = 0.0):
    """x where x > threshold, else value (PyTorch's `threshold`, Keras's `threshold(x, threshold,
    default_value)`). With `negative_slope` s, the values x ≤ threshold become value + s·(x − threshold):
    value 0 and s is Keras's `ReLU(threshold=…, negative_slope=s)`. The gradient is 1 above the
    threshold and s at or below it (0 by default, as PyTorch's)."""
    x = _floating(x, "threshold")
    th, value = _number(threshold, "threshold", "threshold"), _number(value, "value", "threshold")
    slope = _number(negative_slope, "negative_slope", "threshold")
    return apply(_threshold_forward, _threshold_backward, x, th=th, value=value, slope=slope)
