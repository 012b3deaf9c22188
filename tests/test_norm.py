"""batch_norm, dropout and local_response_norm against PyTorch in float64; running stats; errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import featuremaps.functional as fn
from featuremaps import Tensor, no_grad
from tests.oracles import assert_sum_close, channels_last, check_op, from_torch, gradcheck, to_torch

# batch_norm and local_response_norm are not sums: a mean, a variance (or a window's sum of squares),
# a power and a division, and gradients that cancel. With no simple rounding bound, these are fixed
# float64 tolerances, kept from when the tests were written
RTOL, ATOL = 1e-10, 1e-12
BN_RTOL, BN_ATOL = [RTOL, 1e-8, 1e-9, 1e-9], [ATOL, 1e-10, 1e-10, 1e-10]  # y, dx, dgamma, dbeta


def _with_none(values, present):
    """The values of the present entries -> one per entry, None where absent."""
    it = iter(values)
    return [next(it) if p else None for p in present]


# --- batch norm -------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(shape=st.sampled_from([(5, 3), (2, 1), (1, 4, 3, 2), (3, 2, 5, 4), (2, 3, 1, 1), (1, 1, 2, 3)]),
       training=st.booleans(), affine=st.sampled_from(["both", "gamma", "beta", "none"]),
       momentum=st.sampled_from([0.1, 0.0, 1.0, 0.37]), eps=st.sampled_from([1e-5, 1e-3, 0.5]),
       scale=st.sampled_from([1.0, 1e3]), seed=st.integers(0, 2**32 - 1))
def test_batch_norm_matches_torch(shape, training, affine, momentum, eps, scale, seed):
    rng = np.random.default_rng(seed)
    c = shape[-1]
    x = rng.standard_normal(shape) * scale + 3.0
    gamma = rng.standard_normal(c) if affine in ("both", "gamma") else None
    beta = rng.standard_normal(c) if affine in ("both", "beta") else None
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    g = rng.standard_normal(shape)

    ours_rm, ours_rv = rm.copy(), rv.copy()
    ref_rm, ref_rv = torch.tensor(rm), torch.tensor(rv)
    present = [a is not None for a in (gamma, beta)]
    kw = dict(training=training, momentum=momentum, eps=eps)
    arrays = [a for a in (x, gamma, beta) if a is not None]
    n = len(arrays) + 1  # values compared: y, then the gradients
    check_op(lambda x_, *gb: fn.batch_norm(x_, *_with_none(gb, present), ours_rm, ours_rv, **kw),
             lambda x_, *gb: F.batch_norm(x_, ref_rm, ref_rv, *_with_none(gb, present), **kw),
             arrays, [channels_last(x.ndim)] + ["C"] * (n - 2), grad=g,
             rtol=BN_RTOL[:n], atol=[ATOL, 1e-10 / scale, *BN_ATOL[2:]][:n])  # dx scales as 1 / σ
    np.testing.assert_allclose(ours_rm, ref_rm.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ours_rv, ref_rv.numpy(), rtol=RTOL, atol=ATOL)
    if not training:
        assert (ours_rm == rm).all() and (ours_rv == rv).all()


def test_batch_norm_running_stats_over_steps_then_eval():
    rng = np.random.default_rng(5)
    rm, rv = np.zeros(3), np.ones(3)
    ref_rm, ref_rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for _ in range(3):
        x = rng.standard_normal((4, 2, 2, 3)) * 2 + 1
        with no_grad():  # running statistics update whether or not gradients are recorded
            fn.batch_norm(Tensor(x), None, None, rm, rv, training=True)
        F.batch_norm(to_torch(x, "NHWC"), ref_rm, ref_rv, training=True)
    np.testing.assert_allclose(rm, ref_rm.numpy(), rtol=1e-13)
    np.testing.assert_allclose(rv, ref_rv.numpy(), rtol=1e-13)
    x = rng.standard_normal((2, 2, 2, 3))
    np.testing.assert_allclose(fn.batch_norm(x, None, None, rm, rv, training=False),
                               from_torch(F.batch_norm(to_torch(x, "NHWC"), ref_rm, ref_rv, training=False), "NHWC"),
                               rtol=1e-12)


def test_batch_norm_without_running_stats_and_gradcheck():
    rng = np.random.default_rng(6)
    x, gamma, beta = rng.standard_normal((3, 2, 2, 2)), rng.standard_normal(2), rng.standard_normal(2)
    check_op(lambda *a: fn.batch_norm(*a, None, None, training=True),
             lambda a, g, b: F.batch_norm(a, None, None, g, b, training=True), [x, gamma, beta], ["NHWC", "C", "C"],
             rtol=[1e-12] + BN_RTOL[1:], atol=[0.0] + BN_ATOL[1:])
    gradcheck(lambda a, g, b: fn.batch_norm(a, g, b, None, None, training=True), x, gamma, beta)
    rm, rv = rng.standard_normal(2), rng.uniform(0.5, 1.5, 2)
    gradcheck(lambda a, g, b: fn.batch_norm(a, g, b, rm, rv, training=False), x, gamma, beta)


def test_batch_norm_float32_and_tensor_running_stats():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((8, 3, 3, 4)) * 10 + 5).astype(np.float32)
    rm, rv = Tensor(np.zeros(4, np.float32)), Tensor(np.ones(4, np.float32))
    out = fn.batch_norm(x, np.ones(4, np.float32), np.zeros(4, np.float32), rm, rv, training=True)
    assert out.dtype == np.float32 and rm.dtype == np.float32
    ref_rm, ref_rv = torch.zeros(4), torch.ones(4)
    ref = F.batch_norm(to_torch(x, "NHWC", requires_grad=False), ref_rm, ref_rv, training=True)
    # float32 both sides, in other orders: per channel a mean and a variance over m = 72 values; an
    # output is off by the mean's rounding in units of σ (Σ|x|/m / σ) plus the variance's (relative)
    m = x[..., 0].size
    mean_abs, var = np.abs(x).mean(axis=(0, 1, 2)), x.astype(np.float64).var(axis=(0, 1, 2), ddof=1)
    scale = mean_abs / np.sqrt(var * (m - 1) / m) + np.abs(out)
    assert_sum_close(out, from_torch(ref, "NHWC"), scale, np.float32, m + 4)
    assert_sum_close(rm.data, ref_rm.numpy(), 0.1 * mean_abs, np.float32, m + 2)  # 0.9·0 + 0.1·mean
    assert_sum_close(rv.data, ref_rv.numpy(), 0.9 + 0.1 * var, np.float32, m + 4)  # 0.9·1 + 0.1·unbiased var


def test_batch_norm_nan_stays_in_its_channel():
    x = np.random.default_rng(8).standard_normal((4, 3))
    x[1, 0] = np.nan
    out = fn.batch_norm(x, None, None, None, None, training=True)
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1:]).all()


def test_batch_norm_errors_name_the_argument():
    x = np.zeros((4, 3))
    ok = dict(gamma=None, beta=None, running_mean=np.zeros(3), running_var=np.ones(3))
    with pytest.raises(ValueError, match=r"batch_norm: gamma must have shape \(3,\) for 3 channels; received \(2,\)"):
        fn.batch_norm(x, **{**ok, "gamma": np.ones(2)}, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: running_var must have shape \(3,\)"):
        fn.batch_norm(x, **{**ok, "running_var": np.ones(4)}, training=True)
    with pytest.raises(TypeError, match="batch_norm: running_mean must be a floating ndarray"):
        fn.batch_norm(x, **{**ok, "running_mean": [0.0, 0.0, 0.0]}, training=True)
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var are required when training=False"):
        fn.batch_norm(x, None, None, None, None, training=False)
    with pytest.raises(ValueError, match="batch_norm: training needs more than 1 value per channel"):
        fn.batch_norm(np.zeros((1, 1, 1, 3)), **ok, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: momentum must be in \[0, 1\]; received 1.5"):
        fn.batch_norm(x, **ok, training=True, momentum=1.5)
    with pytest.raises(TypeError, match="batch_norm: training must be True or False"):
        fn.batch_norm(x, **ok, training="yes")
    with pytest.raises(ValueError, match=r"batch_norm: x must be \(N, C\) or \(N, H, W, C\)"):
        fn.batch_norm(np.zeros(3), **ok, training=True)
    with pytest.raises(TypeError, match="batch_norm: x must have a floating dtype"):
        fn.batch_norm(np.zeros((4, 3), dtype=int), **ok, training=True)


# --- dropout ----------------------------------------------------------------------------------
def test_dropout_is_inverted_and_matches_torchs_scaling():
    p = 0.3
    x = np.random.default_rng(9).uniform(1, 2, (200, 500)).astype(np.float32)
    t = Tensor(x, requires_grad=True)
    out = fn.dropout(t, p, rng=np.random.default_rng(0))
    out.backward(np.ones_like(x))
    kept = out.data != 0
    assert abs(1 - kept.mean() - p) < 0.005  # 100 000 draws: 5 standard deviations is ~0.007
    # the kept elements are x / (1 − p), exactly what torch computes for the same mask
    np.testing.assert_allclose(out.data, (torch.tensor(x) * torch.tensor(kept) / (1 - p)).numpy(), rtol=3e-7)
    np.testing.assert_allclose(t.grad, kept / np.float32(1 - p), rtol=1e-7)
    assert out.dtype == np.float32 and t.grad.dtype == np.float32
    # torch's dropout has the same expectation: E[out] = x
    ref = F.dropout(torch.tensor(x, dtype=torch.float64), p, training=True).numpy()
    assert abs(out.data.mean() / x.mean() - 1) < 0.01 and abs(ref.mean() / x.mean() - 1) < 0.01


def test_dropout_identity_cases_and_determinism():
    x = np.random.default_rng(10).standard_normal((3, 4))
    assert fn.dropout(x, 0.5, training=False) is x
    assert fn.dropout(x, 0.0, rng=None) is x
    a = fn.dropout(x, 0.5, rng=np.random.default_rng(1))
    b = fn.dropout(x, 0.5, rng=np.random.default_rng(1))
    c = fn.dropout(x, 0.5, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.isnan(fn.dropout(np.full(50, np.nan), 0.5, rng=np.random.default_rng(0))).any()


def test_dropout_errors_name_the_argument():
    x = np.zeros(3)
    with pytest.raises(TypeError, match="dropout: rng must be a numpy.random.Generator.*received None"):
        fn.dropout(x, 0.5)
    with pytest.raises(TypeError, match="dropout: rng must be a numpy.random.Generator.*received 0"):
        fn.dropout(x, 0.5, rng=0)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\); received 1.0"):
        fn.dropout(x, 1.0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\); received -0.1"):
        fn.dropout(x, -0.1, training=False)
    with pytest.raises(TypeError, match="dropout: p must be a real number"):
        fn.dropout(x, "0.5", training=False)


# --- local response norm ----------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(shape=st.sampled_from([(2, 3, 4, 5), (1, 2, 2, 1), (1, 1, 3, 7), (3, 6), (2, 5, 4)]),
       size=st.integers(1, 8), alpha=st.sampled_from([1e-4, 0.5, 2.0]), beta=st.sampled_from([0.75, 0.5, 1.3]),
       k=st.sampled_from([1.0, 2.0, 0.3]), seed=st.integers(0, 2**32 - 1))
def test_local_response_norm_matches_torch(shape, size, alpha, beta, k, seed):
    rng = np.random.default_rng(seed)
    x, g = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    theirs = (lambda t: F.local_response_norm(t, size, alpha, beta, k)) if x.ndim > 2 else \
        (lambda t: F.local_response_norm(t[:, :, None], size, alpha, beta, k)[:, :, 0])  # torch needs ≥ 3-D
    check_op(lambda t: fn.local_response_norm(t, size, alpha, beta, k), theirs, [x], [channels_last(x.ndim)], grad=g,
             rtol=[1e-12, 1e-10], atol=[1e-13, 1e-12])


def test_local_response_norm_divides_alpha_by_size():
    x = np.zeros((1, 1, 1, 5))
    x[..., 2] = 2.0
    # only channel 2 is non-zero; with size 3 its own window sum is 4, so y = 2 / (1 + 0.3 / 3 · 4)^1
    np.testing.assert_allclose(fn.local_response_norm(x, 3, alpha=0.3, beta=1.0)[..., 2], 2 / 1.4, rtol=1e-15)


def test_local_response_norm_gradcheck_float32_errors():
    x = np.random.default_rng(11).standard_normal((2, 2, 2, 4))
    gradcheck(lambda a: fn.local_response_norm(a, 3, alpha=0.5, beta=0.75, k=1.0), x)
    out = fn.local_response_norm(x.astype(np.float32), 2)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="local_response_norm: size must be an int ≥ 1; received 0"):
        fn.local_response_norm(x, 0)
    with pytest.raises(ValueError, match=r"local_response_norm: x must be \(N, C\) or \(N, H, W, C\)"):
        fn.local_response_norm(np.zeros(4), 2)
    with pytest.raises(TypeError, match="local_response_norm: beta must be a real number"):
        fn.local_response_norm(x, 2, beta=None)
