"""The windowing helpers: argument checks, padding forms (conv and pooling), output sizes against
torch, pad_hw. `Geometry` itself is tested against naive loops in test_geometry.py."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from featuremaps.functional.window import Axis, check_nhwc, pad_hw, pair, resolve_padding, resolve_pool_padding


def output_size(n, k, s, d, lo, hi):
    return Axis.of(n, k, s, d, lo, hi).out


def test_pair_accepts_ints_and_pairs_and_rejects_the_rest():
    assert pair(3, "k") == (3, 3)
    assert pair((2, np.int64(5)), "k") == (2, 5)
    assert pair(0, "p", minimum=0) == (0, 0)
    with pytest.raises(ValueError, match=r"k must be ≥ 1; received 0$"):
        pair(0, "k")
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a pair"):
        pair(True, "stride", op="conv2d")
    with pytest.raises(TypeError, match="must be an int or a pair"):
        pair((1, 2, 3), "k")


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3))
def test_same_padding_gives_ceil_size_over_stride_with_the_extra_pixel_last(n, k, s, d):
    (top, bottom), _ = resolve_padding("same", (n, n), (k, k), (s, s), (d, d))
    assert bottom - top in (0, 1)
    assert output_size(n, k, s, d, top, bottom) == -(-n // s)
    # torch's own 'same' (stride 1 only) agrees on the total
    if s == 1:
        ref = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), padding="same", dilation=d)
        assert ref.shape[-1] == output_size(n, k, s, d, top, bottom)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3), st.integers(0, 3))
def test_output_size_matches_torch(n, k, s, d, p):
    span = n + 2 * p - d * (k - 1) - 1
    expected = output_size(n, k, s, d, p, p)
    if span < 0:
        assert expected == 0
        return
    ref = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
    assert ref.shape[-1] == expected


def test_full_and_valid_and_explicit_forms():
    assert resolve_padding("valid", (5, 5), (3, 3), (1, 1)) == ((0, 0), (0, 0))
    assert resolve_padding("FULL", (5, 5), (3, 2), (1, 1), (2, 1)) == ((4, 4), (1, 1))
    assert resolve_padding(((1, 2), (3, 0)), (5, 5), (3, 3), (1, 1)) == ((1, 2), (3, 0))
    assert resolve_padding((1, 2), (5, 5), (3, 3), (1, 1)) == ((1, 1), (2, 2))
    with pytest.raises(ValueError, match="padding must hold non-negative ints"):
        resolve_padding(((1, -1), (0, 0)), (5, 5), (3, 3), (1, 1))
    with pytest.raises(ValueError, match="padding must be 'valid', 'same', 'full'"):
        resolve_padding("half", (5, 5), (3, 3), (1, 1))


def test_check_nhwc_messages():
    check_nhwc(np.zeros((1, 2, 2, 1)), op="f")
    with pytest.raises(ValueError, match=r"f: x must be 4-D \(N, H, W, C\); received shape \(2, 2\)"):
        check_nhwc(np.zeros((2, 2)), op="f")
    with pytest.raises(TypeError, match="floating dtype"):
        check_nhwc(np.zeros((1, 2, 2, 1), int), op="f")
    with pytest.raises(TypeError, match="must be an ndarray or Tensor; received list"):
        check_nhwc([1.0], op="f")


def test_pad_hw_matches_numpy_pad_and_writes_into_out():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    pads = ((1, 2), (0, 3))
    ref = np.pad(x, ((0, 0), (1, 2), (0, 3), (0, 0)), constant_values=-7.0)
    np.testing.assert_array_equal(pad_hw(x, pads, -7.0), ref)
    out = np.full((2, 6, 7, 5), np.nan)
    assert pad_hw(x, pads, -7.0, out=out) is out
    np.testing.assert_array_equal(out, ref)
    assert pad_hw(x, ((0, 0), (0, 0))) is x
    with pytest.raises(ValueError, match="out must have shape"):
        pad_hw(x, pads, out=np.zeros((2, 6, 7, 4)))


def test_pool_padding_is_at_most_half_the_window_on_each_side():
    assert resolve_pool_padding(1, (3, 2), "f") == ((1, 1), (1, 1))
    assert resolve_pool_padding(((0, 1), (2, 0)), (2, 5), "f") == ((0, 1), (2, 0))
    with pytest.raises(ValueError, match=r"f: padding must be at most half the window \(kernel_size // 2 = 1\) on "
                                         r"each side along H, as in PyTorch; received padding 2 for a 3×5 window"):
        resolve_pool_padding(2, (3, 5), "f")
    with pytest.raises(ValueError, match=r"kernel_size // 2 = 0\) on each side along W"):
        resolve_pool_padding(((0, 0), (0, 1)), (2, 1), "f")
    with pytest.raises(ValueError, match="f: padding must be an int, a pair"):
        resolve_pool_padding("same", (3, 3), "f")  # no string forms for pooling
