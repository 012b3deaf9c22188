"""Losses against PyTorch in float64 (every reduction, label smoothing), stability, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import featuremaps.functional as fn
from featuremaps import Tensor
from tests.oracles import assert_sum_close, check_op, gradcheck

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])
# log-sum-exp, logs and a mean: no simple rounding bound, so fixed float64 tolerances
TOL = dict(rtol=1e-12, atol=1e-13)


def _check(ours, theirs, inputs, seed=0, **tol):
    """Forward and the gradient of every input against torch, for a seeded random upstream gradient
    (tests/oracles.check_op); labels are closed over, and no layout changes."""
    check_op(ours, theirs, inputs, [None] * len(inputs), seed=seed, **{**TOL, **tol})


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(1, 6), reduction=REDUCTIONS,
       smoothing=st.sampled_from([0.0, 0.1, 0.55]), scale=st.sampled_from([1.0, 30.0]),
       seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_matches_torch(n, c, reduction, smoothing, scale, seed):
    rng = np.random.default_rng(seed)
    logits, labels = rng.standard_normal((n, c)) * scale, rng.integers(0, c, n)
    _check(lambda z: fn.cross_entropy(z, labels, label_smoothing=smoothing, reduction=reduction),
           lambda z: F.cross_entropy(z, torch.tensor(labels), label_smoothing=smoothing, reduction=reduction),
           [logits], seed, rtol=1e-11)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(1, 6), reduction=REDUCTIONS, seed=st.integers(0, 2**32 - 1))
def test_nll_loss_matches_torch(n, c, reduction, seed):
    rng = np.random.default_rng(seed)
    scores, labels = rng.standard_normal((n, c)), rng.integers(0, c, n).astype(np.int32)
    _check(lambda s: fn.nll_loss(s, labels, reduction=reduction),
           lambda s: F.nll_loss(s, torch.tensor(labels, dtype=torch.long), reduction=reduction),
           [scores], seed)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), reduction=REDUCTIONS,
       seed=st.integers(0, 2**32 - 1))
def test_mse_loss_matches_torch_for_both_inputs(shape, reduction, seed):
    rng = np.random.default_rng(seed)
    _check(lambda p, t: fn.mse_loss(p, t, reduction=reduction), lambda p, t: F.mse_loss(p, t, reduction=reduction),
           [rng.standard_normal(shape), rng.standard_normal(shape)], seed)


def test_cross_entropy_equals_nll_of_log_softmax_and_gradchecks():
    rng = np.random.default_rng(3)
    z, y = rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
    np.testing.assert_allclose(fn.cross_entropy(z, y), fn.nll_loss(fn.log_softmax(z), y), rtol=1e-14)
    gradcheck(lambda a: fn.cross_entropy(a, y, label_smoothing=0.2), z)
    gradcheck(lambda a: fn.nll_loss(a, y, reduction="none"), z)
    gradcheck(lambda a, b: fn.mse_loss(a, b, reduction="sum"), z, rng.standard_normal((4, 5)))


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [-1e300, 1e300, 0.0]])
    y = np.array([1, 1])
    with np.errstate(over="raise", invalid="raise"):
        out = fn.cross_entropy(Tensor(z, requires_grad=True), y, reduction="none")
    np.testing.assert_allclose(out.data, [1e4, 0.0])
    _check(lambda a: fn.cross_entropy(a, y, reduction="sum"),
           lambda a: F.cross_entropy(a, torch.tensor(y), reduction="sum"), [z])


def test_float32_kept():
    rng = np.random.default_rng(4)
    z, y = rng.standard_normal((3, 4)).astype(np.float32), np.array([1, 0, 3])
    for out in (fn.cross_entropy(z, y), fn.nll_loss(z, y), fn.mse_loss(z, z * 2)):
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == ()
    t = Tensor(z, requires_grad=True)
    fn.cross_entropy(t, y, label_smoothing=0.1).backward()
    assert t.grad.dtype == np.float32
    # float32 both sides: per row a 4-term sum of exps, its log and − z_y, then the mean of 3 rows; each
    # row's terms are at most max|z| + ln 4 (the log-sum-exp) + |z_y|
    scale = np.mean(np.abs(z).max(axis=1) + np.log(4) + np.abs(z[np.arange(3), y]))
    assert_sum_close(fn.cross_entropy(z, y), F.cross_entropy(torch.tensor(z), torch.tensor(y)).numpy(), scale,
                     np.float32, 4 + 3 + 3)


def test_nan_propagates():
    z = np.array([[np.nan, 1.0], [0.0, 1.0]])
    out = fn.cross_entropy(z, np.array([0, 1]), reduction="none")
    assert np.isnan(out[0]) and np.isfinite(out[1])
    assert np.isnan(fn.mse_loss(z, np.zeros_like(z)))


def test_labels_may_be_a_tensor_and_are_not_differentiated():
    z = Tensor(np.zeros((2, 3)), requires_grad=True)
    fn.cross_entropy(z, Tensor(np.array([0, 2]))).backward()
    np.testing.assert_allclose(z.grad, [[-1 / 3, 1 / 6, 1 / 6], [1 / 6, 1 / 6, -1 / 3]])


def test_errors_name_the_argument():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError,
                       match=r"cross_entropy: labels must be in \[0, 4\) for 4 classes; received 4 \(at index 2\)"):
        fn.cross_entropy(z, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"nll_loss: labels must be in \[0, 4\).*received -1"):
        fn.nll_loss(z, np.array([-1, 1, 2]))
    with pytest.raises(TypeError, match="cross_entropy: labels must be an integer array.*float64"):
        fn.cross_entropy(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must be 1-D \(N,\); received shape \(3, 1\)"):
        fn.cross_entropy(z, np.zeros((3, 1), dtype=int))
    with pytest.raises(ValueError, match="cross_entropy: logits has batch size 3 but labels has 2"):
        fn.cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: logits must be 2-D \(N, C\)"):
        fn.cross_entropy(np.zeros(4), np.array([0]))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\); received 1.0"):
        fn.cross_entropy(z, np.array([0, 1, 2]), label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\); received -0.1"):
        fn.cross_entropy(z, np.array([0, 1, 2]), label_smoothing=-0.1)
    with pytest.raises(ValueError,
                       match="cross_entropy: reduction must be one of 'mean', 'sum', 'none'; received 'avg'"):
        fn.cross_entropy(z, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(TypeError, match="cross_entropy: logits must have a floating dtype"):
        fn.cross_entropy(np.zeros((3, 4), dtype=int), np.array([0, 1, 2]))
    with pytest.raises(ValueError,
                       match=r"mse_loss: pred and target must have the same shape; received \(3, 4\) and \(4,\)"):
        fn.mse_loss(z, np.zeros(4))
    with pytest.raises(TypeError, match="mse_loss: pred and target must share one dtype"):
        fn.mse_loss(z, z.astype(np.float32))
