"""The windowing primitive shared by convolution and pooling: argument checks, padding, window views.

Sizes follow the output-size rule stated in `featuremaps.functional.conv`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["pair", "resolve_padding", "output_size", "check_nhwc", "pad_hw", "windows"]

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


def output_size(size: int, k: int, s: int, d: int, lo: int, hi: int, ceil_mode: bool = False) -> int:
    """One spatial output size, from the rule in `featuremaps.functional.conv`.

    With `ceil_mode` (pooling only) the division rounds up, but the last window must still start
    inside the input or its left padding, as in PyTorch.
    """
    span = size + lo + hi - d * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + lo:
        out -= 1
    return out


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
            eff = d * (k - 1) + 1
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


def windows(xp: np.ndarray, kernel_hw: tuple[int, int], stride_hw: tuple[int, int],
            dilation_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Read-only view of every window of a padded NHWC array: (N, OH, OW, KH, KW, C).

    Window (i, j) covers rows i·sh + p·dh and columns j·sw + q·dw of `xp`.
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel_hw, stride_hw, dilation_hw, out_hw
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    v = sliding_window_view(xp, (eh, ew), axis=(1, 2))  # (n, hp-eh+1, wp-ew+1, c, eh, ew)
    v = v[:, : (oh - 1) * sh + 1: sh, : (ow - 1) * sw + 1: sw, :, ::dh, ::dw]  # (n, oh, ow, c, kh, kw)
    return v.transpose(0, 1, 2, 4, 5, 3)  # (n, oh, ow, kh, kw, c)
