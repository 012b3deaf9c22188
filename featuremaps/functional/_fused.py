"""Numba kernels for the direct conv and the fused conv epilogue (imported only when numba is installed;
see `featuremaps.functional.accel` and `featuremaps.functional._direct`, which call them).

* `direct_conv` computes a convolution tap by tap, one output row at a time (the row's (ow, o)
  values stay in cache while every tap adds into them), without a column matrix.
* `pool_bias` max-pools a conv output over `pk`×`pk` tiles and adds the bias to the pooled values
  only (exact: rounding x + b is monotonic in x, so max(y) + b == max(y + b)).

Sums run in another order than the GEMM's, so results agree with the NumPy path to float rounding
(tests/test_fused.py derives the tolerance from the dtype and the reduction length), not bit for
bit. NaN and ±inf propagate as in NumPy: a pool tile holding NaN gives NaN (the test `v != v`, as
`pool`'s kernel). Every kernel handles the image range [n0, n1) so that callers can split a batch
over threads (`threads.in_threads`); they release the GIL.
"""
from __future__ import annotations

import numba

_jit = numba.njit(cache=True, nogil=True, fastmath=False, boundscheck=False)


@_jit
def direct_conv(xp, w, sh, sw, dh, dw, y, n0, n1):
    """y[n, i, j, o] = Σ_{p, q, c} xp[n, i·sh + p·dh, j·sw + q·dw, c] · w[p, q, c, o] for n in
    [n0, n1), the terms added in (p, q, c) order. xp: padded (n, hp, wp, c); w: (kh, kw, c, o);
    y: (n, oh, ow, o)."""
    kh, kw, c, o = w.shape
    oh, ow = y.shape[1], y.shape[2]
    for n in range(n0, n1):
        for i in range(oh):
            acc = y[n, i]  # (ow, o)
            acc[:] = 0
            for p in range(kh):
                xr = xp[n, i * sh + p * dh]  # (wp, c)
                for q in range(kw):
                    for ch in range(c):
                        wv = w[p, q, ch]  # (o,)
                        for j in range(ow):
                            xv = xr[j * sw + q * dw, ch]
                            a = acc[j]
                            for k in range(o):
                                a[k] += xv * wv[k]


@_jit
def pool_bias(y, b, has_bias, pk, out, n0, n1):
    """out[n, I, J] = max over the pk×pk tile (I, J) of y[n] (+ b) for n in [n0, n1): the first
    maximum in tile order, or NaN when the tile holds one. y: (n, oh, ow, o), any strides;
    out: (n, oh // pk, ow // pk, o)."""
    ph, pw, o = out.shape[1], out.shape[2], out.shape[3]
    for n in range(n0, n1):
        for bi in range(ph):
            for bj in range(pw):
                dst = out[n, bi, bj]
                src = y[n, bi * pk, bj * pk]
                for ch in range(o):
                    dst[ch] = src[ch]
                for pi in range(pk):
                    for pj in range(pk):
                        if pi == 0 and pj == 0:
                            continue
                        src = y[n, bi * pk + pi, bj * pk + pj]
                        for ch in range(o):
                            v, m = src[ch], dst[ch]
                            dst[ch] = v if (v > m or v != v) else m
                if has_bias:
                    for ch in range(o):
                        dst[ch] = dst[ch] + b[ch]
