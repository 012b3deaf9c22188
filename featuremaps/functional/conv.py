"""Convolution. THE formula and output-size rule of featuremaps live here; other docs point here.

Layouts are channels-last: input x is (N, H, W, C_in), weight w is (KH, KW, C_in // groups, C_out)
("HWIO"), bias b is (C_out,), output y is (N, OH, OW, C_out). Like TensorFlow and PyTorch, "conv"
means cross-correlation (the kernel is not flipped):

    y[n, i, j, o] = b[o] + Σ_{c ∈ C(o)} Σ_{p < kh} Σ_{q < kw} w[p, q, c, o] · x̃[n, i·sh + p·dh, j·sw + q·dw, c]

x̃ is the zero-padded input; (sh, sw) is the stride and (dh, dw) the dilation. C(o) is the set of
input maps that output map o reads: all of them, the maps of o's group (``groups``), or o's row of
the boolean connection table (``connections[:, o]``, as in LeNet-5's layer C3). The output size is

    oh = ⌊(h + pad_top + pad_bottom − dh·(kh − 1) − 1) / sh⌋ + 1        (and likewise ow)

Each output map has ONE three-dimensional kernel, ``w[:, :, :, o]``, that spans all of its input
maps at once and sums over them. So 32 input maps and 64 kernels of 3×3×32 give 64 output maps,
not 32 × 64: the sum over c is what mixes the input maps into each new feature.

Padding forms: an int, a pair (ph, pw), ((top, bottom), (left, right)), 'valid' (none), 'same'
(output ceil(size / stride), TensorFlow's rule at any stride: an odd extra pixel goes to the
bottom/right) and 'full' (every partial overlap: dilation·(k − 1) on each side).

Strategy: one entry point per op (`conv2d`, and `conv_transpose2d` for its adjoint) with several
strategies, chosen per call from the shapes (every path is exact in float64). The window geometry
(taps, output size, clipping, col2im) is `featuremaps.functional.window.Geometry`'s.

* **im2col + one GEMM.** The windows of x̃ are copied into a column matrix ``cols`` of shape
  (M, KH·KW·C) with M = N·OH·OW (per group: (G, M, KH·KW·C/G)), and ``y = cols · W + b``. (Folding
  b into the GEMM as a column of ones was tried and dropped: the odd row length slowed the large
  GEMMs.) When the input has one channel, ``cols`` is built transposed, (KH·KW, M), so each copy is
  a run of OW pixels instead of KW single values; BLAS takes either orientation without a copy.
  There the bias *is* folded in, as one more row of ones in colsᵀ (one contiguous fill), which
  saves the bias pass over y; db then comes out of the dW GEMM as its last row. A
  1×1 kernel at stride 1 without padding uses x itself as ``cols``. BLAS may round a row differently
  depending on its position in the matrix, so identical images in one batch can give outputs that
  differ in the last bit.
* **One GEMM per tap** (`featuremaps.functional.taps`; one group, the rule's choice with many input
  maps and few output maps): no column matrix; each tap's rows are one contiguous run of the flat
  padded input (of its phase plane, for a strided layer), multiplied by W[p, q] and added up, and
  dW[p, q] is that run's transpose times dy.
* **im2col in blocks** (`featuremaps.functional.colblocks`; the rule's choice for a large column
  matrix): the columns built and multiplied a cache-sized block of output rows at a time, never
  whole in memory; dW rebuilds them block by block. The other algorithms (Winograd, the compiled
  direct conv) and how each layer's choice is made are in `featuremaps.functional.conv_algos`.
* **Backward from the same pieces.** ``dW = colsᵀ · dy`` reuses the forward's column matrix;
  ``db = ones(M) · dy``, a GEMV (faster than ``dy.sum(axis=0)``; bench/README.md). ``dx`` (the
  transposed convolution of dy): with stride 1 along W, and when its scratch fits (`_use_rows`),
  the KW-wide row windows of dy form a matrix R (KW× the size of dy), and one GEMM with the
  reversed kernel gives each kernel row's contribution to whole rows of dx, added with KH shifted
  adds; with few input maps these adds run channel-major (C, N, H, W) and one transposing pass adds
  the result into dx. Otherwise ``dcols = dy · Wᵀ`` in one GEMM and its KH·KW column blocks are
  added into their strided windows ("col2im", `Geometry.scatter_add`). A strided layer with many
  input maps and few output maps (`conv_algos.phases_pays`) splits dx instead into its sh·sw
  phases (rows a, a + sh, …; columns b, b + sw, …), each a stride-1 conv of dy with the kernel taps
  that reach it (`Axis.phase`), run by the forward machinery above ("phases"). With numba and a
  large column matrix (`colblocks.dx_pays`), col2im runs a cache-sized block of output rows at a
  time instead ("blocks_numba", `colblocks.input_grad`). ``dx`` is skipped when x
  does not need a gradient (an input layer), ``dW`` (and so keeping ``cols``) when w does not.
* **Transposed convolution** is the adjoint: its forward *is* the ``dx`` computation above and its
  backward is the forward convolution (for the input) and ``dW`` (for the weight) on the same
  column matrix.
* **Depthwise** (groups == C_in > 1) has only KH·KW multiply-adds per output, too few for a GEMM:
  the forward and dW are each one ``einsum`` over the window view of x̃ (no column matrix), and dx
  is the same einsum over dy spread out by the stride, with the kernel flipped.
* **Connection tables** run as a dense convolution with the weight multiplied by the table, or as
  `groups` when the table is block-diagonal (see `conv2d`); unconnected weights get a gradient of
  exactly 0.
* **Compiled kernels** (optional, `featuremaps.functional.accel`): with numba installed, the row
  windows and row adds of the dx paths above, and the col2im block adds (one group), run as numba
  kernels, bit-identical to the NumPy code.
* **Threads.** BLAS runs the GEMMs on its own threads; the element-wise work (padding, the im2col
  copies, the col2im adds, the depthwise einsums) is split by image over two threads from 4 MiB of
  work up (`featuremaps.functional.threads`), since NumPy's loops release the GIL.
* **Memory.** Scratch buffers come from a small pool and are reused across calls and shapes,
  because fresh pages are slow to fault in (bench/README.md). A pooled buffer is never returned to
  the caller, and the pool takes back only the buffers it lent (never a caller's array). The
  ``cols`` kept for the backward pass is owned by that pass and goes back to the pool right after
  ``dW``, before ``dx`` needs scratch, and the row-window path is used only when its buffers fit in
  twice the column matrix, so a step's scratch stays within about twice the column matrix (plus the
  padded input). `set_max_workspace_bytes` (or the `workspace_limit` context) caps them: the batch
  is then processed in chunks of whole images and the backward pass recomputes each chunk's columns
  instead of keeping them.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Iterator, NamedTuple

import numpy as np

from ..tensor import Tensor, apply, as_array
from . import _direct, accel, colblocks, conv_algos, taps, winograd
from .conv_algos import ConvAlgorithm
from .conv_algos import is_depthwise as _is_depthwise, is_pointwise as _pointwise, use_rows as _use_rows
from .conv_algos import rows_scratch_per_image as _rows_scratch_per_image
from .threads import in_threads
from .window import Axis, Geometry, check_nhwc, clip, pad_hw, pair, resolve_padding

__all__ = ["conv2d", "conv_transpose2d", "conv_output_size", "conv_algorithm", "set_max_workspace_bytes",
           "get_max_workspace_bytes", "workspace_limit", "release_workspace"]


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------
class _Shape(NamedTuple):
    """A conv's shapes: the window `geo` over the *forward* conv's input (H, W) and output (OH, OW)
    (a transposed conv uses the same geometry read backwards), the batch n, the input maps c, the
    output maps o and the groups."""
    geo: Geometry
    n: int
    c: int
    o: int
    groups: int

    @property
    def m(self) -> int:
        return self.n * self.geo.h.out * self.geo.w.out


def _Geom(n, h, w, c, kh, kw, sh, sw, dh, dw, top, bottom, left, right, oh, ow, o, groups) -> _Shape:
    """The former flat geometry's argument order, for tests written against it (tests/test_conv.py)."""
    return _Shape(Geometry(Axis(h, kh, sh, dh, top, bottom, oh), Axis(w, kw, sw, dw, left, right, ow)), n, c, o, groups)


def conv_output_size(size_hw, kernel_hw, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """(OH, OW) of a convolution, by the output-size rule in this module's docstring.

    Accepts every padding form `conv2d` accepts. Runs nothing; raises ValueError when the kernel
    does not fit in the padded input (an output size below 1).
    """
    op = "conv_output_size"
    size = pair(size_hw, "size_hw", minimum=1, op=op)
    kernel = pair(kernel_hw, "kernel_hw", minimum=1, op=op)
    return Geometry.of(size, kernel, stride, padding, dilation, op=op).check(op).out_hw


def _operands(x, w, b, op: str, layout: str) -> tuple:
    """The arrays behind x, w and b (None stays None), checked: x NHWC, w 4-D `layout`, one dtype."""
    xa, wa = as_array(x), as_array(w)
    ba = None if b is None else as_array(b)
    check_nhwc(xa, "x", op=op)
    check_nhwc(wa, "w", op=op, layout=layout)
    _check_dtypes(xa, wa, ba, op)
    return xa, wa, ba


def _check_dtypes(x: np.ndarray, w: np.ndarray, b, op: str) -> None:
    if x.dtype != w.dtype:
        raise TypeError(f"{op}: x has dtype {x.dtype} but w has dtype {w.dtype}; they must match. "
                        f"Cast one of them, e.g. x.astype(w.dtype) or w.astype(x.dtype).")
    if b is not None and b.dtype != w.dtype:
        raise TypeError(f"{op}: b has dtype {b.dtype} but w has dtype {w.dtype}; they must match. "
                        f"Cast it with b.astype(w.dtype).")


def _nchw_hint(shape: tuple, channels: int) -> str:
    """A layout hint for a channel mismatch when `shape` looks like NCHW (axis 1 holds the channels)."""
    if len(shape) == 4 and shape[1] == channels != shape[3]:
        return (f"; the input {tuple(shape)} looks like NCHW (N, C, H, W), but featuremaps expects NHWC "
                "(N, H, W, C): pass x.transpose(0, 2, 3, 1)")
    return ""


def _check_bias(b, c_out: int, op: str) -> None:
    if b is None:
        return
    if not isinstance(b, np.ndarray):
        raise TypeError(f"{op}: b must be an ndarray, Tensor or None; received {type(b).__name__}")
    if b.shape != (c_out,):
        raise ValueError(f"{op}: b must have shape ({c_out},) (one bias per output map); received {b.shape}")


def _check_groups(groups, c_in: int, c_out: int, op: str) -> int:
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"{op}: groups must be a positive int; received {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"{op}: groups must be ≥ 1; received {groups}")
    if c_in % groups:
        raise ValueError(f"{op}: groups={groups} must divide the {c_in} input channels")
    if c_out % groups:
        raise ValueError(f"{op}: groups={groups} must divide the {c_out} output channels")
    return groups


def _check_connections(connections, c_in: int, c_out: int, groups: int) -> np.ndarray:
    table = connections.data if isinstance(connections, Tensor) else connections
    if not isinstance(table, np.ndarray):
        raise TypeError(f"conv2d: connections must be a boolean ndarray of shape ({c_in}, {c_out}); "
                        f"received {type(connections).__name__}")
    if table.dtype != np.bool_:
        raise TypeError(f"conv2d: connections must have dtype bool (True where input map i feeds output "
                        f"map o); received {table.dtype}. Use table.astype(bool).")
    if table.shape != (c_in, c_out):
        raise ValueError(f"conv2d: connections must have shape (C_in, C_out) = ({c_in}, {c_out}); "
                         f"received {table.shape}")
    if groups != 1:
        raise ValueError(f"conv2d: connections replaces groups; pass groups=1 with it, received groups={groups}")
    empty = np.flatnonzero(~table.any(axis=0))
    if empty.size:
        raise ValueError(f"conv2d: connections gives output map(s) {empty.tolist()} no input map; "
                         f"every output map needs at least one True in its column")
    return table


# --------------------------------------------------------------------------------------------
# The scratch-buffer pool and the workspace limit
# --------------------------------------------------------------------------------------------
class _Pool:
    """Scratch memory reused across calls, by size: `take(shape, dtype)` returns an array viewing a
    pooled byte buffer (the smallest free one that fits and is not more than about twice too big,
    else a new one) that the caller owns until it hands it back with `give`. Arrays handed to the
    user never come from here. At most `max_bytes` (with a workspace cap, twice the cap) of free
    buffers are kept, the oldest dropped first; `release_workspace()` drops them all.

    The pool only ever takes back the arrays `take` lent, recognised by identity: anything else
    given to it (a caller's own array, a view of one, an array over a bytes object) is ignored, so a
    caller's memory can never become scratch."""

    def __init__(self, max_bytes: int = 768 << 20):
        self.max_bytes = max_bytes
        self._free: list[np.ndarray] = []  # 1-D uint8 buffers, oldest first
        self._lent: dict[int, tuple[weakref.ref, np.ndarray]] = {}  # id(lent array) -> (it, its buffer)
        self._lock = threading.Lock()

    def take(self, shape: tuple, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        with self._lock:
            fits = [i for i, buf in enumerate(self._free) if nbytes <= buf.size <= 2 * nbytes + (1 << 20)]
            buf = self._free.pop(min(fits, key=lambda i: self._free[i].size)) if fits else None
        if buf is None:
            buf = np.empty(nbytes, np.uint8)
        arr = buf[:nbytes].view(dtype).reshape(shape)  # (nbytes,) uint8 -> `shape` of `dtype`
        key = id(arr)
        # dropped without being given back (an exception on the way): forget it. dict.pop is atomic,
        # so the callback needs no lock (it may run inside one, from a garbage collection).
        self._lent[key] = (weakref.ref(arr, lambda _, k=key: self._lent.pop(k, None)), buf)
        return arr

    def give(self, arr: np.ndarray | None) -> None:
        """Hand back an array that `take` returned; anything else (None included) is ignored."""
        entry = self._lent.get(id(arr))
        if entry is None or entry[0]() is not arr:  # None, or not lent by this pool
            return
        cap = get_max_workspace_bytes()
        keep = self.max_bytes if cap is None else min(self.max_bytes, 2 * cap)
        with self._lock:
            if self._lent.pop(id(arr), None) is None:  # given back twice at once
                return
            buf = entry[1]
            if buf.size > self.max_bytes:
                return
            self._free.append(buf)
            total = sum(b.size for b in self._free)
            while total > keep and self._free:
                total -= self._free.pop(0).size

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


_pool = _Pool()
_ones_cache: dict[tuple, np.ndarray] = {}
_limit = threading.local()
_default_limit: list[int | None] = [None]


def release_workspace() -> None:
    """Free the scratch buffers conv keeps for reuse between calls (they are re-allocated on demand)."""
    _pool.clear()


def set_max_workspace_bytes(n: int | None) -> None:
    """Cap the scratch memory (column matrix + input-gradient scratch) of one conv step at `n` bytes, or
    lift the cap with None (the default). Above the cap the batch is processed in chunks of whole
    images (at least one image per chunk). Results agree up to rounding: the weight gradient sums
    the chunks in another order, and BLAS may round a row differently at another position in the
    matrix (in the tests' shapes y and dx come out bit-identical). (Depthwise convs have no column
    matrix: their scratch, about the size of the input, is not chunked.)"""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"set_max_workspace_bytes: n must be a positive int or None; received {n!r}")
    _default_limit[0] = None if n is None else int(n)


def get_max_workspace_bytes() -> int | None:
    """The workspace cap in force (see `set_max_workspace_bytes`)."""
    return getattr(_limit, "value", _default_limit[0])


@contextlib.contextmanager
def workspace_limit(n: int | None) -> Iterator[None]:
    """Context manager: `set_max_workspace_bytes(n)` for the calls made inside it (this thread)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"workspace_limit: n must be a positive int or None; received {n!r}")
    had = hasattr(_limit, "value")
    prev = getattr(_limit, "value", None)
    _limit.value = None if n is None else int(n)
    try:
        yield
    finally:
        if had:
            _limit.value = prev
        else:
            del _limit.value


def _scratch_per_image(g: _Shape) -> int:
    """Peak scratch values per image of one conv step: the padded input and the column matrix
    (forward, dW), or the input gradient's buffers (which reuse the columns' memory once dW is done)."""
    gh, gw = g.geo
    cols = gh.out * gw.out * gh.k * gw.k * g.c
    backward = _rows_scratch_per_image(g) if _use_rows(g) else cols
    return max(gh.padded * gw.padded * g.c + cols, backward)


def _batch_chunks(g: _Shape, itemsize: int) -> list[tuple[int, int]]:
    """Image ranges [n0, n1) whose peak scratch (`_scratch_per_image`) fits the cap."""
    cap = get_max_workspace_bytes()
    per_image = _scratch_per_image(g) * itemsize
    if cap is None or per_image * g.n <= cap:
        return [(0, g.n)]
    step = max(1, cap // per_image)
    return [(n0, min(n0 + step, g.n)) for n0 in range(0, g.n, step)]


def _ones(m: int, dtype) -> np.ndarray:
    key = (m, np.dtype(dtype).str)
    ones = _ones_cache.get(key)
    if ones is None:
        if len(_ones_cache) > 32:
            _ones_cache.clear()
        ones = _ones_cache[key] = np.ones(m, dtype)
        ones.flags.writeable = False
    return ones


# --------------------------------------------------------------------------------------------
# The pieces: im2col, the forward GEMM, dW, col2im (dx)
# --------------------------------------------------------------------------------------------
def _pad(x: np.ndarray, g: _Shape) -> np.ndarray:
    """x̃ in a pooled buffer (or x itself when there is no padding)."""
    pads = g.geo.pads
    (t, b), (l, r) = pads  # noqa: E741
    if t == b == l == r == 0:
        return x
    n, h, w, c = x.shape
    buf = _pool.take((n, h + t + b, w + l + r, c), x.dtype)
    in_threads(n, lambda a, z: pad_hw(x[a:z], pads, out=buf[a:z]), buf.nbytes)
    return buf


def _im2col(xp: np.ndarray, g: _Shape, ones: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Column matrix of the padded input: returns (cols, buffer), cols of shape (G, M, KH·KW·C/G),
    row m = (n, i, j), column (p, q, c). `buffer` is the pooled array behind cols (give it back;
    None when cols is a view of x). With `ones` (one input map only, see `_folds_bias`) cols gets a
    last column of ones, (1, M, KH·KW + 1), for the bias."""
    gh, gw = g.geo
    n, kh, kw, oh, ow = xp.shape[0], gh.k, gw.k, gh.out, gw.out
    G, c = g.groups, g.c
    m = n * oh * ow
    k = kh * kw * (c // G)
    if _pointwise(g):
        return xp.reshape(1, m, c), None  # (1, m, c): a 1×1 kernel at stride 1 reads x as it is, no copy
    if c == 1:
        # One input map: build colsᵀ, (KH·KW, N, OH, OW), from KH·KW copies of runs of OW pixels.
        buf = _pool.take((k + ones, n, oh, ow), xp.dtype)
        if ones:
            buf[k] = 1  # a row of colsᵀ: the bias column
        rows, cols = [gh.tap(p) for p in range(kh)], [gw.tap(q) for q in range(kw)]

        def work(a: int, z: int) -> None:
            for p, rs in enumerate(rows):
                for q, cs in enumerate(cols):
                    buf[p * kw + q, a:z] = xp[a:z, rs, cs, 0]  # (z-a, oh, ow)
        in_threads(n, work, buf.nbytes)
        return buf.reshape(1, k + ones, m).transpose(0, 2, 1), buf  # (1, m, k [+ 1]), F-ordered
    cg = c // G
    buf = _pool.take((G, n, oh, ow, kh, kw, cg), xp.dtype)
    win = g.geo.windows(xp)  # (n, oh, ow, kh, kw, c) view
    win = win.reshape(n, oh, ow, kh, kw, G, cg).transpose(5, 0, 1, 2, 3, 4, 6)  # (G, n, oh, ow, kh, kw, cg)
    in_threads(n, lambda a, z: np.copyto(buf[:, a:z], win[:, a:z]), buf.nbytes)
    return buf.reshape(G, m, k), buf  # (G, m, kh*kw*cg)


def _grouped_weight(w: np.ndarray, G: int) -> np.ndarray:
    """(KH, KW, Cg, O) -> (G, KH·KW·Cg, O/G): group g's weight as a GEMM operand."""
    kh, kw, cg, o = w.shape
    return w.reshape(kh * kw * cg, G, o // G).transpose(1, 0, 2)  # (G, kh*kw*cg, og)


def _gemm_forward(cols: np.ndarray, w: np.ndarray, y2d: np.ndarray, G: int) -> None:
    """y2d (M, O) = cols · W, per group."""
    wg = _grouped_weight(w, G)
    if G == 1:
        np.matmul(cols[0], wg[0], out=y2d)
    else:
        m, o = y2d.shape
        # (G, m, kh*kw*cg) · (G, kh*kw*cg, og) -> (G, m, og), a view of y2d (m, o)
        np.matmul(cols, wg, out=y2d.reshape(m, G, o // G).transpose(1, 0, 2))


def _cols_t_dy(c0: np.ndarray, dy2d: np.ndarray, orient: str) -> np.ndarray:
    """colsᵀ · dy, (K, O), in the GEMM orientation `orient` (`conv_algos`: BLAS runs the two at
    different speeds, e.g. colsᵀ · dy slowed down 10× on LeNet's C3 with two busy threads)."""
    if orient == "dy_t_cols":
        return (np.ascontiguousarray(dy2d.T) @ c0).T  # (o, m)·(m, k) -> (o, k), ᵀ -> (k, o)
    return c0.T @ dy2d  # (k, m)·(m, o) -> (k, o)


def _weight_grad(cols: np.ndarray, dy2d: np.ndarray, w_shape: tuple, G: int, orient: str = "cols_t_dy") -> np.ndarray:
    """dW = colsᵀ · dy, back in HWIO."""
    kh, kw, cg, o = w_shape
    if G == 1:
        return _cols_t_dy(cols[0], dy2d, orient).reshape(w_shape)  # (kh*kw*c, o) -> HWIO
    m = dy2d.shape[0]
    dyg = dy2d.reshape(m, G, o // G).transpose(1, 0, 2)  # (G, m, og)
    dwg = np.matmul(cols.transpose(0, 2, 1), dyg)  # (G, kh*kw*cg, og)
    return dwg.transpose(1, 0, 2).reshape(w_shape)  # (kh*kw*cg, G, og) -> (kh, kw, cg, o)


def _col2im(dy2d: np.ndarray, w: np.ndarray, g: _Shape, dx: np.ndarray, how: str) -> None:
    """The input gradient of the conv (the transposed convolution of dy) into dx, which holds zeros,
    by the `conv_algos` dx algorithm `how` (pointwise, rows[_numba], col2im[_numba], phases,
    blocks_numba; not winograd)."""
    if how == "pointwise":
        np.matmul(dy2d, w.reshape(g.c, g.o).T, out=dx.reshape(-1, g.c))  # (m, o) · (o, c) -> (m, c)
    elif how in ("rows", "rows_numba"):
        _col2im_rows(dy2d, w, g, dx, how == "rows_numba")
    elif how == "phases":
        _col2im_phases(dy2d, w, g, dx)
    elif how == "blocks_numba" and dx.shape[0] == g.n and (fast := accel.kernels(dy2d, w, dx)) is not None:
        dy = dy2d.reshape(g.n, *g.geo.out_hw, g.o)  # (n, oh, ow, o)
        colblocks.input_grad(dy, w, g, dx, _pool.take, _pool.give, fast)
    else:  # col2im[_numba]; blocks_numba in a batch chunk or without the compiled kernels
        _col2im_cols(dy2d, w, g, dx, how != "col2im")


def _col2im_rows(dy2d: np.ndarray, w: np.ndarray, g: _Shape, dx: np.ndarray, compiled: bool) -> None:
    """Input gradient for stride 1 along W, from KW-wide row windows of dy.

    For input column x, kernel column q reads output column j = x + left − q·dw. So the windows of
    KW output columns of dy (with q reversed) form a matrix R of shape (N·OH·W, KW·C_out), built
    once; one GEMM with the reversed kernel, R · [W[p, ::-1]ᵀ for every p], gives each kernel row's
    contribution to whole rows of dx, added with KH shifted adds (instead of KH·KW GEMMs and adds).
    R is KW× the size of dy: usually smaller than the forward's column matrix, but not with many
    more output maps than input maps, which is why `_use_rows` checks the scratch first."""
    (n, kh, kw, cg, o), (gh, gw) = (dx.shape[0], *w.shape), g.geo
    G, og, dw, oh, h, wd = g.groups, o // g.groups, gw.d, gh.out, gh.size, gw.size
    dy = dy2d.reshape(n, oh, gw.out, o)  # (n, oh, ow, o)
    # dy padded/cropped along W so that column t holds dy[..., t + j_lo, :] (zero outside [0, OW))
    j_lo, width = gw.lo - (gw.span - 1), wd + gw.span - 1
    rows_buf = _pool.take((G, n, oh, wd, kw, og), dx.dtype)
    fast = accel.kernels(dy, dx) if G == 1 and compiled else None
    if fast is not None:  # the same copy, without the widened dy
        in_threads(n, lambda i0, i1: fast.dy_row_windows(dy[i0:i1], kw, dw, j_lo, rows_buf[0, i0:i1]), rows_buf.nbytes)
    else:
        dyw = _pool.take((n, oh, width, o), dx.dtype)
        a, b = max(0, -j_lo), min(width, gw.out - j_lo)  # columns of dyw that hold real dy
        win = Geometry(Axis.of(oh, 1), Axis.of(width, kw, 1, dw)).windows(dyw)  # (n, oh, w, 1, kw, o) view
        win = win.reshape(n, oh, wd, kw, G, og).transpose(4, 0, 1, 2, 3, 5)  # (G, n, oh, w, kw, og)

        def build(i0: int, i1: int) -> None:
            dyw[i0:i1, :, :a] = 0
            dyw[i0:i1, :, max(a, b):] = 0
            if b > a:
                dyw[i0:i1, :, a:b] = dy[i0:i1, :, a + j_lo: b + j_lo]
            np.copyto(rows_buf[:, i0:i1], win[:, i0:i1])
        in_threads(n, build, rows_buf.nbytes)
        _pool.give(dyw)
    mw = n * oh * wd
    r = rows_buf.reshape(G, mw, kw * og)  # (G, n*oh*w, kw*og)
    # wr[G, (q', og), (p, cg)] = w[p, kw-1-q', cg, g*og + og]: all kernel rows in one GEMM
    wr = np.ascontiguousarray(w[:, ::-1].reshape(kh, kw, cg, G, og).transpose(3, 1, 4, 0, 2)  # (G, kw, og, kh, cg)
                              ).reshape(G, kw * og, kh * cg)  # (G, kw*og, kh*cg)
    row_slices = [gh.clipped(p) for p in range(kh)]
    if fast is not None and not (G == 1 and cg < 16):  # kernel row p's output rows [i0, i1), first input row r0
        spans = np.array([(0, 0, 0) if rs is None else (rs[0].start, rs[0].stop, rs[1].start) for rs in row_slices],
                         dtype=np.int64).T  # (3, kh)
    if G == 1 and cg < 16:
        # Few input maps: adds over runs of C values would be short, so accumulate channel-major,
        # (C, n, h, w), where each shifted add is a run of whole image rows, then add it into dx
        # with one transposing pass.
        out = _pool.take((kh, cg, mw), dx.dtype)
        np.matmul(wr[0].T, r[0].T, out=out.reshape(kh * cg, mw))  # (kh*cg, n*oh*w)
        _pool.give(rows_buf)
        out5 = out.reshape(kh, cg, n, oh, wd)  # (kh, c, n, oh, w)
        dxt = _pool.take((cg, n, h, wd), dx.dtype)

        def add_channel_major(i0: int, i1: int) -> None:
            dxt[:, i0:i1] = 0
            for p, rows in enumerate(row_slices):
                if rows is not None:
                    dxt[:, i0:i1, rows[1]] += out5[p, :, i0:i1, rows[0]]
            dx[i0:i1] += dxt[:, i0:i1].transpose(1, 2, 3, 0)  # (n, h, w, c)
        in_threads(n, add_channel_major, out.nbytes)
        _pool.give(dxt)
        _pool.give(out)
        return
    out = _pool.take((G, mw, kh * cg), dx.dtype)
    np.matmul(r, wr, out=out)  # (G, n*oh*w, kh*cg)
    _pool.give(rows_buf)
    if fast is not None:
        out5 = out.reshape(n, oh, wd, kh, cg)  # (n, oh, w, kh, c), G == 1
        in_threads(n, lambda i0, i1: fast.add_row_blocks(out5[i0:i1], *spans, gh.s, dx[i0:i1]), out.nbytes)
        _pool.give(out)
        return
    out6 = out.reshape(G, n, oh, wd, kh, cg).transpose(1, 2, 3, 4, 0, 5)  # (n, oh, w, kh, G, cg)
    dx5 = dx.reshape(n, h, wd, G, cg)  # (n, h, w, G, cg)

    def add(i0: int, i1: int) -> None:
        for p, rows in enumerate(row_slices):
            if rows is not None:
                dx5[i0:i1, rows[1]] += out6[i0:i1, rows[0], :, p]
    in_threads(n, add, out.nbytes)
    _pool.give(out)


def _col2im_cols(dy2d: np.ndarray, w: np.ndarray, g: _Shape, dx: np.ndarray, compiled: bool) -> None:
    """Input gradient for any stride: the column gradient dcols = dy · Wᵀ in one GEMM (per group),
    then each of its KH·KW column blocks added into its strided window of dx: col2im,
    `Geometry.scatter_add` (or its numba twin), on the unpadded dx directly, each block clipped to
    the rows/columns that land inside the input (the rest fell on padding)."""
    n = dx.shape[0]
    kh, kw, cg, o = w.shape
    gh, gw = g.geo
    G = g.groups
    og = o // G
    m = n * gh.out * gw.out
    k = kh * kw * cg
    dcols = _pool.take((G, m, k), dx.dtype)
    if G == 1:
        np.matmul(dy2d, w.reshape(k, o).T, out=dcols[0])  # (m, o) · (o, kh*kw*c) -> (m, kh*kw*c)
        blocks, out = dcols.reshape(n, gh.out, gw.out, kh, kw, cg), dx  # (n, oh, ow, kh, kw, c)
    else:
        dyg = dy2d.reshape(m, G, og).transpose(1, 0, 2)  # (G, m, og)
        np.matmul(dyg, _grouped_weight(w, G).transpose(0, 2, 1), out=dcols)  # (G, m, kh*kw*cg)
        # (G, m, kh*kw*cg) -> (n, oh, ow, kh, kw, G, cg)
        blocks = dcols.reshape(G, n, gh.out, gw.out, kh, kw, cg).transpose(1, 2, 3, 4, 5, 0, 6)
        out = dx.reshape(n, gh.size, gw.size, G, cg)  # (n, h, w, G, cg)
    fast = accel.kernels(dcols, dx) if G == 1 and compiled else None
    in_threads(n, lambda i0, i1: g.geo.scatter_add(out[i0:i1], blocks[i0:i1], fast),
               dcols.nbytes if fast is None else dx.nbytes)
    _pool.give(dcols)


def _col2im_phases(dy2d: np.ndarray, w: np.ndarray, g: _Shape, dx: np.ndarray) -> None:
    """Input gradient for a strided conv as sh·sw stride-1 convolutions of dy, one per phase.

    The input positions (a + u·sh, b + v·sw) of phase (a, b) are read only by the kernel taps that
    `Axis.phase` lists, at outputs u + off, so that phase of dx is a plain stride-1 conv of dy
    (cropped and padded) with the sub-kernel of those taps: in HWIO with in = C_out and out = C_in,
    w_phase[p', q', o, c] = w[P[p'], Q[q'], c, o] (per group). Each phase runs the forward conv
    (`_conv`), and its result is stored into the strided slice dx[:, a::sh, b::sw]; a phase no tap
    reaches stays zero. Its columns hold KH·KW·C_out values per dy pixel in all, where col2im adds
    KH·KW·C_in, so it pays with many input maps and few output maps (`conv_algos.phases_pays`)."""
    n = dx.shape[0]
    kh, kw, cg, o = w.shape
    gh, gw = g.geo
    G, og = g.groups, o // g.groups
    dy = dy2d.reshape(n, gh.out, gw.out, o)  # (n, oh, ow, o)
    for a in range(gh.s):
        rows = gh.phase(a)
        for b in range(gw.s if rows else 0):
            cols = gw.phase(b)
            if cols is None:
                continue
            (taps_h, skip_h, ah), (taps_w, skip_w, aw) = rows, cols
            sub = w[taps_h][:, taps_w].reshape(ah.k, aw.k, cg, G, og)  # (th, tw, cg, G, og)
            sub = np.ascontiguousarray(sub.transpose(0, 1, 4, 3, 2)).reshape(ah.k, aw.k, og, G * cg)  # (th, tw, og, c)
            phase = _Shape(Geometry(ah, aw), n, o, G * cg, G)
            with conv_algos.use_conv_algorithm():  # a choice forced for the layer is not the phase's
                dx[:, a::gh.s, b::gw.s] = _conv(dy[:, skip_h:, skip_w:], sub, phase, False)[0]  # (n, U, V, c)


# --------------------------------------------------------------------------------------------
# Depthwise: one einsum over the window view, no column matrix
# --------------------------------------------------------------------------------------------
def _dw_forward(xp: np.ndarray, w: np.ndarray, g: _Shape, y: np.ndarray) -> None:
    """y[..., c·mult + j] = Σ_{p,q} x̃[n, i·sh + p·dh, j·sw + q·dw, c] · w[p, q, 0, c·mult + j]:
    the module formula with groups = C, as one einsum per thread over the windows of x̃."""
    n, c, mult = y.shape[0], g.c, g.o // g.c
    (kh, kw), (oh, ow) = g.geo.kernel, g.geo.out_hw
    win = g.geo.windows(xp)  # (n, oh, ow, kh, kw, c) view
    if mult == 1:
        wk = w.reshape(kh, kw, c)  # (kh, kw, 1, c) -> (kh, kw, c)
        in_threads(n, lambda a, z: np.einsum("nhwpqc,pqc->nhwc", win[a:z], wk, out=y[a:z]), 4 * y.nbytes)
    elif mult >= _DW_GEMM_MULT:
        wk = w.reshape(kh * kw, c, mult).transpose(1, 0, 2)  # (kh*kw, c, mult) -> (c, kh*kw, mult)
        y5 = y.reshape(n, oh, ow, c, mult)  # (n, oh, ow, c, mult)
        y5[...] = np.matmul(_dw_columns(win), wk).reshape(c, n, oh, ow, mult).transpose(1, 2, 3, 0, 4)
    else:
        wk = w.reshape(kh, kw, c, mult)  # (kh, kw, 1, c*mult) -> (kh, kw, c, mult)
        y5 = y.reshape(n, oh, ow, c, mult)  # (n, oh, ow, c, mult)
        in_threads(n, lambda a, z: np.einsum("nhwpqc,pqcj->nhwcj", win[a:z], wk, out=y5[a:z]), 4 * y.nbytes)


# A channel multiplier from which one batched GEMM per input channel beats the einsum (measured on
# 3 -> 45 maps, 5x5, 32x32, batch 64: a training step of the whole model 125 -> 47 ms; bench/README.md).
_DW_GEMM_MULT = 4


def _dw_columns(win: np.ndarray) -> np.ndarray:
    """The window view as one column matrix per input channel, (c, n*oh*ow, kh*kw)."""
    n, oh, ow, kh, kw, c = win.shape
    # (n, oh, ow, kh, kw, c) -> (c, n, oh, ow, kh, kw) -> (c, n*oh*ow, kh*kw)
    return np.ascontiguousarray(win.transpose(5, 0, 1, 2, 3, 4)).reshape(c, n * oh * ow, kh * kw)


def _dw_weight_grad(xp: np.ndarray, dy: np.ndarray, g: _Shape) -> np.ndarray:
    """dW[p, q, 0, c·mult + j] = Σ_{n,i,j'} x̃_{p,q}[n, i, j', c] · dy[n, i, j', c·mult + j]."""
    n, c, mult = dy.shape[0], g.c, g.o // g.c
    (kh, kw), (oh, ow) = g.geo.kernel, g.geo.out_hw
    win = g.geo.windows(xp)  # (n, oh, ow, kh, kw, c) view
    dy5 = dy.reshape(n, oh, ow, c, mult)  # (n, oh, ow, c, mult)
    if mult >= _DW_GEMM_MULT:
        dyc = dy5.transpose(3, 0, 1, 2, 4).reshape(c, n * oh * ow, mult)  # (c, n*oh*ow, mult)
        dw = np.matmul(_dw_columns(win).transpose(0, 2, 1), dyc)  # (c, kh*kw, mult)
        # (c, kh*kw, mult) -> (kh*kw, c, mult) -> (kh, kw, 1, c*mult)
        return np.ascontiguousarray(dw.transpose(1, 0, 2)).reshape(kh, kw, 1, g.o)
    parts = in_threads(n, lambda a, z: np.einsum("nhwpqc,nhwcj->pqcj", win[a:z], dy5[a:z]), 4 * dy.nbytes)
    dw = parts[0]
    for part in parts[1:]:
        dw += part
    return dw.reshape(kh, kw, 1, g.o)  # (kh, kw, c, mult) -> (kh, kw, 1, c*mult)


def _dw_input_grad(dy: np.ndarray, w: np.ndarray, g: _Shape) -> np.ndarray:
    """dx as a depthwise convolution of dy with the flipped kernel: dy is spread out by the stride
    into a zero grid u, with row i at u = i·sh + dh·(kh − 1) − top (likewise columns), and then
    dx[n, r, x, c] = Σ_{p',q'} u[n, r + p'·dh, x + q'·dw, c·mult + j] · w[kh−1−p', kw−1−q', 0, c·mult + j]."""
    n, c, mult = dy.shape[0], g.c, g.o // g.c
    gh, gw = g.geo
    hu, wu = gh.size + gh.span - 1, gw.size + gw.span - 1
    rows = clip(gh.span - 1 - gh.lo, hu, gh.out, gh.s)  # dy rows that land in u, and where
    cols_ = clip(gw.span - 1 - gw.lo, wu, gw.out, gw.s)
    u = _pool.take((n, hu, wu, g.o), dy.dtype)

    def spread(a: int, z: int) -> None:
        u[a:z] = 0
        if rows is not None and cols_ is not None:
            u[a:z, rows[1], cols_[1]] = dy[a:z, rows[0], cols_[0]]
    in_threads(n, spread, u.nbytes)
    win = Geometry(Axis.of(hu, gh.k, 1, gh.d), Axis.of(wu, gw.k, 1, gw.d)).windows(u)  # (n, h, w, kh, kw, o) view
    wf = w[::-1, ::-1].reshape(gh.k, gw.k, c, mult)  # flipped kernel, (kh, kw, c, mult)
    dx = np.empty((n, gh.size, gw.size, c), dy.dtype)
    if mult == 1:
        in_threads(n, lambda a, z: np.einsum("nhwpqc,pqc->nhwc", win[a:z], wf[..., 0], out=dx[a:z]), 4 * u.nbytes)
    else:
        win7 = win.reshape(n, gh.size, gw.size, gh.k, gw.k, c, mult)  # (n, h, w, kh, kw, c, mult) view
        in_threads(n, lambda a, z: np.einsum("nhwpqcj,pqcj->nhwc", win7[a:z], wf, out=dx[a:z]), 4 * u.nbytes)
    _pool.give(u)
    return dx


# --------------------------------------------------------------------------------------------
# The three computations every conv is made of
# --------------------------------------------------------------------------------------------
def _folds_bias(g: _Shape) -> bool:
    """One input map (transposed cols): the bias rides in the GEMM as a row of ones in colsᵀ, which
    saves the separate bias pass over y, and db comes out of the dW GEMM as its last row."""
    return g.c == 1 and g.groups == 1 and not _pointwise(g)


def _bias_grad(dy2d: np.ndarray) -> np.ndarray:
    return _ones(dy2d.shape[0], dy2d.dtype) @ dy2d


def _select(g: _Shape, dtype, train: bool) -> ConvAlgorithm:
    """The algorithms this layer runs (`conv_algos.choose`; `_trials` are what the autotuner times)."""
    return conv_algos.choose(g, dtype, train, _trials)


def _conv(x: np.ndarray, w: np.ndarray, g: _Shape, keep_cols: bool, b: np.ndarray | None = None,
          algo: ConvAlgorithm | None = None):
    """y = conv(x, w) + b. Returns (y, cols, cols_buffer); cols only when asked, the forward
    algorithm builds them (im2col) and the batch fits the workspace cap in one chunk."""
    algo = algo or _select(g, x.dtype, keep_cols)
    (kh, kw), (oh, ow) = g.geo.kernel, g.geo.out_hw
    y = np.empty((g.n, oh, ow, g.o), x.dtype)
    kept = (None, None)
    if algo.forward == "depthwise":
        xp = _pad(x, g)
        _dw_forward(xp, w, g, y)
        _pool.give(xp)  # x itself when there is no padding: the pool takes back only its own buffers
    elif algo.forward == "winograd":
        with np.errstate(invalid="ignore", over="ignore"):  # a non-finite result is redone just below
            winograd.conv_forward(x, w, g.geo.pads, y, _pool.take, _pool.give)
        if not np.isfinite(y.sum()):  # NaN/inf (or overflow): its transforms turn ±inf into NaN; redo as the reference
            return _conv(x, w, g, keep_cols, b, algo._replace(forward="im2col"))
    elif algo.forward == "taps":
        xp = _pad(np.ascontiguousarray(x), g)
        taps.conv_forward(xp, np.ascontiguousarray(w), g, y, b, _pool.take, _pool.give)
        b = None  # added in its last pass
        _pool.give(xp)
    elif algo.forward == "blocks":
        xp = _pad(x, g)
        colblocks.conv_forward(xp, w, g, y, _pool.take, _pool.give)
        _pool.give(xp)
    elif algo.forward == "direct":
        xp = _pad(np.ascontiguousarray(x), g)
        planes = _direct.conv_forward(xp, np.ascontiguousarray(w), g.geo.stride, g.geo.dilation, y, b)
        b = None  # added in the kernel's pass
        _pool.give(xp)
        if keep_cols and algo.dw == "direct":
            kept = (planes, None)  # dW reads the planes instead of a column matrix
    else:
        chunks = _batch_chunks(g, x.itemsize)
        y2d = y.reshape(g.m, g.o)  # (n*oh*ow, o)
        per = oh * ow
        fold = b is not None and _folds_bias(g)
        if fold:  # the bias as one more weight row, against the column of ones
            w = np.concatenate([w.reshape(kh * kw, g.o), b[None]]).reshape(1, 1, kh * kw + 1, g.o)  # (1, 1, kh*kw+1, o)
            b = None
        for n0, n1 in chunks:
            xp = _pad(x[n0:n1], g)
            cols, buf = _im2col(xp, g, ones=fold)
            _pool.give(xp)
            _gemm_forward(cols, w, y2d[n0 * per: n1 * per], g.groups)
            if keep_cols and len(chunks) == 1 and algo.dw not in ("taps", "direct", "blocks"):  # dW reads no columns
                kept = (cols, buf)
            else:
                _pool.give(buf)
    if b is not None:
        in_threads(g.n, lambda a, z: np.add(y[a:z], b, out=y[a:z]), y.nbytes)
    return (y, *kept)


def _conv_grads(x, w, dy, g: _Shape, need_x: bool, need_w: bool, kept=None, need_b: bool = False,
                algo: ConvAlgorithm | None = None):
    """(dx, dW, db) of y = conv(x, w) + b for the output gradient dy. `kept` is the forward's
    (cols, buffer) when it was kept: then x is not read for dW, and the buffer goes back to the pool
    right after dW, before dx needs scratch memory. db = ones · dy; None when not needed."""
    algo = algo or _select(g, dy.dtype, need_w)
    cols, kept_buf = kept if kept is not None else (None, None)
    dx = dw = db = None
    if need_w and algo.dw == "direct":
        dw = _direct_weight_grad(x, dy, w.shape, g, cols)
        need_w = dw is None  # None: non-finite input, which takes the column path below
        algo = algo._replace(dw="cols_t_dy") if need_w else algo
    if need_w and algo.dw == "taps":
        dw = _taps_weight_grad(x, dy, w.shape, g)
        need_w = dw is None  # None: non-finite input, which takes the column path below
        algo = algo._replace(dw="cols_t_dy") if need_w else algo
    if need_w and algo.dw == "blocks":
        dw, need_w = _blocks_weight_grad(x, dy, w.shape, g), False
    if isinstance(cols, _direct.Planes):  # the direct conv's planes: no columns kept
        cols = None
    if algo.dx == "winograd" and need_x:  # one chunk: winograd is not offered under a workspace cap
        dx = np.empty((g.n, *g.geo.size_hw, g.c), dy.dtype)
        with np.errstate(invalid="ignore", over="ignore"):  # a non-finite result is redone just below
            winograd.conv_input_grad(dy, w, g.geo.pads, dx, _pool.take, _pool.give)
        if not np.isfinite(dx.sum()):  # as in `_conv`: non-finite values take the reference path
            ref = algo._replace(dx=conv_algos.rule(g, dy.dtype).dx)
            dx, dw_, db = _conv_grads(x, w, dy, g, True, need_w, kept, need_b, ref)
            return dx, (dw if dw_ is None else dw_), db
        if not need_w:
            _pool.give(kept_buf)
            return dx, dw, (_bias_grad(dy.reshape(-1, g.o)) if need_b else None)  # (n*oh*ow, o)
        need_x = False
    if _is_depthwise(g):
        dx = _dw_input_grad(dy, w, g) if need_x else None
        if need_w:
            xp = _pad(x, g)
            dw = _dw_weight_grad(xp, dy, g)
            _pool.give(xp)
    else:
        if need_x:
            dx = np.zeros((g.n, *g.geo.size_hw, g.c), dy.dtype)
        dy2d = dy.reshape(g.m, g.o)  # (n*oh*ow, o)
        per = g.geo.h.out * g.geo.w.out
        chunks = [(0, g.n)] if cols is not None else _batch_chunks(g, dy.itemsize)
        for n0, n1 in chunks:
            d = dy2d[n0 * per: n1 * per]
            if need_w:
                buf = None
                if cols is None:
                    xp = _pad(x[n0:n1], g)
                    c_, buf = _im2col(xp, g)
                    _pool.give(xp)
                else:
                    c_ = cols
                if c_.shape[2] == w.shape[0] * w.shape[1] * g.c + 1:  # kept cols with the bias column (`_folds_bias`)
                    both = _cols_t_dy(c_[0], d, algo.dw)  # (kh*kw + 1, o)
                    part, db = both[:-1].reshape(w.shape), (both[-1].copy() if need_b else None)  # (kh, kw, 1, o), (o,)
                    need_b = False
                else:
                    part = _weight_grad(c_, d, w.shape, g.groups, algo.dw)
                dw = part if dw is None else dw + part
                _pool.give(buf)
            _pool.give(kept_buf)
            kept_buf = None
            if need_x:
                _col2im(d, w, g, dx[n0:n1], algo.dx)
    if need_b:
        db = _bias_grad(dy.reshape(-1, g.o))  # (n*oh*ow, o)
    return dx, dw, db


def _direct_weight_grad(x, dy, w_shape: tuple, g: _Shape, kept):
    """dW by the direct kernel, from the forward's planes when it kept them (`kept`), else from x;
    None when x holds NaN or ±inf (`_direct.weight_grad`)."""
    if not isinstance(kept, _direct.Planes):
        xp = _pad(np.ascontiguousarray(x), g)
        kept = _direct.planes(xp, g.geo.kernel, g.geo.stride, g.geo.dilation, g.geo.out_hw)
        _pool.give(xp)
    return _direct.weight_grad(kept, dy, w_shape)


def _blocks_weight_grad(x, dy, w_shape: tuple, g: _Shape) -> np.ndarray:
    """dW by the blocked im2col (`colblocks.weight_grad`): the columns rebuilt block by block, each
    block's GEMM in the rule's orientation."""
    kh, kw, c, o = w_shape
    orient = "dy_t_cols" if conv_algos.dy_t_orientation_pays(kh * kw * c, o) else "cols_t_dy"
    xp = _pad(x, g)
    dw = colblocks.weight_grad(xp, dy, w_shape, g, _pool.take, _pool.give, orient)
    _pool.give(xp)
    return dw


def _taps_weight_grad(x, dy, w_shape: tuple, g: _Shape):
    """dW by one GEMM per tap (`taps.weight_grad`); None when x holds NaN or ±inf: its dropped rows
    pair input pixels with zeros of dy, and 0 · inf would put a NaN where the columns have none."""
    xp = _pad(np.ascontiguousarray(x), g)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(xp.sum())  # an overflowing sum of finite values also takes the column path
    dw = taps.weight_grad(xp, dy, w_shape, g, _pool.take, _pool.give) if finite else None
    _pool.give(xp)
    return dw


# --------------------------------------------------------------------------------------------
# What the autotuner times, and the public record of the choice
# --------------------------------------------------------------------------------------------
def _trials(g: _Shape, dtype, train: bool, allowed: dict) -> dict:
    """{part: {algorithm: zero-argument run}} on seeded data of the layer's shape, for the parts
    with more than one candidate (`conv_algos.choose`). A forward that builds no column matrix is
    charged for building it when the weight gradient will need it (train)."""
    rng = np.random.default_rng(0)
    (kh, kw), (oh, ow) = g.geo.kernel, g.geo.out_hw
    cg = g.c // g.groups
    x = rng.standard_normal((g.n, *g.geo.size_hw, g.c)).astype(dtype)
    w = (rng.standard_normal((kh, kw, cg, g.o)) / np.sqrt(kh * kw * cg)).astype(dtype)
    dy = rng.standard_normal((g.n, oh, ow, g.o)).astype(dtype)
    base = conv_algos.rule(g, dtype, train)
    runs: dict[str, dict] = {}

    def forward(name: str):
        def run() -> None:
            _, _, buf = _conv(x, w, g, train, algo=base._replace(forward=name))
            if train and name == "winograd":  # direct keeps its planes for the direct dW, offered alongside
                xp = _pad(x, g)
                buf = _im2col(xp, g)[1]
                _pool.give(xp)
            _pool.give(buf)
        return run

    def weight(cols: np.ndarray, name: str):
        if name == "direct":  # from x: its planes are built inside the timing, as the columns are not
            return lambda: _direct_weight_grad(x, dy, w.shape, g, None)
        if name == "taps":  # from x: no columns
            return lambda: _taps_weight_grad(x, dy, w.shape, g)
        if name == "blocks":  # from x, its columns rebuilt block by block inside the timing
            return lambda: _blocks_weight_grad(x, dy, w.shape, g)
        return lambda: _weight_grad(cols, dy.reshape(g.m, g.o), w.shape, g.groups, name)  # (n*oh*ow, o)

    def input_grad(name: str):
        return lambda: _conv_grads(x, w, dy, g, True, False, algo=base._replace(dx=name))
    if len(allowed["forward"]) > 1:
        runs["forward"] = {name: forward(name) for name in allowed["forward"]}
    if train and len(allowed["dw"]) > 1:
        xp = _pad(x, g)
        cols = _im2col(xp, g)[0]  # its pooled buffer is dropped with it, after the timing
        _pool.give(xp)
        runs["dw"] = {name: weight(cols, name) for name in allowed["dw"]}
    if len(allowed["dx"]) > 1:
        runs["dx"] = {name: input_grad(name) for name in allowed["dx"]}
    return runs


def _layer_shape(x_shape, w_shape, groups, stride, padding, dilation, op: str) -> _Shape:
    """The checked geometry of a conv2d of x (N, H, W, C_in) with w (KH, KW, C_in // groups, C_out)."""
    n, h, wd, c = x_shape
    kh, kw, cg, o = w_shape
    groups = _check_groups(groups, c, o, op)
    if c != cg * groups:
        raise ValueError(f"{op}: input has {c} channels but the weight expects {cg * groups} "
                         f"(w.shape[2] * groups = {cg} * {groups})" + _nchw_hint(tuple(x_shape), cg * groups))
    s = pair(stride, "stride", op=op)
    d = pair(dilation, "dilation", op=op)
    pads = resolve_padding(padding, (h, wd), (kh, kw), s, d, op=op)
    return _Shape(Geometry.from_pairs((h, wd), (kh, kw), s, pads, d).check(op), n, c, o, groups)


def _shape4(shape, name: str, op: str) -> tuple:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 4
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise ValueError(f"{op}: {name} must be 4 positive ints; received {shape!r}")
    return tuple(int(v) for v in shape)


def conv_algorithm(x_shape, w_shape, *, stride=1, padding=0, dilation=1, groups=1, dtype=np.float32,
                   train: bool = True) -> ConvAlgorithm:
    """What `conv2d` runs for this layer, and why: a `ConvAlgorithm` record (forward, dw, dx, why).

    x_shape: (N, H, W, C_in); w_shape: (KH, KW, C_in // groups, C_out); the other arguments as for
    `conv2d`; train: whether the weight gradient is computed (an inference layer is tuned on its
    forward alone). With autotuning on this runs the one-time tuning if the shape is new (see
    `featuremaps.functional.conv_algos` for the candidates and how they are chosen)."""
    op = "conv_algorithm"
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{op}: dtype must be a floating dtype; received {dtype}")
    g = _layer_shape(_shape4(x_shape, "x_shape", op), _shape4(w_shape, "w_shape", op), groups, stride, padding,
                     dilation, op)
    return _select(g, dtype, bool(train))


# --------------------------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------------------------
def _table_groups(table: np.ndarray) -> int:
    """G > 1 when the connection table is exactly block-diagonal with G equal blocks (input maps
    g·C/G.. feed output maps g·O/G..), i.e. plain `groups`; else 1."""
    c, o = table.shape
    cg = int(table[:, 0].sum())
    if cg == c or c % cg:
        return 1
    G = c // cg
    if o % G:
        return 1
    block = np.kron(np.eye(G, dtype=bool), np.ones((cg, o // G), dtype=bool))
    return G if np.array_equal(table, block) else 1


def _diagonal_blocks(w: np.ndarray, G: int) -> np.ndarray:
    """(KH, KW, C, O) with a block-diagonal table -> the grouped weight (KH, KW, C/G, O)."""
    kh, kw, c, o = w.shape
    w6 = w.reshape(kh, kw, G, c // G, G, o // G)  # (kh, kw, G, cg, G, og)
    return np.einsum("abgcgd->abcgd", w6).reshape(kh, kw, c // G, o)  # diagonal (kh, kw, cg, G, og) -> (kh, kw, cg, o)


def _conv2d_forward(x, w, *b, needs, g, mask, blocks):
    if blocks:
        w_eff = _diagonal_blocks(w, g.groups)
    else:
        w_eff = w if mask is None else w * mask
    algo = _select(g, x.dtype, needs[1])
    y, cols, buf = _conv(x, w_eff, g, keep_cols=needs[1], b=b[0] if b else None, algo=algo)
    ctx = {"x": x, "w": w_eff, "g": g, "mask": mask, "blocks": blocks, "cols": cols, "buf": buf, "algo": algo}
    return y, ctx


def _conv2d_backward(ctx, dy, needs):
    g, mask = ctx["g"], ctx["mask"]
    dy = np.ascontiguousarray(dy)
    need_b = len(needs) == 3 and needs[2]
    kept = (ctx["cols"], ctx["buf"]) if ctx["cols"] is not None else None  # columns, or the direct conv's planes
    ctx["cols"] = ctx["buf"] = None  # the kept column matrix goes back to the pool; a second backward recomputes it
    dx, dw, db = _conv_grads(ctx["x"], ctx["w"], dy, g, needs[0], needs[1], kept, need_b, ctx["algo"])
    if dw is not None and ctx["blocks"]:  # grouped dW back into the (KH, KW, C, O) table layout
        G, (kh, kw, cg, o) = g.groups, dw.shape
        full = np.zeros((kh, kw, G, cg, G, o // G), dw.dtype)
        np.einsum("abgcgd->abcgd", full)[...] = dw.reshape(kh, kw, cg, G, o // G)  # onto the diagonal blocks
        dw = full.reshape(kh, kw, G * cg, o)  # (kh, kw, G, cg, G, og) -> (kh, kw, c, o)
    elif dw is not None and mask is not None:
        dw *= mask
    return (dx, dw, db) if len(needs) == 3 else (dx, dw)


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, connections=None):
    """2-D convolution of NHWC `x` with HWIO `w`, by the formula in this module's docstring.

    x: (N, H, W, C_in); w: (KH, KW, C_in // groups, C_out); b: (C_out,) or None. Returns
    (N, OH, OW, C_out), same kind (ndarray/Tensor) and dtype as the input.

    stride, dilation: int or (h, w) pair, ≥ 1. padding: see the module docstring.
    groups: split the input and output maps into `groups` blocks; output block g reads only input
    block g. groups == C_in is depthwise (C_out = k·C_in gives a channel multiplier k).
    connections: boolean (C_in, C_out) table (with groups=1 and w of shape (KH, KW, C_in, C_out)):
    output map o sums only over input maps i with connections[i, o], as in LeNet-5's C3 layer.
    The weights of unconnected pairs receive a gradient of exactly 0. A table that is exactly
    block-diagonal runs as `groups` (only the diagonal blocks are computed). Any other table runs
    as a dense convolution with w multiplied by the table: on LeNet's C3 (6 → 16 maps, 60 of 96
    connections) gathering each output map's inputs (grouped by fan-in) copies 10× more than the
    dense column matrix, and the dense GEMM is tiny next to the copies it saves (the timing is in
    bench/README.md).
    """
    op = "conv2d"
    xa, wa, ba = _operands(x, w, b, op, "(KH, KW, C_in // groups, C_out)")
    c, o = xa.shape[3], wa.shape[3]
    g = _layer_shape(xa.shape, wa.shape, groups, stride, padding, dilation, op)
    _check_bias(ba, o, op)
    mask, blocks = None, False
    if connections is not None:
        table = _check_connections(connections, c, o, groups)
        groups = _table_groups(table)
        blocks = groups > 1
        if not blocks and not table.all():
            mask = table.astype(wa.dtype)  # (c_in, c_out), broadcasts over (kh, kw)
        g = g._replace(groups=groups)
    inputs = (x, w) if b is None else (x, w, b)
    return apply(_conv2d_forward, _conv2d_backward, *inputs, g=g, mask=mask, blocks=blocks)


# --------------------------------------------------------------------------------------------
# conv_transpose2d: the adjoint of conv2d, built from the same pieces
# --------------------------------------------------------------------------------------------
def _convt_forward(x, w, *b, needs, g):
    # x plays the role of conv2d's output gradient dy; the result is conv2d's input gradient.
    x = np.ascontiguousarray(x)
    y = _conv_grads(None, w, x, g, True, False)[0]
    if b:
        y += b[0]
    return y, {"x": x, "w": w, "g": g}


def _convt_backward(ctx, dy, needs):
    # With A = conv2d's input-gradient map, y = A(x): dx = conv2d(dy) and dW = dW of conv2d(dy)
    # against the "output gradient" x, both from the column matrix of dy.
    x, w, g = ctx["x"], ctx["w"], ctx["g"]
    dy = np.ascontiguousarray(dy)
    dx = dw = cols = buf = None
    if needs[0]:
        dx, cols, buf = _conv(dy, w, g, keep_cols=needs[1])
    if needs[1]:
        dw = _conv_grads(dy, w, x, g, False, True, (cols, buf) if cols is not None else None)[1]
    grads = [dx, dw]
    if len(needs) == 3:
        grads.append(_bias_grad(dy.reshape(-1, g.c)) if needs[2] else None)  # (n*h*w, c_out)
    return tuple(grads)


def conv_transpose2d(x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed convolution: the exact adjoint of `conv2d` (its input gradient as a layer).

    Weight layout: w is the HWIO weight of the conv2d this is the adjoint of,
    (KH, KW, C_out // groups, C_in), where C_in is this op's input channels and C_out its output
    channels. (PyTorch's ConvTranspose weight, (C_in, C_out // groups, KH, KW), is the same tensor
    in OIHW order: ours = torch_w.permute(2, 3, 1, 0).) x: (N, H, W, C_in); b: (C_out,) or None.

    stride, padding, dilation and groups are those of that conv2d; the output size is
    OH = (H − 1)·sh − pad_top − pad_bottom + dh·(kh − 1) + output_padding + 1 (likewise OW), the
    largest input for which conv2d with these settings returns H rows. output_padding (int or pair)
    must be smaller than the stride or the dilation. String paddings: 'valid' (none); 'same' gives
    OH = H·sh with conv2d's 'same' padding of that size (output_padding must then be 0); 'full'
    pads dh·(kh − 1) on each side, as conv2d's 'full'.
    """
    op = "conv_transpose2d"
    xa, wa, ba = _operands(x, w, b, op, "(KH, KW, C_out // groups, C_in)")
    n, h, wd, c_in = xa.shape
    kh, kw, cg_out, wo = wa.shape
    if wo != c_in:
        raise ValueError(f"{op}: input has {c_in} channels but the weight expects {wo} (w.shape[3])"
                         + _nchw_hint(xa.shape, wo))
    groups = _check_groups(groups, c_in, c_in, op)  # C_out = cg_out * groups is a multiple by construction
    c_out = cg_out * groups
    _check_bias(ba, c_out, op)
    s = pair(stride, "stride", op=op)
    d = pair(dilation, "dilation", op=op)
    op_hw = pair(output_padding, "output_padding", minimum=0, op=op)
    for a, sa, da in zip(op_hw, s, d):
        if a >= max(sa, da):
            raise ValueError(f"{op}: output_padding must be smaller than the stride or the dilation; "
                             f"received output_padding={output_padding!r}, stride={stride!r}, dilation={dilation!r}")
    if isinstance(padding, str) and padding.lower() == "same":
        if op_hw != (0, 0):
            raise ValueError(f"{op}: output_padding must be 0 with padding='same'; received {output_padding!r}")
        geo = Geometry.of((h * s[0], wd * s[1]), (kh, kw), s, "same", d, op=op)  # its output is (h, wd)
    else:
        pads = resolve_padding(padding, (1, 1), (kh, kw), s, d, op=op)  # size-independent forms
        geo = Geometry.transposed((h, wd), (kh, kw), s, pads, d, op_hw)
    size = geo.size_hw
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"{op}: the output would be {size[0]}×{size[1]}; padding {padding!r} removes more "
                         f"than the {h}×{wd} input spreads to. Use less padding.")
    g = _Shape(geo, n, c_out, c_in, groups)
    inputs = (x, w) if b is None else (x, w, b)
    return apply(_convt_forward, _convt_backward, *inputs, g=g)
