"""Two-thread splitting of element-wise work by image: NumPy's loops and the numba kernels
(`featuremaps.functional.accel`) release the GIL, so two image ranges run on two cores at once.

BLAS runs the GEMMs on its own threads; this covers the rest (padding, copies, adds, pooling).
FEATUREMAPS_NUM_THREADS sets the count (default: 2, or 1 on a single core).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


def _threads_from_env() -> int:
    value = os.environ.get("FEATUREMAPS_NUM_THREADS", "").strip()
    if not value:
        return min(2, os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FEATUREMAPS_NUM_THREADS must be a positive integer (or unset); received {value!r}")
    return int(value)


THREADS = _threads_from_env()
# Below this much written, a second thread costs more than it saves (how it was chosen: bench/README.md).
MIN_BYTES = 4 << 20
_executor: list = []


def in_threads(n: int, fn, nbytes: int, min_bytes: int | None = None) -> list:
    """fn(n0, n1) on up to THREADS contiguous image ranges at once, when the work writes at least
    `min_bytes` (default MIN_BYTES) in all (`nbytes`); the results in order. Compute-bound callers
    (the fused kernels, `featuremaps.functional._direct`) pass their own measure and threshold.
    Ranges never share an image, so their writes never overlap. `fn` must not call `in_threads` itself."""
    parts = min(THREADS, n) if nbytes >= (MIN_BYTES if min_bytes is None else min_bytes) else 1
    if parts <= 1:
        return [fn(0, n)]
    if not _executor:
        _executor.append(ThreadPoolExecutor(max_workers=THREADS - 1, thread_name_prefix="featuremaps"))
    bounds = [n * i // parts for i in range(parts + 1)]
    futures = [_executor[0].submit(fn, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    try:
        first = fn(bounds[0], bounds[1])
    finally:
        rest = [f.result() for f in futures]  # never leave a worker writing into freed scratch
    return [first] + rest
