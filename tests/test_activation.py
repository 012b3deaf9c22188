"""Activations and (log-)softmax against PyTorch in float64: values, gradients, special values, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import featuremaps.functional as fn
from featuremaps import Tensor
from tests.oracles import check_op, gradcheck

ELEMENTWISE = [
    ("relu", fn.relu, F.relu),
    ("leaky_relu", lambda x: fn.leaky_relu(x, 0.2), lambda t: F.leaky_relu(t, 0.2)),
    ("leaky_relu-default", fn.leaky_relu, F.leaky_relu),
    ("elu", lambda x: fn.elu(x, 1.7), lambda t: F.elu(t, 1.7)),
    ("elu-default", fn.elu, F.elu),
    ("tanh", fn.tanh, torch.tanh),
    ("sigmoid", fn.sigmoid, torch.sigmoid),
]
ALONG_AXIS = [
    ("softmax", fn.softmax, lambda t, dim=-1: F.softmax(t, dim=dim)),
    ("log_softmax", fn.log_softmax, lambda t, dim=-1: F.log_softmax(t, dim=dim)),
]


# Not sums: exp, log, tanh and a division or two per value, each library with its own formulas; no
# simple rounding bound, so fixed float64 tolerances (a softmax adds a sum along the axis)
TOL = dict(rtol=1e-12, atol=1e-14)
TOL_ALONG_AXIS = dict(rtol=1e-11, atol=1e-13)


def _against_torch(ours, theirs, x, g, **tol):
    """Forward and gradient against torch (tests/oracles.check_op), elementwise: no layout to change."""
    return check_op(ours, theirs, [x], [None], grad=g, **(tol or TOL)).out


def _inputs(shape, seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    x.flat[:: 3] = np.round(x.flat[:: 3])  # exact integers, zeros among them: the kinks
    return x, rng.standard_normal(shape)


@pytest.mark.parametrize("name,ours,theirs", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.5, 3.0, 40.0]))
def test_elementwise_matches_torch(name, ours, theirs, shape, seed, scale):
    x, g = _inputs(shape, seed, scale)
    _against_torch(ours, theirs, x, g)


@pytest.mark.parametrize("name,ours,theirs", ALONG_AXIS, ids=[e[0] for e in ALONG_AXIS])
@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.5, 3.0, 300.0]), data=st.data())
def test_softmax_family_matches_torch_on_any_axis(name, ours, theirs, shape, seed, scale, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x, g = _inputs(shape, seed, scale)
    _against_torch(lambda a: ours(a, axis=axis), lambda t: theirs(t, dim=axis), x, g, **TOL_ALONG_AXIS)


def test_gradient_at_zero_follows_torch():
    x = np.array([0.0, -0.0, 1.0, -1.0])
    for name, ours, theirs in ELEMENTWISE:
        _against_torch(ours, theirs, x, np.ones(4))
    t = Tensor(x, requires_grad=True)
    fn.relu(t).backward(np.ones(4))
    assert t.grad[0] == 0.0  # relu'(0) = 0, as in PyTorch


def test_no_overflow_for_large_inputs():
    x = np.array([-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4])
    with np.errstate(over="raise", invalid="raise"):  # an overflow or invalid operation fails
        for name, ours, theirs in ELEMENTWISE + ALONG_AXIS:
            _against_torch(ours, theirs, x, np.linspace(-1, 1, 7))
    np.testing.assert_allclose(fn.softmax(np.array([1000.0, 1000.0])), [0.5, 0.5])
    np.testing.assert_allclose(fn.log_softmax(np.array([-1000.0, 0.0])), [-1000.0, 0.0], atol=1e-300)


def _elu_at_nan(ours, theirs, x, g):
    """ELU on `x` with NaNs: the output everywhere and the gradient off the NaNs as torch's; at a NaN
    input, a NaN gradient (what its NaN output implies)."""
    t = Tensor(x.copy(), requires_grad=True)
    y = ours(t)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(g))
    nan = np.isnan(x)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12, atol=0, equal_nan=True)
    np.testing.assert_allclose(t.grad[~nan], tx.grad.numpy()[~nan], rtol=1e-12, atol=0)
    assert np.isnan(t.grad[nan]).all()


def test_nan_and_inf_propagate_like_torch():
    x = np.array([[np.nan, 0.0, 1.0], [np.inf, -np.inf, 2.0], [-np.inf, -np.inf, -np.inf], [1.0, 2.0, 3.0]])
    g = np.ones_like(x)
    with np.errstate(all="ignore"):
        for name, ours, theirs in ELEMENTWISE + ALONG_AXIS:
            if name.startswith("elu"):  # torch's ELU gradient at a NaN input is 1 or NaN depending on the
                _elu_at_nan(ours, theirs, x, g)  # CPU's vector path: hold ours to NaN, the rest to torch
                continue
            out = _against_torch(ours, theirs, x, g)
            if name in ("softmax", "log_softmax"):  # a NaN row stays NaN, clean rows stay clean
                assert np.isnan(out[0]).all() and np.isfinite(out[3]).all()


@pytest.mark.parametrize("name,ours,theirs", ELEMENTWISE + ALONG_AXIS, ids=[e[0] for e in ELEMENTWISE + ALONG_AXIS])
def test_gradcheck(name, ours, theirs):
    x = np.random.default_rng(1).standard_normal((3, 4))
    x[np.abs(x) < 0.05] = 0.3  # central differences need distance from the kinks
    gradcheck(ours, x)


@pytest.mark.parametrize("name,ours,theirs", ELEMENTWISE + ALONG_AXIS, ids=[e[0] for e in ELEMENTWISE + ALONG_AXIS])
def test_float32_kept_and_container_kind_kept(name, ours, theirs):
    x = np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)
    out = ours(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    # float32 against torch in float64: a few float32 roundings per value
    check_op(ours, theirs, [x], [None], rtol=2e-6, atol=1e-6)
    t = Tensor(x, requires_grad=True)
    y = ours(t)
    assert isinstance(y, Tensor) and y.dtype == np.float32
    y.backward(np.ones((2, 3), np.float32))
    assert t.grad.dtype == np.float32


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="relu: x must have a floating dtype; received int64"):
        fn.relu(np.arange(3))
    with pytest.raises(TypeError, match="sigmoid: x"):
        fn.sigmoid(np.array([True]))
    with pytest.raises(ValueError, match=r"softmax: axis must be in \[-2, 1\].*received 2"):
        fn.softmax(np.zeros((2, 3)), axis=2)
    with pytest.raises(TypeError, match="log_softmax: axis must be an int"):
        fn.log_softmax(np.zeros((2, 3)), axis=(0, 1))
    with pytest.raises(TypeError, match="leaky_relu: negative_slope"):
        fn.leaky_relu(np.zeros(2), "0.1")
    with pytest.raises(TypeError, match="elu: alpha"):
        fn.elu(np.zeros(2), None)
