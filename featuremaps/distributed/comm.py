"""`Communicator`: the few MPI collectives data-parallel training needs, over `mpi4py.MPI.COMM_WORLD`.

mpi4py is imported when a Communicator is built, never at import time (the `mpi` extra:
`pip install 'featuremaps[mpi]'`, which brings mpi4py and MPICH's `mpiexec`).

Every collective waits with a deadline: it is started non-blocking and polled, and while a rank
waits it answers "are you there?" pings from the others on a private duplicate of COMM_WORLD.
When the deadline passes (`timeout`, default 600 s or `$FEATUREMAPS_MPI_TIMEOUT`), the waiting rank
pings every other rank and raises `CollectiveTimeout` naming those that did not answer (dead, or
stuck outside a collective). `mpiexec` usually ends the job itself when a rank dies; the deadline
covers the cases where it does not (a hung rank, a launcher without clean-up).

Threads. K ranks on one machine, each with a BLAS pool as wide as the machine, oversubscribe the
cores (on 2 cores, two ranks of 2 OpenBLAS threads each). A Communicator therefore limits each rank
to its share of the cores it may run on, `max(1, cores // ranks on this machine)`: 1 thread per rank
whenever there are at least as many ranks as cores. This covers the BLAS (and OpenMP) pools, through
threadpoolctl when it is installed (else they are left as they are; set OPENBLAS_NUM_THREADS), and
featuremaps' own element-wise threads (`featuremaps.functional.threads`). Setting any of
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS (for the pools) or FEATUREMAPS_NUM_THREADS
(for featuremaps' threads) leaves that part to you; `Communicator(limit_threads=False)` leaves both.
`comm.threads` says what was set.

`comm.allreduce_seconds` counts the wall time spent in allreduces (for benchmarks, e.g. bench/distributed.py).
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Sequence

import numpy as np

__all__ = ["Communicator", "MPIUnavailableError", "CollectiveTimeout", "DEFAULT_TIMEOUT", "set_rank_threads"]

DEFAULT_TIMEOUT = 600.0  # seconds a rank waits in one collective (epoch-end validation runs on rank 0 only)
_PING, _PONG = 11, 12  # message tags on the private communicator
_PING_WAIT = 5.0  # seconds to wait for the answers to the pings after a timeout
# Waiting: MPI moves a collective's data only while a rank calls into it (no progress thread), and
# MPICH passes a gradient buffer between ranks in many pieces, each needing both ranks' Test. A rank
# that sleeps 10 ms between polls therefore stretches a 1 ms allreduce of lenet's 1.7 MB to 25 ms
# (bench/distributed.py, 2 ranks). So a waiting rank polls without sleeping (yielding the core) for
# `_SPIN` s, which covers the ranks' step-to-step imbalance, then sleeps at most `_MAX_PAUSE` s a poll
# (a long wait: rank 0 validating at the end of an epoch).
_SPIN = 0.05
_ABORT_GRACE = 0.5  # seconds for the launcher to forward the last output before MPI_Abort
_MAX_PAUSE = 0.001


class MPIUnavailableError(ImportError):
    """mpi4py (or an MPI library under it) is not installed."""


class CollectiveTimeout(RuntimeError):
    """A collective did not complete in time; `.missing` are the ranks that did not answer a ping."""

    def __init__(self, rank: int, what: str, timeout: float, missing: list[int]):
        self.rank, self.what, self.timeout, self.missing = rank, what, timeout, missing
        who = (f"rank{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} did not answer "
               "(dead, or stuck outside the collective)" if missing
               else "every rank answered a ping, so one is still busy (raise FEATUREMAPS_MPI_TIMEOUT)")
        super().__init__(f"rank {rank}: {what} did not complete within {timeout:g} s; {who}")


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise MPIUnavailableError(
            "distributed training needs mpi4py and an MPI library, which are not installed "
            f"({e}); install the extra: pip install 'featuremaps[mpi]'") from None
    return MPI


_POOL_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_rank_threads(ranks_here: int) -> dict:
    """Limit this process's BLAS/OpenMP pools and featuremaps' threads to `max(1, cores // ranks_here)`,
    each unless its environment variables are set (module docstring). Returns what was set, e.g.
    `{"blas": 1, "featuremaps": 1}`; a part left alone is None."""
    n = max(1, _usable_cores() // max(1, int(ranks_here)))
    done: dict = {"blas": None, "featuremaps": None}
    if not any(os.environ.get(v, "").strip() for v in _POOL_VARS):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            threadpool_limits(limits=n)  # stays in force: not used as a context manager
            done["blas"] = n
    if not os.environ.get("FEATUREMAPS_NUM_THREADS", "").strip():
        from ..functional import threads
        threads.THREADS = min(threads.THREADS, n)  # `in_threads` reads it at every call
        done["featuremaps"] = threads.THREADS
    return done


def _timeout_from_env() -> float:
    raw = os.environ.get("FEATUREMAPS_MPI_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"FEATUREMAPS_MPI_TIMEOUT must be a number of seconds > 0; received {raw!r}")
    return value


class Communicator:
    """The ranks of `mpi4py.MPI.COMM_WORLD` (one process: rank 0 of 1, without mpiexec).

    `rank`, `size`; `allreduce_mean(arrays)` averages a list of arrays in one flattened buffer (one
    MPI call); `broadcast(state)` overwrites arrays in place with rank 0's; `broadcast_json(doc)`;
    `barrier()`; `abort(code)` ends every rank. `timeout` (seconds) bounds each wait; `limit_threads`
    gives each rank its share of the machine's cores (module docstring: "Threads").
    `allreduce_seconds` and `allreduces` count the time spent in allreduces and their number.
    """

    def __init__(self, timeout: float | None = None, *, limit_threads: bool = True):
        self._mpi = _import_mpi()
        self.timeout = _timeout_from_env() if timeout is None else float(timeout)
        if not self.timeout > 0:
            raise ValueError(f"Communicator: timeout must be > 0 seconds; received {timeout!r}")
        self._world = self._mpi.COMM_WORLD
        self._pings = self._world.Dup()  # pings never mix with the training's messages
        self.rank, self.size = self._world.Get_rank(), self._world.Get_size()
        here = self._world.Split_type(self._mpi.COMM_TYPE_SHARED)  # the ranks on this machine
        self.local_size = here.Get_size()
        here.Free()
        self.threads = set_rank_threads(self.local_size) if limit_threads else None
        self._buf: np.ndarray | None = None  # the flat buffer, reused step after step
        self.allreduce_seconds, self.allreduces = 0.0, 0

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size})"

    # --- waiting with a deadline --------------------------------------------------------------
    def _answer_pings(self) -> None:
        while self._pings.Iprobe(source=self._mpi.ANY_SOURCE, tag=_PING):
            st = self._mpi.Status()
            self._pings.recv(source=self._mpi.ANY_SOURCE, tag=_PING, status=st)
            self._pings.send(self.rank, dest=st.Get_source(), tag=_PONG)

    def _unanswered(self) -> list[int]:
        """Ping every other rank and return those that do not answer within `_PING_WAIT` s."""
        others = [r for r in range(self.size) if r != self.rank]
        for r in others:
            self._pings.isend(self.rank, dest=r, tag=_PING)
        waiting, end = set(others), time.monotonic() + min(_PING_WAIT, self.timeout)
        while waiting and time.monotonic() < end:
            self._answer_pings()
            if self._pings.Iprobe(source=self._mpi.ANY_SOURCE, tag=_PONG):
                waiting.discard(self._pings.recv(source=self._mpi.ANY_SOURCE, tag=_PONG))
            else:
                time.sleep(0.01)
        return sorted(waiting)

    def _wait(self, request, what: str) -> None:
        """Poll `request` until it completes; past the deadline, raise CollectiveTimeout."""
        start = time.monotonic()
        pause = 0.0
        while not request.Test():
            now = time.monotonic()
            if now - start > self.timeout:
                raise CollectiveTimeout(self.rank, what, self.timeout, self._unanswered())
            self._answer_pings()
            if now - start > _SPIN:
                pause = min(_MAX_PAUSE, max(pause * 2, 1e-4))
                time.sleep(pause)
            else:
                os.sched_yield()

    # --- collectives --------------------------------------------------------------------------
    def allreduce_mean(self, arrays: Sequence[np.ndarray], sums: np.ndarray | None = None, *,
                       what: str = "allreduce"):
        """The element-wise mean over the ranks of each array in `arrays` (new arrays, same shapes and
        dtypes), computed with one MPI Allreduce on one flat buffer of the first array's dtype.
        With `sums` (a 1-D array), its sum over the ranks rides in the same buffer and
        `(means, sums)` is returned."""
        arrays = [np.asarray(a) for a in arrays]
        dtype = arrays[0].dtype if arrays else np.dtype(np.float64)
        extra = 0 if sums is None else int(np.size(sums))
        sizes = [a.size for a in arrays]
        total = sum(sizes) + extra
        if self._buf is None or self._buf.size != total or self._buf.dtype != dtype:
            self._buf = np.empty(total, dtype)
        send, lo = self._buf, 0
        for a, n in zip(arrays, sizes):
            send[lo:lo + n] = a.reshape(-1)  # (n,)
            lo += n
        if sums is not None:
            send[lo:] = np.asarray(sums).reshape(-1)
        recv = np.empty_like(send)
        self._timed_allreduce(send, recv, what)
        means, lo = [], 0
        for a, n in zip(arrays, sizes):
            part = recv[lo:lo + n]
            part /= self.size
            means.append(part.reshape(a.shape))
            lo += n
        return means if sums is None else (means, recv[lo:].astype(np.float64))

    def allreduce_sum(self, values: np.ndarray, *, what: str = "allreduce") -> np.ndarray:
        """The sum over the ranks of a float64 array (a copy; e.g. per-channel moments, stop flags)."""
        send = np.ascontiguousarray(values, dtype=np.float64)
        recv = np.empty_like(send)
        self._timed_allreduce(send, recv, what)
        return recv

    def _timed_allreduce(self, send: np.ndarray, recv: np.ndarray, what: str) -> None:
        t = time.perf_counter()
        self._wait(self._world.Iallreduce(send, recv, op=self._mpi.SUM), what)
        self.allreduce_seconds += time.perf_counter() - t
        self.allreduces += 1

    def broadcast(self, state: Sequence[np.ndarray] | dict, *, what: str = "broadcast") -> None:
        """Overwrite every array of `state` (a list, or a dict's values in key order) in place with
        rank 0's. Every rank must pass arrays of the same shapes and dtypes, in the same order."""
        arrays = list(state.values()) if isinstance(state, dict) else list(state)
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or not a.flags.writeable:
                raise TypeError(f"broadcast: state[{i}] must be a writable C-contiguous ndarray; "
                                f"received {type(a).__name__}")
            self._wait(self._world.Ibcast(a, root=0), what)

    def broadcast_json(self, doc, *, what: str = "broadcast") -> object:
        """Rank 0's JSON-able `doc`, on every rank (sent as UTF-8 JSON text, never pickled)."""
        raw = np.frombuffer(json.dumps(doc, sort_keys=True).encode(), np.uint8) if self.rank == 0 else None
        n = np.array([raw.size if raw is not None else 0], np.int64)
        self._wait(self._world.Ibcast(n, root=0), what)
        buf = raw.copy() if raw is not None else np.empty(int(n[0]), np.uint8)
        self._wait(self._world.Ibcast(buf, root=0), what)
        return json.loads(buf.tobytes().decode())

    def barrier(self, *, what: str = "barrier") -> None:
        """Wait until every rank has arrived."""
        self._wait(self._world.Ibarrier(), what)

    def abort(self, code: int = 1) -> None:
        """End every rank of the job at once (after an error that the others cannot see).

        This rank's stdout and stderr are flushed first, and the launcher is given `_ABORT_GRACE` s
        to forward them: MPI_Abort ends the launcher's I/O forwarding with the processes, so without
        the pause the error message printed just before can be lost (seen under load in CI)."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):  # closed or replaced streams
                pass
        time.sleep(_ABORT_GRACE)
        self._world.Abort(code)
