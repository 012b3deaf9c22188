"""Element-wise activations and the (log-)softmax over one axis.

Each op is one forward/backward pair run through `featuremaps.tensor.apply`, takes an ndarray or a
Tensor with a floating dtype and keeps that dtype. NaN and ±inf propagate as in PyTorch, and the
gradient at a kink follows PyTorch: `relu'(0) = 0`, `leaky_relu'(0) = negative_slope`,
`elu'(0) = alpha`, `clip` passes the gradient at its bounds (`torch.clamp`), while `relu6`,
`hard_sigmoid` and `hard_swish` pass none at their kinks (`F.relu6`, `F.hardsigmoid`, `F.hardswish`);
`prelu'(0) = slope`. At a NaN input their gradients are PyTorch's too.

The smooth activations of newer nets follow PyTorch's definitions too: `gelu` (exact, with the erf of
`functional._erf`, or `approximate="tanh"`), `silu` (swish), `softplus` (with `beta` and `threshold`),
`softsign` and `mish`. Each is computed without overflow for any finite input. `celu` (PyTorch's and
Keras's) and `squareplus` (Keras's, b = 4) are smooth too; `glu` halves one axis (PyTorch's `glu`, Keras's
`glu`). The shrinkage and piecewise-linear ones (`hard_shrink`, `soft_shrink`, `tanh_shrink`, `threshold`)
are in `functional.shrink`, the sparse ones (`sparse_plus`, `sparse_sigmoid`, `sparsemax`) in
`functional.sparse`.
"""
from __future__ import annotations

import numpy as np

from ..tensor import apply
from . import accel
from ._erf import erfc
from .arith import unbroadcast
from ._checks import floating

__all__ = ["relu", "leaky_relu", "elu", "tanh", "sigmoid", "softmax", "log_softmax", "clip", "relu6",
           "hard_sigmoid", "hard_swish", "prelu", "gelu", "silu", "softplus", "softsign", "mish", "celu",
           "squareplus", "glu"]


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


def _positive(value, name: str, op: str, note: str = "") -> float:
    value = _number(value, name, op)
    if not value > 0:
        raise ValueError(f"{op}: {name} must be > 0{note}; received {value:g}")
    return value


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
    # x > 0 picks g; everything else (x <= 0, and NaN, whose `neg` is NaN) the exp branch, so a NaN
    # input gives a NaN gradient, as its NaN output does
    return (np.where(x > 0, g, g * (alpha * np.exp(neg))).astype(g.dtype, copy=False),)


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


# --- clip, relu6, hard sigmoid, hard swish ---------------------------------------------------------
def _bound(value, name: str, op: str):
    return None if value is None else _number(value, name, op)


def _clip_forward(x, needs, lo, hi, closed):
    out = x
    if lo is not None:
        out = np.maximum(out, x.dtype.type(lo))  # np.maximum / np.minimum keep NaN
    if hi is not None:
        out = np.minimum(out, x.dtype.type(hi))
    return (out.copy() if out is x else out), (x, lo, hi, closed)


def _clip_backward(ctx, g, needs):
    x, lo, hi, closed = ctx
    keep = np.ones(x.shape, bool)
    # As in PyTorch: clamp's gradient is 0 at a NaN input, relu6's (hardtanh's) passes it
    if lo is not None:
        keep &= (x >= lo) if closed else ~(x <= lo)
    if hi is not None:
        keep &= (x <= hi) if closed else ~(x >= hi)
    return (np.where(keep, g, 0).astype(g.dtype, copy=False),)


def _clipped(x, lo, hi, closed: bool, op: str):
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{op}: lo must be ≤ hi; received lo={lo:g}, hi={hi:g}")
    return apply(_clip_forward, _clip_backward, x, lo=lo, hi=hi, closed=closed)


def clip(x, lo=None, hi=None):
    """min(max(x, lo), hi); either bound may be None (no bound on that side).

    The gradient is 1 on the closed interval [lo, hi] and 0 outside it, as for `torch.clamp`.
    """
    x = _floating(x, "clip")
    return _clipped(x, _bound(lo, "lo", "clip"), _bound(hi, "hi", "clip"), True, "clip")


def relu6(x):
    """min(max(x, 0), 6); the gradient is 0 at 0 and at 6, as for PyTorch's `relu6`."""
    return _clipped(_floating(x, "relu6"), 0.0, 6.0, False, "relu6")


def _hsig_forward(x, needs, alpha, beta):
    z = x * x.dtype.type(alpha) + x.dtype.type(beta)
    return np.minimum(np.maximum(z, 0), 1).astype(x.dtype, copy=False), (z, alpha)


def _hsig_backward(ctx, g, needs):
    z, alpha = ctx
    inside = (z > 0) & (z < 1)  # the open interval, as PyTorch's hardsigmoid (0 at a NaN input too)
    return (np.where(inside, g * g.dtype.type(alpha), 0).astype(g.dtype, copy=False),)


def hard_sigmoid(x, alpha: float = 0.2, beta: float = 0.5):
    """clip(alpha · x + beta, 0, 1): ONNX HardSigmoid's defaults. PyTorch's `hardsigmoid` is
    alpha = 1/6; the gradient (alpha inside, 0 outside) is 0 at both kinks, as in PyTorch."""
    x = _floating(x, "hard_sigmoid")
    alpha, beta = _number(alpha, "alpha", "hard_sigmoid"), _number(beta, "beta", "hard_sigmoid")
    return apply(_hsig_forward, _hsig_backward, x, alpha=alpha, beta=beta)


def _hswish_forward(x, needs):
    t = x.dtype.type
    with np.errstate(invalid="ignore"):  # −inf · 0 is NaN, as in PyTorch
        return x * np.minimum(np.maximum(x / t(6) + t(0.5), 0), 1), x


def _hswish_backward(x, g, needs):
    t = x.dtype.type
    # PyTorch's rule: 0 for x ≤ −3, x/3 + 1/2 for −3 < x < 3, else 1 (so 1 at x ≥ 3 and at NaN)
    slope = np.where(x <= -3, 0, np.where(x < 3, x / t(3) + t(0.5), 1))
    return ((g * slope).astype(g.dtype, copy=False),)


def hard_swish(x):
    """x · hard_sigmoid(x, 1/6, 0.5) = x · clip(x/6 + 1/2, 0, 1) (ONNX HardSwish = PyTorch `hardswish`)."""
    return apply(_hswish_forward, _hswish_backward, _floating(x, "hard_swish"))


# --- prelu ------------------------------------------------------------------------------------
def _prelu_forward(x, slope, needs):
    return np.where(x > 0, x, x * slope).astype(x.dtype, copy=False), (x, slope)


def _prelu_backward(ctx, g, needs):
    x, slope = ctx
    pos = x > 0
    gx = np.where(pos, g, g * slope).astype(g.dtype, copy=False) if needs[0] else None
    gs = unbroadcast(np.where(pos, 0, g * x), np.shape(slope)).astype(slope.dtype, copy=False) if needs[1] else None
    return gx, gs


def prelu(x, slope):
    """x where x > 0, else slope · x, with a learnable `slope` broadcast against x as NumPy does:
    shape (C,) for one slope per channel (the last axis), (1,) for one shared slope, or any shape
    that broadcasts to x's. Gradients flow to x (slope at 0, as in PyTorch) and to slope."""
    op = "prelu"
    x, slope = _floating(x, op), floating(slope, "slope", op)
    xs, ss = np.shape(x), np.shape(slope)
    try:
        full = np.broadcast_shapes(xs, ss)
    except ValueError:
        full = None
    if full != xs:
        raise ValueError(f"{op}: slope must broadcast to x's shape {xs} (e.g. ({xs[-1] if xs else 1},) for one "
                         f"slope per channel, or (1,)); received slope of shape {ss}")
    return apply(_prelu_forward, _prelu_backward, x, slope)


# --- gelu, silu, softplus, softsign, mish -------------------------------------------------------------
_SQRT_HALF = 0.7071067811865476  # 1/√2
_INV_SQRT_2PI = 0.3989422804014327  # 1/√(2π)
_TANH_K, _TANH_C = 0.7978845608028654, 0.044715  # √(2/π) and the cubic coefficient of GELU's tanh form


def _stable_softplus(z):
    """log(1 + eᶻ) = max(z, 0) + log1p(e^(−|z|)): no overflow for any finite z."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _gelu_forward(x, needs, approximate):
    if approximate == "tanh":
        with np.errstate(over="ignore", invalid="ignore"):  # x³ may overflow to ±inf: tanh(±inf) = ±1
            t = np.tanh(_TANH_K * (x + _TANH_C * x * x * x))
            out = 0.5 * x * (1 + t)
        return out.astype(x.dtype, copy=False), (x, t, approximate)
    cdf = 0.5 * erfc(-np.asarray(x, np.float64) * _SQRT_HALF)  # Φ(x) in float64 (no 1 + erf cancellation)
    with np.errstate(invalid="ignore"):  # −inf · 0 is NaN, as in PyTorch
        return (x * cdf).astype(x.dtype, copy=False), (x, cdf, approximate)


def _gelu_backward(ctx, g, needs):
    x, aux, approximate = ctx
    x64 = np.asarray(x, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if approximate == "tanh":  # d/dx ½x(1 + t) = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3c·x²)
            t = np.asarray(aux, np.float64)
            inner = _TANH_K * (1 + 3 * _TANH_C * x64 * x64)
            slope = 0.5 * (1 + t) + np.where(t * t == 1, 0.0, 0.5 * x64 * (1 - t * t) * inner)
        else:  # d/dx x·Φ(x) = Φ(x) + x·φ(x)
            pdf = _INV_SQRT_2PI * np.exp(-0.5 * x64 * x64)
            slope = aux + np.where(pdf == 0, 0.0, x64 * pdf)
    return ((g * slope).astype(g.dtype, copy=False),)


def gelu(x, approximate: str = "none"):
    """x·Φ(x), Φ the standard normal CDF (PyTorch's `gelu`); `approximate="tanh"` is
    ½x(1 + tanh(√(2/π)(x + 0.044715x³))), PyTorch's and ONNX's tanh form."""
    x = _floating(x, "gelu")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh'; received {approximate!r}")
    return apply(_gelu_forward, _gelu_backward, x, approximate=approximate)


def _silu_forward(x, needs):
    s = _sigmoid_forward(x, needs)[1]
    with np.errstate(invalid="ignore"):  # −inf · 0 is NaN, as in PyTorch
        return (x * s).astype(x.dtype, copy=False), (x, s)


def _silu_backward(ctx, g, needs):
    x, s = ctx
    with np.errstate(invalid="ignore"):  # d/dx x·σ(x) = σ(x)(1 + x(1 − σ(x)))
        return ((g * (s * (1 + x * (1 - s)))).astype(g.dtype, copy=False),)


def silu(x):
    """x·σ(x) (SiLU, also called swish; PyTorch's `silu`, Keras's `silu`/`swish`)."""
    return apply(_silu_forward, _silu_backward, _floating(x, "silu"))


def _softplus_forward(x, needs, beta, threshold):
    with np.errstate(over="ignore"):  # β·x may overflow to ±inf; then e^(−|z|) = 0 and z > threshold still hold
        z = x * x.dtype.type(beta)
    # (max(z, 0) + log1p(e^(−|z|)))/β, with max(z, 0)/β written as max(x, 0): no overflow even if z does
    soft = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(z))) / x.dtype.type(beta)
    out = soft if threshold is None else np.where(z > threshold, x, soft)
    return out.astype(x.dtype, copy=False), (z, threshold)


def _softplus_backward(ctx, g, needs):
    z, threshold = ctx
    s = _sigmoid_forward(z, None)[1]  # d/dx log(1 + e^(βx))/β = σ(βx)
    slope = s if threshold is None else np.where(z > threshold, 1, s)
    return ((g * slope).astype(g.dtype, copy=False),)


def softplus(x, beta: float = 1.0, threshold: float | None = 20.0):
    """log(1 + e^(βx))/β, and x itself where βx > threshold (PyTorch's `softplus`); `threshold=None`
    never switches (ONNX Softplus, β = 1). Computed as max(z, 0) + log1p(e^(−|z|)), z = βx: no overflow."""
    x = _floating(x, "softplus")
    beta = _positive(beta, "beta", "softplus")
    threshold = _bound(threshold, "threshold", "softplus")
    return apply(_softplus_forward, _softplus_backward, x, beta=beta, threshold=threshold)


def _softsign_forward(x, needs):
    d = 1 + np.abs(x)
    with np.errstate(invalid="ignore"):  # ±inf / inf is NaN, as in PyTorch
        return (x / d).astype(x.dtype, copy=False), d


def _softsign_backward(d, g, needs):
    return ((g / (d * d)).astype(g.dtype, copy=False),)


def softsign(x):
    """x / (1 + |x|)."""
    return apply(_softsign_forward, _softsign_backward, _floating(x, "softsign"))


def _mish_forward(x, needs):
    t = np.tanh(_stable_softplus(x))
    with np.errstate(invalid="ignore"):  # −inf · 0 is NaN, as in PyTorch
        return (x * t).astype(x.dtype, copy=False), (x, t)


def _mish_backward(ctx, g, needs):
    x, t = ctx
    s = _sigmoid_forward(x, None)[1]
    with np.errstate(invalid="ignore"):  # d/dx x·tanh(sp(x)) = tanh(sp(x)) + x·(1 − tanh²)·σ(x)
        slope = t + np.where(t * t == 1, 0, x * (1 - t * t) * s)
    return ((g * slope).astype(g.dtype, copy=False),)


def mish(x):
    """x·tanh(softplus(x)) (Misra 2019; PyTorch's `mish`, ONNX Mish)."""
    return apply(_mish_forward, _mish_backward, _floating(x, "mish"))


# --- celu, squareplus, glu -----------------------------------------------------------------------------
def _celu_forward(x, needs, alpha):
    with np.errstate(over="ignore"):  # x/α may overflow to −inf for α < 1: e^(−inf) − 1 = −1 is right
        neg = np.minimum(x, 0) / x.dtype.type(alpha)  # exp only of the non-positive part: no overflow
    out = np.where(x > 0, x, alpha * np.expm1(neg)).astype(x.dtype, copy=False)
    return out, (neg, x)


def _celu_backward(ctx, g, needs):
    neg, x = ctx  # d/dx α(e^(x/α) − 1) = e^(x/α); 1 at 0 from both sides
    return (np.where(x <= 0, g * np.exp(neg), g).astype(g.dtype, copy=False),)


def celu(x, alpha: float = 1.0):
    """x where x > 0, else alpha · (e^(x/alpha) − 1) (Barron 2017; PyTorch's `celu`, Keras's `celu`,
    ONNX Celu); alpha > 0. Its gradient is continuous: 1 at 0."""
    x = _floating(x, "celu")
    return apply(_celu_forward, _celu_backward, x, alpha=_positive(alpha, "alpha", "celu"))


def _squareplus_forward(x, needs, b):
    t = x.dtype.type
    h = np.hypot(x, t(np.sqrt(b)))  # √(x² + b) without overflowing x²
    with np.errstate(invalid="ignore", divide="ignore"):  # only in the branch np.where drops
        # (x + h)/2, and b / (2(h − x)) for x < 0, the same value without the cancellation of x + h
        out = np.where(x < 0, t(b) / (2 * (h - x)), x / 2 + h / 2)
    return out.astype(x.dtype, copy=False), (x, h, b)


def _squareplus_backward(ctx, g, needs):
    x, h, b = ctx
    with np.errstate(invalid="ignore", divide="ignore"):  # d/dx = (1 + x/h)/2 = b / (2h(h − x)) for x < 0
        slope = np.where(x < 0, b / (2 * h * (h - x)), np.where(np.isinf(x), 1, (1 + x / h) / 2))
    return ((g * slope).astype(g.dtype, copy=False),)


def squareplus(x, b: float = 4.0):
    """(x + √(x² + b)) / 2 (Barron 2021; Keras's `squareplus`, b = 4 by default); b > 0. Written as
    b / (2(√(x² + b) − x)) for x < 0, so it keeps its relative accuracy far left, and with `hypot`,
    so nothing overflows."""
    x = _floating(x, "squareplus")
    return apply(_squareplus_forward, _squareplus_backward, x, b=_positive(b, "b", "squareplus", " (b = 0 is relu)"))


def _glu_forward(x, needs, axis):
    a, gate = np.split(x, 2, axis=axis)  # each half of `axis`: (..., c/2, ...)
    s = _sigmoid_forward(gate, needs)[1]
    return (a * s).astype(x.dtype, copy=False), (a, s, axis)


def _glu_backward(ctx, g, needs):
    a, s, axis = ctx  # d/da = σ(b), d/db = a·σ(b)(1 − σ(b))
    return (np.concatenate([g * s, g * a * s * (1 - s)], axis=axis).astype(g.dtype, copy=False),)


def glu(x, axis: int = -1):
    """a · σ(b), where a and b are the first and second halves of `x` along `axis` (Dauphin et al. 2017;
    PyTorch's `glu`, Keras's `glu`): the output has half of x's size along `axis`, which must be even."""
    x = _floating(x, "glu")
    axis = _axis(axis, x.ndim, "glu")
    if x.shape[axis] % 2:
        raise ValueError(f"glu: the size of axis {axis} must be even (it is split into two halves); "
                         f"received shape {x.shape}")
    return apply(_glu_forward, _glu_backward, x, axis=axis)
