"""The per-tap conv: one GEMM per kernel tap on shifted runs of the flat padded input, no column matrix.

For stride 1, flatten the padded input x̃ (N, HP, WP, C) to rows (N·HP·WP, C). Output pixel (n, i, j)
sits at row r = n·HP·WP + i·WP + j of the same flat grid, and its tap (p, q) reads input row
r + p·dh·WP + q·dw. So for each tap the rows it reads form one contiguous run of the flat input,
shifted by that offset, and

    Y_flat[0:L] = Σ_(p, q)  X_flat[off_pq : off_pq + L] · W[p, q]        (L, C)·(C, O) per tap

with L = (N−1)·HP·WP + (OH−1)·WP + OW: the rows up to the last output pixel. The rows at i ≥ OH or
j ≥ OW are computed and dropped (the inflation `inflation(g)` = HP·WP / (OH·OW)). For stride 1 the
padded size is exactly OH + (KH−1)·dh, so the last tap's run ends at the last input row: no overhang.
The weight gradient is the adjoint, one GEMM per tap: dW[p, q] = X_flat[off_pq : off_pq + L]ᵀ · dY_flat,
with dY placed on the flat grid and zeros at the dropped rows.

Against im2col + GEMM it reads KH·KW runs of the input instead of writing and reading a column matrix
KH·KW times the input's size, at the price of KH·KW smaller GEMMs (N = O columns each) and, in the
forward, KH·KW accumulating adds of an (L, O) block. It pays with many input maps and few output
maps, where the columns are large and the output small (`pays`; the measurements are in
bench/README.md). The forward runs in blocks of `BLOCK_BYTES` of output so the accumulator stays in
cache. Pure NumPy: it needs no compiled kernels. It sums the taps in (p, q) order, one GEMM each,
where im2col sums the whole K = KH·KW·C in one GEMM, so the two agree to float rounding.
"""
from __future__ import annotations

import numpy as np

__all__ = ["applies", "pays", "inflation", "conv_forward", "weight_grad", "BLOCK_BYTES", "MIN_C", "MAX_O"]

BLOCK_BYTES = 256 << 10  # output rows per forward block: this many bytes of the (rows, O) accumulator
MIN_C = 64  # the rule (`pays`): at least this many input maps, ...
MAX_O = 32  # ... at most this many output maps and at most half the input maps, ...
MAX_INFLATION = 1.4  # ... and at most this many computed rows per output pixel


def applies(g) -> bool:
    """The per-tap conv can run shape `g`: stride 1, one group, more than one input map (one input
    map has cheap transposed columns), a kernel of more than one tap, and no negative padding."""
    gh, gw = g.geo
    return (gh.s == gw.s == 1 and g.groups == 1 and g.c > 1 and gh.k * gw.k > 1
            and min(gh.lo, gh.hi, gw.lo, gw.hi) >= 0)


def inflation(g) -> float:
    """Rows computed per output pixel: HP·WP / (OH·OW)."""
    gh, gw = g.geo
    return gh.padded * gw.padded / (gh.out * gw.out)


def pays(g) -> bool:
    """The rule's choice of the per-tap forward and dW (bench/README.md): many input maps, few output
    maps, little inflation."""
    return applies(g) and g.c >= MIN_C and g.o <= MAX_O and 2 * g.o <= g.c and inflation(g) <= MAX_INFLATION


def _offsets(g) -> list[int]:
    gh, gw = g.geo
    wp = gw.padded
    return [p * gh.d * wp + q * gw.d for p in range(gh.k) for q in range(gw.k)]  # tap (p, q) -> row shift


def _rows(g) -> int:
    """L: the flat rows up to the last output pixel."""
    gh, gw = g.geo
    s = gh.padded * gw.padded
    return (g.n - 1) * s + (gh.out - 1) * gw.padded + gw.out


def _grid(flat: np.ndarray, g) -> np.ndarray:
    """The output pixels' view of a flat (N·HP·WP, O) array: (N, OH, OW, O)."""
    gh, gw = g.geo
    return flat.reshape(g.n, gh.padded, gw.padded, -1)[:, :gh.out, :gw.out]  # (n, hp, wp, o) -> (n, oh, ow, o)


def conv_forward(xp: np.ndarray, w: np.ndarray, g, y: np.ndarray, b, take, give) -> None:
    """y (N, OH, OW, O) = conv(xp, w) + b for the zero-padded C-contiguous input xp (N, HP, WP, C)
    and the HWIO weight w. `take`/`give` lend and return scratch (conv's pool)."""
    kh, kw, c, o = w.shape
    xf = xp.reshape(-1, c)  # (n*hp*wp, c)
    taps = [w[p, q] for p in range(kh) for q in range(kw)]  # each (c, o)
    offsets, rows = _offsets(g), _rows(g)
    acc = take((g.n * g.geo.h.padded * g.geo.w.padded, o), y.dtype)  # (n*hp*wp, o): rows ≥ L stay unread
    step = max(64, BLOCK_BYTES // (o * y.itemsize))
    tmp = take((min(step, rows), o), y.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # as in a GEMM: no warnings (and the dropped rows' are no one's)
        for a in range(0, rows, step):
            z = min(rows, a + step)
            blk, t = acc[a:z], tmp[:z - a]
            np.matmul(xf[offsets[0] + a: offsets[0] + z], taps[0], out=blk)  # (z-a, c)·(c, o)
            for off, wt in zip(offsets[1:], taps[1:]):
                np.matmul(xf[off + a: off + z], wt, out=t)
                blk += t
    give(tmp)
    grid = _grid(acc, g)
    if b is None:
        np.copyto(y, grid)
    else:
        np.add(grid, b, out=y)
    give(acc)


def weight_grad(xp: np.ndarray, dy: np.ndarray, w_shape: tuple, g, take, give) -> np.ndarray:
    """dW (KH, KW, C, O) of the conv for the padded input xp and the output gradient dy (N, OH, OW, O)."""
    kh, kw, c, o = w_shape
    xf = xp.reshape(-1, c)  # (n*hp*wp, c)
    rows = _rows(g)
    dyf = take((g.n * g.geo.h.padded * g.geo.w.padded, o), dy.dtype)  # (n*hp*wp, o)
    dyf[...] = 0
    _grid(dyf, g)[...] = dy  # dy on the flat grid, zeros at the dropped rows
    dw = np.empty(w_shape, dy.dtype)
    d = dyf[:rows]
    for (p, q), off in zip(((p, q) for p in range(kh) for q in range(kw)), _offsets(g)):
        np.matmul(xf[off: off + rows].T, d, out=dw[p, q])  # (c, L)·(L, o) -> (c, o)
    give(dyf)
    return dw
