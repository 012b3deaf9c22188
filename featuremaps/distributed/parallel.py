"""`DataParallel`: synchronous data-parallel SGD around any featuremaps optimiser (ChainerMN's design).

Before the first update, rank 0's model (parameters and buffers, such as BatchNorm's running
statistics) and optimiser state (step counts, momentum or Adam buffers) are broadcast to every rank,
so all ranks start from one state. Each `step()` then replaces every gradient by its mean over the
ranks (one allreduce of one flat buffer) and applies the wrapped optimiser's update, the same on
every rank, so the ranks stay identical.
"""
from __future__ import annotations

import numpy as np

from ..optim import Optimizer

__all__ = ["DataParallel"]


class DataParallel:
    """Wrap `optimizer` (over `model`'s parameters; `model` also supplies the buffers to broadcast)
    for the ranks of `comm` (a `Communicator`). `lr`, `zero_grad`, `state_dict`, ... are the
    wrapped optimiser's; `step()` averages and updates (see the module docstring); `average(sums)` only averages."""

    def __init__(self, optimizer: Optimizer, comm, model=None):
        if not isinstance(optimizer, Optimizer):
            raise TypeError("DataParallel: optimizer must be a featuremaps.optim.Optimizer; "
                            f"received {type(optimizer).__name__}")
        for name in ("rank", "size", "allreduce_mean", "broadcast"):
            if not hasattr(comm, name):
                raise TypeError(f"DataParallel: comm must be a featuremaps.distributed.Communicator; "
                                f"received {type(comm).__name__} (it has no {name!r})")
        self.optimizer, self.comm, self.model = optimizer, comm, model
        self.synced = False

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def __getattr__(self, name):  # the wrapped optimiser's params, zero_grad, state_dict, get_config, ...
        if name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __repr__(self) -> str:
        return f"DataParallel({self.optimizer!r}, ranks={self.comm.size})"

    def broadcast_state(self) -> None:
        """Make every rank's parameters, buffers and optimiser state rank 0's."""
        opt = self.optimizer
        arrays = [p.data for p in opt.params]
        if self.model is not None:
            arrays += [b for _, b in self.model.named_buffers()]
        arrays.append(opt.steps)
        arrays += [a for b in opt.buffers for a in opt.state[b]]
        lr = np.array([opt.lr], np.float64)
        for i, a in enumerate(arrays):
            if not a.flags.c_contiguous:  # broadcast in place needs contiguous memory
                raise ValueError(f"DataParallel: state array {i} of shape {a.shape} is not contiguous")
        self.comm.broadcast(arrays + [lr], what="broadcast of the initial state")
        opt.lr = float(lr[0])
        self.synced = True

    def average(self, sums: np.ndarray | None = None):
        """Replace every gradient by its mean over the ranks (broadcasting the state first, the first
        time). `sums` (1-D) is summed over the ranks in the same allreduce and returned (e.g. the loss
        and correct counts of each rank's shard). A parameter without a gradient must lack it on
        every rank."""
        if not self.synced:
            self.broadcast_state()
        params = [p for p in self.optimizer.params if p.grad is not None]
        grads = [np.asarray(p.grad, dtype=p.dtype) for p in params]
        means, total = self.comm.allreduce_mean(grads, np.zeros(0) if sums is None else sums,
                                                what="gradient allreduce")
        for p, g in zip(params, means):
            p.grad = g
        return total if sums is not None else None

    def step(self) -> None:
        """One data-parallel update: `average()`, then the wrapped optimiser's `step()`."""
        self.average()
        self.optimizer.step()
