"""Numba kernels for the direct conv and the fused conv epilogue (imported only when numba is installed;
see `featuremaps.functional.accel` and `featuremaps.functional._direct`, which call them).

* `direct_conv` computes a convolution from the input's phase planes, without a column matrix: each
  tap adds a shifted run of a plane into a block of output rows (`_direct` builds the planes).
* `direct_weight_grad` computes the weight gradient from the same planes: one dot product per tap
  and output map.
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
import numpy as np

_jit = numba.njit(cache=True, nogil=True, fastmath={"contract"}, boundscheck=False)
# Reassociation for the weight gradient's dot products only: without it LLVM cannot vectorise a sum.
# Neither flag assumes away NaN or ±inf.
_jit_sum = numba.njit(cache=True, nogil=True, fastmath={"contract", "reassoc"}, boundscheck=False)


@_jit
def direct_conv(xq, w2, b, has_bias, plane, offset, wq, oh, ow, y, n0, n1, rows):
    """y[n, i, j] = b + Σ_taps w2[tap] · xq[n, plane[tap], offset[tap] + i·wq + j] for n in [n0, n1).

    xq: (n, planes, hq·wq) phase planes of the padded input (`_direct.planes`); w2: (taps, o), the
    HWIO weight as rows in (p, q, c) order; y: (n, oh, ow, o). Each block of `rows` output rows is
    computed over the planes' full width wq into a private (o, rows·wq) accumulator, vectorised
    along the block; columns j ≥ ow are computed and dropped. Taps are added eight at a time."""
    nt, o = w2.shape
    acc = np.empty((o, rows * wq), y.dtype)
    g8 = nt - nt % 8
    for n in range(n0, n1):
        for i0 in range(0, oh, rows):
            rn = min(rows, oh - i0)
            tn, t0 = rn * wq, i0 * wq
            for k in range(o):
                acc[k, :tn] = b[k] if has_bias else 0
            for g in range(0, g8, 8):
                x0 = xq[n, plane[g], offset[g] + t0: offset[g] + t0 + tn]
                x1 = xq[n, plane[g + 1], offset[g + 1] + t0: offset[g + 1] + t0 + tn]
                x2 = xq[n, plane[g + 2], offset[g + 2] + t0: offset[g + 2] + t0 + tn]
                x3 = xq[n, plane[g + 3], offset[g + 3] + t0: offset[g + 3] + t0 + tn]
                x4 = xq[n, plane[g + 4], offset[g + 4] + t0: offset[g + 4] + t0 + tn]
                x5 = xq[n, plane[g + 5], offset[g + 5] + t0: offset[g + 5] + t0 + tn]
                x6 = xq[n, plane[g + 6], offset[g + 6] + t0: offset[g + 6] + t0 + tn]
                x7 = xq[n, plane[g + 7], offset[g + 7] + t0: offset[g + 7] + t0 + tn]
                for k in range(o):
                    w0, w1, w2_, w3 = w2[g, k], w2[g + 1, k], w2[g + 2, k], w2[g + 3, k]
                    w4, w5, w6, w7 = w2[g + 4, k], w2[g + 5, k], w2[g + 6, k], w2[g + 7, k]
                    a = acc[k]
                    for t in range(tn):
                        a[t] += (w0 * x0[t] + w1 * x1[t] + w2_ * x2[t] + w3 * x3[t]
                                 + w4 * x4[t] + w5 * x5[t] + w6 * x6[t] + w7 * x7[t])
            for g in range(g8, nt):
                x0 = xq[n, plane[g], offset[g] + t0: offset[g] + t0 + tn]
                for k in range(o):
                    w0 = w2[g, k]
                    a = acc[k]
                    for t in range(tn):
                        a[t] += w0 * x0[t]
            for r in range(rn):
                for j in range(ow):
                    yr = y[n, i0 + r, j]
                    for k in range(o):
                        yr[k] = acc[k, r * wq + j]


@_jit_sum
def direct_weight_grad(xq, dy, plane, offset, wq, dw2, n0, n1):
    """dw2[tap, k] = Σ_{n in [n0, n1), i, j} xq[n, plane[tap], offset[tap] + i·wq + j] · dy[n, i, j, k].

    dy is copied per image into (o, oh·wq) rows with zeros at j ≥ ow, so each (tap, k) sum is one dot
    product along the image (vectorised; `fastmath` reassociates only these sums), four taps and two
    output maps at a time. The zeros meet the planes' values at j ≥ ow, so xq must be finite there
    (`_direct.weight_grad` checks). dw2: (taps, o), overwritten."""
    nt, o = dw2.shape
    oh, ow = dy.shape[1], dy.shape[2]
    ln = oh * wq
    dyt = np.zeros((o, ln), dw2.dtype)
    dw2[:] = 0
    z = dw2[0, 0]  # a zero of dw2's dtype: the sums stay in it, as BLAS's do
    g4, o2 = nt - nt % 4, o - o % 2
    for n in range(n0, n1):
        for i in range(oh):
            for j in range(ow):
                for k in range(o):
                    dyt[k, i * wq + j] = dy[n, i, j, k]
        for g in range(0, g4, 4):
            x0 = xq[n, plane[g], offset[g]: offset[g] + ln]
            x1 = xq[n, plane[g + 1], offset[g + 1]: offset[g + 1] + ln]
            x2 = xq[n, plane[g + 2], offset[g + 2]: offset[g + 2] + ln]
            x3 = xq[n, plane[g + 3], offset[g + 3]: offset[g + 3] + ln]
            for k in range(0, o2, 2):
                d, e = dyt[k], dyt[k + 1]
                s0 = s1 = s2 = s3 = r0 = r1 = r2 = r3 = z
                for t in range(ln):
                    dv, ev = d[t], e[t]
                    s0 += x0[t] * dv
                    s1 += x1[t] * dv
                    s2 += x2[t] * dv
                    s3 += x3[t] * dv
                    r0 += x0[t] * ev
                    r1 += x1[t] * ev
                    r2 += x2[t] * ev
                    r3 += x3[t] * ev
                dw2[g, k] += s0
                dw2[g + 1, k] += s1
                dw2[g + 2, k] += s2
                dw2[g + 3, k] += s3
                dw2[g, k + 1] += r0
                dw2[g + 1, k + 1] += r1
                dw2[g + 2, k + 1] += r2
                dw2[g + 3, k + 1] += r3
            for k in range(o2, o):
                d = dyt[k]
                s0 = s1 = s2 = s3 = z
                for t in range(ln):
                    dv = d[t]
                    s0 += x0[t] * dv
                    s1 += x1[t] * dv
                    s2 += x2[t] * dv
                    s3 += x3[t] * dv
                dw2[g, k] += s0
                dw2[g + 1, k] += s1
                dw2[g + 2, k] += s2
                dw2[g + 3, k] += s3
        for g in range(g4, nt):
            x0 = xq[n, plane[g], offset[g]: offset[g] + ln]
            for k in range(o):
                d = dyt[k]
                s0 = z
                for t in range(ln):
                    s0 += x0[t] * d[t]
                dw2[g, k] += s0


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
