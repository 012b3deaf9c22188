"""Direct compiled convolution for few input maps, and the fused pool + bias epilogue (the `fast` extra).

`conv_forward(xp, w, stride, dilation, out)` is the contract with `functional.conv` (which may
choose it as a forward algorithm): xp is the zero-padded NHWC input, C-contiguous float32 or
float64; w is an ungrouped HWIO weight of the same dtype; out is a preallocated (n, oh, ow, o)
C-contiguous array of that dtype; no bias. `pool_bias(y, b, pool, out)` max-pools a conv output
over tiles and adds the bias in one pass (`featuremaps.nn.fused` uses it for eval-mode models).
The kernels are `featuremaps.functional._fused`'s; both split the batch over the threads
(`featuremaps.functional.threads`).

The direct conv adds its terms tap by tap ((p, q, c) order) instead of the GEMM's blocked order,
so it agrees with the NumPy path to float rounding, not bit for bit. `available()` is False
without numba or with the kernels switched off (`use_numba(False)`, FEATUREMAPS_NUMBA=0): callers
then take the NumPy path. `pays(...)` is the measured rule for when the direct conv beats
im2col + GEMM (bench/README.md has the figures).
"""
from __future__ import annotations

import numpy as np

from . import accel, threads
from .window import dilated_span

__all__ = ["available", "conv_forward", "pool_bias", "pays", "MAX_TAPS", "MIN_MACS"]

# kh·kw·c taps up to which the direct conv beats im2col + GEMM. Measured 2026-12-02 (one thread,
# CPU time, batch 64, float32): LeNet C1 (1 → 20, 5×5) 5.4 ms against 1.9 ms, 6 → 16 3.1 against
# 1.0, 20 → 50 14.6 against 4.5: it lost on every LeNet shape, so no shape qualifies.
MAX_TAPS = 0
# Below this many multiply-adds a second thread costs more than it saves.
MIN_MACS = 1 << 20


def available() -> bool:
    """True when the compiled kernels can and may run (numba installed and switched on)."""
    return accel.numba_enabled()


def pays(c: int, kh: int, kw: int, o: int, groups: int = 1) -> bool:
    """Whether the direct conv should replace im2col + GEMM for a (kh, kw, c → o) layer: one group
    and at most MAX_TAPS multiply-adds per output value (none, as measured; see MAX_TAPS)."""
    return available() and groups == 1 and kh * kw * c <= MAX_TAPS


def _kernels():
    from . import _fused  # imports numba; compiled on first call, cached on disk
    return _fused


def _check_arrays(op: str, **arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.ndim != 4 or a.dtype not in (np.float32, np.float64):
            raise ValueError(f"{op}: {name} must be a 4-D float32/float64 ndarray; received "
                             f"{type(a).__name__} {getattr(a, 'shape', '')} {getattr(a, 'dtype', '')}")
    dtypes = {a.dtype for a in arrays.values()}
    if len(dtypes) != 1:
        raise ValueError(f"{op}: {', '.join(arrays)} must share a dtype; received "
                         f"{', '.join(str(a.dtype) for a in arrays.values())}")


def _pair(v, name: str, op: str) -> tuple[int, int]:
    a, b = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if a < 1 or b < 1:
        raise ValueError(f"{op}: {name} must be ≥ 1; received {v!r}")
    return int(a), int(b)


def conv_forward(xp: np.ndarray, w: np.ndarray, stride, dilation, out: np.ndarray) -> None:
    """out = conv(xp, w) (no bias) by the direct compiled conv; see the module docstring."""
    op = "_direct.conv_forward"
    _check_arrays(op, xp=xp, w=w, out=out)
    if not (xp.flags.c_contiguous and w.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError(f"{op}: xp, w and out must be C-contiguous")
    s, d = _pair(stride, "stride", op), _pair(dilation, "dilation", op)
    kh, kw, c, o = w.shape
    oh = (xp.shape[1] - dilated_span(kh, d[0])) // s[0] + 1
    ow = (xp.shape[2] - dilated_span(kw, d[1])) // s[1] + 1
    if c != xp.shape[3] or out.shape != (xp.shape[0], oh, ow, o) or oh < 1 or ow < 1:
        raise ValueError(f"{op}: out must be (n, oh, ow, o) = {(xp.shape[0], oh, ow, o)} for xp {xp.shape}, "
                         f"w {w.shape} (HWIO), stride {s}, dilation {d}; received {out.shape}")
    k = _kernels()

    def part(n0: int, n1: int) -> None:
        k.direct_conv(xp, w, s[0], s[1], d[0], d[1], out, n0, n1)
    threads.in_threads(xp.shape[0], part, out.size * kh * kw * c, min_bytes=MIN_MACS)


def pool_bias(y: np.ndarray, b, pool: int, out: np.ndarray) -> None:
    """out = max-pool of y over pool×pool tiles (floor: trailing rows/columns dropped), plus b (or
    None) on the pooled values. y: (n, oh, ow, o); out: (n, oh // pool, ow // pool, o), C-contiguous."""
    op = "_direct.pool_bias"
    _check_arrays(op, y=y, out=out)
    want = (y.shape[0], y.shape[1] // pool, y.shape[2] // pool, y.shape[3])
    if out.shape != want or not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be C-contiguous {want} for y {y.shape} and pool {pool}; received {out.shape}")
    has_b = b is not None
    bb = np.ascontiguousarray(b, y.dtype) if has_b else np.zeros(0, y.dtype)
    if bb.shape not in ((0,), (y.shape[3],)):
        raise ValueError(f"{op}: b must be ({y.shape[3]},); received {bb.shape}")
    k = _kernels()

    def part(n0: int, n1: int) -> None:
        k.pool_bias(y, bb, has_b, pool, out, n0, n1)
    threads.in_threads(y.shape[0], part, y.nbytes)
