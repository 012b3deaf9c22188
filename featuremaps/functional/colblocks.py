"""im2col in cache-sized blocks: the column matrix is built and multiplied a block of output rows at a
time, so it never leaves the cache and is never whole in memory.

The whole column matrix of a layer is KH·KW times its input (144 MB for a batch of three 124² images
of 64 maps under a 7×7 kernel at stride 2), so building it and reading it back in the GEMM streams
it through main memory twice. Built in blocks of about `BLOCK_BYTES`, each block is written, read by
its GEMM and overwritten by the next while it is still in cache: the copy costs little beside the
GEMM, and the scratch is one block instead of the whole matrix.

A block is a run of output rows: whole images when an image's columns fit in a block, else rows
[i0, i1) of one image (`blocks`). The forward is one GEMM per block into its rows of y. The weight
gradient rebuilds each block from the input and adds colsᵀ · dy block by block (`weight_grad`), so a
training step builds the columns twice but never stores them. Both sum each output over the same
K = KH·KW·C products as one whole GEMM, in BLAS's order for a shorter matrix, so they agree with it
to float rounding; dW adds the blocks' partial sums in block order. The input gradient
(`input_grad`, compiled adds only) runs col2im the same way: each block's column gradient
dy · Wᵀ is made and added into its windows of dx (numba's `col2im_add`) while it is in cache, where
the whole col2im writes and reads back KH·KW times dx. One group and more than one
input map (one input map has cheap transposed columns): `applies`. The rule (`pays`, conv_algos)
takes it in inference when the whole matrix exceeds one block, and in training when it exceeds
`MIN_COLS_BYTES` on at least `MIN_TRAIN_O` output maps, and its dx (`dx_pays`) above MIN_COLS_BYTES
on enough output maps; the measurements are in bench/README.md.
"""
from __future__ import annotations

import numpy as np

from .threads import in_threads

__all__ = ["applies", "pays", "dx_pays", "blocks", "conv_forward", "weight_grad", "input_grad", "BLOCK_BYTES",
           "MIN_COLS_BYTES", "MIN_TRAIN_O", "MIN_DX_O", "DX_MAX_TAPS", "DX_MAX_K"]

BLOCK_BYTES = 4 << 20  # column-matrix bytes per block
MIN_COLS_BYTES = 16 << 20  # the rule in training: blocked when the whole column matrix is larger than this
MIN_TRAIN_O = 16  # ... and the layer has at least this many output maps
MIN_DX_O = 64  # the blocked dx, where the rows dx applies: at least this many output maps,
DX_MAX_TAPS = 9  # ... at most this many kernel taps
DX_MAX_K = 1152  # ... and weight rows kh·kw·c


def _row_values(g) -> int:
    """The column-matrix values of one output row: OW · KH·KW·C."""
    gh, gw = g.geo
    return gw.out * gh.k * gw.k * g.c


def _cols_bytes(g, itemsize: int) -> int:
    return g.n * g.geo.h.out * _row_values(g) * itemsize


def applies(g) -> bool:
    """One group and more than one input map (a 1×1 stride-1 kernel, which reads x itself as its
    columns, never gets here: conv_algos.candidates takes it first)."""
    return g.groups == 1 and g.c > 1


def pays(g, itemsize: int, train: bool) -> bool:
    """The rule's choice: in inference, a column matrix of more than one block; in training, where
    dW builds the columns a second time, one of more than MIN_COLS_BYTES with at least MIN_TRAIN_O
    output maps (with fewer, the GEMMs are matrix-vector products that stream either way)."""
    if not applies(g):
        return False
    if train:
        return g.o >= MIN_TRAIN_O and _cols_bytes(g, itemsize) > MIN_COLS_BYTES
    return _cols_bytes(g, itemsize) > BLOCK_BYTES


def dx_pays(g, itemsize: int, rows: bool) -> bool:
    """The rule's choice of the blocked input gradient (with the compiled adds): a column matrix of
    more than MIN_COLS_BYTES, and then, where the ``rows`` dx applies (`rows`: stride 1 along W),
    at least MIN_DX_O output maps on at most DX_MAX_TAPS taps and DX_MAX_K weight rows (rows' KH
    shifted adds beat its KH·KW with bigger kernels, and a row block's adds run on one thread);
    otherwise (strided, against col2im's whole column gradient) at least MIN_TRAIN_O output maps."""
    if not applies(g) or _cols_bytes(g, itemsize) <= MIN_COLS_BYTES:
        return False
    gh, gw = g.geo
    if rows:
        return g.o >= MIN_DX_O and gh.k * gw.k <= DX_MAX_TAPS and gh.k * gw.k * g.c <= DX_MAX_K
    return g.o >= MIN_TRAIN_O


def blocks(g, itemsize: int) -> list[tuple[int, int, int, int]]:
    """(n0, n1, i0, i1): images [n0, n1), output rows [i0, i1) of each, at most about BLOCK_BYTES of
    columns a block (at least one output row)."""
    oh = g.geo.h.out
    rows = max(1, BLOCK_BYTES // (_row_values(g) * itemsize))
    if rows >= oh:
        per = rows // oh  # whole images per block
        return [(n0, min(g.n, n0 + per), 0, oh) for n0 in range(0, g.n, per)]
    return [(n, n + 1, i0, min(oh, i0 + rows)) for n in range(g.n) for i0 in range(0, oh, rows)]


def _scratch(plan: list, g, dtype, take) -> np.ndarray:
    """One flat buffer for the largest block of `plan`: its column matrix (or column gradient)."""
    return take((max((n1 - n0) * (i1 - i0) for n0, n1, i0, i1 in plan) * _row_values(g),), dtype)


def _column_blocks(xp: np.ndarray, g, take, give):
    """Yield ((n0, n1, i0, i1), that block's columns (rows, KH·KW·C)), each copied from the window
    view into one scratch buffer that the next block overwrites (given back at the end)."""
    win = g.geo.windows(xp)  # (n, oh, ow, kh, kw, c) view
    plan = blocks(g, xp.itemsize)
    buf = _scratch(plan, g, xp.dtype, take)
    try:
        for n0, n1, i0, i1 in plan:
            part = win[n0:n1, i0:i1]  # (bn, bi, ow, kh, kw, c) view
            dst = buf[:part.size].reshape(part.shape)
            np.copyto(dst, part)
            yield (n0, n1, i0, i1), dst.reshape(-1, _row_values(g) // g.geo.w.out)  # (bn*bi*ow, kh*kw*c)
    finally:
        give(buf)


def conv_forward(xp: np.ndarray, w: np.ndarray, g, y: np.ndarray, take, give) -> None:
    """y (N, OH, OW, O) = conv(xp, w) for the padded input xp (N, HP, WP, C), block by block."""
    kh, kw, c, o = w.shape
    w2 = w.reshape(kh * kw * c, o)  # (kh*kw*c, o)
    for (n0, n1, i0, i1), cols in _column_blocks(xp, g, take, give):
        np.matmul(cols, w2, out=y[n0:n1, i0:i1].reshape(-1, o))  # (rows, k)·(k, o)


def weight_grad(xp: np.ndarray, dy: np.ndarray, w_shape: tuple, g, take, give, orient: str = "cols_t_dy") -> np.ndarray:
    """dW (KH, KW, C, O) = Σ over blocks of colsᵀ · dy, the columns rebuilt from xp block by block;
    `orient` "dy_t_cols" runs each block as dyᵀ · cols instead (conv_algos.dy_t_orientation_pays)."""
    kh, kw, c, o = w_shape
    t = orient == "dy_t_cols"
    acc = np.zeros((o, kh * kw * c) if t else (kh * kw * c, o), dy.dtype)  # (o, k) or (k, o)
    part = np.empty_like(acc)
    for (n0, n1, i0, i1), cols in _column_blocks(xp, g, take, give):
        d = dy[n0:n1, i0:i1].reshape(-1, o)  # (rows, o)
        np.matmul(d.T, cols, out=part) if t else np.matmul(cols.T, d, out=part)  # (o, k) or (k, o)
        acc += part
    return (acc.T if t else acc).reshape(w_shape)  # (k, o) -> HWIO


def input_grad(dy: np.ndarray, w: np.ndarray, g, dx: np.ndarray, take, give, kernels) -> None:
    """dx (N, H, W, C) += col2im(dy · Wᵀ), block by block: each block's column gradient (rows,
    KH·KW·C) is one GEMM, then added into the windows of dx its output rows read (`kernels`: the
    compiled module, `accel.kernels`; its `col2im_add` with the block's first row as the offset).
    Blocks of whole images split their adds over the threads by image (`in_threads`)."""
    (kh, kw, c, o), (gh, gw) = w.shape, g.geo
    wt = np.ascontiguousarray(w.reshape(kh * kw * c, o).T)  # (o, kh*kw*c)
    plan = blocks(g, dy.itemsize)
    buf = _scratch(plan, g, dy.dtype, take)
    try:
        for n0, n1, i0, i1 in plan:
            d = dy[n0:n1, i0:i1].reshape(-1, o)  # (rows, o)
            dcols = buf[:d.shape[0] * kh * kw * c].reshape(d.shape[0], -1)  # (rows, kh*kw*c)
            np.matmul(d, wt, out=dcols)
            d6 = dcols.reshape(n1 - n0, i1 - i0, gw.out, kh, kw, c)  # (bn, bi, ow, kh, kw, c)
            top = gh.lo - i0 * gh.s  # local output row i is row i0 + i of the layer

            def add(a: int, z: int, d6=d6, top=top, n0=n0) -> None:
                kernels.col2im_add(d6[a:z], top, gw.lo, gh.s, gw.s, gh.d, gw.d, dx[n0 + a:n0 + z])
            in_threads(n1 - n0, add, dcols.nbytes)
    finally:
        give(buf)
