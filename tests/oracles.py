"""Shared test oracles: `check_op` (an op's forward pass and every input gradient against PyTorch in
float64), the layout converters it uses, central-difference gradient checks, and the rounding bound
of a sum (`sum_rtol`, `assert_sum_close`) that tolerances between two code paths or two BLAS kernels
are derived from.

torch is imported unconditionally: a missing oracle is a failure, never a skip.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from featuremaps import Tensor, no_grad

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# Layouts: ours is channels-last (NHWC activations, HWIO weights); torch's is channels-first
# ---------------------------------------------------------------------------------------------
def torch_layout(layout: str) -> str:
    """Our axis letters -> torch's order of them. A weight (it has O and I) puts O, I first:
    "HWIO" -> "OIHW", "IO" -> "OI"; anything else puts N, C first: "NHWC" -> "NCHW", "NWC" ->
    "NCW", "NC" and "C" stay. conv_transpose2d's weight is our (KH, KW, C_out/g, C_in), "HWIO" with
    I = C_out/g, and becomes torch's (C_in, C_out/g, KH, KW), as torch wants."""
    if len(set(layout)) != len(layout):
        raise ValueError(f"torch_layout: layout must name each axis once; received {layout!r}")
    head = [a for a in ("OI" if "O" in layout else "NC") if a in layout]
    return "".join(head) + "".join(a for a in layout if a not in head)


def _perm(src: str, dst: str) -> tuple[int, ...]:
    return tuple(src.index(a) for a in dst)


def to_torch(a: np.ndarray, layout: str | None, requires_grad: bool = True) -> torch.Tensor:
    """Our ndarray in `layout` (None: as it is) -> a torch tensor in torch's layout, same dtype."""
    a = np.asarray(a)
    if layout is not None:
        if a.ndim != len(layout):
            raise ValueError(f"to_torch: layout {layout!r} needs a {len(layout)}-D array; received shape {a.shape}")
        a = a.transpose(_perm(layout, torch_layout(layout)))  # e.g. (N, H, W, C) -> (N, C, H, W)
    return torch.tensor(np.array(a, order="C"), requires_grad=requires_grad)  # (0-d stays 0-d)


def from_torch(t: torch.Tensor, layout: str | None) -> np.ndarray:
    """A torch tensor in torch's layout -> our ndarray in `layout` (None: as it is)."""
    a = t.detach().numpy()
    return a if layout is None else a.transpose(_perm(torch_layout(layout), layout))  # e.g. NCHW -> NHWC


def nhwc_to_nchw(x: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) ndarray -> (N, C, H, W) torch tensor that requires grad."""
    return to_torch(x, "NHWC")


def nchw_to_nhwc(t: torch.Tensor) -> np.ndarray:
    return from_torch(t, "NHWC")


def hwio_to_oihw(w: np.ndarray) -> torch.Tensor:
    """(KH, KW, I, O) ndarray -> (O, I, KH, KW) torch tensor that requires grad."""
    return to_torch(w, "HWIO")


def oihw_to_hwio(t: torch.Tensor) -> np.ndarray:
    return from_torch(t, "HWIO")


def channels_last(ndim: int) -> str:
    """Our layout of an activation with `ndim` axes: "NC", "NWC" or "NHWC"."""
    return {2: "NC", 3: "NWC", 4: "NHWC"}[ndim]


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


# ---------------------------------------------------------------------------------------------
# check_op: one op against torch in float64, forward and every input gradient
# ---------------------------------------------------------------------------------------------
class Checked(NamedTuple):
    """What `check_op` compared, all in our layouts: ours, torch's (float64), and the upstream gradient."""
    out: np.ndarray
    grads: list
    ref_out: np.ndarray
    ref_grads: list
    grad: np.ndarray


def upstream(shape, dtype, seed: int = 0) -> np.ndarray:
    """The seeded random upstream gradient (standard normal, in `dtype`) that `run_op` sends back."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def run_op(fn, arrays: Sequence[np.ndarray], grad: np.ndarray | None = None, seed: int = 0):
    """`fn` on Tensors made from `arrays` (all requiring grad), then backward of `grad` (default:
    `upstream(out.shape, out.dtype, seed)`). Returns (out, [input gradients], grad)."""
    ts = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    if not isinstance(out, Tensor):
        raise TypeError(f"run_op: fn must return a Tensor for Tensor inputs; received {type(out).__name__}")
    grad = upstream(out.shape, out.dtype, seed) if grad is None else np.asarray(grad)
    out.backward(grad)
    return out.data, [t.grad for t in ts], grad


def torch_grads(torch_fn, arrays: Sequence[np.ndarray], layouts: Sequence[str | None], grad: np.ndarray,
                out_layout: str | None):
    """`torch_fn` on float64 torch tensors made from `arrays` (our `layouts` -> torch's), then backward
    of `grad` (our `out_layout`). Returns (out, [input gradients, None where torch has none]) as
    float64 ndarrays in our layouts."""
    ts = [to_torch(np.asarray(a, np.float64), lay) for a, lay in zip(arrays, layouts, strict=True)]
    out = torch_fn(*ts)
    out.backward(to_torch(np.asarray(grad, np.float64), out_layout, requires_grad=False))
    return from_torch(out, out_layout), [None if t.grad is None else from_torch(t.grad, lay)
                                         for t, lay in zip(ts, layouts)]


def _per_value(v, n: int, what: str) -> list:
    """One setting per compared value (the output, then each input's gradient)."""
    if v is None or np.isscalar(v):
        return [v] * n
    v = list(v)
    if len(v) != n:
        raise ValueError(f"check_op: {what} must be one value or {n} (the output, then each input's gradient); "
                         f"received {len(v)}")
    return v


def _compare(name, got, want, bound, dtype, terms, atol, rtol) -> None:
    if want is None:
        raise AssertionError(f"{name}: torch_fn gives no gradient here; the oracle must use every input")
    if got is None:
        raise AssertionError(f"{name}: featuremaps gives no gradient, torch does")
    if got.shape != want.shape:
        raise AssertionError(f"{name}: featuremaps gives shape {got.shape}, torch {want.shape}")
    if got.dtype != dtype:
        raise AssertionError(f"{name}: featuremaps gives dtype {got.dtype}, expected {np.dtype(dtype).name}")
    if terms is None:
        np.testing.assert_allclose(got, want, rtol=rtol or 0.0, atol=atol or 0.0, equal_nan=True, err_msg=name)
        return
    special = ~np.isfinite(want)  # NaN and ±inf: the same, exactly
    np.testing.assert_array_equal(got[special], want[special], err_msg=f"{name}: NaN/±inf values differ")
    bound = np.where(special, 0.0, bound)
    if not np.isfinite(bound).all():
        raise AssertionError(f"{name}: the bound Σ|terms| is not finite where torch's value is")
    assert_sum_close(np.where(special, 0.0, got), np.where(special, 0.0, want), bound, dtype, terms, err_msg=name)


def check_op(fm_fn, torch_fn, arrays: Sequence[np.ndarray], layouts: Sequence[str | None], atol=None, rtol=None, *,
             terms=None, scale: str = "sum", out_layout=..., grad: np.ndarray | None = None,
             seed: int = 0, names: Sequence[str] | None = None) -> Checked:
    """Assert that `fm_fn(*Tensors)` and `torch_fn(*torch tensors)` agree: the output, and the
    gradient of every input for one upstream gradient (`grad`, default a seeded standard normal one).

    `arrays` are our inputs (NumPy, in our layouts, all differentiated; close over anything else);
    `layouts` says each one's axes ("NHWC", "HWIO", "NC", "C", ...; None: the same in torch), and
    `torch_layout` gives torch's. torch runs in float64 on the same values, whatever their dtype:
    the oracle is the exact-as-can-be answer, and ours must match it within its own dtype.
    `out_layout` is the output's layout (default `...`: the first input's). `names` (e.g. "xwb")
    name the inputs in messages ("dw"); the default says "gradient of input 1".

    The tolerance comes either from `terms`, the length of each value's sum (an int or one per
    compared value: the output, then each gradient; 0 = no rounding at all, copies and picks), or
    from explicit `atol`/`rtol` (floats or one per value: for ops that are not sums, whose rounding
    has no simple bound). With `terms`, |ours − torch| ≤ sum_rtol(dtype, terms) · Σ|terms| per
    value, and Σ|terms| is torch_fn run a second time (so a torch_fn with side effects, such as
    running statistics, takes atol/rtol):
    - scale="sum": on |arrays| and |grad|, exact for ops built of sums of products of their inputs
      and the upstream gradient (conv, linear, average pooling, padding, concat);
    - scale="route": on the arrays themselves and |grad|, for ops that pick or average inputs with
      non-negative weights (max pooling: each input gradient sums the upstream values routed to it).
    NaN and ±inf must match exactly. Every gradient must exist on both sides, with our input's dtype.
    Returns a `Checked` (ours, torch's, the upstream gradient) for further asserts.
    """
    arrays = [np.asarray(a) for a in arrays]
    if len(layouts) != len(arrays):
        raise ValueError(f"check_op: layouts must give one layout per array ({len(arrays)}); received {len(layouts)}")
    if (terms is None) == (atol is None and rtol is None):
        raise TypeError("check_op: give either terms (the length of each sum, for a derived tolerance) or atol/rtol")
    if scale not in ("sum", "route"):
        raise ValueError(f"check_op: scale must be 'sum' or 'route'; received {scale!r}")
    out_layout = layouts[0] if out_layout is ... else out_layout
    n = 1 + len(arrays)  # compared values: the output, then each input's gradient
    terms, atol, rtol = (_per_value(v, n, what) for v, what in ((terms, "terms"), (atol, "atol"), (rtol, "rtol")))
    names = ["output"] + [f"gradient of input {i}" if names is None else f"d{names[i]}" for i in range(len(arrays))]
    out, grads, grad = run_op(fm_fn, arrays, grad, seed)
    ref_out, ref_grads = torch_grads(torch_fn, arrays, layouts, grad, out_layout)
    dtypes = [np.result_type(*arrays)] + [a.dtype for a in arrays]
    bounds = [0.0] * n
    if any(t for t in terms if t is not None):  # (all 0: exact, no bound needed)
        inputs = [np.abs(a) for a in arrays] if scale == "sum" else arrays
        b_out, b_grads = torch_grads(torch_fn, inputs, layouts, np.abs(grad), out_layout)
        bounds = [None if b is None else np.abs(b) for b in [b_out] + b_grads]
    for args in zip(names, [out] + grads, [ref_out] + ref_grads, bounds, dtypes, terms, atol, rtol):
        _compare(*args)
    return Checked(out, grads, ref_out, ref_grads, grad)


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
