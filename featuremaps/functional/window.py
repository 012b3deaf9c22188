"""The window geometry shared by convolution and pooling, and the helpers around it: argument
checks, padding forms, padding, window views and col2im.

`Geometry` is the one description of how a window op reads its input. Along each axis (an `Axis`)
an input of `size` positions is padded with `lo` before and `hi` after; window i's kernel offset p
reads padded position i·s + p·d, i.e. input position i·s + p·d − lo (on the padding when outside
[0, size)); the output size follows the rule stated in `featuremaps.functional.conv`. conv2d and
its transpose, the pooling ops, the layers' `compute_output_shape`, `inspect.receptive_field`,
`explain` and the report all build their geometry here.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Axis", "Geometry", "pair", "resolve_padding", "resolve_pool_padding", "clip", "dilated_span",
           "check_nhwc", "pad_hw"]

Pads = tuple[tuple[int, int], tuple[int, int]]


def pair(value, name: str, *, minimum: int = 1, op: str = "") -> tuple[int, int]:
    """An int or a pair of ints as a validated (h, w) pair, each ≥ `minimum`."""
    where = f"{op}: " if op else ""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}{name} must be an int or a pair of ints; received {value!r}")
    given = value
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    try:
        a, b = value
        if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
            raise TypeError
        if not (isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer))):
            raise TypeError
    except (TypeError, ValueError):
        raise TypeError(f"{where}{name} must be an int or a pair of ints; received {value!r}") from None
    if a < minimum or b < minimum:
        raise ValueError(f"{where}{name} must be ≥ {minimum}; received {given!r}")
    return int(a), int(b)


def dilated_span(k: int, d: int) -> int:
    """The positions a kernel of `k` taps `d` apart covers: d·(k − 1) + 1."""
    return d * (k - 1) + 1


def clip(offset: int, size: int, out: int, stride: int) -> tuple[slice, slice] | None:
    """The outputs i < `out` whose position i·stride + offset lies in [0, size): (the slice of those
    outputs, the slice of their positions), or None when there are none."""
    i0 = max(0, -(offset // stride))  # ceil(−offset / stride)
    i1 = min(out - 1, (size - 1 - offset) // stride)
    if i1 < i0:
        return None
    r0 = i0 * stride + offset
    return slice(i0, i1 + 1), slice(r0, r0 + (i1 - i0) * stride + 1, stride)


class Axis(NamedTuple):
    """One spatial axis of a window op: `out` windows of `k` taps `d` apart, stepping by `s`, over an
    input of `size` positions padded with `lo` before and `hi` after."""
    size: int
    k: int
    s: int
    d: int
    lo: int
    hi: int
    out: int

    @classmethod
    def of(cls, size: int, k: int, s: int = 1, d: int = 1, lo: int = 0, hi: int = 0,
           ceil_mode: bool = False) -> "Axis":
        """The axis with its output size by the rule in `featuremaps.functional.conv`,
        ⌊(size + lo + hi − d·(k − 1) − 1) / s⌋ + 1, or 0 when the kernel does not fit. With
        `ceil_mode` (pooling only) the division rounds up, but the last window must still start
        inside the input or its left padding, as in PyTorch."""
        room = size + lo + hi - dilated_span(k, d)
        if room < 0:
            return cls(size, k, s, d, lo, hi, 0)
        if not ceil_mode:
            return cls(size, k, s, d, lo, hi, room // s + 1)
        out = -(-room // s) + 1
        if (out - 1) * s >= size + lo:
            out -= 1
        return cls(size, k, s, d, lo, hi, out)

    @property
    def span(self) -> int:
        """The positions one window covers, d·(k − 1) + 1."""
        return dilated_span(self.k, self.d)

    @property
    def padded(self) -> int:
        return self.size + self.lo + self.hi

    @property
    def overhang(self) -> int:
        """How far the last window reaches past the padded input (ceil_mode only; else 0)."""
        return max((self.out - 1) * self.s + self.span - self.padded, 0)

    def tap(self, p: int) -> slice:
        """The padded positions kernel offset p reads, one per window: i·s + p·d for i < out."""
        start = p * self.d
        return slice(start, start + (self.out - 1) * self.s + 1, self.s)

    def tap_phase(self, p: int) -> tuple[int, int]:
        """(a, u): tap p reads padded position i·s + p·d = (i + u)·s + a, i.e. position i + u of
        the phase a (positions a, a + s, …)."""
        u, a = divmod(p * self.d, self.s)
        return a, u

    @property
    def phase_size(self) -> int:
        """Positions in the longest phase of the padded axis, ⌈padded / s⌉."""
        return -(-self.padded // self.s)

    def clipped(self, p: int) -> tuple[slice, slice] | None:
        """Tap p cut to the windows whose input position i·s + p·d − lo lies inside the input: (the
        slice of those windows, the slice of the input positions they read), or None."""
        return clip(p * self.d - self.lo, self.size, self.out, self.s)

    def inputs(self, i: int) -> np.ndarray:
        """The input positions of window i's k taps (< 0 or ≥ size: on the padding)."""
        return i * self.s - self.lo + np.arange(self.k) * self.d

    def starts(self) -> np.ndarray:
        """The input position of each window's first tap (< 0: on the padding)."""
        return np.arange(self.out) * self.s - self.lo

    def phase(self, a: int) -> tuple[list[int], int, "Axis"] | None:
        """Phase `a` of the adjoint (the input gradient): the input positions r = a + u·s (u < U)
        read output i = u + off_p through tap p, for each tap with a + lo − p·d ≡ 0 (mod s), where
        off_p = (a + lo − p·d) / s. Those offsets step by d / gcd(d, s), so the phase is a stride-1
        window over the outputs: returns (its taps p, in ascending offset, i.e. descending p; the
        outputs to skip first; the stride-1 `Axis` over the outputs left, U windows), or None when
        no tap or no position falls in the phase."""
        taps = [p for p in range(self.k - 1, -1, -1) if (a + self.lo - p * self.d) % self.s == 0]
        count = (self.size - a + self.s - 1) // self.s  # U: the input positions a, a + s, … < size
        if not taps or count <= 0:
            return None
        first = (a + self.lo - taps[0] * self.d) // self.s  # the smallest offset
        skip, lo = max(first, 0), max(-first, 0)
        size = self.out - skip
        if size <= 0:
            return None
        d = self.d // math.gcd(self.d, self.s)
        hi = max(0, count - 1 - lo + (len(taps) - 1) * d - (size - 1))
        return taps, skip, Axis(size, len(taps), 1, d, lo, hi, count)

    def reach(self, i0: int, i1: int) -> tuple[int, int]:
        """The first and last input positions (inclusive) that windows i0..i1 touch."""
        return i0 * self.s - self.lo, i1 * self.s - self.lo + self.span - 1


def _hw(a: int, b: int) -> str:
    return f"{a}×{b}"


class Geometry(NamedTuple):
    """How a window op (conv, pooling) reads an NHWC input: its `h` and `w` axes.

    Window (i, j) taps padded rows i·sh + p·dh (p < kh) and columns j·sw + q·dw (q < kw). Build it
    with `Geometry.of` (`from_pairs` when the arguments are already validated, `transposed` for
    conv_transpose2d's output); `check` raises the one error for a kernel larger than the padded
    input. Per-axis data lives on `h` and `w` (`Axis`); the (h, w) pairs are properties.
    """
    h: Axis
    w: Axis

    @classmethod
    def of(cls, size_hw, kernel, stride=1, padding=0, dilation=1, *, ceil_mode: bool = False,
           op: str = "", allow_strings: bool = True) -> "Geometry":
        """Validate the arguments (ints or (h, w) pairs; any padding form of `resolve_padding`) and
        build the geometry, its output size by the rule. Whether the kernel fits is `check`'s job."""
        k = pair(kernel, "kernel_size", op=op)
        s = pair(stride, "stride", op=op)
        d = pair(dilation, "dilation", op=op)
        pads = resolve_padding(padding, size_hw, k, s, d, op=op, allow_strings=allow_strings)
        return cls.from_pairs(size_hw, k, s, pads, d, ceil_mode)

    @classmethod
    def from_pairs(cls, size_hw, kernel, stride, pads: Pads, dilation, ceil_mode: bool = False) -> "Geometry":
        """`of` for arguments already validated: (h, w) pairs of ints and ((top, bottom), (left, right))."""
        (t, b), (l, r) = pads  # noqa: E741
        return cls(Axis.of(size_hw[0], kernel[0], stride[0], dilation[0], t, b, ceil_mode),
                   Axis.of(size_hw[1], kernel[1], stride[1], dilation[1], l, r, ceil_mode))

    @classmethod
    def transposed(cls, in_hw, kernel, stride, pads: Pads, dilation, output_padding) -> "Geometry":
        """The geometry of the conv2d that conv_transpose2d is the adjoint of: its output is the
        transposed conv's input `in_hw`, and its input size is the transposed conv's output,
        (H − 1)·s − lo − hi + d·(k − 1) + output_padding + 1 along each axis (may be < 1: check it)."""
        return cls(*(Axis((n - 1) * s + dilated_span(k, d) - lo - hi + a, k, s, d, lo, hi, n)
                     for n, k, s, d, (lo, hi), a in zip(in_hw, kernel, stride, dilation, pads, output_padding)))

    # --- the parameters as (h, w) pairs -------------------------------------------------------------
    @property
    def size_hw(self) -> tuple[int, int]:
        return self.h.size, self.w.size

    @property
    def kernel(self) -> tuple[int, int]:
        return self.h.k, self.w.k

    @property
    def stride(self) -> tuple[int, int]:
        return self.h.s, self.w.s

    @property
    def dilation(self) -> tuple[int, int]:
        return self.h.d, self.w.d

    @property
    def pads(self) -> Pads:
        """((top, bottom), (left, right))."""
        return (self.h.lo, self.h.hi), (self.w.lo, self.w.hi)

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.h.out, self.w.out

    @property
    def array_pads(self) -> Pads:
        """The pads plus what a ceil_mode window overhangs at the bottom/right: what to pad an array
        with so that every window's every tap is inside it."""
        return (self.h.lo, self.h.hi + self.h.overhang), (self.w.lo, self.w.hi + self.w.overhang)

    @property
    def tiles(self) -> bool:
        """True when the windows tile the input: stride == kernel, no dilation, padding or overhang
        (the last window ends inside the input: out·k ≤ size)."""
        h, w = self
        return (h.s == h.k and w.s == w.k and h.d == w.d == 1 and h.lo == h.hi == w.lo == w.hi == 0
                and h.out * h.k <= h.size and w.out * w.k <= w.size)

    # --- the one size error -------------------------------------------------------------------------
    def misfit(self) -> str | None:
        """Why there is no output (the kernel spans more than the padded input), or None."""
        if self.h.out >= 1 and self.w.out >= 1:
            return None
        h, w = self
        dil = "" if (h.d, w.d) == (1, 1) else f" (dilation {_hw(h.d, w.d)})"
        return (f"the kernel {_hw(h.k, w.k)}{dil} spans {_hw(h.span, w.span)} but the padded input is only "
                f"{_hw(h.padded, w.padded)} (input {_hw(h.size, w.size)}, padding {self.pads}); the output "
                f"would be {_hw(h.out, w.out)}")

    def check(self, op: str) -> "Geometry":
        """Raise the ValueError of `misfit` (named by `op`) unless every axis has an output; else self."""
        if self.h.out < 1 or self.w.out < 1:
            raise ValueError(f"{op}: {self.misfit()}. Use a smaller kernel, more padding or a larger input.")
        return self

    # --- taps, windows and their adjoint ------------------------------------------------------------
    def taps(self) -> list[tuple[int, int, int]]:
        """(index, p, q) for every kernel offset, in window order (row-major): index = p·kw + q."""
        kw = self.w.k
        return [(p * kw + q, p, q) for p in range(self.h.k) for q in range(kw)]

    def rows(self, i: int) -> np.ndarray:
        """Input rows (< 0 or ≥ H: padding) that output row i taps."""
        return self.h.inputs(i)

    def cols(self, j: int) -> np.ndarray:
        """Input columns (< 0 or ≥ W: padding) that output column j taps."""
        return self.w.inputs(j)

    def windows(self, xp: np.ndarray) -> np.ndarray:
        """Read-only view of every window of a padded NHWC array: (N, OH, OW, KH, KW, C); window
        (i, j) holds rows i·sh + p·dh and columns j·sw + q·dw of `xp`."""
        h, w = self
        v = sliding_window_view(xp, (h.span, w.span), axis=(1, 2))  # (n, hp - eh + 1, wp - ew + 1, c, eh, ew)
        v = v[:, h.tap(0), w.tap(0), :, ::h.d, ::w.d]  # (n, oh, ow, c, kh, kw)
        return v.transpose(0, 1, 2, 4, 5, 3)  # (n, oh, ow, kh, kw, c)

    def scatter_add(self, out: np.ndarray, blocks, kernels=None) -> None:
        """col2im, the adjoint of reading the windows: add every window's values back onto the input
        positions its taps read,

            out[n, i·sh + p·dh − top, j·sw + q·dw − left] += block(p, q)[n, i, j]

        tap by tap in row-major order (p, then q), dropping what falls on the padding. `out` is
        (N, H, W, ...) over the unpadded input. `blocks` is (N, OH, OW, KH, KW, ...), block (p, q)
        being blocks[:, :, :, p, q], or a function (p, q) -> that (N, OH, OW, ...) block. `kernels`
        (the module `accel.kernels(blocks, out)` returns) runs the numba twin `col2im_add` instead,
        bit-identical: blocks (N, OH, OW, KH, KW, C), out (N, H, W, C)."""
        h, w = self
        if kernels is not None:
            kernels.col2im_add(blocks, h.lo, w.lo, h.s, w.s, h.d, w.d, out)
            return
        rows = [h.clipped(p) for p in range(h.k)]
        cols = [w.clipped(q) for q in range(w.k)]
        per_tap = callable(blocks)
        for p, rs in enumerate(rows):
            if rs is None:
                continue
            for q, cs in enumerate(cols):
                if cs is None:
                    continue
                if per_tap:
                    out[:, rs[1], cs[1]] += blocks(p, q)[:, rs[0], cs[0]]
                else:
                    out[:, rs[1], cs[1]] += blocks[:, rs[0], cs[0], p, q]


def resolve_padding(padding, size_hw: tuple[int, int], kernel_hw: tuple[int, int],
                    stride_hw: tuple[int, int], dilation_hw: tuple[int, int] = (1, 1), *,
                    op: str = "conv2d", allow_strings: bool = True) -> Pads:
    """Turn any accepted padding form into ((top, bottom), (left, right)).

    Forms: an int; a pair (h, w); ((top, bottom), (left, right)); 'valid' (none); 'same' (the output
    is ceil(size / stride), TensorFlow's rule at any stride: an odd extra pixel goes bottom/right);
    'full' (every partial overlap: dilation·(k − 1) on each side).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if not allow_strings or mode not in ("valid", "same", "full"):
            allowed = "'valid', 'same', 'full', " if allow_strings else ""
            raise ValueError(f"{op}: padding must be {allowed}an int, a pair or ((top, bottom), (left, right)); "
                             f"received {padding!r}")
        if mode == "valid":
            return (0, 0), (0, 0)
        pads = []
        for n, k, s, d in zip(size_hw, kernel_hw, stride_hw, dilation_hw):
            eff = dilated_span(k, d)
            if mode == "full":
                pads.append((eff - 1, eff - 1))
            else:
                total = max((-(-n // s) - 1) * s + eff - n, 0)
                pads.append((total // 2, total - total // 2))
        return pads[0], pads[1]
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
        (t, b), (l, r) = padding  # noqa: E741
        for v in (t, b, l, r):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{op}: padding must hold non-negative ints; received {padding!r}")
        return (int(t), int(b)), (int(l), int(r))
    try:
        ph, pw = pair(padding, "padding", minimum=0, op=op)
    except TypeError:
        raise TypeError(f"{op}: padding must be 'valid', 'same', 'full', an int, a pair or "
                        f"((top, bottom), (left, right)); received {padding!r}") from None
    return (ph, ph), (pw, pw)


def resolve_pool_padding(padding, kernel_hw: tuple[int, int], op: str) -> Pads:
    """A pooling padding (an int, a pair or ((top, bottom), (left, right)); no string forms) as
    ((top, bottom), (left, right)), checked to be at most half the window, kernel_size // 2, on each
    side, as in PyTorch: then every window holds at least one input element."""
    pads = resolve_padding(padding, (1, 1), (1, 1), (1, 1), op=op, allow_strings=False)
    for (lo, hi), k, axis in zip(pads, kernel_hw, "HW"):
        if max(lo, hi) > k // 2:
            raise ValueError(f"{op}: padding must be at most half the window (kernel_size // 2 = {k // 2}) on "
                             f"each side along {axis}, as in PyTorch; received padding {padding!r} for a "
                             f"{_hw(*kernel_hw)} window")
    return pads


def check_nhwc(x: np.ndarray, name: str = "x", *, op: str, layout: str = "(N, H, W, C)") -> None:
    """Raise a clear error unless `x` is a 4-D floating array (`layout` names its axes in the message)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}: {name} must be an ndarray or Tensor; received {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{op}: {name} must be 4-D {layout}; received shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must have a floating dtype; received {x.dtype}")


def pad_hw(x: np.ndarray, pads: Pads, value: float = 0.0, *, out: np.ndarray | None = None) -> np.ndarray:
    """Pad the H and W axes of an NHWC array (returns `x` itself when there is nothing to pad).

    `out`, when given, is a scratch array of the padded shape and dtype to write into (every element
    is overwritten)."""
    (t, b), (l, r) = pads  # noqa: E741
    if t == b == l == r == 0:
        return x
    n, h, w, c = x.shape
    shape = (n, h + t + b, w + l + r, c)
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    elif out.shape != shape or out.dtype != x.dtype:
        raise ValueError(f"pad_hw: out must have shape {shape} and dtype {x.dtype}; received {out.shape}, {out.dtype}")
    out[:, :t] = value
    out[:, h + t:] = value
    out[:, t:h + t, :l] = value
    out[:, t:h + t, w + l:] = value
    out[:, t:h + t, l:w + l] = x
    return out
