"""linear against PyTorch's F.linear (which stores the weight transposed) in float64; errors; dtypes."""
import numpy as np
import pytest
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import featuremaps.functional as fn
from featuremaps import Tensor
from tests.oracles import assert_sum_close, check_op, gradcheck


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), fin=st.integers(1, 7), fout=st.integers(1, 7), bias=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_matches_torch(n, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, fin)), rng.standard_normal((fin, fout)), rng.standard_normal(fout)
    g = rng.standard_normal((n, fout))
    k = 3 if bias else 2  # inputs
    # each value a sum in its own BLAS order: y over fin terms (+ b), dx over fout, dW and db over n;
    # our w is (in, out), torch's (out, in): layout "IO"
    check_op(fn.linear, F.linear, [x, w, b][:k], ["NC", "IO", "C"][:k], terms=[fin + 1, fout, n, n][:k + 1], grad=g,
             names="xwb")


def test_gradcheck_and_partial_needs():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    gradcheck(fn.linear, x, w, b)
    # only the weight requires grad: x's gradient is neither computed nor stored
    tw = Tensor(w, requires_grad=True)
    fn.linear(x, tw).sum().backward()
    assert_sum_close(tw.grad, np.repeat(x.sum(axis=0)[:, None], 2, axis=1), abs(x).sum(axis=0)[:, None], np.float64, 3)


def test_float32_kept_and_ndarray_in_ndarray_out():
    rng = np.random.default_rng(1)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((5, 3), (3, 4), (4,)))
    out = fn.linear(x, w, b)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (5, 4)
    np.testing.assert_allclose(out, x @ w + b, rtol=1e-6)


def test_errors_name_the_argument():
    x, w = np.zeros((2, 3)), np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"linear: x has 3 features but w expects 5 \(w.shape\[0\]\)"):
        fn.linear(x, np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"linear: b must have shape \(4,\).*received \(3,\)"):
        fn.linear(x, w, np.zeros(3))
    with pytest.raises(ValueError, match=r"linear: x must be 2-D \(N, in_features\); received shape \(3,\)"):
        fn.linear(np.zeros(3), w)
    with pytest.raises(ValueError, match="linear: w must be 2-D"):
        fn.linear(x, np.zeros((3, 4, 1)))
    with pytest.raises(TypeError, match="linear: x must have a floating dtype; received int64"):
        fn.linear(np.zeros((2, 3), dtype=np.int64), w)
    with pytest.raises(TypeError, match="linear: x, w and b must share one dtype; received float32, float64"):
        fn.linear(x.astype(np.float32), w)


def test_nan_propagates():
    x = np.array([[np.nan, 1.0], [1.0, 2.0]])
    out = fn.linear(x, np.ones((2, 3)))
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
