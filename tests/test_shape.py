"""functional.shape: constant padding and concat against torch (F.pad, torch.cat) in float64, alone
and mid-network (so the gradient they receive varies), asymmetric pads, fan-out, gradcheck, errors.
(reshape, transpose, getitem and flatten are checked as Tensor methods in test_tensor.py.)"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import featuremaps.functional as F
from featuremaps import nn
from tests.oracles import check_op, gradcheck

# float64 sums of a few terms (the conv and tanh around the op): rounding of order 1e-15
TOL = dict(rtol=1e-12, atol=1e-12)


def _torch_pad_arg(pad_width):
    """np.pad's ((before, after), ...) per axis -> torch's flat tuple, last axis first."""
    return tuple(v for lo_hi in reversed(pad_width) for v in lo_hi)


# --- pad ----------------------------------------------------------------------------------------
@st.composite
def pad_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in shape)
    return shape, pads, draw(st.sampled_from([0.0, -1.5])), draw(st.integers(0, 2 ** 16))


@settings(max_examples=40, deadline=None)
@given(pad_cases())
def test_pad_matches_torch_forward_and_gradient(case):
    shape, pads, value, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    g = rng.standard_normal(tuple(n + lo + hi for n, (lo, hi) in zip(shape, pads)))
    # copies and a crop: no arithmetic, so the results are exact (terms=0); any layout, the same in torch
    check_op(lambda t: F.pad(t, pads, value), lambda t: TF.pad(t, _torch_pad_arg(pads), value=value), [x], [None],
             terms=0, grad=g)


PADS_2D = ((1, 2), (3, 0))  # asymmetric on both axes: a swapped crop offset shows


def _pad_layer(kind):
    if kind == "functional":
        return lambda t: F.pad(t, ((0, 0), *PADS_2D, (0, 0)))
    return nn.ZeroPad2D(PADS_2D)  # the layer lenet5 starts with


@pytest.mark.parametrize("kind", ["functional", "ZeroPad2D"])
def test_pad_mid_network_matches_torch(kind):
    """tanh(x·s) → pad → conv (stride (2, 1)): the gradient reaching pad varies by position, and
    what pad passes back goes on through tanh and the product."""
    rng = np.random.default_rng(0)
    x, s, w = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal(3), rng.standard_normal((3, 2, 3, 4))
    pad = _pad_layer(kind)

    def ours(x_, s_, w_):
        return F.conv2d(pad(F.tanh(x_ * s_)), w_, stride=(2, 1))

    def theirs(x_, s_, w_):
        p = TF.pad(torch.tanh(x_ * s_), (0, 0, *PADS_2D[1], *PADS_2D[0]))  # NHWC: C, then W, then H
        out = TF.conv2d(p.permute(0, 3, 1, 2), w_.permute(3, 2, 0, 1), stride=(2, 1))
        return out.permute(0, 2, 3, 1)
    y = ours(x, s, w)
    assert y.shape == (2, 3, 8, 4)  # (5 + 3 − 3) // 2 + 1 rows, 6 + 3 − 2 + 1 columns
    check_op(ours, theirs, [x, s, w], [None] * 3, grad=rng.standard_normal(y.shape), names="xsw", **TOL)


def test_pad_mid_network_gradcheck():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 3, 4, 2)), rng.standard_normal((2, 2, 3, 3))  # pad adds a map
    gradcheck(lambda a, k: F.conv2d(F.pad(F.tanh(a), ((0, 0), (2, 0), (0, 1), (1, 0))), k), x, w)


# --- concat -------------------------------------------------------------------------------------
@st.composite
def concat_cases(draw):
    ndim = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 3)) for _ in range(ndim)]
    axis = draw(st.integers(-ndim, ndim - 1))
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    shapes = [tuple(shape[:axis % ndim] + [k] + shape[axis % ndim + 1:]) for k in sizes]
    return shapes, axis, draw(st.integers(0, 2 ** 16))


@settings(max_examples=40, deadline=None)
@given(concat_cases())
def test_concat_matches_torch_forward_and_gradient(case):
    shapes, axis, seed = case
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(s) for s in shapes]
    total = sum(s[axis] for s in shapes)
    out_shape = list(shapes[0])
    out_shape[axis] = total
    g = rng.standard_normal(out_shape)
    check_op(lambda *ts: F.concat(ts, axis=axis), lambda *ts: torch.cat(ts, dim=axis), xs, [None] * len(xs), terms=0,
             grad=g)  # copies and splits: exact


def test_concat_mid_network_with_fan_out_matches_torch():
    """concat([tanh(x), x·y, conv(y)]) along the maps → conv: each input receives a different slice
    of a varying gradient, and x and y reach the concat twice each."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((2, 5, 5, 2)), rng.standard_normal((2, 5, 5, 2))
    w1, w2 = rng.standard_normal((1, 1, 2, 3)), rng.standard_normal((3, 3, 7, 4))

    def ours(x_, y_, w1_, w2_):
        return F.conv2d(F.concat([F.tanh(x_), x_ * y_, F.conv2d(y_, w1_)], axis=-1), w2_, padding=((1, 0), (0, 2)))

    def theirs(x_, y_, w1_, w2_):
        c = torch.cat([torch.tanh(x_), x_ * y_, TF.conv2d(y_.permute(0, 3, 1, 2), w1_.permute(3, 2, 0, 1)
                                                         ).permute(0, 2, 3, 1)], dim=-1)
        c = TF.pad(c, (0, 0, 0, 2, 1, 0))
        return TF.conv2d(c.permute(0, 3, 1, 2), w2_.permute(3, 2, 0, 1)).permute(0, 2, 3, 1)
    g = rng.standard_normal(ours(x, y, w1, w2).shape)
    check_op(ours, theirs, [x, y, w1, w2], [None] * 4, grad=g, names=["x", "y", "w1", "w2"], **TOL)


def test_concat_mid_network_gradcheck():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((1, 3, 3, 1)), rng.standard_normal((1, 3, 3, 2))
    w = rng.standard_normal((2, 2, 4, 2))
    gradcheck(lambda a_, b_, w_: F.conv2d(F.concat([a_ * a_, F.tanh(b_), a_], axis=3), w_), a, b, w)
    gradcheck(lambda a_, b_: F.concat([a_, F.tanh(b_).transpose(0, 2, 1, 3)], axis=-1) * 2.0, a, b)


# --- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.concat([]), ValueError, "xs must hold at least one array; received none"),
    (lambda: F.concat([np.zeros((2, 3)), np.zeros(3)]), ValueError,
     r"same number of dimensions .*received \[\(2, 3\), \(3,\)\]"),
    (lambda: F.concat([np.zeros((2, 3)), np.zeros((3, 3))], axis=1), ValueError,
     r"shapes must agree except on axis 1; received \[\(2, 3\), \(3, 3\)\]"),
    (lambda: F.pad(np.zeros((2, 3)), ((1, 1),)), ValueError,
     r"pad_width must be 2 non-negative .*received \(\(1, 1\),\)"),
    (lambda: F.pad(np.zeros((2, 3)), ((1, -1), (0, 0))), ValueError, "pad_width must be 2 non-negative"),
    (lambda: F.pad(np.zeros((2, 3)), 2), TypeError, r"pad_width must be 2 \(before, after\) pairs; received 2"),
])
def test_errors_name_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
