"""Synchronised batch normalisation: the batch statistics of the global batch, split over ranks.

`F.batch_norm` in training mode normalises with the mean and variance of the batch it sees. Under
data parallelism each rank sees only its shard, so by default (as PyTorch's DDP) every rank
normalises with its shard's statistics: the model then trains as if the batch were `batch / ranks`
for BatchNorm's purposes, and the result depends on the number of ranks. `sync_batch_norm` computes
the statistics over every rank's rows instead, so training equals one process with the global batch:

- forward: `mean = Σ_ranks Σ x / M` and `var = Σ_ranks Σ (x − mean)² / M` (two-pass, as `F.batch_norm`;
  M = the rows of all ranks), each a per-channel allreduce; the running statistics are updated with
  them (unbiased variance × M / (M − 1)), identically on every rank;
- backward: `gx = (g − Σ_ranks Σ g / M − x̂ · Σ_ranks Σ g·x̂ / M) · γ / √(var + eps)`, one more allreduce;
  γ's and β's gradients are this rank's sums, which the data-parallel gradient mean combines.

The formulas are `F.batch_norm`'s with the sums taken over the global batch; it costs three small
allreduces (2·C, C, 2·C values) per BatchNorm layer per step.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sync_batch_norm", "set_sync_batchnorm"]


def sync_batch_norm(x, gamma, beta, running_mean, running_var, *, momentum: float, eps: float, comm):
    """`F.batch_norm(..., training=True)` with the statistics of every rank's rows (module docstring):
    the one batch-norm definition, its sums reduced over the ranks by `comm`. Every rank must call it,
    in the same order (each call is a collective)."""
    from ..functional.norm import batch_norm
    x_rows = int(np.prod(x.shape[:-1]))  # (check before the collective: a bad shape on one rank only
    if x.ndim < 2 or x_rows < 1:  # would leave the others waiting)
        raise ValueError(f"sync_batch_norm: x must be (N, C) or (N, H, W, C) with N >= 1; received shape {x.shape}")

    def reduce(values, what):
        return comm.allreduce_sum(values, what=f"sync_batchnorm ({what})")
    return batch_norm(x, gamma, beta, running_mean, running_var, training=True, momentum=momentum, eps=eps,
                      reduce=reduce)


def set_sync_batchnorm(model, comm) -> int:
    """Make every BatchNorm2D of `model` normalise over all ranks (`comm`), or per rank again with
    `comm=None`. Returns the number of layers changed."""
    from ..nn.norm import BatchNorm2D
    layers = [m for m in model.modules() if isinstance(m, BatchNorm2D)]
    for m in layers:
        m.sync = comm
    return len(layers)
