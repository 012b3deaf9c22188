"""Element-wise arithmetic, matmul and reductions: the Tensor operators.

Each op is a forward/backward pair run through `featuremaps.tensor.apply`. Binary ops broadcast as
NumPy does; their backward sums the gradient back to each input's shape (`unbroadcast`).
"""
from __future__ import annotations

import builtins

import numpy as np

from ..tensor import Tensor, apply, as_array

__all__ = ["add", "sub", "mul", "div", "neg", "power", "matmul", "exp", "log", "sqrt", "abs",
           "sum", "mean", "max", "min", "maximum", "minimum", "average", "unbroadcast"]


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `g` over the axes that broadcasting added or stretched, so it has `shape`."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(extra))) if extra else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _operand(other, like: np.ndarray):
    """A Python scalar operand takes the tensor's dtype (so float64 stays float64)."""
    if isinstance(other, (int, float)):
        return np.asarray(other, dtype=like.dtype if like.dtype.kind == "f" else None)
    return other


def _binary(fwd, bwd):
    def forward(a, b, needs):
        return fwd(a, b), (a, b)

    def backward(ctx, g, needs):
        a, b = ctx
        ga, gb = bwd(a, b, g, needs)
        return (unbroadcast(ga, np.shape(a)) if needs[0] else None,
                unbroadcast(gb, np.shape(b)) if needs[1] else None)

    def op(a, b):
        if not isinstance(a, Tensor) and not isinstance(b, Tensor):
            return forward(a, b, (False, False))[0]
        a = _operand(a, as_array(b)) if not isinstance(a, Tensor) else a
        b = _operand(b, as_array(a)) if not isinstance(b, Tensor) else b
        return apply(forward, backward, a, b)

    return op


add = _binary(np.add, lambda a, b, g, n: (g, g))
sub = _binary(np.subtract, lambda a, b, g, n: (g, -g if n[1] else None))
mul = _binary(np.multiply, lambda a, b, g, n: (g * b if n[0] else None, g * a if n[1] else None))
div = _binary(np.divide, lambda a, b, g, n: (g / b if n[0] else None, -g * a / (b * b) if n[1] else None))
add.__doc__, sub.__doc__, mul.__doc__, div.__doc__ = "a + b", "a - b", "a * b", "a / b"


def _pow_forward(a, p, needs):
    out = np.power(a, p)
    return out, (a, p, out)


def _pow_backward(ctx, g, needs):
    a, p, out = ctx
    ga = g * p * np.power(a, p - 1) if needs[0] else None
    with np.errstate(divide="ignore", invalid="ignore"):
        gp = g * out * np.log(a) if needs[1] else None
    return (unbroadcast(ga, np.shape(a)) if ga is not None else None,
            unbroadcast(gp, np.shape(p)) if gp is not None else None)


def power(a, p):
    """a ** p (element-wise)."""
    if isinstance(a, Tensor) and not isinstance(p, Tensor):
        p = _operand(p, a.data)
    return apply(_pow_forward, _pow_backward, a, p)


def _unary(fwd, grad_from):
    """A unary op whose gradient is `g * grad_from(x, out)`."""
    def forward(x, needs):
        out = fwd(x)
        return out, (x, out)

    def backward(ctx, g, needs):
        x, out = ctx
        return (g * grad_from(x, out),)

    return lambda x: apply(forward, backward, x)


neg = _unary(np.negative, lambda x, y: -1.0)
exp = _unary(np.exp, lambda x, y: y)
log = _unary(np.log, lambda x, y: 1.0 / x)
sqrt = _unary(np.sqrt, lambda x, y: 0.5 / y)
abs = _unary(np.abs, lambda x, y: np.sign(x))  # noqa: A001 - mirrors numpy's name
neg.__doc__, exp.__doc__, log.__doc__, sqrt.__doc__, abs.__doc__ = "-x", "e**x", "ln x", "√x", "|x|"


def _matmul_forward(a, b, needs):
    return np.matmul(a, b), (a, b)


def _matmul_backward(ctx, g, needs):
    a, b = ctx
    if a.ndim == 1 or b.ndim == 1:
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g.reshape(a2.shape[:-1] + b2.shape[-1:])
    else:
        a2, b2, g2 = a, b, g
    ga = np.matmul(g2, np.swapaxes(b2, -1, -2)) if needs[0] else None
    gb = np.matmul(np.swapaxes(a2, -1, -2), g2) if needs[1] else None
    return (unbroadcast(ga, a2.shape).reshape(a.shape) if ga is not None else None,
            unbroadcast(gb, b2.shape).reshape(b.shape) if gb is not None else None)


def matmul(a, b):
    """a @ b, with NumPy's rules for 1-D and stacked operands."""
    sa, sb = np.shape(as_array(a)), np.shape(as_array(b))
    if len(sa) == 0 or len(sb) == 0 or sa[-1] != sb[-2 if len(sb) > 1 else 0]:
        raise ValueError(f"matmul: inner dimensions must agree; received shapes {sa} and {sb}")
    return apply(_matmul_forward, _matmul_backward, a, b)


def _norm_axis(axis, ndim: int):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < builtins.max(ndim, 1):
            raise ValueError(f"axis: expected values in [{-ndim}, {ndim - 1}]; received {axis}")
    return tuple(ax % ndim for ax in axes) if ndim else ()


def _expand(g: np.ndarray, shape: tuple, axes: tuple, keepdims: bool) -> np.ndarray:
    if not keepdims:
        g = np.expand_dims(g, axes) if axes else g
    return np.broadcast_to(g, shape)


def _sum_forward(x, needs, axis, keepdims):
    return np.sum(x, axis=axis, keepdims=keepdims), (x.shape, axis, keepdims)


def _sum_backward(ctx, g, needs):
    shape, axis, keepdims = ctx
    return (np.array(_expand(g, shape, axis, keepdims)),)


def sum(x, axis=None, keepdims: bool = False):  # noqa: A001
    """Sum over `axis` (all axes by default)."""
    axes = _norm_axis(axis, np.ndim(as_array(x)))
    return apply(_sum_forward, _sum_backward, x, axis=axes, keepdims=keepdims)


def mean(x, axis=None, keepdims: bool = False):
    """Mean over `axis` (all axes by default)."""
    arr = as_array(x)
    axes = _norm_axis(axis, arr.ndim)
    count = int(np.prod([arr.shape[a] for a in axes])) if axes else 1
    return mul(sum(x, axis=axes, keepdims=keepdims), 1.0 / builtins.max(count, 1))


def _max_forward(x, needs, axis, keepdims, sign):
    out = np.max(x * sign if sign < 0 else x, axis=axis, keepdims=True)
    out = out * sign if sign < 0 else out
    return (out if keepdims else np.squeeze(out, axis=axis)), (x, out, axis, keepdims)


def _max_backward(ctx, g, needs):
    # The gradient goes to one arg-max per reduced slice (the first in C order), as in PyTorch's max(dim).
    x, out, axis, keepdims = ctx
    rest = [n for i, n in enumerate(x.shape) if i not in axis]
    red = list(range(-len(axis), 0))
    hit = np.moveaxis(x == out, axis, red).reshape(*rest, -1)  # (*rest, prod(reduced))
    gm = np.zeros(hit.shape, x.dtype)
    np.put_along_axis(gm, hit.argmax(axis=-1)[..., None], g.reshape(*rest, 1), axis=-1)
    gm = gm.reshape(*rest, *[x.shape[a] for a in axis])  # (*rest, *reduced)
    return (np.moveaxis(gm, red, axis),)


def max(x, axis=None, keepdims: bool = False):  # noqa: A001
    """Maximum over `axis`; the gradient flows to a single arg-max per slice."""
    axes = _norm_axis(axis, np.ndim(as_array(x)))
    return apply(_max_forward, _max_backward, x, axis=axes, keepdims=keepdims, sign=1)


def min(x, axis=None, keepdims: bool = False):  # noqa: A001
    """Minimum over `axis`; the gradient flows to a single arg-min per slice."""
    axes = _norm_axis(axis, np.ndim(as_array(x)))
    return apply(_max_forward, _max_backward, x, axis=axes, keepdims=keepdims, sign=-1)


# --- n-ary merges: element-wise maximum and average ---------------------------------------------
def _merge_operands(xs, op: str) -> tuple:
    """Validate 2+ floating, broadcastable operands; returns their broadcast shape."""
    if len(xs) < 2:
        raise ValueError(f"{op}: needs at least 2 arrays; received {len(xs)}")
    shapes = []
    for i, x in enumerate(xs):
        a = as_array(x)
        if a.dtype.kind != "f":
            raise TypeError(f"{op}: input {i} must have a floating dtype; received {a.dtype}")
        shapes.append(a.shape)
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{op}: the inputs' shapes must broadcast together; received {shapes}") from None


def _maximum_forward(*xs, needs, pick=np.maximum):
    out = xs[0]
    for x in xs[1:]:
        out = pick(out, x)  # np.maximum / np.minimum keep NaN
    return out, (xs, out)


def _maximum_backward(ctx, g, needs):
    # Ties share the gradient evenly: torch.maximum's rule for two inputs, torch.amax's for n.
    xs, out = ctx
    nan = np.isnan(out)
    hits = [(x == out) | (nan & np.isnan(x)) for x in xs]  # a NaN output comes from the NaN inputs
    count = builtins.sum(h.astype(g.dtype) for h in hits)
    share = g / count
    return tuple(unbroadcast(np.where(h, share, 0).astype(g.dtype, copy=False), x.shape) if n else None
                 for h, x, n in zip(hits, xs, needs))


def maximum(*xs):
    """Element-wise maximum of 2 or more broadcastable arrays (ONNX Max, Keras Maximum).

    NaN propagates. Where several inputs attain the maximum, the gradient is split evenly among
    them (torch.maximum's rule for two inputs, torch.amax's over stacked inputs for more).
    """
    _merge_operands(xs, "maximum")
    return apply(_maximum_forward, _maximum_backward, *xs)


def minimum(*xs):
    """Element-wise minimum of 2 or more broadcastable arrays (ONNX Min); ties and NaN as in `maximum`."""
    _merge_operands(xs, "minimum")
    return apply(_maximum_forward, _maximum_backward, *xs, pick=np.minimum)


def _average_forward(*xs, needs):
    out = xs[0] + xs[1]
    for x in xs[2:]:
        out = out + x
    return out / out.dtype.type(len(xs)), tuple(x.shape for x in xs)


def _average_backward(shapes, g, needs):
    share = g / g.dtype.type(len(shapes))
    return tuple(unbroadcast(share, s) if n else None for s, n in zip(shapes, needs))


def average(*xs):
    """Element-wise mean of 2 or more broadcastable arrays: (x₀ + x₁ + …) / n, summed left to right."""
    _merge_operands(xs, "average")
    return apply(_average_forward, _average_backward, *xs)
