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

A strided layer is first split into its sh·sw phase planes (`planes`): plane (a, b) holds the rows
a, a + sh, … and the columns b, b + sw, … of x̃, each plane (N, HQ, WQ, C) with HQ = ⌈HP/sh⌉ and
WQ = ⌈WP/sw⌉ (zeros past a shorter phase's end). Tap (p, q) reads row i·sh + p·dh = (i + u)·sh + a
with a, u = divmod's remainder and quotient of p·dh by sh (likewise b, v for q), so on plane (a, b)
its rows are again one run, shifted by u·WQ + v, on the grid of the plane: the same formulas with
(HQ, WQ) for (HP, WP). A valid output reads rows i + u < HQ of its phase, so the tails only feed
dropped rows. The planes cost one copy of the input; stride 1 reads x̃ itself.

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

__all__ = ["applies", "pays", "inflation", "planes", "conv_forward", "weight_grad", "BLOCK_BYTES", "MIN_C", "MAX_O"]

BLOCK_BYTES = 256 << 10  # output rows per forward block: this many bytes of the (rows, O) accumulator
MIN_C = 64  # the rule (`pays`): at least this many input maps, ...
MAX_O = 32  # ... at most this many output maps and at most half the input maps, ...
MAX_INFLATION = 1.4  # ... and at most this many computed rows per output pixel,
FEW_O_RATIO = 8  # ... or, with at most 1/FEW_O_RATIO as many output maps as input maps (whose
FEW_O_MAX_INFLATION = 2.25  # GEMMs are cheap beside the columns they save), at most this many.
STRIDED_MIN_C = 128  # A strided layer (which also copies its input into phase planes) needs this
#                      many input maps, or FEW_O_RATIO times as many input maps as output maps.


def applies(g) -> bool:
    """The per-tap conv can run shape `g`: one group, more than one input map (one input map has
    cheap transposed columns), a kernel of more than one tap, and no negative padding; any stride
    (strided layers run on their phase planes)."""
    gh, gw = g.geo
    return g.groups == 1 and g.c > 1 and gh.k * gw.k > 1 and min(gh.lo, gh.hi, gw.lo, gw.hi) >= 0


def _plane_hw(g) -> tuple[int, int]:
    """(HQ, WQ): the phase planes' size, ⌈HP/sh⌉ × ⌈WP/sw⌉ ((HP, WP) itself at stride 1)."""
    gh, gw = g.geo
    return gh.phase_size, gw.phase_size


def inflation(g) -> float:
    """Rows computed per output pixel: HQ·WQ / (OH·OW) (HP·WP / (OH·OW) at stride 1)."""
    hq, wq = _plane_hw(g)
    return hq * wq / (g.geo.h.out * g.geo.w.out)


def pays(g) -> bool:
    """The rule's choice of the per-tap forward and dW (bench/README.md): many input maps, few output
    maps, little inflation."""
    if not (applies(g) and g.c >= MIN_C and g.o <= MAX_O and 2 * g.o <= g.c):
        return False
    few_o = FEW_O_RATIO * g.o <= g.c
    if max(g.geo.h.s, g.geo.w.s) > 1 and g.c < STRIDED_MIN_C and not few_o:
        return False
    return inflation(g) <= (FEW_O_MAX_INFLATION if few_o else MAX_INFLATION)


def _offsets(g) -> list[tuple[int, int]]:
    """Tap (p, q), in row-major order -> (its phase plane a·sw + b, its row shift u·WQ + v)."""
    gh, gw = g.geo
    wq = _plane_hw(g)[1]
    rows, cols = [gh.tap_phase(p) for p in range(gh.k)], [gw.tap_phase(q) for q in range(gw.k)]
    return [(a * gw.s + b, u * wq + v) for a, u in rows for b, v in cols]


def _rows(g) -> int:
    """L: the flat rows up to the last output pixel."""
    gh, gw = g.geo
    hq, wq = _plane_hw(g)
    return (g.n - 1) * hq * wq + (gh.out - 1) * wq + gw.out


def _grid(flat: np.ndarray, g) -> np.ndarray:
    """The output pixels' view of a flat (N·HQ·WQ, O) array: (N, OH, OW, O)."""
    gh, gw = g.geo
    hq, wq = _plane_hw(g)
    return flat.reshape(g.n, hq, wq, -1)[:, :gh.out, :gw.out]  # (n, hq, wq, o) -> (n, oh, ow, o)


def planes(xp: np.ndarray, g, take) -> tuple[np.ndarray, np.ndarray | None]:
    """The flat phase planes of the C-contiguous padded input xp (N, HP, WP, C): (sh·sw, N·HQ·WQ, C),
    plane a·sw + b = xp[:, a::sh, b::sw] with zeros past its end, and the scratch buffer behind them
    (None at stride 1, where the one plane is xp itself)."""
    gh, gw = g.geo
    n, c = xp.shape[0], xp.shape[3]
    if gh.s == gw.s == 1:
        return xp.reshape(1, -1, c), None  # (1, n*hp*wp, c)
    hq, wq = _plane_hw(g)
    buf = take((gh.s * gw.s, n, hq, wq, c), xp.dtype)
    for a in range(gh.s):
        for b in range(gw.s):
            part = xp[:, a::gh.s, b::gw.s]  # (n, ≤hq, ≤wq, c)
            dst = buf[a * gw.s + b]
            dst[:, :part.shape[1], :part.shape[2]] = part
            dst[:, part.shape[1]:] = 0
            dst[:, :part.shape[1], part.shape[2]:] = 0
    return buf.reshape(gh.s * gw.s, -1, c), buf  # (sh*sw, n*hq*wq, c)


def conv_forward(xp: np.ndarray, w: np.ndarray, g, y: np.ndarray, b, take, give) -> None:
    """y (N, OH, OW, O) = conv(xp, w) + b for the zero-padded C-contiguous input xp (N, HP, WP, C)
    and the HWIO weight w. `take`/`give` lend and return scratch (conv's pool)."""
    kh, kw, c, o = w.shape
    xf, buf = planes(xp, g, take)  # (phases, n*hq*wq, c)
    taps = [w[p, q] for p in range(kh) for q in range(kw)]  # each (c, o)
    runs, rows = [xf[ph, off:] for ph, off in _offsets(g)], _rows(g)  # tap -> its plane from its shift
    hq, wq = _plane_hw(g)
    acc = take((g.n * hq * wq, o), y.dtype)  # (n*hq*wq, o): rows ≥ L stay unread
    step = max(64, BLOCK_BYTES // (o * y.itemsize))
    tmp = take((min(step, rows), o), y.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # as in a GEMM: no warnings (and the dropped rows' are no one's)
        for a in range(0, rows, step):
            z = min(rows, a + step)
            blk, t = acc[a:z], tmp[:z - a]
            np.matmul(runs[0][a:z], taps[0], out=blk)  # (z-a, c)·(c, o)
            for run, wt in zip(runs[1:], taps[1:]):
                np.matmul(run[a:z], wt, out=t)
                blk += t
    give(tmp)
    give(buf)
    grid = _grid(acc, g)
    if b is None:
        np.copyto(y, grid)
    else:
        np.add(grid, b, out=y)
    give(acc)


def weight_grad(xp: np.ndarray, dy: np.ndarray, w_shape: tuple, g, take, give) -> np.ndarray:
    """dW (KH, KW, C, O) of the conv for the padded input xp and the output gradient dy (N, OH, OW, O)."""
    kh, kw, c, o = w_shape
    xf, buf = planes(xp, g, take)  # (phases, n*hq*wq, c)
    rows = _rows(g)
    hq, wq = _plane_hw(g)
    dyf = take((g.n * hq * wq, o), dy.dtype)  # (n*hq*wq, o)
    dyf[...] = 0
    _grid(dyf, g)[...] = dy  # dy on the flat grid, zeros at the dropped rows
    dw = np.empty(w_shape, dy.dtype)
    d = dyf[:rows]
    for (p, q), (ph, off) in zip(((p, q) for p in range(kh) for q in range(kw)), _offsets(g)):
        np.matmul(xf[ph, off: off + rows].T, d, out=dw[p, q])  # (c, L)·(L, o) -> (c, o)
    give(dyf)
    give(buf)
    return dw
