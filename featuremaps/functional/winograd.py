"""Winograd F(2×2, 3×3): a 3×3, stride-1, dilation-1, one-group convolution with 16 GEMMs of a quarter
of the im2col GEMM's rows and 1/9 of its depth (2.25× fewer multiplies), for `conv`'s forward pass and
its input gradient (`conv_algos` decides when).

The output is cut into 2×2 tiles; tile (u, v) reads the 4×4 patch d of the padded input at rows
2u.., columns 2v... With the transforms of Lavin & Gray (2016)

    Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]],
    G  = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]],   Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]],

the tile's output is Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A. The sum over c, for each of the 16 points
(ξ, ν) of the 4×4 transform, is one GEMM: V[ξν] (tiles, C) · U[ξν] (C, O). Bᵀ and Aᵀ hold only 0
and ±1, so the data transforms are adds of strided views (no multiplies); G's halves are exact in
binary. Rounding differs from the direct sum (the transformed inputs are sums of up to 4 values, the
outputs of up to 9 GEMM results), by a few units of eps·√(9·C) (tests/test_conv_algorithms.py).

The input gradient of such a layer is itself one (`conv_input_grad`): dx = conv(dy padded by 2 − pad
on each side, w flipped in H and W with its in/out axes swapped), so it needs every pad ≤ 2.
"""
from __future__ import annotations

import numpy as np

from .threads import in_threads

__all__ = ["conv_forward", "conv_input_grad", "weight_transform"]

def _g_rows(g: np.ndarray) -> np.ndarray:
    """G · g along axis 0 of g (3, ...): (4, ...), as adds and halvings (G's entries are 0, ±½, 1)."""
    s = g[0] + g[2]
    return np.stack([g[0], (s + g[1]) * 0.5, (s - g[1]) * 0.5, g[2]])


def weight_transform(w: np.ndarray) -> np.ndarray:
    """U (16, C, O) = G g Gᵀ for every (c, o) of an HWIO (3, 3, C, O) weight, in w's dtype."""
    t = _g_rows(w)  # (4, 3, c, o): G along the kernel rows
    u = _g_rows(t.transpose(1, 0, 2, 3))  # (4, 4, c, o): then along the columns, as (ν, ξ, c, o)
    return np.ascontiguousarray(u.transpose(1, 0, 2, 3)).reshape(16, *w.shape[2:])  # (ξ, ν, c, o) -> (16, c, o)


def _tiled_input(x: np.ndarray, top: int, left: int, th: int, tw: int, take) -> np.ndarray:
    """x (n, h, w, c) placed at (top, left) in a zero array (n, 2·th + 2, 2·tw + 2, c): every tile's
    4×4 patch inside it. Parts of x beyond it are dropped (no output reads them)."""
    n, h, w, c = x.shape
    hp, wp = 2 * th + 2, 2 * tw + 2
    xp = take((n, hp, wp, c), x.dtype)
    rh, rw = min(h, hp - top), min(w, wp - left)  # rows/columns of x that land inside

    def fill(a: int, z: int) -> None:
        xp[a:z, :top] = 0
        xp[a:z, top + rh:] = 0
        xp[a:z, top:top + rh, :left] = 0
        xp[a:z, top:top + rh, left + rw:] = 0
        xp[a:z, top:top + rh, left:left + rw] = x[a:z, :rh, :rw]
    in_threads(n, fill, xp.nbytes)
    return xp


CHUNK_BYTES = 1 << 20  # transformed input + GEMM result of one chunk of images: about an L2 cache


def _input_transform(xp: np.ndarray, th: int, tw: int, r: np.ndarray, v: np.ndarray) -> None:
    """v (4, 4, k, th, tw, c) = Bᵀ d B for every tile's 4×4 patch d of xp (k, 2·th + 2, 2·tw + 2, c);
    r (4, k, th, 2·tw + 2, c) is scratch for the row pass Bᵀ d."""
    d = [xp[:, j:j + 2 * th:2] for j in range(4)]  # patch row j of every tile row: (k, th, wp, c)
    np.subtract(d[0], d[2], out=r[0])
    np.add(d[1], d[2], out=r[1])
    np.subtract(d[2], d[1], out=r[2])
    np.subtract(d[1], d[3], out=r[3])
    for i in range(4):
        e = [r[i, :, :, j:j + 2 * tw:2] for j in range(4)]  # patch column j: (k, th, tw, c)
        np.subtract(e[0], e[2], out=v[i, 0])
        np.add(e[1], e[2], out=v[i, 1])
        np.subtract(e[2], e[1], out=v[i, 2])
        np.subtract(e[1], e[3], out=v[i, 3])


def _output_transform(m: np.ndarray, s: np.ndarray, y6: np.ndarray) -> None:
    """y6 (k, th, 2, tw, 2, o) = Aᵀ M A per tile, M = m (4, 4, k, th, tw, o); s (2, 4, k, th, tw, o)
    is scratch for the row pass Aᵀ M."""
    np.add(m[0], m[1], out=s[0])
    s[0] += m[2]
    np.subtract(m[1], m[2], out=s[1])
    s[1] -= m[3]
    for i in range(2):
        np.add(s[i, 0], s[i, 1], out=y6[:, :, i, :, 0])
        y6[:, :, i, :, 0] += s[i, 2]
        np.subtract(s[i, 1], s[i, 2], out=y6[:, :, i, :, 1])
        y6[:, :, i, :, 1] -= s[i, 3]


def _run(x: np.ndarray, top: int, left: int, u: np.ndarray, y: np.ndarray, take, give) -> None:
    """y = the 3×3 correlation of x placed at (top, left) in zeros, with the transformed weight u.
    Images go through in chunks (transform, 16 GEMMs, inverse transform) whose scratch stays
    about `CHUNK_BYTES`, so the transforms' passes run in cache."""
    n, oh, ow, o = y.shape
    th, tw = -(-oh // 2), -(-ow // 2)
    c, wp = u.shape[1], 2 * tw + 2
    xp = _tiled_input(x, top, left, th, tw, take)
    step = max(1, min(n, CHUNK_BYTES // (16 * th * tw * (c + o) * x.itemsize)))
    r = take((4, step, th, wp, c), x.dtype)
    v = take((16, step * th * tw * c), x.dtype)
    m = take((16, step * th * tw * o), x.dtype)
    s = take((2, 4, step, th, tw, o), x.dtype)
    even = oh % 2 == 0 and ow % 2 == 0
    yt = None if even else take((step, 2 * th, 2 * tw, o), x.dtype)
    for a in range(0, n, step):
        k = min(step, n - a)
        p = k * th * tw
        vk = v[:, :p * c].reshape(4, 4, k, th, tw, c)  # (16, p*c) -> (4, 4, k, th, tw, c)
        mk = m[:, :p * o].reshape(16, p, o)  # (16, p*o) -> (16, p, o)
        _input_transform(xp[a:a + k], th, tw, r[:, :k], vk)
        np.matmul(vk.reshape(16, p, c), u, out=mk)  # (16, tiles, c) · (16, c, o) -> (16, tiles, o)
        out = y[a:a + k] if even else yt[:k]
        _output_transform(mk.reshape(4, 4, k, th, tw, o), s[:, :, :k], out.reshape(k, th, 2, tw, 2, o))
        if not even:
            y[a:a + k] = yt[:k, :oh, :ow]
    for buf in (xp, r, v, m, s, yt):
        give(buf)


def conv_forward(x: np.ndarray, w: np.ndarray, pads, y: np.ndarray, take, give) -> None:
    """y (n, oh, ow, o) = conv2d(x, w) for a (3, 3, C, O) weight at stride 1, dilation 1, with pads
    ((top, bottom), (left, right)); no bias. `take(shape, dtype)`/`give(array)` lend scratch."""
    (t, _), (l, _) = pads  # noqa: E741
    _run(x, t, l, weight_transform(w), y, take, give)


def conv_input_grad(dy: np.ndarray, w: np.ndarray, pads, dx: np.ndarray, take, give) -> None:
    """dx (n, h, w, c) = the input gradient of that conv for dy (n, oh, ow, o): the correlation of dy,
    padded by 2 − top at the top and 2 − left at the left (the bottom/right follow from the size), with
    the flipped, transposed kernel w[::-1, ::-1] as (3, 3, O, C). Every pad must be ≤ 2."""
    (t, _), (l, _) = pads  # noqa: E741
    wf = w[::-1, ::-1].transpose(0, 1, 3, 2)  # (3, 3, o, c)
    _run(dy, 2 - t, 2 - l, weight_transform(wf), dx, take, give)
