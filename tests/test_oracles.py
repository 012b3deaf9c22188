"""The oracle helper itself (tests/oracles.check_op): it passes a correct op and raises for each kind
of wrong one (a transposed or flipped kernel, a dropped, scaled, shifted or misrouted gradient, an
error just over the rounding bound, NaN, another dtype, an oracle that ignores an input), and its
layouts are torch's."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import featuremaps.functional as fn
from featuremaps.functional import conv2d
from featuremaps.tensor import apply
from tests.oracles import check_op, from_torch, run_op, sum_rtol, to_torch, torch_layout

XWB = ["NHWC", "HWIO", "C"]
TERMS = [3 * 3 * 2 + 1, 3 * 3 * 4, 2 * 5 * 4 + 2, 2 * 5 * 4 + 2]  # y, dx, dw, db of the conv below


def _conv_case(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((2, 5, 4, 2)), rng.standard_normal((3, 3, 2, 4)), rng.standard_normal(4)
    return [a.astype(dtype) for a in (x, w, b)]


def _torch_conv(x, w, b):
    return F.conv2d(x, w, b, padding=1)


def _check_conv(fm_fn, arrays=None, **kw):
    return check_op(fm_fn, _torch_conv, _conv_case() if arrays is None else arrays, XWB, terms=TERMS, names="xwb",
                    **kw)


def _ours(x, w, b):
    return conv2d(x, w, b, padding=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_right_op_passes_and_is_compared_in_its_dtype(dtype):
    r = _check_conv(_ours, _conv_case(dtype))
    assert r.out.dtype == dtype and all(g.dtype == dtype for g in r.grads)
    assert all(g.dtype == np.float64 for g in r.ref_grads)  # torch ran in float64
    assert r.grad.std() > 0.5 and np.unique(r.grad).size == r.grad.size  # a random upstream gradient, not ones
    np.testing.assert_array_equal(r.grad, _check_conv(_ours, _conv_case(dtype)).grad)  # and seeded


# --- a wrong forward pass ---------------------------------------------------------------------
@pytest.mark.parametrize("wrong", [
    lambda x, w, b: conv2d(x, w.transpose(1, 0, 2, 3), b, padding=1),    # kernel transposed (KH <-> KW)
    lambda x, w, b: conv2d(x, w[::-1, ::-1], b, padding=1),              # flipped: convolution, not correlation
    lambda x, w, b: conv2d(x, w, b * 0.0, padding=1),                    # the bias dropped (and its gradient)
    lambda x, w, b: conv2d(x, w, b, padding=((1, 1), (2, 0))),           # padding shifted along W
    lambda x, w, b: conv2d(x, w, b, padding=1) * 1.0000001,              # off by 1e-7 relative
], ids=["transposed-kernel", "flipped-kernel", "no-bias", "shifted-padding", "1e-7-relative"])
def test_a_wrong_forward_raises(wrong):
    with pytest.raises(AssertionError):
        _check_conv(wrong)


def test_the_bound_is_the_rounding_of_the_sums_not_looser():
    """An error of 4× the stated bound fails; a quarter of it passes."""
    x, w, b = _conv_case()
    bound = conv2d(abs(x), abs(w), abs(b), padding=1) * sum_rtol(np.float64, TERMS[0])  # what check_op allows on y
    sign = np.where(np.random.default_rng(1).random(bound.shape) < 0.5, -1.0, 1.0)
    _check_conv(lambda *a: _ours(*a) + 0.25 * sign * bound)
    with pytest.raises(AssertionError, match="output: .* more than the rounding of a 19-term float64 sum"):
        _check_conv(lambda *a: _ours(*a) + 4.0 * sign * bound)


# --- a wrong backward pass (the forward is right) ---------------------------------------------
def _conv_with_backward(corrupt):
    """conv2d's forward, with its true input gradients passed through `corrupt(dx, dw, db, g)`."""
    def forward(x, w, b, needs):
        return conv2d(x, w, b, padding=1), (x, w, b)

    def backward(ctx, g, needs):
        _, grads, _ = run_op(_ours, ctx, g)
        return corrupt(*grads, g)
    return lambda x, w, b: apply(forward, backward, x, w, b)


@pytest.mark.parametrize("corrupt,match", [
    (lambda dx, dw, db, g: (dx, dw, None), "db: featuremaps gives no gradient"),
    (lambda dx, dw, db, g: (dx, dw.transpose(1, 0, 2, 3), db), "dw"),
    (lambda dx, dw, db, g: (dx[:, ::-1], dw, db), "dx"),
    (lambda dx, dw, db, g: (dx, 2 * dw, db), "dw"),
    (lambda dx, dw, db, g: (dx, dw, db + 1e-9), "db"),
    # the gradient of a constant upstream gradient: right only if the test sent back ones
    (lambda dx, dw, db, g: run_op(_ours, [dx, dw, db], np.full_like(g, g.mean()))[1], "dx"),
], ids=["dropped", "transposed", "flipped", "doubled", "shifted", "upstream-ignored"])
def test_a_wrong_gradient_raises_and_names_it(corrupt, match):
    _check_conv(_conv_with_backward(lambda dx, dw, db, g: (dx, dw, db)))  # the wrapper itself is right
    with pytest.raises(AssertionError, match=match):
        _check_conv(_conv_with_backward(corrupt))


def test_a_misrouted_max_pool_gradient_raises():
    """Ties sent to each window's last element instead of the first: the same output, another gradient."""
    x = np.ones((1, 4, 6, 2))
    last = lambda t: fn.max_pool2d(t[:, ::-1, ::-1], 2)[:, ::-1, ::-1]  # noqa: E731
    check_op(lambda t: fn.max_pool2d(t, 2), lambda t: F.max_pool2d(t, 2), [x], ["NHWC"], terms=0, scale="route")
    with pytest.raises(AssertionError, match="gradient of input 0"):
        check_op(last, lambda t: F.max_pool2d(t, 2), [x], ["NHWC"], terms=0, scale="route")


# --- NaN, dtype, an incomplete oracle, explicit tolerances --------------------------------------
def test_nan_where_torch_is_finite_raises_and_matching_nan_passes():
    x = np.random.default_rng(2).standard_normal((1, 4, 4, 1))
    nan = np.zeros((1, 2, 2, 1))
    nan[0, 1, 0, 0] = np.nan
    with pytest.raises(AssertionError):
        check_op(lambda t: fn.max_pool2d(t, 2) + nan, lambda t: F.max_pool2d(t, 2), [x], ["NHWC"], terms=0,
                 scale="route")
    x[0, 2, 1, 0] = np.nan  # now both give NaN there
    check_op(lambda t: fn.max_pool2d(t, 2), lambda t: F.max_pool2d(t, 2), [x], ["NHWC"], terms=0, scale="route")


def test_another_dtype_raises():
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(AssertionError, match="dtype float64, expected float32"):
        check_op(lambda t: fn.tanh(t * np.ones(t.shape)), torch.tanh, [x], [None], rtol=1e-6)


def test_an_oracle_that_ignores_an_input_raises():
    x, w, b = _conv_case()
    with pytest.raises(AssertionError, match="db: torch_fn gives no gradient"):  # the same output: b is 0
        check_op(_ours, lambda x, w, b: F.conv2d(x, w, padding=1), [x, w, 0 * b], XWB, terms=TERMS, names="xwb")


def test_explicit_tolerances_compare_too():
    x = np.random.default_rng(4).standard_normal((3, 4))
    check_op(fn.tanh, torch.tanh, [x], [None], rtol=1e-12, atol=1e-14)
    with pytest.raises(AssertionError):
        check_op(fn.sigmoid, torch.tanh, [x], [None], rtol=1e-12, atol=1e-14)
    with pytest.raises(AssertionError, match="gradient of input 0"):  # per-value tolerances: the gradient's is 0
        check_op(lambda t: fn.tanh(t) * 1.0, lambda t: torch.tanh(t) + 1e-9 * t ** 2, [x], [None], rtol=[1e-8, 0.0])


def test_bad_arguments_are_named():
    x = _conv_case()
    with pytest.raises(TypeError, match="give either terms .* or atol/rtol"):
        check_op(_ours, _torch_conv, x, XWB)
    with pytest.raises(TypeError, match="give either terms"):
        check_op(_ours, _torch_conv, x, XWB, rtol=1e-9, terms=TERMS)
    with pytest.raises(ValueError, match=r"layouts must give one layout per array \(3\); received 2"):
        check_op(_ours, _torch_conv, x, XWB[:2], terms=TERMS)
    with pytest.raises(ValueError, match="scale must be 'sum' or 'route'; received 'max'"):
        check_op(_ours, _torch_conv, x, XWB, terms=TERMS, scale="max")
    with pytest.raises(ValueError, match="terms must be one value or 4"):
        check_op(_ours, _torch_conv, x, XWB, terms=TERMS[:3])


# --- layouts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ours,theirs", [("NHWC", "NCHW"), ("HWIO", "OIHW"), ("NWC", "NCW"), ("NC", "NC"),
                                         ("IO", "OI"), ("C", "C")])
def test_torch_layouts(ours, theirs):
    assert torch_layout(ours) == theirs
    a = np.arange(np.prod(range(2, 2 + len(ours))), dtype=np.float64).reshape(range(2, 2 + len(ours)))
    t = to_torch(a, ours)
    assert tuple(t.shape) == tuple(a.shape[ours.index(c)] for c in theirs)
    np.testing.assert_array_equal(from_torch(t, ours), a)


def test_layouts_agree_with_torch_conventions():
    """A 1×1 conv whose weight maps map 0 to map 1 only: torch sees it as weight[1, 0] (O, I)."""
    x = np.random.default_rng(5).standard_normal((1, 3, 2, 2))
    w = np.zeros((1, 1, 2, 2))
    w[0, 0, 0, 1] = 1.0  # HWIO: input map 0 -> output map 1
    y = from_torch(F.conv2d(to_torch(x, "NHWC"), to_torch(w, "HWIO")), "NHWC")
    np.testing.assert_array_equal(y[..., 1], x[..., 0])
    np.testing.assert_array_equal(y[..., 0], 0.0)
    with pytest.raises(ValueError, match="layout 'NHWC' needs a 4-D array; received shape"):
        to_torch(x[0], "NHWC")
