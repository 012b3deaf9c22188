"""Losses: cross-entropy from logits, negative log-likelihood, mean squared error.

`reduction` is 'mean' (the default: a 0-d result averaged over the batch), 'sum', or 'none'
(one loss per sample for the classification losses, per element for `mse_loss`), as in PyTorch.
Labels are plain integer arrays of class indices in [0, C); they are not differentiable.
"""
from __future__ import annotations

import numpy as np

from ..tensor import as_array, apply
from ._checks import floating

__all__ = ["cross_entropy", "nll_loss", "mse_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction, op: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of 'mean', 'sum', 'none'; received {reduction!r}")
    return reduction


def _scores_and_labels(scores, labels, name: str, op: str):
    """Validate (N, C) scores and (N,) integer labels in [0, C); return them (labels as intp)."""
    scores = floating(scores, name, op)
    if scores.ndim != 2:
        raise ValueError(f"{op}: {name} must be 2-D (N, C); received shape {scores.shape}")
    lab = as_array(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be an integer array of class indices; received dtype {lab.dtype}")
    if lab.ndim != 1:
        raise ValueError(f"{op}: labels must be 1-D (N,); received shape {lab.shape}")
    n, c = scores.shape
    if lab.shape[0] != n:
        raise ValueError(f"{op}: {name} has batch size {n} but labels has {lab.shape[0]}")
    if lab.size:
        bad = (lab < 0) | (lab >= c)
        if bad.any():
            raise ValueError(f"{op}: labels must be in [0, {c}) for {c} classes; "
                             f"received {lab[bad][0]} (at index {int(np.argmax(bad))})")
    return scores, lab.astype(np.intp, copy=False)


def _reduce(per_sample: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return per_sample
    total = per_sample.sum(dtype=per_sample.dtype)
    with np.errstate(invalid="ignore"):  # the mean of an empty batch is NaN, as in PyTorch
        return np.asarray(total / per_sample.shape[0] if reduction == "mean" else total, dtype=per_sample.dtype)


def _spread(g: np.ndarray, n: int, reduction: str, dtype) -> np.ndarray:
    """The gradient of the reduced loss with respect to each per-sample loss: shape (N, 1)."""
    if reduction == "none":
        return g[:, None]
    scale = 1.0 / n if reduction == "mean" and n else 1.0
    return np.full((n, 1), g * scale, dtype=dtype)


# --- cross-entropy from logits ----------------------------------------------------------------
def _ce_forward(logits, needs, labels, smoothing, reduction):
    n, c = logits.shape
    with np.errstate(invalid="ignore"):
        z = logits - logits.max(axis=1, keepdims=True)  # (n, c)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))  # (n, 1)
    logp = z - lse  # (n, c): log-softmax
    rows = np.arange(n)
    per = -logp[rows, labels]  # (n,)
    if smoothing:
        per = (1 - smoothing) * per - smoothing * logp.mean(axis=1)
    return _reduce(per.astype(logits.dtype, copy=False), reduction), (logp, labels, smoothing, reduction)


def _ce_backward(ctx, g, needs):
    logp, labels, smoothing, reduction = ctx
    n, c = logp.shape
    grad = np.exp(logp)  # (n, c): softmax − target distribution
    if smoothing:
        grad -= smoothing / c
    grad[np.arange(n), labels] -= 1 - smoothing
    grad *= _spread(g, n, reduction, logp.dtype)
    return (grad,)


def cross_entropy(logits, labels, *, label_smoothing: float = 0.0, reduction: str = "mean"):
    """Cross-entropy of integer `labels` (N,) under softmax(`logits`) (N, C), as PyTorch computes it.

    With label smoothing ε the target puts 1 − ε + ε/C on the label and ε/C on every other class.
    The log-softmax uses log-sum-exp with the row maximum subtracted, so large logits do not overflow.
    """
    op = "cross_entropy"
    reduction = _reduction(reduction, op)
    logits, labels = _scores_and_labels(logits, labels, "logits", op)
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(label_smoothing, (int, float, np.floating)):
        raise TypeError(f"{op}: label_smoothing must be a number in [0, 1); received {label_smoothing!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1); received {label_smoothing}")
    return apply(_ce_forward, _ce_backward, logits, labels=labels, smoothing=float(label_smoothing),
                 reduction=reduction)


# --- negative log-likelihood -----------------------------------------------------------------
def _nll_forward(log_probs, needs, labels, reduction):
    per = -log_probs[np.arange(log_probs.shape[0]), labels]  # (n,)
    return _reduce(per, reduction), (log_probs.shape, log_probs.dtype, labels, reduction)


def _nll_backward(ctx, g, needs):
    shape, dtype, labels, reduction = ctx
    grad = np.zeros(shape, dtype=dtype)
    grad[np.arange(shape[0]), labels] = -_spread(g, shape[0], reduction, dtype)[:, 0]
    return (grad,)


def nll_loss(log_probs, labels, reduction: str = "mean"):
    """−log_probs[i, labels[i]] for (N, C) log-probabilities (e.g. from `log_softmax`), reduced."""
    op = "nll_loss"
    reduction = _reduction(reduction, op)
    log_probs, labels = _scores_and_labels(log_probs, labels, "log_probs", op)
    return apply(_nll_forward, _nll_backward, log_probs, labels=labels, reduction=reduction)


# --- mean squared error -----------------------------------------------------------------------
def _mse_forward(pred, target, needs, reduction):
    diff = pred - target
    sq = diff * diff
    if reduction == "none":
        out = sq
    else:
        total = sq.sum(dtype=sq.dtype)
        with np.errstate(invalid="ignore"):  # the mean of nothing is NaN, as in PyTorch
            out = np.asarray(total / sq.size if reduction == "mean" else total, dtype=sq.dtype)
    return out, (diff, reduction)


def _mse_backward(ctx, g, needs):
    diff, reduction = ctx
    scale = 2.0 / diff.size if reduction == "mean" and diff.size else 2.0
    grad = diff * (g * scale)  # g is 0-d after 'mean'/'sum', elementwise after 'none'
    return (grad if needs[0] else None, -grad if needs[1] else None)


def mse_loss(pred, target, reduction: str = "mean"):
    """(pred − target)², reduced; both must have the same shape and both are differentiable."""
    op = "mse_loss"
    reduction = _reduction(reduction, op)
    pred, target = floating(pred, "pred", op), floating(target, "target", op)
    if pred.shape != target.shape:
        raise ValueError(f"{op}: pred and target must have the same shape; received {pred.shape} and {target.shape}")
    if pred.dtype != target.dtype:
        raise TypeError(f"{op}: pred and target must share one dtype; received {pred.dtype} and {target.dtype}")
    return apply(_mse_forward, _mse_backward, pred, target, reduction=reduction)
