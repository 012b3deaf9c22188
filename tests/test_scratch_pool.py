"""conv's scratch-buffer pool takes back only the buffers it allocated itself.

Regression: with no padding the padded input of a conv is a view of the caller's x, and handing it
"back" to the pool used to follow `.base` to the caller's own buffer. A caller's float array that
views a 1-D uint8 buffer (a file read as bytes, then viewed as float32) was then kept as scratch and
overwritten by a later padded conv; an array over a `bytes` object crashed the pool with an
AttributeError.
"""
import numpy as np
import pytest

from featuremaps import Tensor
from featuremaps.functional import conv as conv_mod
from featuremaps.functional import conv2d, conv_transpose2d

RNG = np.random.default_rng(0)


def _bytes_backed(shape, rng) -> tuple[np.ndarray, np.ndarray]:
    """A float32 array of `shape` viewing a 1-D uint8 buffer (as np.fromfile(..., np.uint8) gives),
    with a second buffer big enough to be picked as scratch; and a copy of its values."""
    raw = np.empty(int(np.prod(shape)) * 4, np.uint8)
    x = raw.view(np.float32).reshape(shape)
    x[...] = rng.standard_normal(shape)
    return x, x.copy()


def _padded_convs(w: np.ndarray) -> None:
    """Padded convs of a few sizes: each takes scratch for its padded input and its column matrix."""
    for size in (3, 4, 5, 6):
        conv2d(RNG.standard_normal((1, size, size, w.shape[2])).astype(np.float32), w, padding=1)


def test_a_callers_byte_buffer_is_never_kept_as_scratch():
    w = RNG.standard_normal((3, 3, 3, 4)).astype(np.float32)
    x, before = _bytes_backed((2, 8, 8, 3), RNG)
    conv_mod.release_workspace()
    y = conv2d(x, w)  # no padding: the "padded input" is x[0:2] itself
    _padded_convs(w)
    np.testing.assert_array_equal(x, before)  # the caller's input is untouched
    np.testing.assert_array_equal(conv2d(x, w), y)  # one path on the same values: bit for bit
    assert all(buf is not x.base for buf in conv_mod._pool._free)


def test_the_backward_pass_never_keeps_a_callers_buffer_either():
    """conv_transpose2d's backward runs the forward conv and dW on the caller's upstream gradient."""
    w = RNG.standard_normal((3, 3, 4, 3)).astype(np.float32)
    x = Tensor(RNG.standard_normal((2, 6, 6, 3)).astype(np.float32), requires_grad=True)
    wt = Tensor(w, requires_grad=True)
    y = conv_transpose2d(x, wt)
    gy, before = _bytes_backed(y.shape, RNG)
    conv_mod.release_workspace()
    y.backward(gy)
    _padded_convs(RNG.standard_normal((3, 3, 4, 3)).astype(np.float32))
    np.testing.assert_array_equal(gy, before)
    with conv_mod.workspace_limit(1):  # chunks of one image: dW recomputes each chunk's columns from gy
        x2 = Tensor(x.data, requires_grad=True)
        conv_transpose2d(x2, Tensor(w, requires_grad=True)).backward(gy)
        _padded_convs(RNG.standard_normal((3, 3, 4, 3)).astype(np.float32))
    np.testing.assert_array_equal(gy, before)


@pytest.mark.parametrize("limit", [None, 1])
def test_an_array_over_bytes_is_a_valid_input(limit):
    """np.frombuffer(bytes) owns no ndarray base: the pool must not walk into the bytes object."""
    x = RNG.standard_normal((2, 5, 5, 2)).astype(np.float32)
    w = RNG.standard_normal((2, 2, 2, 3)).astype(np.float32)
    xb = np.frombuffer(x.tobytes(), np.float32).reshape(x.shape)  # read-only, base is a bytes object
    with conv_mod.workspace_limit(limit):
        np.testing.assert_array_equal(conv2d(xb, w), conv2d(x, w))
        t = Tensor(xb)
        wt = Tensor(w, requires_grad=True)
        conv2d(t, wt).sum().backward()  # dW from x's columns (recomputed per chunk with the limit)
        ref = Tensor(w, requires_grad=True)
        conv2d(Tensor(x), ref).sum().backward()
    np.testing.assert_array_equal(wt.grad, ref.grad)


def test_the_pool_takes_back_only_what_it_lent():
    pool = conv_mod._Pool()
    a = pool.take((4, 5), np.float32)
    pool.give(a[1:])  # a view of a lent array is not the lent array
    pool.give(np.zeros(20, np.uint8))  # nor is a foreign byte buffer
    pool.give(np.frombuffer(bytes(80), np.uint8))
    pool.give(None)
    assert pool._free == []
    pool.give(a)
    assert len(pool._free) == 1 and pool._free[0].size == 80
    pool.give(a)  # a second hand-back of the same array is ignored
    assert len(pool._free) == 1
    b = pool.take((20,), np.float32)  # reuses the buffer
    assert np.shares_memory(a, b)
    del a, b  # a lent array that is dropped without being given back is forgotten
    assert pool._lent == {}
