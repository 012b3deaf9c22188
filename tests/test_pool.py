"""Pooling against PyTorch (float64, NCHW) and a naive loop (asymmetric padding): values, gradients,
ties, NaN/inf, global pools, errors."""
import math

import numpy as np
import pytest
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st

import featuremaps.functional as fn
from featuremaps import Tensor
from tests.oracles import assert_sum_close, check_op, gradcheck, run_op, torch_grads


def _taps(kernel_size, **_):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return kh * kw


def check_max_pool(x, grad=None, seed=0, **kw):
    """max_pool2d(x, **kw) against torch's: the output is a pick, so exact; each input gradient sums
    the upstream values routed to it, at most one per window tap (kh·kw terms)."""
    return check_op(lambda t: fn.max_pool2d(t, **kw), lambda t: F.max_pool2d(t, **kw), [x], ["NHWC"],
                    terms=[0, _taps(**kw)], scale="route", grad=grad, seed=seed)


def check_avg_pool(x, seed=0, **kw):
    """avg_pool2d(x, **kw) against torch's: a window's sum and its division (kh·kw + 1 terms); each
    input gradient sums at most one divided upstream value per window tap."""
    return check_op(lambda t: fn.avg_pool2d(t, **kw), lambda t: F.avg_pool2d(t, **kw), [x], ["NHWC"],
                    terms=_taps(**kw) + 1, seed=seed)


def _values(shape, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "ties":  # few distinct values: many windows hold several maxima
        return rng.integers(-2, 3, shape).astype(np.float64)
    if kind == "constant":
        return np.full(shape, 1.5)
    return rng.standard_normal(shape)


@st.composite
def pool_case(draw, dilation=True):
    """(x shape, kernel, stride, padding, dilation, ceil_mode) with PyTorch's padding rule."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kernel = (kh, kw)
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    eff = [d * (k - 1) + 1 for d, k in zip(dil, kernel)]
    # sizes from "kernel as large as the padded input" upwards, odd and even
    h = draw(st.integers(max(1, eff[0] - 2 * padding[0]), eff[0] + 5))
    w = draw(st.integers(max(1, eff[1] - 2 * padding[1]), eff[1] + 5))
    shape = (draw(st.integers(1, 2)), h, w, draw(st.integers(1, 3)))
    return shape, kernel, stride, padding, dil, draw(st.booleans())


def _windows_reach_input(size, k, s, d, pad, out):
    """False when some dilated window holds only padding."""
    return all(any(0 <= i * s - pad + p * d < size for p in range(k)) for i in range(out))


@settings(max_examples=150, deadline=None)
@given(case=pool_case(), kind=st.sampled_from(["ties", "normal", "constant"]), seed=st.integers(0, 2**32 - 1))
def test_max_pool2d_matches_torch(case, kind, seed):
    shape, kernel, stride, padding, dil, ceil_mode = case
    x = _values(shape, seed, kind)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dil, ceil_mode=ceil_mode)
    out_hw = fn.max_pool2d(x, **kw).shape[1:3]
    for n, k, s, d, p, o in zip(shape[1:3], kernel, stride or kernel, dil, padding, out_hw):
        # a dilated window of padding only: PyTorch's backward writes outside the input (it aborted here)
        assume(_windows_reach_input(n, k, s, d, p, o))
    assert np.isfinite(check_max_pool(x, seed=seed, **kw).out).all()


@settings(max_examples=120, deadline=None)
@given(case=pool_case(dilation=False), include_pad=st.booleans(), kind=st.sampled_from(["ties", "normal"]),
       seed=st.integers(0, 2**32 - 1))
def test_avg_pool2d_matches_torch(case, include_pad, kind, seed):
    shape, kernel, stride, padding, _, ceil_mode = case
    x = _values(shape, seed, kind)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode, count_include_pad=include_pad)
    check_avg_pool(x, seed, **kw)


# --- a naive loop oracle for what torch cannot express: asymmetric padding -------------------
def _naive_pool(x, g, kernel, stride, pads, ceil_mode, mode, include_pad=True):
    """Loop over every output element: PyTorch's rules written out, for ((top, bottom), (left, right))."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), ((t, b), (l, r)) = kernel, stride, pads

    def size(m, k, s, lo, hi):
        o = (math.ceil if ceil_mode else math.floor)((m + lo + hi - k) / s) + 1
        return o - 1 if ceil_mode and (o - 1) * s >= m + lo else o

    oh, ow = size(h, kh, sh, t, b), size(w, kw, sw, l, r)
    out, grad = np.zeros((n, oh, ow, c)), np.zeros_like(x)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - t, j * sw - l
            cells = [(r0 + p, c0 + q) for p in range(kh) for q in range(kw)]  # window order
            real = [(y, z) for y, z in cells if 0 <= y < h and 0 <= z < w]
            for a in range(n):
                for ch in range(c):
                    vals = [x[a, y, z, ch] for y, z in real]
                    if mode == "max":
                        best = int(np.argmax(vals))  # first maximum
                        out[a, i, j, ch] = vals[best]
                        grad[a, real[best][0], real[best][1], ch] += g[a, i, j, ch]
                    else:
                        inside = [(y, z) for y, z in cells if y < h + b and z < w + r]
                        div = len(inside) if include_pad else len(real)
                        out[a, i, j, ch] = sum(vals) / div
                        for y, z in real:
                            grad[a, y, z, ch] += g[a, i, j, ch] / div
    return out, grad


@settings(max_examples=60, deadline=None)
@given(kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       data=st.data(), mode=st.sampled_from(["max", "avg"]), include_pad=st.booleans(), ceil_mode=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_asymmetric_padding_matches_a_naive_loop(kernel, stride, data, mode, include_pad, ceil_mode, seed):
    pads = tuple((data.draw(st.integers(0, k // 2)), data.draw(st.integers(0, k // 2))) for k in kernel)
    h = data.draw(st.integers(max(1, kernel[0] - sum(pads[0])), 8))
    w = data.draw(st.integers(max(1, kernel[1] - sum(pads[1])), 8))
    x = _values((2, h, w, 2), seed, "ties")
    kw = dict(kernel_size=kernel, stride=stride, padding=pads, ceil_mode=ceil_mode)
    if mode == "max":
        out, (grad,), g = run_op(lambda t: fn.max_pool2d(t, **kw), [x], seed=seed)
    else:
        out, (grad,), g = run_op(lambda t: fn.avg_pool2d(t, **kw, count_include_pad=include_pad), [x], seed=seed)
    ref, ref_grad = _naive_pool(x, g, kernel, stride, pads, ceil_mode, mode, include_pad)
    # Σ|terms|: the loop on |x| (an average) or x (a max routes as it does) and |g|
    bound, grad_bound = _naive_pool(x if mode == "max" else abs(x), abs(g), kernel, stride, pads, ceil_mode, mode,
                                    include_pad)
    # a max picks (exact), an average sums a window and divides (kh·kw + 1 terms); each input
    # gradient sums at most one (divided) upstream value per tap
    taps = kernel[0] * kernel[1]
    assert_sum_close(out, ref, abs(bound), np.float64, 0 if mode == "max" else taps + 1, err_msg="y")
    assert_sum_close(grad, ref_grad, grad_bound, np.float64, taps + 1, err_msg="dx")


# --- ties, NaN, inf ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(kernel_size=2),  # tiles the input: the fast path
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2),  # overlapping windows
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), padding=(1, 1)),
])
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 6, 6, 1), (1, 3, 3, 2)])
def test_max_pool2d_ties_send_the_gradient_to_the_first_maximum_like_torch(kw, shape):
    for kind in ("constant", "ties"):
        x = _values(shape, 1, kind)
        (grad,) = check_max_pool(x, **kw).grads
        if kind == "constant" and kw == dict(kernel_size=2):  # only each window's top-left element
            expected = np.zeros(shape, dtype=bool)
            expected[:, 0:shape[1] // 2 * 2:2, 0:shape[2] // 2 * 2:2] = True
            assert ((grad != 0) == expected).all()


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(1, 4)), dict(kernel_size=2, stride=1)])
def test_max_pool2d_nan_and_inf_follow_torch(kw):
    x = _values((2, 6, 8, 2), 3, "ties")
    x[0, 0, 1, 0] = np.nan
    x[0, 0, 2, 0] = np.nan  # two NaNs in one window: PyTorch picks the last
    x[1, 2:, 4:, 1] = -np.inf  # windows of only −inf: PyTorch picks the first input element
    x[1, 0, 0, 0] = np.inf
    out = check_max_pool(x, **kw).out
    assert np.isnan(out).any() and np.isneginf(out).any() and np.isposinf(out).any()
    check_max_pool(np.full((1, 4, 4, 1), -np.inf), **kw)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_max_pool2d_inf_and_nan_upstream_gradients_reach_only_the_chosen_elements(kw):
    x = _values((1, 6, 6, 2), 12, "normal")
    g = np.random.default_rng(13).standard_normal(fn.max_pool2d(x, **kw).shape)
    g[0, 0, 0, 0], g[0, 1, 1, 1], g[0, 2, 0, 0] = np.inf, -np.inf, np.nan
    r = check_max_pool(x, g, **kw)  # NaN/±inf where torch has them; exact zeros elsewhere, not inf · 0 = NaN
    assert (r.grads[0] == 0).sum() == (r.ref_grads[0] == 0).sum() > 0


def test_avg_pool2d_nan_propagates():
    x = np.zeros((1, 4, 4, 2))
    x[0, 0, 0, 0] = np.nan
    out = fn.avg_pool2d(x, 2)
    assert np.isnan(out[0, 0, 0, 0]) and np.isfinite(out[0, :, :, 1]).all() and np.isfinite(out[0, 1]).all()


def test_gradcheck():
    rng = np.random.default_rng(4)
    x = rng.permutation(2 * 5 * 6 * 2).reshape(2, 5, 6, 2) * 0.1  # distinct values: no near-ties
    gradcheck(lambda t: fn.max_pool2d(t, 3, 2, 1), x)
    gradcheck(lambda t: fn.max_pool2d(t, 2), x)
    gradcheck(lambda t: fn.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False), x)
    gradcheck(lambda t: fn.global_max_pool2d(t), x)
    gradcheck(lambda t: fn.global_avg_pool2d(t, keepdims=True), x)


# --- global pools -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["normal", "ties", "constant"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 3), (1, 1, 1, 2), (3, 4, 4, 1)])
def test_global_pools_match_torch(shape, kind):
    x = _values(shape, 5, kind)
    h, w = shape[1:3]
    # (N, C) outputs: compare with torch's max_pool2d / adaptive_max_pool2d / mean over the whole map
    g = np.random.default_rng(6).standard_normal((shape[0], shape[3]))
    # a max picks and routes one upstream value (exact); a mean sums h·w values and divides, and
    # sends each pixel its divided upstream value (one rounding)
    for ours, theirs, terms, scale in [
            (fn.global_max_pool2d, lambda t: F.max_pool2d(t, (h, w))[:, :, 0, 0], 0, "route"),
            (fn.global_max_pool2d, lambda t: F.adaptive_max_pool2d(t, 1)[:, :, 0, 0], 0, "route"),
            (fn.global_avg_pool2d, lambda t: t.mean(dim=(2, 3)), [h * w + 1, 1], "sum")]:
        check_op(ours, theirs, [x], ["NHWC"], out_layout="NC", terms=terms, scale=scale, grad=g)
    assert fn.global_max_pool2d(x, keepdims=True).shape == (shape[0], 1, 1, shape[3])
    np.testing.assert_array_equal(fn.global_avg_pool2d(x, keepdims=True)[:, 0, 0], fn.global_avg_pool2d(x))


def test_global_max_pool2d_nan_goes_to_the_last_nan_like_max_pool2d():
    x = _values((2, 3, 4, 2), 7, "ties")
    x[0, 0, 1, 1] = x[0, 2, 0, 1] = np.nan
    r = check_op(fn.global_max_pool2d, lambda t: F.max_pool2d(t, (3, 4))[:, :, 0, 0], [x], ["NHWC"], out_layout="NC",
                 terms=0, scale="route", grad=np.ones((2, 2)))  # a pick and a routed copy: exact
    assert np.isnan(r.out[0, 1]) and r.grads[0][0, 2, 0, 1] == 1.0  # the last NaN in (H, W) order


# --- dtypes and containers --------------------------------------------------------------------
@pytest.mark.parametrize("op", [lambda x: fn.max_pool2d(x, 2), lambda x: fn.max_pool2d(x, 3, 2, 1),
                                lambda x: fn.avg_pool2d(x, 2, ceil_mode=True), fn.global_avg_pool2d,
                                fn.global_max_pool2d])
def test_float32_kept_and_container_kind_kept(op):
    x = np.random.default_rng(8).standard_normal((2, 5, 5, 3)).astype(np.float32)
    out = op(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    t = Tensor(x, requires_grad=True)
    y = op(t)
    assert isinstance(y, Tensor) and y.dtype == np.float32
    y.backward(np.ones(y.shape, np.float32))
    assert t.grad.dtype == np.float32 and t.grad.shape == x.shape
    # float32 against float64: an average of at most 5×5 window taps (its sum and the division); a max is exact
    assert_sum_close(out, op(x.astype(np.float64)), op(abs(x).astype(np.float64)), np.float32, 5 * 5 + 1)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_max_pool2d_float32_input_with_a_float64_upstream_gradient(kw):
    x = np.random.default_rng(14).standard_normal((2, 6, 6, 3)).astype(np.float32)
    t = Tensor(x, requires_grad=True)
    y = fn.max_pool2d(t, **kw)
    (y * np.full(y.shape, 0.5)).sum().backward()  # the float64 factor makes the gradient float64
    ref_grad = torch_grads(lambda a: F.max_pool2d(a, **kw), [x], ["NHWC"], np.full(y.shape, 0.5), "NHWC")[1][0]
    # halves routed to their maximum, at most 2 per pixel with kernel 3, stride 2: exact in float32 or 64
    np.testing.assert_array_equal(t.grad, ref_grad)


def test_default_stride_is_the_kernel():
    x = np.random.default_rng(9).standard_normal((1, 6, 6, 1))
    np.testing.assert_array_equal(fn.max_pool2d(x, 3), fn.max_pool2d(x, 3, stride=3))
    assert fn.avg_pool2d(x, 2).shape == (1, 3, 3, 1)


# --- errors -----------------------------------------------------------------------------------
def test_errors_name_the_argument():
    x = np.zeros((1, 5, 5, 2))
    with pytest.raises(ValueError, match=r"max_pool2d: kernel_size must be ≥ 1; received 0$"):
        fn.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="max_pool2d: stride must be ≥ 1"):
        fn.max_pool2d(x, 2, 0)
    with pytest.raises(ValueError, match="max_pool2d: dilation must be ≥ 1"):
        fn.max_pool2d(x, 2, dilation=0)
    with pytest.raises(ValueError, match=r"max_pool2d: padding must be at most half the window \(kernel_size // 2 "
                                         r"= 1\) on each side along H, as in PyTorch; received padding 2 for a 3×3 "
                                         r"window"):
        fn.max_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding must be at most half the window \(kernel_size // 2 "
                                         r"= 0\) .* along W"):
        fn.avg_pool2d(x, (2, 1), padding=((0, 0), (0, 1)))
    with pytest.raises(ValueError, match="max_pool2d: padding must"):
        fn.max_pool2d(x, 3, padding=-1)
    with pytest.raises(ValueError, match="max_pool2d: padding must be an int"):
        fn.max_pool2d(x, 2, padding="same")
    with pytest.raises(TypeError, match="max_pool2d: ceil_mode must be True or False; received 1"):
        fn.max_pool2d(x, 2, ceil_mode=1)
    with pytest.raises(TypeError, match="avg_pool2d: count_include_pad must be True or False"):
        fn.avg_pool2d(x, 2, count_include_pad=None)
    with pytest.raises(ValueError, match=r"max_pool2d: x must be 4-D \(N, H, W, C\); received shape \(5, 5, 2\)"):
        fn.max_pool2d(x[0], 2)
    with pytest.raises(TypeError, match="avg_pool2d: x must have a floating dtype; received int64"):
        fn.avg_pool2d(np.zeros((1, 4, 4, 1), dtype=np.int64), 2)
    with pytest.raises(ValueError, match=r"max_pool2d: the kernel 1×4 \(dilation 2×2\) spans 1×7 but the padded "
                                         r"input is only 5×5"):
        fn.max_pool2d(x, (1, 4), dilation=2)
    with pytest.raises(ValueError, match=r"global_max_pool2d: x must have H, W ≥ 1"):
        fn.global_max_pool2d(np.zeros((1, 0, 3, 1)))
    with pytest.raises(ValueError, match="global_avg_pool2d: x must be 4-D"):
        fn.global_avg_pool2d(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="global_avg_pool2d: keepdims must be True or False"):
        fn.global_avg_pool2d(x, keepdims="yes")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["normal", "ties", "constant"])
@pytest.mark.parametrize("shape, kernel", [((2, 6, 8, 16), 2), ((1, 6, 6, 20), (3, 2)), ((2, 7, 5, 16), 2)])
def test_max_pool2d_many_channels_tiled_matches_torch(dtype, kind, shape, kernel):
    # Many channels (the per-tap backward reads runs of C values); 7×5 leaves uncovered rows/columns.
    x = _values(shape, 5, kind).astype(dtype)
    g = np.random.default_rng(6).standard_normal(fn.max_pool2d(x, kernel).shape).astype(dtype)
    g.flat[3], g.flat[7] = np.inf, np.nan  # reach only their chosen elements (no inf · 0 = NaN)
    # windows that tile the input: a pick and a copy of one upstream value per pixel, exact in any dtype
    check_op(lambda t: fn.max_pool2d(t, kernel), lambda t: F.max_pool2d(t, kernel), [x], ["NHWC"], terms=0,
             scale="route", grad=g)
