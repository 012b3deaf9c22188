"""Synchronous data-parallel training on MPI (the `mpi` extra: `pip install 'featuremaps[mpi]'`).

`mpiexec -n K featuremaps train MODEL ... --distributed`, or in Python `fit(..., comm=Communicator())`
under `mpiexec -n K python script.py`. The design is ChainerMN's and Horovod's: rank 0's initial
state is broadcast, every step allreduces the gradients, and only rank 0 writes files.

- `Communicator` — `rank`, `size`, `allreduce_mean`, `broadcast`, `barrier` over COMM_WORLD, each
  with a deadline that names unresponsive ranks (`CollectiveTimeout`); mpi4py is imported lazily.
- `DataParallel(optimizer, comm, model)` — broadcast on the first step, gradient mean on every step.
- `shard_bounds`, `check_batches`, `RowWindowGenerator` — each rank's rows of a global batch and the
  Dropout numbers that go with them, so results do not depend on the number of ranks.
- `set_sync_batchnorm(model, comm)` / `sync_batch_norm` — BatchNorm over the global batch (per-rank
  statistics otherwise, as PyTorch's DDP; see `featuremaps.distributed.sync_bn`).
- `check_same_settings(comm, settings)` — refuse ranks launched with different settings.

Threads: a `Communicator` limits each rank's BLAS/OpenMP pools (through threadpoolctl, if installed)
and featuremaps' own element-wise threads to its share of the machine's cores, `max(1, cores //
ranks on this machine)`, so `mpiexec -n 2` on 2 cores runs 1 thread per rank instead of 2 × 2
fighting over the cores. Setting OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS (or
FEATUREMAPS_NUM_THREADS for featuremaps' threads) yourself leaves that part as you set it;
`Communicator(limit_threads=False)` leaves everything alone; `comm.threads` says what was set
(`set_rank_threads`; `featuremaps.distributed.comm`). A NaN/inf loss on any rank makes the global
batch's loss (summed over the ranks in the gradient allreduce) NaN/inf on every rank, so every rank
raises `NonFiniteLossError` at the same step, before the update.
"""
from .comm import DEFAULT_TIMEOUT, CollectiveTimeout, Communicator, MPIUnavailableError, set_rank_threads
from .parallel import DataParallel
from .settings import SettingsMismatch, check_same_settings, fingerprint
from .shards import RowWindowGenerator, ShardError, check_batches, shard_bounds, window_rngs
from .sync_bn import set_sync_batchnorm, sync_batch_norm

__all__ = ["Communicator", "MPIUnavailableError", "CollectiveTimeout", "DEFAULT_TIMEOUT", "DataParallel",
           "SettingsMismatch", "check_same_settings", "fingerprint", "RowWindowGenerator", "ShardError",
           "check_batches", "shard_bounds", "window_rngs", "set_sync_batchnorm", "sync_batch_norm",
           "set_rank_threads"]
