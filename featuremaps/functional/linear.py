"""The fully connected (dense) layer: `y = x @ w + b`.

The weight is stored `(in_features, out_features)`, the Keras layout, so `w[:, j]` holds the input
weights of output unit j (PyTorch's `nn.Linear` stores the transpose, `(out, in)`).
"""
from __future__ import annotations

from ..tensor import apply
from ._checks import floating

__all__ = ["linear"]


def _forward(x, w, b, needs):
    out = x @ w  # (n, out)
    if b is not None:
        out += b
    return out, (x, w)


def _backward(ctx, g, needs):
    x, w = ctx
    gx = g @ w.T if needs[0] else None  # (n, in)
    gw = x.T @ g if needs[1] else None  # (in, out)
    gb = g.sum(axis=0) if needs[2] else None  # (out,)
    return gx, gw, gb


def _floating(a, name: str):
    return floating(a, name, "linear")


def linear(x, w, b=None):
    """`x @ w + b` for x `(N, in)`, w `(in, out)` (Keras layout), optional b `(out,)` → `(N, out)`.

    All operands must share one floating dtype (float32 and float64 are not mixed silently).
    """
    x, w = _floating(x, "x"), _floating(w, "w")
    if x.ndim != 2:
        raise ValueError(f"linear: x must be 2-D (N, in_features); received shape {x.shape}")
    if w.ndim != 2:
        raise ValueError(f"linear: w must be 2-D (in_features, out_features); received shape {w.shape}")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"linear: x has {x.shape[1]} features but w expects {w.shape[0]} "
                         f"(w.shape[0]); received x {x.shape} and w {w.shape}")
    dtypes = [x.dtype, w.dtype]
    if b is not None:
        b = _floating(b, "b")
        if b.shape != (w.shape[1],):
            raise ValueError(f"linear: b must have shape ({w.shape[1]},) (w.shape[1]); received {b.shape}")
        dtypes.append(b.dtype)
    if len(set(dtypes)) != 1:
        raise TypeError(f"linear: x, w and b must share one dtype; received "
                        f"{', '.join(str(d) for d in dtypes)}")
    return apply(_forward, _backward, x, w, b)
