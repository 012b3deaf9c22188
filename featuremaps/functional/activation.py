"""Element-wise activations and the (log-)softmax over one axis.

Each op is one forward/backward pair run through `featuremaps.tensor.apply`, takes an ndarray or a
Tensor with a floating dtype and keeps that dtype. NaN and ±inf propagate as in PyTorch, and the
gradient at a kink follows PyTorch: `relu'(0) = 0`, `leaky_relu'(0) = negative_slope`,
`elu'(0) = alpha`.
"""
from __future__ import annotations

import numpy as np

from ..tensor import apply
from . import accel
from ._checks import floating

__all__ = ["relu", "leaky_relu", "elu", "tanh", "sigmoid", "softmax", "log_softmax"]


def _floating(x, op: str):
    return floating(x, "x", op)


def _axis(axis, ndim: int, op: str) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be an int; received {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis must be in [{-ndim}, {ndim - 1}] for a {ndim}-D input; received {axis}")
    return int(axis) % ndim


# --- relu -------------------------------------------------------------------------------------
def _relu_forward(x, needs):
    return np.maximum(x, 0), x  # np.maximum keeps NaN


def _relu_backward(x, g, needs):
    # Written as "x <= 0 → 0" so a NaN input passes its gradient through, as PyTorch's does.
    return (np.where(x <= 0, 0, g).astype(g.dtype, copy=False),)


def relu(x):
    """max(x, 0); the gradient at 0 is 0."""
    return apply(_relu_forward, _relu_backward, _floating(x, "relu"))


# --- leaky relu -------------------------------------------------------------------------------
def _number(value, name: str, op: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a real number; received {value!r}")
    return float(value)


def _leaky_forward(x, needs, slope):
    out = np.where(x > 0, x, x * slope).astype(x.dtype, copy=False)
    return out, (x, slope)


def _leaky_backward(ctx, g, needs):
    x, slope = ctx
    return (np.where(x > 0, g, g * slope).astype(g.dtype, copy=False),)


def leaky_relu(x, negative_slope: float = 0.01):
    """x where x > 0, else negative_slope · x; the gradient at 0 is negative_slope."""
    x = _floating(x, "leaky_relu")
    slope = _number(negative_slope, "negative_slope", "leaky_relu")
    return apply(_leaky_forward, _leaky_backward, x, slope=slope)


# --- elu --------------------------------------------------------------------------------------
def _elu_forward(x, needs, alpha):
    neg = np.minimum(x, 0)  # exp only of the non-positive part, so large x cannot overflow
    out = np.where(x > 0, x, alpha * np.expm1(neg)).astype(x.dtype, copy=False)
    return out, (neg, x, alpha)


def _elu_backward(ctx, g, needs):
    neg, x, alpha = ctx
    return (np.where(x <= 0, g * (alpha * np.exp(neg)), g).astype(g.dtype, copy=False),)


def elu(x, alpha: float = 1.0):
    """x where x > 0, else alpha · (eˣ − 1); the gradient at 0 is alpha."""
    x = _floating(x, "elu")
    return apply(_elu_forward, _elu_backward, x, alpha=_number(alpha, "alpha", "elu"))


# --- tanh and sigmoid -------------------------------------------------------------------------
def _tanh_forward(x, needs):
    out = np.tanh(x)
    return out, out


def _tanh_backward(out, g, needs):
    fast = accel.kernels(out, g)
    if fast is not None and g.flags.c_contiguous and out.flags.c_contiguous:
        gx = np.empty_like(out)
        fast.tanh_backward(out, g, out.dtype.type(1), gx)  # the same roundings, in one pass
        return (gx,)
    return (g * (1 - out * out),)


def tanh(x):
    """Hyperbolic tangent."""
    return apply(_tanh_forward, _tanh_backward, _floating(x, "tanh"))


def _sigmoid_forward(x, needs):
    # e = exp(-|x|) never overflows: σ(x) = 1 / (1 + e) for x ≥ 0 and e / (1 + e) for x < 0.
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1, e) / (1 + e)
    return out.astype(x.dtype, copy=False), out


def _sigmoid_backward(out, g, needs):
    return ((g * out * (1 - out)).astype(g.dtype, copy=False),)


def sigmoid(x):
    """1 / (1 + e⁻ˣ), computed without overflow for large |x|."""
    return apply(_sigmoid_forward, _sigmoid_backward, _floating(x, "sigmoid"))


# --- softmax and log-softmax ------------------------------------------------------------------
def _shifted(x, axis):
    """x − max(x) along `axis` (NaN rows stay NaN; all −inf rows become NaN, as in PyTorch)."""
    with np.errstate(invalid="ignore"):
        return x - np.max(x, axis=axis, keepdims=True)


def _softmax_forward(x, needs, axis):
    e = np.exp(_shifted(x, axis))
    out = e / np.sum(e, axis=axis, keepdims=True)
    return out, (out, axis)


def _softmax_backward(ctx, g, needs):
    out, axis = ctx
    return (out * (g - np.sum(g * out, axis=axis, keepdims=True)),)


def softmax(x, axis: int = -1):
    """exp(x) / Σ exp(x) along `axis`, with the maximum subtracted first so nothing overflows."""
    x = _floating(x, "softmax")
    return apply(_softmax_forward, _softmax_backward, x, axis=_axis(axis, x.ndim, "softmax"))


def _log_softmax_forward(x, needs, axis):
    z = _shifted(x, axis)
    out = z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
    return out, (out, axis)


def _log_softmax_backward(ctx, g, needs):
    out, axis = ctx
    return (g - np.exp(out) * np.sum(g, axis=axis, keepdims=True),)


def log_softmax(x, axis: int = -1):
    """x − log Σ exp(x) along `axis` (log-sum-exp with the maximum subtracted first)."""
    x = _floating(x, "log_softmax")
    return apply(_log_softmax_forward, _log_softmax_backward, x, axis=_axis(axis, x.ndim, "log_softmax"))
