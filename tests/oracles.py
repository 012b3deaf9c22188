"""Shared test oracles: the PyTorch reference (float64), central-difference gradient checks, and
the rounding bound of a sum (`sum_rtol`, `assert_sum_close`) that tolerances between two code paths
or two BLAS kernels are derived from.

torch is imported unconditionally: a missing oracle is a failure, never a skip.
"""
from __future__ import annotations

import numpy as np
import torch

from featuremaps import Tensor, no_grad

torch.set_num_threads(1)


def nhwc_to_nchw(x: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) ndarray -> (N, C, H, W) torch tensor that requires grad."""
    return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)


def nchw_to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def hwio_to_oihw(w: np.ndarray) -> torch.Tensor:
    """(KH, KW, I, O) ndarray -> (O, I, KH, KW) torch tensor that requires grad."""
    return torch.tensor(np.ascontiguousarray(w.transpose(3, 2, 0, 1)), requires_grad=True)


def oihw_to_hwio(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(2, 3, 1, 0)


def sum_rtol(dtype, n_terms: int, safety: float = 2.0) -> float:
    """How far an `n_terms`-term sum or dot product computed in `dtype` may be from the exact value,
    relative to the sum of the terms' magnitudes Σ|a_i·b_i| (NOT to the result, which can cancel).

    Whatever the order of the additions (a BLAS kernel's blocking, another CPU's kernel, a loop, a
    batch of another size), |computed − exact| ≤ γ_n·Σ|a_i·b_i| with γ_n ≈ n·u (Higham, Accuracy and
    Stability of Numerical Algorithms, §3.1), u = 2**-24 for float32 and 2**-53 for float64. Count a
    bias or a final scale as one more term. `safety` = 2 because both computations being compared
    round (for a float64 oracle against float32 work it is simply a margin).
    """
    u = float(np.finfo(dtype).eps) / 2  # unit roundoff: 2**-24 (float32), 2**-53 (float64)
    return safety * n_terms * u


def assert_sum_close(actual, expected, abs_sum, dtype, n_terms: int, safety: float = 2.0, err_msg: str = "") -> None:
    """Assert |actual − expected| ≤ sum_rtol(dtype, n_terms, safety) · abs_sum element-wise, where
    `abs_sum` (an array or a scalar that bounds it) is Σ|terms| of each sum: e.g. the same conv run
    on |x| and |w|. The bound for comparing two code paths or two BLAS kernels (see `sum_rtol`)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    tol = sum_rtol(dtype, n_terms, safety) * np.asarray(abs_sum, np.float64)
    err = np.abs(actual - expected)
    bad = ~(err <= tol)  # NaN counts as bad
    if bad.any():
        tol = np.broadcast_to(tol, bad.shape)
        k = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.where(bad, err - tol, -np.inf))), bad.shape))
        raise AssertionError(f"{err_msg + ': ' if err_msg else ''}{int(bad.sum())} of {bad.size} values differ by "
                             f"more than the rounding of a {n_terms}-term {np.dtype(dtype).name} sum; worst at "
                             f"{k}: {float(actual[k])!r} vs {float(expected[k])!r}, difference {float(err[k]):.3g} "
                             f"> {float(tol[k]):.3g}")


def grads_of(fn, *arrays: np.ndarray, seed_grad: np.ndarray | None = None):
    """Run `fn` on Tensors made from `arrays` (all requiring grad); return (out, [grads])."""
    ts = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    g = np.ones_like(out.data) if seed_grad is None else seed_grad
    out.backward(g)
    return out.data, [t.grad for t in ts]


def _value(fn, arrays) -> np.ndarray:
    with no_grad():
        out = fn(*[Tensor(a) for a in arrays])
    return np.asarray(out.data if isinstance(out, Tensor) else out)


def numeric_grad(fn, arrays: list[np.ndarray], index: int, seed_grad: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of sum(fn(*arrays) * seed_grad) w.r.t. arrays[index] (float64 ndarrays)."""
    x = arrays[index]
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        hi = float(np.sum(_value(fn, arrays) * seed_grad))
        x[i] = old - eps
        lo = float(np.sum(_value(fn, arrays) * seed_grad))
        x[i] = old
        grad[i] = (hi - lo) / (2 * eps)
    return grad


def gradcheck(fn, *arrays: np.ndarray, rtol: float = 1e-5, atol: float = 1e-7, seed: int = 0) -> None:
    """Assert autograd gradients of `fn` equal central differences (float64 inputs only)."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    out = _value(fn, arrays)
    seed_grad = np.random.default_rng(seed).standard_normal(out.shape)
    _, grads = grads_of(fn, *arrays, seed_grad=seed_grad)
    for k in range(len(arrays)):
        num = numeric_grad(fn, arrays, k, seed_grad)
        np.testing.assert_allclose(grads[k], num, rtol=rtol, atol=atol, err_msg=f"gradient of input {k}")
