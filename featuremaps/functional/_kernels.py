"""The bit-identical numba kernels behind `featuremaps.functional.accel` (imported only when numba is
installed; the reordering inference kernels are `_fused`'s).

Each one mirrors a NumPy step of `conv` or `pool` and must give bit-identical results: copies are
copies, and every sum adds the same terms in the same order as the NumPy code it replaces. The
kernels are serial and release the GIL; callers split the batch over threads with
`threads.in_threads`, passing each thread its own image range (an image is written by one thread).
"""
from __future__ import annotations

import numba

_jit = numba.njit(cache=True, nogil=True, fastmath=False, boundscheck=False)


# --- max pooling over windows that tile the input (pool._tile_forward / _tile_backward) ----------
@_jit
def pool_tile_forward(x, kh, kw, out, arg):
    """out[n, i, j, c] = max of window (i, j) and arg = its offset p·kw + q: the first maximum in
    window order, or the last NaN (see pool's module docstring), so a window holding NaN reports
    NaN. x: (n, h, w, c); out, arg: (n, oh, ow, c)."""
    n, oh, ow, c = out.shape
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                o = out[b, i, j]
                a = arg[b, i, j]
                first = x[b, i * kh, j * kw]
                for ch in range(c):
                    o[ch] = first[ch]
                    a[ch] = 0
                for p in range(kh):
                    for q in range(kw):
                        if p == 0 and q == 0:
                            continue
                        k = p * kw + q
                        tap = x[b, i * kh + p, j * kw + q]
                        for ch in range(c):
                            v = tap[ch]
                            if v > o[ch] or v != v:
                                o[ch] = v
                                a[ch] = k


@_jit
def pool_tile_backward(g, arg, kh, kw, gx):
    """gx (n, h, w, c) = g routed to each window's chosen element, +0.0 elsewhere (also on the
    rows/columns no window reaches)."""
    n, oh, ow, c = g.shape
    h, w = gx.shape[1], gx.shape[2]
    for b in range(n):
        for r in range(h):
            for x_ in range(w):
                if r >= oh * kh or x_ >= ow * kw:
                    for ch in range(c):
                        gx[b, r, x_, ch] = 0
        for i in range(oh):
            for p in range(kh):
                for j in range(ow):
                    gr = g[b, i, j]
                    ar = arg[b, i, j]
                    for q in range(kw):
                        k = p * kw + q
                        dst = gx[b, i * kh + p, j * kw + q]
                        for ch in range(c):
                            dst[ch] = gr[ch] if ar[ch] == k else 0


# --- conv: the row-window input gradient (conv._col2im_rows) ------------------------------------
@_jit
def dy_row_windows(dy, kw, dw, j_lo, rows):
    """rows[n, i, x, q, o] = dy[n, i, x + q·dw + j_lo, o], or 0 where that column is outside dy;
    rows: (n, oh, w, kw, o)."""
    n, oh, w = rows.shape[0], rows.shape[1], rows.shape[2]
    ow, o = dy.shape[2], dy.shape[3]
    for b in range(n):
        for i in range(oh):
            for x_ in range(w):
                for q in range(kw):
                    t = x_ + q * dw + j_lo
                    dst = rows[b, i, x_, q]
                    if 0 <= t < ow:
                        src = dy[b, i, t]
                        for ch in range(o):
                            dst[ch] = src[ch]
                    else:
                        for ch in range(o):
                            dst[ch] = 0


@_jit
def add_row_blocks(out, i0, i1, r0, sh, dx):
    """dx[n, r0[p] + t·sh] += out[n, i0[p] + t, :, p] for t < i1[p] − i0[p], for p = 0, 1, … in
    that order. out: (n, oh, w, kh, c); dx: (n, h, w, c)."""
    n, w, kh, c = out.shape[0], out.shape[2], out.shape[3], out.shape[4]
    for b in range(n):
        for p in range(kh):
            for t in range(i1[p] - i0[p]):
                src_i = i0[p] + t
                r = r0[p] + t * sh
                for x_ in range(w):
                    src = out[b, src_i, x_, p]
                    dst = dx[b, r, x_]
                    for ch in range(c):
                        dst[ch] += src[ch]


# --- element-wise steps, fused into one pass with NumPy's order of operations ------------------
@_jit
def tanh_backward(out, g, one, gx):
    """gx = g · (1 − out · out), each product and difference rounded as NumPy's three passes do.
    All three arrays C-contiguous and of one dtype; `one` is a 1 of that dtype."""
    o, gg, dst = out.reshape(-1), g.reshape(-1), gx.reshape(-1)
    for i in range(o.size):
        dst[i] = gg[i] * (one - o[i] * o[i])


@_jit
def sgd_momentum(p, g, buf, momentum, lr):
    """buf = buf · momentum + g; p = p − buf · lr (optim.SGD without Nesterov or weight decay):
    momentum and lr already of the arrays' dtype, the same roundings as NumPy's in-place passes."""
    pp, gg, bb = p.reshape(-1), g.reshape(-1), buf.reshape(-1)
    for i in range(pp.size):
        b = bb[i] * momentum
        b = b + gg[i]
        bb[i] = b
        pp[i] = pp[i] - b * lr


# --- col2im: the twin of window.Geometry.scatter_add (conv._col2im_cols) ----------------------
@_jit
def col2im_add(d6, top, left, sh, sw, dh, dw, dx):
    """dx[n, i·sh + p·dh − top, j·sw + q·dw − left] += d6[n, i, j, p, q] for the blocks (p, q) in
    row-major order, as `Geometry.scatter_add`'s block adds do (positions outside dx fell on
    padding). d6: (n, oh, ow, kh, kw, c); dx: (n, h, w, c)."""
    n, oh, ow, kh, kw, c = d6.shape
    h, w = dx.shape[1], dx.shape[2]
    for b in range(n):
        for p in range(kh):
            for q in range(kw):
                for i in range(oh):
                    r = i * sh + p * dh - top
                    if r < 0 or r >= h:
                        continue
                    for j in range(ow):
                        x_ = j * sw + q * dw - left
                        if x_ < 0 or x_ >= w:
                            continue
                        src = d6[b, i, j, p, q]
                        dst = dx[b, r, x_]
                        for ch in range(c):
                            dst[ch] += src[ch]
