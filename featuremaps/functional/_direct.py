"""Direct compiled convolution for few input maps, and the fused pool + bias epilogue (the `fast` extra).

`conv_forward(xp, w, stride, dilation, out, b=None)` is the contract with `functional.conv` (which
may choose it as a forward algorithm): xp is the zero-padded NHWC input, C-contiguous float32 or
float64; w is an ungrouped HWIO weight of the same dtype; out is a preallocated (n, oh, ow, o)
C-contiguous array of that dtype; b an optional bias, added in the same pass. It builds no column
matrix: the input is split once into its stride phases (`planes`, about the input's size), and
each tap reads a shifted run of a plane. It returns the planes, from which `weight_grad(planes,
dy, w_shape)` computes dW without a column matrix either. `pool_bias(y, b, pool, out)` max-pools a
conv output over tiles and adds the bias in one pass (`featuremaps.nn.fused` uses it for eval-mode
models). The kernels are `featuremaps.functional._fused`'s; all split the batch over the threads
(`featuremaps.functional.threads`).

The direct conv adds its terms in (p, q, c) order, eight taps at a time, and dW's sums are
reassociated dot products, instead of the GEMM's blocked order, so both agree with the NumPy path
to float rounding, not bit for bit. `available()` is False without numba or with the kernels
switched off (`use_numba(False)`, FEATUREMAPS_NUMBA=0): callers then take the NumPy path.
`pays(...)` is the measured rule for when they beat im2col + GEMM
(bench/README.md has the figures).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import accel, threads
from .window import dilated_span

__all__ = ["available", "Planes", "planes", "conv_forward", "weight_grad", "pool_bias", "pays",
           "max_out_maps", "MAX_O", "MIN_MACS"]

# The rule (`pays`): the most output maps for which the direct conv beats
# im2col + GEMM, by input maps. Measured 2026-12-03 (bench/README.md: N=32, 48², k 3/5/7, stride 1/2,
# forward + dW): with few input maps the column matrix costs more to write than the GEMM saves, and
# the direct conv builds none (3 → 3 to 3 → 16: 0.15–0.9× the time); with many output maps its
# accumulate-and-transpose loses to the GEMM (3 → 32: 1.2–1.4×, 1 → 128: 2–3×). One input map has
# the cheapest columns (a transposed copy, the bias folded in), so the bound is lower there.
MAX_O = ((1, 4), (3, 16), (8, 8))  # (up to this many input maps, at most this many output maps)
MAX_O_ONE_MAP_LARGE_KERNEL = 8  # one input map with a kernel of ≥ 25 taps: 1 → 8 k5/k7 0.73–1.05×
# Below this many multiply-adds a second thread costs more than it saves.
MIN_MACS = 1 << 20
ACC_VALUES = 8192  # the forward's private accumulator per thread: (o, rows·wq) values, in L1/L2


class Planes(NamedTuple):
    """The padded input split into its stride phases: x[n, (c·sh + a)·sw + b] is the (hq, wq) plane
    of pixels (a + sh·r, b + sw·s) of map c, flattened, with a zero row more than the taps reach.
    A tap (p, q, c) of output pixel (i, j) is x[n, plane[tap], offset[tap] + i·wq + j]."""
    x: np.ndarray  # (n, c·sh·sw, hq·wq)
    wq: int
    plane: np.ndarray  # (kh·kw·c,) int64, taps in HWIO (p, q, c) order
    offset: np.ndarray  # (kh·kw·c,) int64
    out_hw: tuple


def available() -> bool:
    """True when the compiled kernels can and may run (numba installed and switched on)."""
    return accel.numba_enabled()


def max_out_maps(c: int, taps: int) -> int:
    """The most output maps for which the rule takes the direct conv on c input maps (0: never)."""
    if c == 1 and taps >= 25:
        return MAX_O_ONE_MAP_LARGE_KERNEL
    return next((o for most_c, o in MAX_O if c <= most_c), 0)


def pays(c: int, kh: int, kw: int, o: int, groups: int = 1) -> bool:
    """Whether the rule puts the direct conv, forward and dW (measured together), before im2col +
    GEMM for a (kh, kw, c → o) layer: one group, not 1×1, at most `max_out_maps(c, kh·kw)` output
    maps (see MAX_O)."""
    return available() and groups == 1 and kh * kw > 1 and o <= max_out_maps(c, kh * kw)


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


def _fits(size: int, out: int, k: int, s: int, d: int) -> bool:
    return out >= 1 and (out - 1) * s + dilated_span(k, d) <= size


def planes(xp: np.ndarray, kernel, stride, dilation, out_hw) -> Planes:
    """The phase planes of the padded NHWC input `xp` for a (kh, kw) kernel and an (oh, ow) output
    (see `Planes`; trailing pixels that no output reads, as a transposed conv's output padding
    leaves, are kept and never read)."""
    n, hp, wp, c = xp.shape
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    if not (_fits(hp, oh, kh, sh, dh) and _fits(wp, ow, kw, sw, dw)):
        raise ValueError(f"_direct.planes: an output of {(oh, ow)} does not fit xp {xp.shape} with kernel "
                         f"{(kh, kw)}, stride {(sh, sw)}, dilation {(dh, dw)}")
    hq, wq = -(-hp // sh), -(-wp // sw)
    hq = max(hq, oh + (dilated_span(kh, dh) - 1) // sh + 1)  # a zero row past the last tap: runs stay inside
    x = np.zeros((n, c, sh, sw, hq, wq), xp.dtype)
    for a in range(sh):
        for b in range(sw):
            part = xp[:, a::sh, b::sw].transpose(0, 3, 1, 2)  # (n, c, rows, cols) of phase (a, b)
            x[:, :, a, b, :part.shape[2], :part.shape[3]] = part
    p, q, ch = (a.ravel() for a in np.meshgrid(np.arange(kh), np.arange(kw), np.arange(c), indexing="ij"))
    plane = (ch * sh + p * dh % sh) * sw + q * dw % sw
    offset = (p * dh // sh) * wq + q * dw // sw
    return Planes(x.reshape(n, c * sh * sw, hq * wq), wq, plane.astype(np.int64), offset.astype(np.int64), (oh, ow))


def conv_forward(xp: np.ndarray, w: np.ndarray, stride, dilation, out: np.ndarray, b=None) -> Planes:
    """out = conv(xp, w) (+ b) by the direct compiled conv; returns the planes, which `weight_grad`
    reuses. See the module docstring."""
    op = "_direct.conv_forward"
    _check_arrays(op, xp=xp, w=w, out=out)
    if not (xp.flags.c_contiguous and w.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError(f"{op}: xp, w and out must be C-contiguous")
    s, d = _pair(stride, "stride", op), _pair(dilation, "dilation", op)
    kh, kw, c, o = w.shape
    oh, ow = out.shape[1:3]
    if (c != xp.shape[3] or out.shape[::3] != (xp.shape[0], o) or not _fits(xp.shape[1], oh, kh, s[0], d[0])
            or not _fits(xp.shape[2], ow, kw, s[1], d[1])):
        most = tuple((size - dilated_span(kk, dd)) // ss + 1 for size, kk, ss, dd in
                     zip(xp.shape[1:3], (kh, kw), s, d))
        raise ValueError(f"{op}: out must be (n, oh, ow, o) with (oh, ow) ≤ {most} for xp {xp.shape}, w {w.shape} "
                         f"(HWIO), stride {s}, dilation {d}: (n, o) = {(xp.shape[0], o)}; received {out.shape}")
    bb = np.zeros(0, w.dtype) if b is None else np.ascontiguousarray(b, w.dtype)
    if bb.shape not in ((0,), (o,)):
        raise ValueError(f"{op}: b must be ({o},); received {bb.shape}")
    pl = planes(xp, (kh, kw), s, d, (oh, ow))
    w2 = w.reshape(kh * kw * c, o)  # (taps, o), taps in (p, q, c) order
    rows = max(1, min(oh, ACC_VALUES // (o * pl.wq)))
    k = _kernels()

    def part(n0: int, n1: int) -> None:
        k.direct_conv(pl.x, w2, bb, b is not None, pl.plane, pl.offset, pl.wq, oh, ow, out, n0, n1, rows)
    threads.in_threads(xp.shape[0], part, out.size * kh * kw * c, min_bytes=MIN_MACS)
    return pl


def weight_grad(pl: Planes, dy: np.ndarray, w_shape: tuple) -> np.ndarray | None:
    """dW (HWIO) of the direct conv from its planes and the output gradient dy (n, oh, ow, o); None
    when the planes hold NaN or ±inf (the kernel would meet them with the zeros it pads dy with, where
    the reference adds no term: take the column path then)."""
    op = "_direct.weight_grad"
    _check_arrays(op, dy=dy)
    kh, kw, c, o = w_shape
    if dy.shape != (pl.x.shape[0], *pl.out_hw, o) or dy.dtype != pl.x.dtype or pl.plane.size != kh * kw * c:
        raise ValueError(f"{op}: dy must be {pl.x.dtype} {(pl.x.shape[0], *pl.out_hw, o)} for these planes and "
                         f"w {w_shape}; received {dy.dtype} {dy.shape}")
    if not np.isfinite(pl.x.sum()):
        return None
    dy = np.ascontiguousarray(dy)
    k = _kernels()

    def part(n0: int, n1: int) -> np.ndarray:
        dw2 = np.empty((kh * kw * c, o), dy.dtype)  # (taps, o)
        k.direct_weight_grad(pl.x, dy, pl.plane, pl.offset, pl.wq, dw2, n0, n1)
        return dw2
    parts = threads.in_threads(dy.shape[0], part, dy.size * kh * kw * c, min_bytes=MIN_MACS)
    total = parts[0]
    for p in parts[1:]:
        total += p  # in a fixed order: one path is bit-identical run to run
    return total.reshape(w_shape)  # (kh*kw*c, o) -> HWIO


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
