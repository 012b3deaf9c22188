"""Every conv algorithm of `conv_algos` against the NumPy reference path and torch, and the autotuner.

Each algorithm is forced with `use_conv_algorithm` on hypothesis shapes and compared, output and
every gradient, element-wise against |a − ref| ≤ rtol · Σ|terms| (Σ|terms|: the same conv on |x|,
|w|, |dy|), with rtol = 8·eps·√K for the K-term sums of that value, capped at 1e-5 (float32) and
1e-12 (float64). Winograd's result is held to the same rtol norm-wise (against the largest Σ|terms|
of the tensor): its transforms add and subtract a whole 4×4 input tile, so a value whose own terms
are small (at a zero-padded border) carries the rounding of its larger neighbours. Measured on 150
random 3×3 layers, its worst error was 0.44·eps·√K norm-wise (im2col: 0.20), and up to 176·eps·√K
against a value's own Σ|terms|. The autotuner is tested with a fake clock; its cache for being bounded, written
atomically, and ignored when corrupt or from another machine.
"""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st

from featuremaps import Tensor
from featuremaps.functional import accel, autotune, colblocks, conv2d, conv_algorithm, conv_algos, taps
from featuremaps.functional import conv as conv_mod, threads
from tests.oracles import gradcheck


@pytest.fixture(autouse=True)
def _fresh_choices(tmp_path, monkeypatch):
    """A private cache directory, autotuning off unless a test turns it on, no remembered choices."""
    monkeypatch.setenv("FEATUREMAPS_CACHE", str(tmp_path / "fm-cache"))
    monkeypatch.setenv("FEATUREMAPS_AUTOTUNE", "0")
    conv_algos.clear()
    yield
    conv_algos.use_autotune(None)
    conv_algos.clear()


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------
@st.composite
def layers(draw, winograd=False, strided=False):
    """(x_shape, w_shape, options) of a conv2d that fits; `winograd`: 3×3, stride 1, dilation 1, one
    group; `strided`: kernels up to 5×5, strides 2–3 (so the phases dx: several taps per phase, and
    phases that no tap reaches), dilation up to 3, padding up to 4."""
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(3, 11)), draw(st.integers(3, 11))
    pad = 4 if strided else 2
    if winograd:
        groups, kh, kw, s, d = 1, 3, 3, 1, 1
        c, o = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    elif strided:
        groups = draw(st.sampled_from([1, 1, 2]))
        c, o = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 4))
        kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        s = draw(st.sampled_from([2, 3, (2, 3), (3, 1), (1, 2)]))
        d = draw(st.sampled_from([1, 1, 2, 3, (1, 2)]))
    else:
        groups = draw(st.sampled_from([1, 1, 2, 3]))
        c = groups * draw(st.integers(1, 3))
        o = groups * draw(st.integers(1, 3))
        kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        s = draw(st.sampled_from([1, 2, (1, 2), (2, 1)]))
        d = draw(st.sampled_from([1, 1, 2]))
    padding = draw(st.one_of(st.sampled_from(["valid", "same"]),
                             st.tuples(st.tuples(st.integers(0, pad), st.integers(0, pad)),
                                       st.tuples(st.integers(0, pad), st.integers(0, pad)))))
    dd = (d, d) if isinstance(d, int) else d
    (t, b), (l, r) = conv_mod.resolve_padding(padding, (h, w), (kh, kw), s if not isinstance(s, int) else (s, s), dd)
    if h + t + b < dd[0] * (kh - 1) + 1 or w + l + r < dd[1] * (kw - 1) + 1:
        padding = "same"
    return (n, h, w, c), (kh, kw, c // groups, o), dict(stride=s, padding=padding, dilation=d, groups=groups)


def _data(x_shape, w_shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[3]).astype(dtype)
    return x, w, b


def _shape(x_shape, w_shape, opts):
    return conv_mod._layer_shape(x_shape, w_shape, opts["groups"], opts["stride"], opts["padding"], opts["dilation"],
                                 "test")


def _run(x, w, b, gy, opts):
    """(y, dx, dw, db) through the public op and autograd."""
    xt, wt, bt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    y = conv2d(xt, wt, bt, **opts)
    y.backward(gy)
    return y.data, xt.grad, wt.grad, bt.grad


def _torch(x, w, b, gy, opts, g):
    """torch's (y, dx, dw, db) in float64, our layouts; the pads as the library resolved them."""
    (t, bo), (l, r) = g.geo.pads  # noqa: E741
    def tt(a, axes, grad=True):
        return torch.tensor(np.ascontiguousarray(a.transpose(axes), np.float64), requires_grad=grad)
    xt, wt, bt = tt(x, (0, 3, 1, 2)), tt(w, (3, 2, 0, 1)), tt(b, (0,))
    y = F.conv2d(F.pad(xt, (l, r, t, bo)), wt, bt, g.geo.stride, 0, g.geo.dilation, g.groups)
    y.backward(tt(gy, (0, 3, 1, 2), False))
    return (y.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
            wt.grad.numpy().transpose(2, 3, 1, 0), bt.grad.numpy())


def _bounds(x, w, b, gy, opts):
    """Σ|terms| of each output and gradient value: the same computation on magnitudes, in float64."""
    with conv_algos.use_conv_algorithm():
        return _run(*(np.abs(a).astype(np.float64) for a in (x, w, b, gy)), opts)


def _rtol(dtype, k_terms: int) -> float:
    """8·eps·√K, never looser than 1e-5 (float32) / 1e-12 (float64)."""
    ceiling = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    return min(8 * float(np.finfo(dtype).eps) * np.sqrt(k_terms), ceiling)


def _terms(g):
    """K, the length of the sums behind y, dx, dW and db."""
    (kh, kw), (oh, ow) = g.geo.kernel, g.geo.out_hw
    m = g.n * oh * ow
    return kh * kw * (g.c // g.groups) + 1, kh * kw * (g.o // g.groups), m, m


def _close(got, want, bound, dtype, k, what):
    err = np.abs(np.asarray(got, np.float64) - want)
    tol = _rtol(dtype, k) * bound
    bad = ~(err <= tol)
    assert not bad.any(), f"{what}: {int(bad.sum())} values off, worst {float(np.max(err - tol)):.3g} over the bound"


def _forced_runs(g, dtype):
    """(part, name) for every candidate of every part of layer g."""
    allowed = conv_algos.candidates(g, dtype)
    return [(part, name) for part in ("forward", "dw", "dx") for name in allowed[part]]


# ---------------------------------------------------------------------------------------------
# Every algorithm against the reference path and torch
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=25)
@given(layer=st.one_of(layers(), layers(winograd=True), layers(strided=True)))
def test_every_algorithm_matches_reference_and_torch(layer, dtype):
    x_shape, w_shape, opts = layer
    g = _shape(x_shape, w_shape, opts)
    x, w, b = _data(x_shape, w_shape, dtype)
    gy = np.random.default_rng(1).standard_normal((g.n, *g.geo.out_hw, g.o)).astype(dtype)
    bounds = _bounds(x, w, b, gy, opts)
    oracle = _torch(x, w, b, gy, opts, g)
    ref = _run(*(a.astype(np.float64) for a in (x, w, b, gy)), opts)  # the reference path, in float64
    for part, name in _forced_runs(g, dtype):
        with conv_algos.use_conv_algorithm(**{part: name}):
            got = _run(x, w, b, gy, opts)
        for what, a, r, t, bd, k in zip(("y", "dx", "dW", "db"), got, ref, oracle, bounds, _terms(g)):
            assert a.dtype == dtype
            if name == "winograd" and what == {"forward": "y", "dx": "dx"}[part]:
                bd = np.full_like(bd, bd.max())  # norm-wise: its transforms mix each tile's neighbours
            _close(a, t, bd, dtype, k, f"{part}={name} {what} vs torch")
            _close(a, r, bd, dtype, k, f"{part}={name} {what} vs the NumPy reference")


@settings(max_examples=10)
@given(layer=st.one_of(layers(), layers(winograd=True), layers(strided=True)))
def test_every_algorithm_passes_gradcheck(layer):
    x_shape, w_shape, opts = layer
    g = _shape(x_shape, w_shape, opts)
    x, w, b = _data(x_shape, w_shape, np.float64, seed=2)
    for part, name in _forced_runs(g, np.float64):
        with conv_algos.use_conv_algorithm(**{part: name}):
            gradcheck(lambda x_, w_, b_: conv2d(x_, w_, b_, **opts), x, w, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=15)
@given(layer=st.one_of(layers(), layers(winograd=True), layers(strided=True)), where=st.integers(0, 10 ** 6))
def test_nan_and_inf_propagate_like_the_reference(layer, where, dtype):
    x_shape, w_shape, opts = layer
    g = _shape(x_shape, w_shape, opts)
    x, w, b = _data(x_shape, w_shape, dtype)
    gy = np.random.default_rng(1).standard_normal((g.n, *g.geo.out_hw, g.o)).astype(dtype)
    x.reshape(-1)[where % x.size] = np.nan
    x.reshape(-1)[(where * 7 + 3) % x.size] = np.inf
    gy.reshape(-1)[where % gy.size] = -np.inf
    gy.reshape(-1)[(where * 5 + 1) % gy.size] = np.nan
    ref = _run(x, w, b, gy, opts)
    for part, name in _forced_runs(g, dtype):
        with conv_algos.use_conv_algorithm(**{part: name}):
            got = _run(x, w, b, gy, opts)
        for what, a, r in zip(("y", "dx", "dW", "db"), got, ref):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(r), err_msg=f"{part}={name} {what}: NaN")
            np.testing.assert_array_equal(np.isposinf(a), np.isposinf(r), err_msg=f"{part}={name} {what}: +inf")
            np.testing.assert_array_equal(np.isneginf(a), np.isneginf(r), err_msg=f"{part}={name} {what}: -inf")


def test_winograd_is_offered_exactly_for_3x3_stride_1():
    allowed = conv_algos.candidates(_shape((2, 9, 9, 4), (3, 3, 4, 5), dict(stride=1, padding=1, dilation=1,
                                                                            groups=1)), np.float32)
    assert "winograd" in allowed["forward"] and "winograd" in allowed["dx"]
    for opts in (dict(stride=2, padding=1, dilation=1, groups=1), dict(stride=1, padding=1, dilation=2, groups=1),
                 dict(stride=1, padding=1, dilation=1, groups=2)):
        w_shape = (3, 3, 4 // opts["groups"], 4)
        allowed = conv_algos.candidates(_shape((2, 9, 9, 4), w_shape, opts), np.float32)
        assert "winograd" not in allowed["forward"] + allowed["dx"]
    far = conv_algos.candidates(_shape((2, 9, 9, 4), (3, 3, 4, 5), dict(stride=1, padding=3, dilation=1, groups=1)),
                                np.float32)
    assert "winograd" in far["forward"] and "winograd" not in far["dx"]  # dx needs every pad ≤ 2
    with conv_mod.workspace_limit(1 << 20):
        capped = conv_algos.candidates(_shape((2, 9, 9, 4), (3, 3, 4, 5), dict(stride=1, padding=1, dilation=1,
                                                                               groups=1)), np.float32)
    assert "winograd" not in capped["forward"]


def test_winograd_transposed_conv_matches_torch():
    """conv_transpose2d's forward is conv2d's dx: the winograd dx serves it too."""
    x, w, _ = _data((2, 6, 7, 5), (3, 3, 4, 5), np.float64)
    want = F.conv_transpose2d(torch.tensor(x.transpose(0, 3, 1, 2)), torch.tensor(w.transpose(3, 2, 0, 1)),
                              padding=1).numpy().transpose(0, 2, 3, 1)
    with conv_algos.use_conv_algorithm(dx="winograd"):
        got = conv_mod.conv_transpose2d(x, w, padding=1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_phases_is_offered_exactly_for_strided_layers():
    for stride, offered in ((1, False), (2, True), ((1, 2), True), ((3, 1), True)):
        g = _shape((2, 9, 9, 4), (3, 3, 4, 5), dict(stride=stride, padding=1, dilation=1, groups=1))
        assert ("phases" in conv_algos.candidates(g, np.float32)["dx"]) == offered, stride


# The rule's measured choices (bench/README.md, "The rule's dW orientation" and "phases"): each row
# is a layer the 2026-12-03 autotune runs timed, with the winner the rule must keep picking.
_RULE_LAYERS = [
    # (x shape, w shape, stride, padding, dW with numba, dx with numba, dx without numba)
    ((64, 14, 14, 6), (5, 5, 6, 16), 1, 0, "cols_t_dy", "rows_numba", "rows"),  # LeNet C3: colsᵀ·dy 2.1× faster
    ((30, 128, 128, 3), (1, 1, 3, 256), 2, 0, "cols_t_dy", "col2im_numba", "col2im"),  # dy copy: 26× slower
    ((8, 100, 100, 128), (5, 5, 128, 3), 2, 0, "dy_t_cols", "phases", "phases"),  # many rows, few maps
    ((4, 96, 96, 256), (5, 5, 256, 20), 2, 0, "dy_t_cols", "phases", "phases"),  # K ≥ LARGE_K, O ≤ 64
    ((102, 36, 36, 20), (7, 7, 20, 1), 2, 0, "dy_t_cols", "phases", "phases"),  # inflation 1.44, still 10×
    ((121, 8, 8, 256), (7, 7, 256, 64), 2, 0, "dy_t_cols", "col2im_numba", "col2im"),  # 1×1 output: 16× MACs
    ((11, 8, 8, 128), (7, 7, 128, 64), 2, 3, "dy_t_cols", "col2im_numba", "col2im"),  # 16-pixel output
    ((16, 28, 28, 256), (3, 3, 256, 128), 2, 1, "cols_t_dy", "blocks_numba", "phases"),  # 3 taps: C_in < 4·C_out;
    # 29 MB of columns: the blocked dx 13.6 ms vs col2im_numba 15.6
    ((64, 32, 32, 32), (3, 3, 32, 8), 2, 1, "dy_t_cols", "phases", "phases"),  # 3 taps, C_in = 4·C_out
    ((42, 33, 33, 256), (1, 1, 256, 128), 2, 0, "cols_t_dy", "phases", "phases"),  # strided 1×1
    ((16, 20, 20, 48), (5, 5, 48, 16), 2, 0, "cols_t_dy", "col2im_numba", "phases"),  # inflation 1.56: 0.8 vs 1.9 ms
    ((14, 88, 88, 1), (7, 7, 1, 64), 1, 3, "cols_t_dy", "col2im", "col2im"),  # 1 map: numba's adds 36 vs 28 ms
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dw, dx, dx_numpy", _RULE_LAYERS)
def test_rule_keeps_the_measured_winner(x_shape, w_shape, stride, padding, dw, dx, dx_numpy):
    g = _shape(x_shape, w_shape, dict(stride=stride, padding=padding, dilation=1, groups=1))
    k_rows = w_shape[0] * w_shape[1] * w_shape[2]
    assert conv_algos.dy_t_orientation_pays(k_rows, w_shape[3]) == (dw == "dy_t_cols")
    assert conv_algos.phases_pays(g, numba=True) == (dx == "phases")
    if dx != "phases":  # phases, where it pays, goes before the blocked dx
        assert colblocks.dx_pays(g, 4, conv_algos.use_rows(g)) == (dx == "blocks_numba")
    assert conv_algos.phases_pays(g, numba=False) == (dx_numpy == "phases")
    was = accel.numba_enabled()
    accel.use_numba(True)  # also in CI's FEATUREMAPS_NUMBA=0 run, where numba stays installed
    # the per-tap and the blocked dW, where their rules take them, read no kept columns
    dw = "taps" if taps.pays(g) else "blocks" if colblocks.pays(g, 4, train=True) else dw
    try:
        assert conv_algos.rule(g, np.float32)[1:3] == (dw, dx)
    finally:
        accel.use_numba(was)
    with accel.numba_disabled():
        assert conv_algos.rule(g, np.float32)[1:3] == (dw, dx_numpy)


# (x shape, w shape, stride, padding, the rule's forward and dW with numba): the direct conv's bound,
# `_direct.max_out_maps`, at the 2026-12-03 grid's edges (bench/README.md; time ratios direct / im2col).
_DIRECT_LAYERS = [
    ((32, 48, 48, 3), (5, 5, 3, 16), 2, 2, "direct"),  # 0.34
    ((32, 48, 48, 3), (5, 5, 3, 32), 2, 2, "im2col"),  # 1.37
    ((32, 48, 48, 1), (3, 3, 1, 3), 1, 1, "direct"),  # 0.76
    ((32, 48, 48, 1), (3, 3, 1, 8), 1, 1, "im2col"),  # 1.47
    ((32, 48, 48, 1), (7, 7, 1, 8), 1, 3, "direct"),  # 0.73
    ((32, 48, 48, 1), (7, 7, 1, 16), 1, 3, "im2col"),  # 1.14
    ((32, 48, 48, 8), (5, 5, 8, 8), 1, 2, "direct"),  # 0.72
    ((32, 48, 48, 8), (5, 5, 8, 32), 1, 2, "im2col"),  # 1.18
    ((64, 14, 14, 6), (5, 5, 6, 16), 1, 0, "im2col"),  # LeNet C3: c8 o16 0.92-1.36
]


def _columns(g, train=True) -> str:
    """The rule's column-matrix forward: im2col, or the blocked im2col for a large column matrix."""
    return "blocks" if colblocks.pays(g, 4, train) else "im2col"


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, forward", _DIRECT_LAYERS)
def test_rule_takes_the_direct_conv_where_it_was_measured_to_win(x_shape, w_shape, stride, padding, forward):
    g = _shape(x_shape, w_shape, dict(stride=stride, padding=padding, dilation=1, groups=1))
    was = accel.numba_enabled()
    accel.use_numba(True)
    try:
        a = conv_algos.rule(g, np.float32)
        forward = _columns(g) if forward == "im2col" else forward
        assert a.forward == forward and (a.dw == "direct") == (forward == "direct")
        assert "direct" in conv_algos.candidates(g, np.float32)["forward"]  # offered to the autotuner either way
    finally:
        accel.use_numba(was)
    with accel.numba_disabled():
        assert "direct" not in conv_algos.candidates(g, np.float32)["forward"]


# (x shape, w shape, stride, padding, the rule's forward and dW): the per-tap conv's bound, `taps.pays`,
# at the 2026-12-04 measurements (bench/README.md; forward and dW time, taps / im2col + the rule's dW).
_TAPS_LAYERS = [
    ((1, 69, 69, 256), (7, 7, 256, 16), 1, 3, "taps"),  # 0.39, 0.41
    ((32, 28, 28, 128), (3, 3, 128, 16), 1, 1, "taps"),  # 0.5-0.6, 0.6-0.9
    ((8, 32, 32, 64), (3, 3, 64, 8), 1, 1, "taps"),  # 0.57, 0.62
    ((32, 16, 16, 256), (3, 3, 256, 32), 1, 1, "taps"),  # 0.70, 0.75
    ((16, 13, 13, 128), (5, 5, 128, 16), 1, 0, "taps"),  # inflation 2.09 with 8·O ≤ C: 0.75, 0.55
    ((32, 12, 12, 64), (5, 5, 64, 8), 1, 0, "taps"),  # inflation 2.25 with 8·O ≤ C: 0.77, 0.80
    ((8, 56, 56, 128), (3, 3, 128, 16), 2, 1, "taps"),  # strided, on phase planes: 0.60, 0.75
    ((2, 43, 43, 256), (5, 5, 256, 8), 2, 2, "taps"),  # 0.47, 0.35
    ((17, 20, 20, 128), (7, 7, 128, 8), 2, 3, "taps"),  # inflation 1.69 with 8·O ≤ C: 0.50-0.92, 0.41-0.74
    ((8, 56, 56, 64), (3, 3, 64, 64), 1, 1, "im2col"),  # 0.95, 0.97: more output maps than half the inputs
    ((4, 64, 64, 128), (3, 3, 128, 128), 1, 1, "im2col"),  # 1.05, 1.11
    ((8, 48, 48, 32), (7, 7, 32, 16), 1, 3, "im2col"),  # 1.46, 0.74: under 64 input maps, mixed
    ((64, 12, 12, 20), (5, 5, 20, 50), 1, 0, "im2col"),  # LeNet's C4 (conv2): 3.0, 2.8 (inflation 2.25)
    ((16, 8, 8, 128), (5, 5, 128, 8), 1, 0, "im2col"),  # a valid 5×5 on 8²: inflation 4
    ((16, 14, 14, 128), (7, 7, 128, 16), 1, 0, "im2col"),  # inflation 3.06: 1.23, 0.98
    ((8, 16, 16, 256), (7, 7, 256, 32), 1, 0, "im2col"),  # inflation 2.56: 1.44, 1.19
    ((32, 32, 32, 64), (3, 3, 64, 16), 2, 1, "im2col"),  # strided, under 128 input maps: 1.10, 1.16
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, forward", _TAPS_LAYERS)
def test_rule_takes_the_per_tap_conv_where_it_was_measured_to_win(x_shape, w_shape, stride, padding, forward):
    g = _shape(x_shape, w_shape, dict(stride=stride, padding=padding, dilation=1, groups=1))
    for numba in (True, False):  # pure NumPy: the same rule with or without the compiled kernels
        with accel.numba_disabled() if not numba else conv_algos.use_conv_algorithm():
            a = conv_algos.rule(g, np.float32)
            forward = _columns(g) if forward == "im2col" else forward
            assert a.forward == forward and (a.dw == "taps") == (forward == "taps"), a
            assert "taps" in conv_algos.candidates(g, np.float32)["forward"]  # offered to the autotuner either way
            assert ("taps" in a.why) == (forward == "taps")


@pytest.mark.parametrize("name", ["taps", "blocks"])
@pytest.mark.parametrize("x_shape, w_shape, opts", [
    ((2, 9, 9, 4), (3, 3, 2, 4), dict(stride=1, padding=1, dilation=1, groups=2)),  # grouped
    ((2, 9, 9, 1), (3, 3, 1, 4), dict(stride=1, padding=1, dilation=1, groups=1)),  # one input map
    ((2, 9, 9, 4), (1, 1, 4, 4), dict(stride=1, padding=0, dilation=1, groups=1)),  # one tap: x is its own columns
])
def test_per_tap_and_blocked_convs_are_not_offered_where_they_cannot_run(x_shape, w_shape, opts, name):
    allowed = conv_algos.candidates(_shape(x_shape, w_shape, opts), np.float32)
    assert name not in allowed["forward"] and name not in allowed["dw"]


def test_per_tap_conv_is_not_offered_under_a_workspace_cap():
    """Its accumulator and flat dy are whole-batch scratch: a cap is honoured by the chunked paths."""
    g = _shape((8, 32, 32, 64), (3, 3, 64, 8), dict(stride=1, padding=1, dilation=1, groups=1))
    with conv_mod.workspace_limit(1 << 20):
        assert "taps" not in conv_algos.candidates(g, np.float32)["forward"]
        assert conv_algos.rule(g, np.float32).forward == "im2col"
    assert conv_algos.rule(g, np.float32).forward == "taps"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", [dict(stride=1, padding=((2, 0), (1, 3)), dilation=(2, 1), groups=1),
                                  dict(stride=1, padding="valid", dilation=1, groups=1),
                                  dict(stride=(2, 3), padding=((1, 2), (0, 3)), dilation=(1, 2), groups=1),
                                  dict(stride=2, padding="valid", dilation=1, groups=1)])
def test_per_tap_conv_in_many_blocks_matches_torch(monkeypatch, dtype, opts):
    """The forward in blocks of 64 rows with a short last block, the flat grid's dropped rows at
    both edges of each image, dilation and uneven padding, and strided layers on their phase planes
    (phases of unequal size, so zero tails); against torch and the reference."""
    monkeypatch.setattr(taps, "BLOCK_BYTES", 1)  # 64 rows per block (the least)
    x_shape, w_shape = ((3, 10, 13, 24) if opts["stride"] == 1 else (5, 21, 25, 24)), (3, 4, 24, 5)
    g = _shape(x_shape, w_shape, opts)
    assert taps._rows(g) > 5 * 64 and taps._rows(g) % 64
    x, w, b = _data(x_shape, w_shape, dtype, seed=3)
    gy = np.random.default_rng(4).standard_normal((g.n, *g.geo.out_hw, g.o)).astype(dtype)
    bounds, oracle = _bounds(x, w, b, gy, opts), _torch(x, w, b, gy, opts, g)
    ref = _run(*(a.astype(np.float64) for a in (x, w, b, gy)), opts)
    with conv_algos.use_conv_algorithm(forward="taps", dw="taps"):
        got = _run(x, w, b, gy, opts)
    for what, a, r, t, bd, k in zip(("y", "dx", "dW", "db"), got, ref, oracle, bounds, _terms(g)):
        _close(a, t, bd, dtype, k, f"taps {what} vs torch")
        _close(a, r, bd, dtype, k, f"taps {what} vs the NumPy reference")


@pytest.mark.parametrize("stride", [1, 2, (3, 2)])
def test_per_tap_conv_reads_no_scratch_it_did_not_write(monkeypatch, stride):
    """Every pooled buffer handed out NaN-filled: the phase planes' tails (phases of unequal size),
    the accumulator and the flat dy must be written before they are read, or a NaN reaches y or dW."""
    opts = dict(stride=stride, padding="valid", dilation=1, groups=1)
    x, w, b = _data((2, 11, 13, 6), (3, 3, 6, 2), np.float64, seed=5)
    g = _shape(x.shape, w.shape, opts)
    gy = np.random.default_rng(6).standard_normal((g.n, *g.geo.out_hw, g.o))
    ref = _run(x, w, b, gy, opts)
    take = conv_mod._pool.take

    def poisoned(shape, dtype):
        buf = take(shape, dtype)
        buf[...] = np.nan
        return buf
    monkeypatch.setattr(conv_mod._pool, "take", poisoned)
    with conv_algos.use_conv_algorithm(forward="taps", dw="taps", dx="col2im"):
        got = _run(x, w, b, gy, opts)
    for what, a, r, k in zip(("y", "dx", "dW", "db"), got, ref, _terms(g)):
        np.testing.assert_allclose(a, r, rtol=_rtol(np.float64, k), atol=1e-12, err_msg=what)


# (x shape, w shape, stride, train, the rule's forward): the blocked im2col's bound, `colblocks.pays`, at the
# 2026-12-04 measurements (bench/README.md; time, blocked / whole-matrix im2col, inference and forward + dW).
_BLOCK_LAYERS = [
    ((3, 124, 124, 64), (7, 7, 64, 32), 2, True, "blocks"),  # columns 138 MB: 0.65, 0.76
    ((64, 32, 32, 64), (3, 3, 64, 64), 1, True, "blocks"),  # 144 MB: 0.79, 0.94
    ((16, 34, 34, 32), (3, 3, 32, 32), 1, True, "blocks"),  # 18 MB (32² out): 0.83, 0.88
    ((64, 12, 12, 20), (5, 5, 20, 50), 1, False, "blocks"),  # LeNet's C4 (conv2), 8 MB: 0.90 in inference ...
    ((64, 12, 12, 20), (5, 5, 20, 50), 1, True, "im2col"),  # ... 1.12 in training
    ((102, 36, 36, 20), (7, 7, 20, 1), 2, True, "im2col"),  # 86 MB, one output map: 1.17-1.69 in training
    ((64, 32, 32, 32), (3, 3, 32, 8), 2, True, "im2col"),  # 18 MB, 8 output maps: 0.95-1.24 in training
    ((64, 14, 14, 6), (5, 5, 6, 16), 1, False, "im2col"),  # LeNet's C3: 3.8 MB, one block
]


@pytest.mark.parametrize("x_shape, w_shape, stride, train, forward", _BLOCK_LAYERS)
def test_rule_takes_the_blocked_im2col_where_it_was_measured_to_win(x_shape, w_shape, stride, train, forward):
    g = _shape(x_shape, w_shape, dict(stride=stride, padding=0, dilation=1, groups=1))
    a = conv_algos.rule(g, np.float32, train)
    assert a.forward == forward and ("blocks" in a.why) == (forward == "blocks"), a
    if train:
        assert (a.dw == "blocks") == (forward == "blocks"), a
    assert "blocks" in conv_algos.candidates(g, np.float32, train)["forward"]  # offered to the autotuner either way


def test_blocked_im2col_is_not_offered_under_a_workspace_cap():
    g = _shape((64, 32, 32, 64), (3, 3, 64, 64), dict(stride=1, padding=1, dilation=1, groups=1))
    with conv_mod.workspace_limit(1 << 20):
        assert "blocks" not in conv_algos.candidates(g, np.float32)["forward"]
    assert conv_algos.rule(g, np.float32).forward == "blocks"


# (x shape, w shape, stride, padding, the rule's dx with numba): the blocked dx's bound, `colblocks.dx_pays`,
# at the 2026-12-04 measurements (bench/README.md; ms, in one process, the blocked dx vs the rule's other best).
_DX_BLOCK_LAYERS = [
    ((64, 32, 32, 64), (3, 3, 64, 64), 1, 1, "blocks_numba"),  # cifar 64: 37.0 vs rows_numba 42.5
    ((8, 98, 98, 32), (3, 3, 32, 64), 1, 0, "blocks_numba"),  # textbook 2: 19.6 vs 27.7
    ((8, 64, 64, 64), (3, 3, 64, 128), 1, 1, "blocks_numba"),  # 30.5 vs 36.4
    ((8, 120, 120, 32), (5, 5, 32, 32), 1, 2, "rows_numba"),  # 32 maps, 5×5: 146 vs 57
    ((2, 100, 100, 32), (3, 3, 32, 32), 1, 1, "rows_numba"),  # 32 maps: 8.7 vs 4.1
    ((16, 48, 48, 64), (5, 5, 64, 64), 1, 2, "rows_numba"),  # 25 taps: 51.6 vs 49.0
    ((32, 16, 16, 256), (3, 3, 256, 256), 1, 1, "rows_numba"),  # 2304 weight rows: 74 vs 55
    ((4, 64, 64, 16), (3, 3, 16, 64), 1, 1, "rows_numba"),  # 9.4 MB of columns: 5.0 vs 4.2
    ((28, 83, 83, 16), (7, 7, 16, 32), 2, 3, "blocks_numba"),  # strided: 25.7 vs col2im_numba 54.9
    ((16, 80, 80, 16), (5, 5, 16, 16), 2, 2, "blocks_numba"),  # 5.7 vs 15.7 (phases 10.6)
    ((35, 86, 86, 16), (7, 7, 16, 3), 2, 3, "phases"),  # 3 output maps: phases 17 vs 80
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dx", _DX_BLOCK_LAYERS)
def test_rule_takes_the_blocked_dx_where_it_was_measured_to_win(x_shape, w_shape, stride, padding, dx):
    g = _shape(x_shape, w_shape, dict(stride=stride, padding=padding, dilation=1, groups=1))
    was = accel.numba_enabled()
    accel.use_numba(True)  # also in CI's FEATUREMAPS_NUMBA=0 run, where numba stays installed
    try:
        a = conv_algos.rule(g, np.float32)
        assert a.dx == dx and ("blocks_numba" in a.why) == (dx == "blocks_numba"), a
        assert "blocks_numba" in conv_algos.candidates(g, np.float32)["dx"]  # offered to the autotuner either way
        with conv_mod.workspace_limit(1 << 20):
            assert "blocks_numba" not in conv_algos.candidates(g, np.float32)["dx"]
    finally:
        accel.use_numba(was)
    with accel.numba_disabled():  # the blocked dx exists only with the compiled adds
        assert "blocks_numba" not in conv_algos.candidates(g, np.float32)["dx"]


@settings(max_examples=40)
@given(layer=st.one_of(layers(), layers(strided=True)), block=st.integers(1, 6000))
def test_blocks_cover_every_output_row_once(layer, block):
    """`colblocks.blocks` partitions the (image, output row) pairs in order, whole images per block or
    row runs of one image, each block within the byte budget unless it is a single output row."""
    g = _shape(*layer)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(colblocks, "BLOCK_BYTES", block)
        plan = colblocks.blocks(g, 8)
    gh, gw = g.geo
    seen = [(n, i) for n0, n1, i0, i1 in plan for n in range(n0, n1) for i in range(i0, i1)]
    assert seen == [(n, i) for n in range(g.n) for i in range(gh.out)]
    row = gw.out * gh.k * gw.k * g.c * 8
    for n0, n1, i0, i1 in plan:
        assert (n1 - n0) * (i1 - i0) * row <= block or (n1 - n0, i1 - i0) == (1, 1)
        assert n1 - n0 == 1 or (i0, i1) == (0, gh.out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [1, 3000, 20000])  # a row a block; row runs of one image; several images
@pytest.mark.parametrize("x_shape, w_shape, opts", [
    ((5, 11, 13, 16), (3, 3, 16, 4), dict(stride=1, padding="same", dilation=1, groups=1)),  # dW dyᵀ · cols
    ((4, 17, 15, 6), (4, 3, 6, 20), dict(stride=(2, 3), padding=((1, 2), (0, 3)), dilation=(1, 2), groups=1)),
])
def test_blocked_im2col_in_many_blocks_matches_torch(monkeypatch, dtype, block, x_shape, w_shape, opts):
    """The forward, dW and (with numba) dx in blocks of whole images, of row runs of one image and of
    one output row, both dW orientations, strides, dilation and uneven padding; against torch and the
    reference. (CI's FEATUREMAPS_NUMBA=0 run has no compiled adds: its dx is the rule's.)"""
    dx = "blocks_numba" if accel.numba_enabled() else None
    monkeypatch.setattr(threads, "MIN_BYTES", 0)  # every split over images taken, however small
    monkeypatch.setattr(colblocks, "BLOCK_BYTES", block)
    g = _shape(x_shape, w_shape, opts)
    assert len(colblocks.blocks(g, np.dtype(dtype).itemsize)) > 2
    x, w, b = _data(x_shape, w_shape, dtype, seed=7)
    gy = np.random.default_rng(8).standard_normal((g.n, *g.geo.out_hw, g.o)).astype(dtype)
    bounds, oracle = _bounds(x, w, b, gy, opts), _torch(x, w, b, gy, opts, g)
    ref = _run(*(a.astype(np.float64) for a in (x, w, b, gy)), opts)
    with conv_algos.use_conv_algorithm(forward="blocks", dw="blocks", dx=dx):
        got = _run(x, w, b, gy, opts)
    for what, a, r, t, bd, k in zip(("y", "dx", "dW", "db"), got, ref, oracle, bounds, _terms(g)):
        _close(a, t, bd, dtype, k, f"blocks {what} vs torch")
        _close(a, r, bd, dtype, k, f"blocks {what} vs the NumPy reference")


def test_per_tap_weight_grad_of_non_finite_input_takes_the_columns():
    """Its dropped rows pair real input pixels with dy's zeros: an inf there would give 0 · inf = NaN
    where the columns give a number, so a non-finite input takes the column path."""
    opts = dict(stride=1, padding=0, dilation=1, groups=1)
    x, w, b = _data((1, 4, 5, 2), (2, 2, 2, 1), np.float64)
    x[0, 0, 4, :] = np.inf  # last column: output (0, 3) reads it by tap (0, 1); tap (0, 0) on a dropped row
    gy = np.ones((1, 3, 4, 1))
    ref = _run(x, w, b, gy, opts)
    with conv_algos.use_conv_algorithm(forward="taps", dw="taps"):
        got = _run(x, w, b, gy, opts)
    finite = np.ones((2, 2, 2, 1), bool)
    finite[0, 1] = False
    np.testing.assert_array_equal(np.isfinite(ref[2]), finite)
    np.testing.assert_array_equal(np.isfinite(got[2]), finite)


def test_one_input_map_keeps_cols_t_dy():
    """With one input map the columns are built transposed (F-ordered), and colsᵀ · dy reads them
    as they lie, whatever `dy_t_orientation_pays` says of the sizes."""
    g = _shape((8, 64, 64, 1), (12, 12, 1, 4), dict(stride=1, padding=0, dilation=1, groups=1))
    assert conv_algos.dy_t_orientation_pays(144, 4)
    columns = [name for name in conv_algos.candidates(g, np.float32)["dw"] if name != "direct"]
    assert columns[0] == "cols_t_dy"


@settings(max_examples=20)
@given(n=st.integers(1, 2), size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       k=st.tuples(st.integers(1, 5), st.integers(1, 5)), s=st.tuples(st.integers(1, 3), st.integers(2, 3)),
       d=st.sampled_from([(1, 1), (2, 1), (1, 3)]), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       extra=st.tuples(st.integers(0, 2), st.integers(0, 2)), groups=st.sampled_from([1, 2]))
def test_phases_transposed_conv_matches_torch(n, size, k, s, d, pad, extra, groups):
    """conv_transpose2d's forward is conv2d's dx: the phases dx serves it, output_padding included
    (rows that no tap reaches), against torch in float64."""
    pad = tuple(min(p, (kk - 1) * dd) for p, kk, dd in zip(pad, k, d))  # keeps most draws' output ≥ 1 row
    extra = tuple(min(e, max(ss, dd) - 1) for e, ss, dd in zip(extra, s, d))  # < stride or dilation
    assume(all((h - 1) * ss - 2 * p + dd * (kk - 1) + e >= 0 for h, ss, p, dd, kk, e in zip(size, s, pad, d, k, extra)))
    x, w, _ = _data((n, *size, 2 * groups), (*k, 3, 2 * groups), np.float64)  # w: (kh, kw, C_out // groups, C_in)
    want = F.conv_transpose2d(torch.tensor(x.transpose(0, 3, 1, 2)), torch.tensor(w.transpose(3, 2, 0, 1)),
                              stride=s, padding=pad, output_padding=extra, groups=groups, dilation=d)
    want = want.numpy().transpose(0, 2, 3, 1)
    with conv_algos.use_conv_algorithm(dx="phases"):
        got = conv_mod.conv_transpose2d(x, w, stride=s, padding=pad, output_padding=extra, groups=groups, dilation=d)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * max(np.abs(want).max(), 1))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       k=st.tuples(st.integers(1, 5), st.integers(1, 5)), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       d=st.sampled_from([(1, 1), (2, 1), (1, 3)]), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       extra=st.tuples(st.integers(0, 2), st.integers(0, 2)), block=st.sampled_from([1, 300, 3000]))
def test_blocked_dx_transposed_conv_matches_torch(n, size, k, s, d, pad, extra, block):
    """The blocked dx serves conv_transpose2d's forward too, output_padding included, in blocks of
    one output row, of row runs and of several images (each split over the threads), against torch."""
    pad = tuple(min(p, (kk - 1) * dd) for p, kk, dd in zip(pad, k, d))
    extra = tuple(min(e, max(ss, dd) - 1) for e, ss, dd in zip(extra, s, d))  # < stride or dilation
    assume(all((h - 1) * ss - 2 * p + dd * (kk - 1) + e >= 0 for h, ss, p, dd, kk, e in zip(size, s, pad, d, k, extra)))
    assume(k != (1, 1) or s != (1, 1))  # a 1×1 stride-1 kernel is a plain GEMM (pointwise) only
    x, w, _ = _data((n, *size, 4), (*k, 3, 4), np.float64)  # w: (kh, kw, C_out, C_in)
    want = F.conv_transpose2d(torch.tensor(x.transpose(0, 3, 1, 2)), torch.tensor(w.transpose(3, 2, 0, 1)),
                              stride=s, padding=pad, output_padding=extra, dilation=d).numpy().transpose(0, 2, 3, 1)
    was = accel.numba_enabled()
    accel.use_numba(True)  # also in CI's FEATUREMAPS_NUMBA=0 run, where numba stays installed
    try:
        with pytest.MonkeyPatch.context() as mp, conv_algos.use_conv_algorithm(dx="blocks_numba"):
            mp.setattr(colblocks, "BLOCK_BYTES", block)
            mp.setattr(threads, "MIN_BYTES", 0)
            got = conv_mod.conv_transpose2d(x, w, stride=s, padding=pad, output_padding=extra, dilation=d)
    finally:
        accel.use_numba(was)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * max(np.abs(want).max(), 1))


# ---------------------------------------------------------------------------------------------
# conv_algorithm, the rule and forcing
# ---------------------------------------------------------------------------------------------
def test_conv_algorithm_reports_the_rule_without_autotuning():
    a = conv_algorithm((32, 28, 28, 256), (1, 1, 256, 64))
    assert (a.forward, a.dx) == ("pointwise", "pointwise") and a.why.startswith("rule: 1x1")
    d = conv_algorithm((2, 9, 9, 8), (3, 3, 1, 8), groups=8, padding=1)
    assert (d.forward, d.dw, d.dx) == ("depthwise",) * 3
    c = conv_algorithm((8, 24, 24, 16), (3, 3, 16, 16), padding=1)
    assert c.forward == "im2col" and "rule" in c.why


def test_conv_algorithm_errors_name_the_argument():
    with pytest.raises(ValueError, match="x_shape must be 4 positive ints"):
        conv_algorithm((2, 9, 9), (3, 3, 1, 8))
    with pytest.raises(ValueError, match="input has 4 channels but the weight expects 3"):
        conv_algorithm((2, 9, 9, 4), (3, 3, 3, 8))
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
        conv_algorithm((2, 9, 9, 4), (3, 3, 4, 8), dtype=np.int32)
    with pytest.raises(ValueError, match="forward must be one of"):
        with conv_algos.use_conv_algorithm(forward="fft"):
            pass
    x, w, _ = _data((1, 6, 6, 2), (3, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="forward='winograd' is not available for this layer"):
        with conv_algos.use_conv_algorithm(forward="winograd"):
            conv2d(x, w, stride=2)


def test_autotune_switch_validates_env(monkeypatch):
    monkeypatch.setenv("FEATUREMAPS_AUTOTUNE", "maybe")
    with pytest.raises(ValueError, match="FEATUREMAPS_AUTOTUNE must be"):
        conv_algos.autotune_enabled()
    monkeypatch.setenv("FEATUREMAPS_AUTOTUNE", "on")
    assert conv_algos.autotune_enabled()
    monkeypatch.delenv("FEATUREMAPS_AUTOTUNE")
    assert not conv_algos.autotune_enabled()  # opt-in: off by default (bit-identical resume)


# ---------------------------------------------------------------------------------------------
# The autotuner, on a fake clock
# ---------------------------------------------------------------------------------------------
class FakeClock:
    """A clock that only moves when a fake candidate 'runs' for its set cost."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _fake_trials(clock, costs, calls):
    def trials(g, dtype, train, allowed):
        def fn(part, name):
            def run():
                calls.append((part, name))
                clock.t += costs.get(name, 1.0)
            return run
        return {part: {name: fn(part, name) for name in names} for part, names in allowed.items() if len(names) > 1}
    return trials


LAYER = ((8, 24, 24, 16), (3, 3, 16, 16), dict(stride=1, padding=1, dilation=1, groups=1))


@pytest.mark.parametrize("fast", ["im2col", "winograd"])
def test_autotune_keeps_the_fastest_candidate_of_each_part(monkeypatch, fast):
    clock, calls = FakeClock(), []
    monkeypatch.setattr(autotune, "CLOCK", [clock])
    g = _shape(*LAYER)
    costs = {fast: 0.001, "dy_t_cols": 0.0005, "cols_t_dy": 0.002, "winograd" if fast == "im2col" else "im2col": 0.003,
             "col2im": 0.0001}
    a = conv_algos.choose(g, np.float32, True, _fake_trials(clock, costs, calls))
    assert a.why.startswith("rule") and not calls  # FEATUREMAPS_AUTOTUNE=0: nothing timed
    conv_algos.use_autotune(True)
    conv_algos.clear()
    a = conv_algos.choose(g, np.float32, True, _fake_trials(clock, costs, calls))
    assert (a.forward, a.dw, a.dx) == (fast, "dy_t_cols", "col2im")
    assert a.why.startswith("autotuned ") and f"forward {fast} 1 ms vs" in a.why
    n_calls = len(calls)
    assert n_calls > 0
    assert conv_algos.choose(g, np.float32, True, _fake_trials(clock, costs, calls)) == a  # remembered
    conv_algos.clear()  # a new process: read back from the cache file, not timed again
    assert conv_algos.choose(g, np.float32, True, _fake_trials(clock, costs, calls)) == a
    assert len(calls) == n_calls


def test_real_trials_run_every_candidate(monkeypatch):
    """The trials conv2d gives the autotuner run (a clock that never moves: the rule's choice stays)."""
    monkeypatch.setattr(autotune, "CLOCK", [lambda: 0.0])
    conv_algos.use_autotune(True)
    g = _shape(*LAYER)
    runs = conv_mod._trials(g, np.float32, True, conv_algos.candidates(g, np.float32))
    direct = {"direct"} if accel.numba_enabled() else set()  # offered up to 16 input maps with numba
    assert colblocks.applies(g)  # the blocked im2col: one group, more than one input map
    assert set(runs["forward"]) >= {"im2col", "winograd", "taps", "blocks"} | direct  # taps: one group, > 1 tap
    assert set(runs["dw"]) == {"cols_t_dy", "dy_t_cols", "taps", "blocks"} | direct
    for part in ("forward", "dw"):
        for run in runs[part].values():
            run()  # each trial runs as given
    a = conv_algorithm(*LAYER[:2], padding=1)
    assert (a.forward, a.dw, a.dx) == tuple(conv_algos.rule(g, np.float32)[:3])
    x, w, b = _data(LAYER[0], LAYER[1], np.float32)
    np.testing.assert_array_equal(conv2d(x, w, b, padding=1), conv2d(x, w, b, padding=1))  # one path: bit-identical


def test_small_layers_are_not_timed(monkeypatch):
    conv_algos.use_autotune(True)
    calls = []
    a = conv_algos.choose(_shape((1, 5, 5, 2), (3, 3, 2, 2), LAYER[2]), np.float32, True,
                          _fake_trials(FakeClock(), {}, calls))
    assert a.why.startswith("rule") and not calls and not autotune.cache_path().exists()


# ---------------------------------------------------------------------------------------------
# The cache file
# ---------------------------------------------------------------------------------------------
ENTRY = {"forward": "im2col", "dw": "cols_t_dy", "dx": "col2im", "why": "autotuned 2026-12-02: test"}


def test_cache_is_bounded_oldest_evicted(monkeypatch):
    monkeypatch.setattr(autotune, "MAX_ENTRIES", 5)
    path = autotune.cache_path()
    for i in range(8):
        assert autotune.store(path, f"k{i}", ENTRY, conv_algos.NAMES)
    entries = autotune.load(path, conv_algos.NAMES)
    assert list(entries) == [f"k{i}" for i in range(3, 8)]
    autotune.store(path, "k3", ENTRY, conv_algos.NAMES)  # refreshed: now the newest
    autotune.store(path, "k8", ENTRY, conv_algos.NAMES)
    assert list(autotune.load(path, conv_algos.NAMES)) == ["k5", "k6", "k7", "k3", "k8"]


def test_cache_write_is_atomic(monkeypatch):
    path = autotune.cache_path()
    autotune.store(path, "old", ENTRY, conv_algos.NAMES)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken_replace)
    assert not autotune.store(path, "new", ENTRY, conv_algos.NAMES)  # reported, not raised
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("content", [b"\x00\xff garbage", b"[1, 2, 3]", b'{"format": "something else"}', b"",
                                     b'{"format": "featuremaps-conv-algorithms", "version": 1, "entries": 5}'])
def test_corrupt_cache_is_ignored_and_replaced(monkeypatch, content):
    path = autotune.cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert autotune.load(path, conv_algos.NAMES) == {}
    clock, calls = FakeClock(), []
    monkeypatch.setattr(autotune, "CLOCK", [clock])
    conv_algos.use_autotune(True)
    a = conv_algos.choose(_shape(*LAYER), np.float32, True, _fake_trials(clock, {"winograd": 2.0}, calls))
    assert calls and a.forward == "im2col"
    assert len(autotune.load(path, conv_algos.NAMES)) == 1  # rewritten as a valid cache


def test_cache_entries_are_validated_one_by_one():
    path = autotune.cache_path()
    autotune.store(path, "good", ENTRY, conv_algos.NAMES)
    doc = json.loads(path.read_text())
    doc["entries"] += [["bad-name", dict(ENTRY, forward="os.system")], ["extra-field", dict(ENTRY, code="x")],
                       ["long-why", dict(ENTRY, why="x" * 10000)], ["not-a-dict", "im2col"], [1, ENTRY], "junk"]
    path.write_text(json.dumps(doc))
    assert list(autotune.load(path, conv_algos.NAMES)) == ["good"]


def test_oversized_cache_is_not_read(monkeypatch):
    path = autotune.cache_path()
    autotune.store(path, "good", ENTRY, conv_algos.NAMES)
    monkeypatch.setattr(autotune, "MAX_FILE_BYTES", 10)
    assert autotune.load(path, conv_algos.NAMES) == {}


def test_cache_of_another_machine_or_version_is_ignored(monkeypatch):
    path = autotune.cache_path()
    autotune.store(path, "good", ENTRY, conv_algos.NAMES)
    assert autotune.load(path, conv_algos.NAMES)
    for field, value in (("cpu", "another CPU | avx2"), ("numpy", "1.0"), ("featuremaps", "0.0.1"), ("numba", "x")):
        doc = json.loads(path.read_text())
        doc["machine"][field] = value
        other = path.with_name("other.json")
        other.write_text(json.dumps(doc))
        assert autotune.load(other, conv_algos.NAMES) == {}, field
    key = autotune.machine_key()
    assert {"cpu", "numpy", "blas", "numba", "featuremaps", "env"} <= set(key)


def test_cached_choice_that_the_layer_no_longer_allows_is_retuned(monkeypatch):
    """A cached 'winograd' is not used where the shape key differs, and an unknown name is never loaded."""
    clock, calls = FakeClock(), []
    monkeypatch.setattr(autotune, "CLOCK", [clock])
    conv_algos.use_autotune(True)
    g = _shape(*LAYER)
    key = conv_algos.shape_key(g, np.float32, True, conv_algos.candidates(g, np.float32))
    autotune.store(autotune.cache_path(), key, dict(ENTRY, forward="winograd", dx="winograd"), conv_algos.NAMES)
    a = conv_algos.choose(g, np.float32, True, _fake_trials(clock, {}, calls))
    assert (a.forward, a.dx) == ("winograd", "winograd") and not calls  # valid cached entry: used as is
