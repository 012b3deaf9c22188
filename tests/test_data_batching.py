"""featuremaps.data.batching: normalize, batches, epoch_order, random_shift, Loader."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featuremaps import data


def _images(n=5, h=4, w=3, c=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


# ---- normalize -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
def test_normalize_matches_formula(dtype, rtol):
    x = _images(c=3)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ref = (x.astype(np.float64) / 255.0 - np.array(mean)) / np.array(std)
    got = data.normalize(x, dataset="cifar10", dtype=dtype)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol)
    got = data.normalize(x[..., :1], 0.5, 0.25, dtype=dtype)
    np.testing.assert_allclose(got, (x[..., :1] / 255.0 - 0.5) / 0.25, rtol=rtol, atol=rtol)
    m = data.normalize(x[..., :1], dataset="mnist", dtype=dtype)
    np.testing.assert_allclose(m, (x[..., :1] / 255.0 - 0.1307) / 0.3081, rtol=rtol, atol=rtol)


def test_normalize_default_scales_only():
    x = np.array([0, 51, 255], np.uint8).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(data.normalize(x).ravel(), [0.0, 0.2, 1.0], rtol=1e-7)
    assert data.normalize(x).dtype == np.float32


def test_normalize_errors():
    x = _images(c=3)
    with pytest.raises(TypeError, match="uint8"):
        data.normalize(x.astype(np.float32))
    with pytest.raises(ValueError, match="NHWC"):
        data.normalize(x[0])
    with pytest.raises(ValueError, match=r"one value per channel \(3\)"):
        data.normalize(x, (0.1, 0.2), (0.3, 0.4))
    with pytest.raises(ValueError, match="positive"):
        data.normalize(x, 0.1, 0.0)
    with pytest.raises(ValueError, match="both mean and std"):
        data.normalize(x, 0.1)
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.normalize(x, dataset="imagenet")
    with pytest.raises(ValueError, match=r"per channel \(1\); got 3"):
        data.normalize(x[..., :1], dataset="cifar10")


# ---- batches ---------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), bs=st.integers(1, 12), drop_last=st.booleans(), seed=st.integers(0, 99))
def test_batches_cover_each_item_once(n, bs, drop_last, seed):
    x = np.arange(n)[:, None] * 10
    y = np.arange(n)
    out = list(data.batches(x, y, bs, rng=np.random.default_rng(seed), drop_last=drop_last))
    sizes = [len(b[1]) for b in out]
    want = [bs] * (n // bs) + ([] if drop_last or n % bs == 0 else [n % bs])
    assert sizes == want
    seen = np.concatenate([b[1] for b in out]) if out else np.array([], int)
    assert len(np.unique(seen)) == len(seen)
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n))
    for xb, yb in out:
        np.testing.assert_array_equal(xb[:, 0], yb * 10)  # images and labels stay paired
    # the order is rng.permutation(n), drawn once per call
    np.testing.assert_array_equal(seen, np.random.default_rng(seed).permutation(n)[: len(seen)])


def test_batches_reproducible_and_new_order_each_epoch():
    x, y = _images(n=50), np.arange(50)

    def run(seed):
        rng = np.random.default_rng(seed)
        return [np.concatenate([b for _, b in data.batches(x, y, 8, rng=rng)]) for _ in range(3)]

    a, b = run(7), run(7)
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea, eb)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    assert not np.array_equal(run(8)[0], a[0])


def test_batches_without_shuffle_and_errors():
    x, y = _images(n=7), np.arange(7)
    got = list(data.batches(x, y, 3, shuffle=False))
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), y)
    np.testing.assert_array_equal(got[0][0], x[:3])
    with pytest.raises(ValueError, match="rng"):
        data.batches(x, y, 3)  # raised at the call, before iterating
    with pytest.raises(TypeError, match="Generator"):
        data.batches(x, y, 3, rng=0)
    with pytest.raises(ValueError, match="7 images but 6 labels"):
        data.batches(x, y[:6], 3, shuffle=False)
    with pytest.raises(ValueError, match="batch_size"):
        data.batches(x, y, 0, shuffle=False)


def test_batches_on_the_sample_with_sorted_labels():
    # The sample (like ../shared/data/mnist) is stored sorted by class; a shuffled batch must mix classes.
    tr = data.load("sample", "train")
    assert np.all(np.diff(tr.labels) >= 0)
    xb, yb = next(iter(data.batches(tr.images, tr.labels, 64, rng=np.random.default_rng(0))))
    assert xb.shape == (64, 28, 28, 1) and len(np.unique(yb)) >= 8


# ---- epoch_order and Loader ------------------------------------------------------------------------

def test_epoch_order_definition():
    o = data.epoch_order(100, 3, 5)
    np.testing.assert_array_equal(o, np.random.default_rng([3, 5]).permutation(100))
    assert sorted(o.tolist()) == list(range(100))
    np.testing.assert_array_equal(o, data.epoch_order(100, 3, 5))
    assert not np.array_equal(o, data.epoch_order(100, 3, 6))
    assert not np.array_equal(o, data.epoch_order(100, 4, 5))
    with pytest.raises(ValueError, match="epoch"):
        data.epoch_order(10, 0, -1)


def _shift(x, rng):
    return data.random_shift(x, 2, rng)


def test_loader_resume_reproduces_order_and_augmentation():
    x, y = _images(n=23, h=6, w=6, c=1), np.arange(23)
    mk = lambda: data.Loader(x, y, 5, seed=11, transform=_shift)  # noqa: E731
    loader = mk()
    assert len(loader) == 5 and len(data.Loader(x, y, 5, seed=1, drop_last=True)) == 4
    full = {e: list(loader.epoch(e)) for e in range(3)}
    np.testing.assert_array_equal(np.concatenate([b for _, b in full[1]]), data.epoch_order(23, 11, 1))
    # a fresh Loader (a restarted process) resuming at epoch 2, batch 3
    resumed = list(mk().epoch(2, start=3))
    assert len(resumed) == 2
    for (xa, ya), (xb, yb) in zip(full[2][3:], resumed):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    # the augmentation is random: it changes the images, differently per epoch
    assert any(not np.array_equal(xb_, x[yb_]) for xb_, yb_ in full[0])
    # and batch b's augmentation is random_shift with rng = default_rng([seed, epoch, b, 1])
    xa, ya = full[2][4]
    np.testing.assert_array_equal(xa, data.random_shift(x[ya], 2, np.random.default_rng([11, 2, 4, 1])))


def test_loader_arguments():
    x, y = _images(n=4), np.arange(4)
    with pytest.raises(ValueError, match="seed"):
        data.Loader(x, y, 2)
    plain = data.Loader(x, y, 3, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([b for _, b in plain.epoch(0)]), y)
    with pytest.raises(ValueError, match="start"):
        plain.epoch(0, start=3)
    assert "batch_size=3" in repr(plain)


# ---- random_shift ----------------------------------------------------------------------------------

def naive_shift(images, shifts):
    out = np.zeros_like(images)
    n, h, w, _ = images.shape
    for k in range(n):
        dy, dx = shifts[k]
        for i in range(h):
            for j in range(w):
                si, sj = i - dy, j - dx
                if 0 <= si < h and 0 <= sj < w:
                    out[k, i, j] = images[k, si, sj]
    return out


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 3),
       max_shift=st.integers(0, 9), seed=st.integers(0, 999),
       dtype=st.sampled_from([np.uint8, np.float32, np.float64]))
def test_random_shift_matches_naive_loop(n, h, w, c, max_shift, seed, dtype):
    x = (np.random.default_rng(seed + 1).integers(1, 256, (n, h, w, c))).astype(dtype)
    got = data.random_shift(x, max_shift, np.random.default_rng(seed))
    shifts = np.random.default_rng(seed).integers(-max_shift, max_shift + 1, size=(n, 2))  # the documented draw
    assert got.dtype == x.dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, naive_shift(x, shifts))


def test_random_shift_uses_full_range_and_validates():
    x = np.ones((2000, 5, 5, 1), np.uint8)
    out = data.random_shift(x, 2, np.random.default_rng(0))
    # the count of surviving pixels reveals |dy|, |dx|: (5 - |dy|) * (5 - |dx|)
    kept = out.reshape(2000, -1).sum(1)
    assert set(kept.tolist()) == {a * b for a in (3, 4, 5) for b in (3, 4, 5)}
    assert not np.shares_memory(data.random_shift(x, 0, np.random.default_rng(0)), x)
    with pytest.raises(ValueError, match="max_shift"):
        data.random_shift(x, -1, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        data.random_shift(x, 1, None)
    with pytest.raises(ValueError, match="NHWC"):
        data.random_shift(x[0], 1, np.random.default_rng(0))
