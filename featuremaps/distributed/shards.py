"""Each rank's share of a global batch, and the random numbers that go with its rows.

A global batch of `n` images is split into `size` contiguous shards, the first `n % size` ranks
holding one image more: rank r gets rows `[lo, hi)` of `shard_bounds(n, r, size)`. An uneven split
is exact, because each rank's loss is a sum over its rows scaled by `size / n` (see
`featuremaps.train`), so the mean of the ranks' gradients is the gradient of the global batch's mean
loss. A batch with fewer images than ranks would leave a rank without data and is refused
(`check_batches`).

Randomness that depends on the rows (Dropout masks) must not depend on how the batch is split:
`RowWindowGenerator` wraps a rank's Generator so that `random(shape)` draws the numbers of the
whole global batch up to row `hi` and returns rows `[lo, hi)`, exactly the values a single process
would have drawn for those rows.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ShardError", "shard_bounds", "check_batches", "RowWindowGenerator", "window_rngs"]


class ShardError(ValueError):
    """A batch cannot be split so that every rank gets at least one image."""


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows `[lo, hi)` of a global batch of `n` that rank `rank` of `size` trains on."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def check_batches(n_images: int, batch_size: int, size: int) -> None:
    """Refuse a split that would give some rank an empty shard, naming the sizes."""
    if batch_size < size:
        raise ShardError(f"distributed: --batch-size {batch_size} is smaller than the {size} ranks; every rank "
                         f"needs at least one image of each batch (use a batch size >= {size})")
    last = n_images % batch_size
    if 0 < last < size:
        raise ShardError(f"distributed: the last batch of each epoch has {last} image{'s' if last > 1 else ''} "
                         f"({n_images} training images, batch size {batch_size}) but there are {size} ranks; "
                         "every rank needs at least one image of each batch (change --batch-size or --limit)")


class RowWindowGenerator(np.random.Generator):
    """A Generator whose `random(shape)` returns rows `[lo, lo + shape[0])` of the draw a single
    process would make for the global batch (`lo + shape[0]` rows drawn, the first `lo` dropped).
    Other methods draw as the wrapped bit generator would."""

    def __init__(self, bit_generator, lo: int):
        super().__init__(bit_generator)
        self.lo = int(lo)

    def random(self, size=None, dtype=np.float64, out=None):
        if out is not None or size is None or np.ndim(size) == 0 or self.lo == 0:
            return super().random(size, dtype=dtype, out=out)
        size = tuple(int(s) for s in size)
        full = super().random((self.lo + size[0],) + size[1:], dtype=dtype)  # (lo + rows, ...)
        return full[self.lo:]


def window_rngs(model, lo: int) -> None:
    """Wrap every random-number-using module's `rng` (after `model.set_rng`) in a RowWindowGenerator
    starting at row `lo` of the global batch."""
    for m in model.modules():
        if getattr(m, "uses_rng", False) and isinstance(m.rng, np.random.Generator):
            m.rng = RowWindowGenerator(m.rng.bit_generator, lo)
