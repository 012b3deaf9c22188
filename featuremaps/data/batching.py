"""Normalisation, mini-batches, a translation augmentation, and epoch orders that survive a restart.

Randomness is always explicit (a `numpy.random.Generator` or a seed); nothing here touches the
global NumPy RNG.

Reproducible epoch orders (for resumable training). The order of epoch `e` of a run with seed `s` is::

    epoch_order(n, s, e) == np.random.default_rng([s, e]).permutation(n)

so a run restarted at epoch `e` sees exactly the order it would have seen without the restart, no
matter how many epochs ran before. `Loader` builds on this; the random numbers for the augmentation
of batch `b` of epoch `e` come from `np.random.default_rng([s, e, b, 1])` (the trailing 1 keeps that
stream apart from the order stream: `SeedSequence` pads short seeds with zeros, so `[s, e]` and
`[s, e, 0]` would be the same seed). Resuming in the middle of an epoch (`start=b`) therefore also
reproduces the augmentation. These streams are fixed for a given NumPy version (NumPy's stream
policy); compare runs on the same NumPy.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

__all__ = ["NORMALIZATION", "normalize", "batches", "epoch_order", "random_shift", "Loader"]

# Canonical per-dataset (mean, std) of the pixel values scaled to [0, 1], per channel, as computed on
# each full official training set and commonly quoted (MNIST: the PyTorch examples' 0.1307/0.3081;
# CIFAR-10 std: the population std of the 50,000 training images, not the often-copied 0.2023/0.1994/
# 0.2010). 'sample' is a subset of MNIST's training set and uses MNIST's constants (its own mean/std
# are within 0.01 of them; see tests/test_data.py).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "sample": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def _check_nhwc(images: np.ndarray, fn: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{fn}: images must be NHWC (N, H, W, C), 4 dimensions; got shape {images.shape}")
    return images


def normalize(images, mean=None, std=None, *, dataset: str | None = None, dtype=np.float32) -> np.ndarray:
    """uint8 NHWC images -> `dtype` array `(images / 255 - mean) / std`.

    `mean`/`std` are scalars or one value per channel, in the [0, 1] scale. If they are not given,
    `dataset` picks the canonical constants from `NORMALIZATION` ('mnist', 'sample', 'fashion-mnist',
    'cifar10'); with neither, images are only scaled to [0, 1] (mean 0, std 1).
    """
    images = _check_nhwc(images, "normalize")
    if images.dtype != np.uint8:
        raise TypeError(
            f"normalize: images must be uint8 (0..255); got {images.dtype}. "
            "Already scaled images can be standardised directly with (x - mean) / std."
        )
    if (mean is None) != (std is None):
        raise ValueError("normalize: give both mean and std, or neither")
    if mean is None:
        if dataset is None:
            mean, std = 0.0, 1.0
        elif dataset in NORMALIZATION:
            mean, std = NORMALIZATION[dataset]
        else:
            raise ValueError(f"normalize: dataset must be one of {sorted(NORMALIZATION)}; got {dataset!r}")
    c = images.shape[-1]
    mean = np.asarray(mean, dtype=dtype).reshape(-1)
    std = np.asarray(std, dtype=dtype).reshape(-1)
    for label, v in (("mean", mean), ("std", std)):
        if v.size not in (1, c):
            raise ValueError(f"normalize: {label} must be a scalar or one value per channel ({c}); got {v.size}")
    if np.any(std <= 0):
        raise ValueError(f"normalize: std must be positive; got {std.tolist()}")
    scale = (1.0 / (255.0 * std)).astype(dtype)  # (1,) or (c,), broadcasts over the last axis
    shift = (mean / std).astype(dtype)
    out = images.astype(dtype)
    out *= scale
    out -= shift
    return out


def _check_rng(rng, fn: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{fn}: rng must be a numpy.random.Generator (e.g. np.random.default_rng(0)); got {type(rng).__name__}. "
            "For an order that depends only on (seed, epoch), use epoch_order() or Loader."
        )
    return rng


def batches(images, labels, batch_size: int, *, rng: np.random.Generator | None = None,
            shuffle: bool = True, drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `(x, y)` mini-batches covering `images`/`labels` once (one epoch).

    With `shuffle=True` the order is one permutation drawn from `rng` per call, so calling this once
    per epoch with the same Generator gives a new, reproducible order each epoch. `rng` is required
    when shuffling. The last batch is smaller when `batch_size` does not divide N, unless `drop_last`.
    Works on any arrays with a leading batch axis (not only images).
    """
    images, labels = np.asarray(images), np.asarray(labels)
    n = _check_batch_args(images, labels, batch_size, "batches")
    if shuffle:
        if rng is None:
            raise ValueError("batches: shuffle=True needs rng= (a numpy.random.Generator); or pass shuffle=False")
        order = _check_rng(rng, "batches").permutation(n)
    else:
        order = None
    return _iterate(images, labels, order, batch_size, drop_last, 0)  # arguments checked before iteration starts


def _check_batch_args(images, labels, batch_size, fn: str) -> int:
    if images.ndim == 0 or labels.ndim == 0:
        raise ValueError(f"{fn}: images and labels need a leading batch axis; "
                         f"got shapes {images.shape}, {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{fn}: {images.shape[0]} images but {labels.shape[0]} labels")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be a positive int; got {batch_size!r}")
    return images.shape[0]


def _iterate(images, labels, order, batch_size, drop_last, start):
    n = images.shape[0]
    stop = n - n % batch_size if drop_last else n
    for lo in range(start * batch_size, stop, batch_size):
        hi = min(lo + batch_size, n)
        if order is None:
            yield images[lo:hi], labels[lo:hi]
        else:
            idx = order[lo:hi]
            yield images[idx], labels[idx]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order (a permutation of range(n), int64) of epoch `epoch`: `default_rng([seed, epoch]).permutation(n)`."""
    for label, v in (("n", n), ("seed", seed), ("epoch", epoch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"epoch_order: {label} must be a non-negative int; got {v!r}")
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(n))


def random_shift(images, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each NHWC image by its own random (dy, dx), each uniform in [-max_shift, max_shift].

    `out[n, i, j] = images[n, i - dy[n], j - dx[n]]`, zero where that falls outside the image. Same
    dtype and shape as the input; vectorised (one gather, no loop over images). The shifts are drawn
    as `rng.integers(-max_shift, max_shift + 1, size=(N, 2))` (column 0: dy, column 1: dx).
    """
    images = _check_nhwc(images, "random_shift")
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ValueError(f"random_shift: max_shift must be a non-negative int; got {max_shift!r}")
    rng = _check_rng(rng, "random_shift")
    n, h, w, _ = images.shape
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))  # (n, 2): dy, dx
    if max_shift == 0 or n == 0:
        return images.copy()
    s = int(max_shift)
    padded = np.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))  # (n, h+2s, w+2s, c), zero border
    rows = np.arange(h)[None, :] + s - shifts[:, :1]  # (n, h): padded row read by output row i
    cols = np.arange(w)[None, :] + s - shifts[:, 1:]  # (n, w)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)


class Loader:
    """Mini-batches whose order and augmentation depend only on (seed, epoch, batch index).

    `for x, y in loader.epoch(e):` yields the batches of epoch `e` in the order `epoch_order(n, seed, e)`
    (or in stored order when `shuffle=False`); `loader.epoch(e, start=b)` skips the first `b` batches,
    which is how a run resumes mid-epoch. If `transform` is given it is called as
    `transform(x, rng)` on each batch with `rng = np.random.default_rng([seed, e, b, 1])` for batch `b`
    (see the module docstring), e.g. `transform=lambda x, rng: random_shift(x, 2, rng)`.
    """

    def __init__(self, images, labels, batch_size: int, *, seed: int | None = None, shuffle: bool = True,
                 drop_last: bool = False,
                 transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None):
        self.images, self.labels = np.asarray(images), np.asarray(labels)
        self.n = _check_batch_args(self.images, self.labels, batch_size, "Loader")
        if (shuffle or transform is not None) and seed is None:
            raise ValueError("Loader: shuffle=True or a transform needs seed= (a non-negative int)")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"Loader: seed must be a non-negative int; got {seed!r}")
        self.batch_size, self.seed, self.shuffle = int(batch_size), seed, shuffle
        self.drop_last, self.transform = drop_last, transform

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def order(self, epoch: int) -> np.ndarray | None:
        """The permutation used in `epoch` (None when not shuffling)."""
        return epoch_order(self.n, self.seed, epoch) if self.shuffle else None

    def epoch(self, epoch: int, *, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the `(x, y)` batches of `epoch`, from batch index `start` on."""
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start <= len(self):
            raise ValueError(f"Loader.epoch: start must be an int in [0, {len(self)}]; got {start!r}")
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"Loader.epoch: epoch must be a non-negative int; got {epoch!r}")
        return self._run(int(epoch), int(start))  # arguments checked before iteration starts

    def _run(self, epoch: int, start: int):
        batches_ = _iterate(self.images, self.labels, self.order(epoch), self.batch_size, self.drop_last, start)
        for b, (x, y) in enumerate(batches_, start):
            if self.transform is not None:
                x = self.transform(x, np.random.default_rng([int(self.seed), epoch, b, 1]))
            yield x, y

    def __repr__(self) -> str:
        return (f"Loader(n={self.n}, batch_size={self.batch_size}, seed={self.seed}, shuffle={self.shuffle}"
                f"{', drop_last=True' if self.drop_last else ''}{', transform=...' if self.transform else ''})")
