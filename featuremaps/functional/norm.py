"""Normalisation and regularisation over channels-last data: batch norm, instance norm, dropout, local
response norm.

The channel axis is the last one: (N, C) or (N, H, W, C). Each op is one forward/backward pair run
through `featuremaps.tensor.apply` and keeps the input dtype.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, apply
from ._checks import floating

__all__ = ["batch_norm", "instance_norm", "dropout", "local_response_norm"]


def _real(value, name: str, op: str, lo: float, hi: float, hi_open: bool) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a real number; received {value!r}")
    value = float(value)
    if not (lo <= value and (value < hi if hi_open else value <= hi)):
        raise ValueError(f"{op}: {name} must be in [{lo:g}, {hi:g}{')' if hi_open else ']'}; received {value}")
    return value


# --- batch norm -------------------------------------------------------------------------------
def _batch_stats(x2, reduce):
    """(mean, x − mean, biased var, values per channel) of the batch rows x2 (m, c); with `reduce`
    (synchronised batch norm) the sums are taken over every process's rows: `reduce(v, what)` returns
    v summed over the processes."""
    if reduce is None:
        mean = x2.mean(axis=0)  # (c,)
        xc = x2 - mean  # (m, c)
        return mean, xc, np.mean(xc * xc, axis=0), x2.shape[0]
    c = x2.shape[1]
    first = reduce(np.concatenate([x2.sum(axis=0, dtype=np.float64), [x2.shape[0]]]), "mean")  # (c + 1,): Σx, M
    m = first[-1]
    mean = (first[:c] / m).astype(x2.dtype)  # (c,)
    xc = x2 - mean  # (m_here, c)
    var = (reduce(np.sum(xc * xc, axis=0, dtype=np.float64), "variance") / m).astype(x2.dtype)  # (c,)
    return mean, xc, var, m


def _bn_forward(x, gamma, beta, needs, training, running_mean, running_var, momentum, eps, reduce):
    c = x.shape[-1]
    x2 = x.reshape(-1, c)  # (m, c): every position of every sample is one observation per channel
    m = x2.shape[0]
    if training:
        mean, xc, var, m = _batch_stats(x2, reduce)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var * (m / (m - 1))  # unbiased, as PyTorch keeps it
    else:
        mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        xc = x2 - mean  # (m, c)
    inv = (1 / np.sqrt(var + eps)).astype(x.dtype, copy=False)  # (c,)
    xhat = xc * inv  # (m, c)
    if gamma is not None:
        out = xhat * gamma  # (m, c)
        if beta is not None:
            out += beta
    else:  # never hand out xhat itself: the backward pass keeps it
        out = xhat + beta if beta is not None else xhat.copy()
    return out.reshape(x.shape), (xhat, inv, gamma, training, x.shape, m, reduce)


def _bn_backward(ctx, g, needs):
    xhat, inv, gamma, training, shape, m, reduce = ctx
    c = shape[-1]
    g2 = g.reshape(-1, c)  # (m, c)
    gbeta = g2.sum(axis=0)  # (c,) this process's
    ggamma = np.sum(g2 * xhat, axis=0) if (needs[0] and training) or needs[1] else None  # (c,)
    gx = None
    if needs[0]:
        scale = inv * gamma if gamma is not None else inv  # (c,)
        if training:  # the batch mean and variance depend on x as well
            sum_g, sum_gx = gbeta, ggamma
            if reduce is not None:  # the sums over every process's rows
                both = reduce(np.concatenate([gbeta, ggamma]), "backward")  # (2c,)
                sum_g, sum_gx = both[:c].astype(g.dtype), both[c:].astype(g.dtype)
            gx = (g2 - sum_g / m - xhat * (sum_gx / m)) * scale  # (m, c)
        else:
            gx = g2 * scale  # (m, c)
        gx = gx.reshape(shape)
    return gx, (ggamma if needs[1] else None), (gbeta if needs[2] else None)


def _channel_vector(a, name: str, c: int, op: str, *, writable: bool = False):
    if a is None:
        return None
    if writable:
        a = a.data if isinstance(a, Tensor) else a
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be a floating ndarray (updated in place); received "
                            f"{type(a).__name__}{'' if not isinstance(a, np.ndarray) else ' of ' + str(a.dtype)}")
    else:
        a = floating(a, name, op)
    if a.shape != (c,):
        raise ValueError(f"{op}: {name} must have shape ({c},) for {c} channels; received {a.shape}")
    return a


def batch_norm(x, gamma, beta, running_mean, running_var, *, training: bool, momentum: float = 0.1,
               eps: float = 1e-5, reduce=None):
    """Batch normalisation over the last (channel) axis of (N, C) or (N, H, W, C) data.

    `y = gamma · (x − mean) / √(var + eps) + beta`, per channel. With `training=True` mean and var
    are the batch's (biased variance, over every axis but the last), and `running_mean` and
    `running_var` are updated in place as PyTorch does:
    `running = (1 − momentum) · running + momentum · batch_stat`, where the variance stored is the
    unbiased one (× m / (m − 1) for m values per channel); pass None for both to skip the update.
    With `training=False` the running statistics are used and must be given. `gamma` / `beta`
    (shape (C,)) may be None for no scale / no shift. Gradients flow to x, gamma and beta.

    `reduce` (synchronised batch norm, `featuremaps.distributed.sync_bn`): a function `(values, what)`
    returning `values` (a float64 vector) summed over every process. The batch statistics, and in the
    backward pass the sums of g and g·x̂, are then the global batch's: the same formulas with the sums
    taken over every process's rows. Every process must make the same calls in the same order.
    """
    op = "batch_norm"
    x = floating(x, "x", op)
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be (N, C) or (N, H, W, C); received shape {x.shape}")
    c = x.shape[-1]
    if c == 0:
        raise ValueError(f"{op}: x must have at least one channel; received shape {x.shape}")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{op}: training must be True or False; received {training!r}")
    gamma = _channel_vector(gamma, "gamma", c, op)
    beta = _channel_vector(beta, "beta", c, op)
    running_mean = _channel_vector(running_mean, "running_mean", c, op, writable=True)
    running_var = _channel_vector(running_var, "running_var", c, op, writable=True)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: running_mean and running_var must both be given or both be None")
    momentum = _real(momentum, "momentum", op, 0.0, 1.0, hi_open=False)
    eps = _real(eps, "eps", op, 0.0, float("inf"), hi_open=True)
    if training:
        m = x.size // c if c else 0
        if m < 2:
            raise ValueError(f"{op}: training needs more than 1 value per channel; received x of shape {x.shape}")
    elif running_mean is None:
        raise ValueError(f"{op}: running_mean and running_var are required when training=False")
    if reduce is not None and not callable(reduce):
        raise TypeError(f"{op}: reduce must be None or a function (values, what) -> summed values; received "
                        f"{type(reduce).__name__}")
    return apply(_bn_forward, _bn_backward, x, gamma, beta, training=bool(training), running_mean=running_mean,
                 running_var=running_var, momentum=momentum, eps=eps, reduce=reduce)


# --- instance norm ----------------------------------------------------------------------------
def _in_forward(x, gamma, beta, needs, eps):
    axes = tuple(range(1, x.ndim - 1))  # the positions of one map of one sample
    mean = x.mean(axis=axes, keepdims=True)  # (N, 1, 1, C)
    xc = x - mean
    var = np.mean(xc * xc, axis=axes, keepdims=True)  # (N, 1, 1, C), biased
    inv = (1 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
    xhat = xc * inv
    out = xhat * gamma if gamma is not None else xhat.copy()
    if beta is not None:
        out += beta
    return out, (xhat, inv, gamma, axes)


def _in_backward(ctx, g, needs):
    xhat, inv, gamma, axes = ctx
    every = (0,) + axes
    gx = None
    if needs[0]:
        gs = g * gamma if gamma is not None else g  # gradient with respect to xhat
        gx = (gs - gs.mean(axis=axes, keepdims=True) - xhat * np.mean(gs * xhat, axis=axes, keepdims=True)) * inv
    ggamma = np.sum(g * xhat, axis=every) if needs[1] else None  # (C,)
    gbeta = np.sum(g, axis=every) if needs[2] else None  # (C,)
    return gx, ggamma, gbeta


def instance_norm(x, gamma, beta, eps: float = 1e-5):
    """Instance normalisation of channels-last maps (N, H, W, C) (ONNX InstanceNormalization, PyTorch
    `instance_norm`): each map of each sample is normalised over its own positions,
    `y = gamma · (x − mean) / √(var + eps) + beta` with the biased variance over H, W for every
    (n, c). `gamma` / `beta` have shape (C,), or are None for no scale / no shift. Gradients flow to
    x, gamma and beta.
    """
    op = "instance_norm"
    x = floating(x, "x", op)
    if x.ndim < 3:
        raise ValueError(f"{op}: x must be (N, H, W, C) maps; received shape {x.shape}")
    c = x.shape[-1]
    gamma = _channel_vector(gamma, "gamma", c, op)
    beta = _channel_vector(beta, "beta", c, op)
    eps = _real(eps, "eps", op, 0.0, float("inf"), hi_open=True)
    return apply(_in_forward, _in_backward, x, gamma, beta, eps=eps)


# --- dropout ----------------------------------------------------------------------------------
def _dropout_forward(x, needs, p, rng):
    draw = rng.random(x.shape, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
    scale = (draw >= p).astype(x.dtype) * x.dtype.type(1 / (1 - p))  # 0 or 1/(1 − p)
    return x * scale, scale


def _dropout_backward(scale, g, needs):
    return (g * scale,)


def dropout(x, p: float, *, training: bool = True, rng: np.random.Generator | None = None):
    """Inverted dropout: zero each element with probability p and scale the rest by 1 / (1 − p).

    The identity (returning `x` itself) when `training` is False or p == 0. When training with
    p > 0, `rng` (a `numpy.random.Generator`) is required; p must be in [0, 1).
    """
    op = "dropout"
    x = floating(x, "x", op)
    p = _real(p, "p", op, 0.0, 1.0, hi_open=True)
    if not training or p == 0.0:
        return x
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{op}: rng must be a numpy.random.Generator when training with p > 0 "
                        f"(e.g. np.random.default_rng(0)); received {rng!r}")
    return apply(_dropout_forward, _dropout_backward, x, p=p, rng=rng)


# --- local response norm ----------------------------------------------------------------------
def _channel_window_sum(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """out[..., c] = Σ a[..., c − before : c + after + 1] along the last axis (zeros past the ends)."""
    c = a.shape[-1]
    ap = np.zeros(a.shape[:-1] + (c + before + after,), dtype=a.dtype)  # (..., c + before + after)
    ap[..., before:before + c] = a
    out = ap[..., :c].copy()
    for o in range(1, before + after + 1):  # loop over the window offsets only
        out += ap[..., o:o + c]
    return out


def _lrn_forward(x, needs, size, alpha, beta, k):
    lo, hi = size // 2, (size - 1) // 2  # window of channel c: c − lo .. c + hi
    d = k + (alpha / size) * _channel_window_sum(x * x, lo, hi)
    scale = d ** -beta
    out = x * scale
    return out, (x, out, d, scale, size, alpha, beta, lo, hi)


def _lrn_backward(ctx, g, needs):
    x, out, d, scale, size, alpha, beta, lo, hi = ctx
    # x_j appears in the sums of channels j − hi .. j + lo: the transposed window.
    back = _channel_window_sum(g * out / d, hi, lo)
    return (g * scale - (2 * beta * alpha / size) * x * back,)


def local_response_norm(x, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """Normalise each channel by its neighbours: `y_c = x_c / (k + alpha / size · Σ x_j²)^beta`.

    The sum runs over channels j = c − size//2 … c + (size − 1)//2 (zeros past the ends) of the last
    axis, and alpha is divided by `size`: PyTorch's `local_response_norm` convention (AlexNet's paper
    writes alpha without the division).
    """
    op = "local_response_norm"
    x = floating(x, "x", op)
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be (N, C) or (N, H, W, C); received shape {x.shape}")
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{op}: size must be an int ≥ 1; received {size!r}")
    alpha = _real(alpha, "alpha", op, -np.inf, np.inf, hi_open=True)
    beta = _real(beta, "beta", op, -np.inf, np.inf, hi_open=True)
    k = _real(k, "k", op, -np.inf, np.inf, hi_open=True)
    return apply(_lrn_forward, _lrn_backward, x, size=int(size), alpha=alpha, beta=beta, k=k)
