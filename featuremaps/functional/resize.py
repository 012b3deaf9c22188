"""Resizing channels-last maps (N, H, W, C): nearest and (bi)linear, as ONNX Resize defines them.

Each output row (and, independently, each output column) `i` is read from the input coordinate
`x = transform(i)`, the ONNX `coordinate_transformation_mode`, with `scale = out / in` (or the scale
given):

- 'half_pixel': x = (i + 0.5) / scale − 0.5;
- 'pytorch_half_pixel': the same, but 0 when the output axis has length 1;
- 'align_corners': x = i · (in − 1) / (out − 1) (0 when out = 1);
- 'asymmetric': x = i / scale.

'nearest' reads the input cell at `round(x)` by `nearest_mode` ('round_prefer_floor' and
'round_prefer_ceil' break .5 ties down / up, 'floor', 'ceil'), clipped to [0, in − 1]. 'linear'
clips x to [0, in − 1] and mixes the cells ⌊x⌋ and ⌊x⌋ + 1 (the last cell when past the end) with
weights 1 − f and f, f = x − ⌊x⌋: bilinear over H and W. The backward pass scatter-adds each output
gradient into the cells it was read from, times the same weights.

Coordinates are computed in float64. Where the exact coordinate is a rounding boundary (a .5 tie,
or an integer for 'floor' / 'ceil'), onnxruntime and PyTorch, which compute them in float32, may
read the neighbouring cell instead.

PyTorch's `interpolate`: mode='nearest' is 'asymmetric' + 'floor'; 'nearest-exact' is 'half_pixel' +
'round_prefer_ceil'; 'bilinear' is 'half_pixel' (align_corners=False; PyTorch keeps half-pixel centres
even for an output of length 1, where ONNX's 'pytorch_half_pixel' reads cell 0) or 'align_corners'.
"""
from __future__ import annotations

import numpy as np

from ..tensor import apply
from ._checks import floating

__all__ = ["resize", "source_coordinates", "MODES", "COORDINATE_MODES", "NEAREST_MODES"]

MODES = ("nearest", "linear")
COORDINATE_MODES = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def source_coordinates(n_out: int, n_in: int, mode: str, scale: float | None = None) -> np.ndarray:
    """The input coordinate (float64) each of `n_out` output cells reads, by ONNX's `mode`."""
    scale = n_out / n_in if scale is None else float(scale)
    i = np.arange(n_out, dtype=np.float64)
    if mode == "asymmetric":
        return i / scale
    if mode == "align_corners":
        return np.zeros(n_out) if n_out == 1 else i * (n_in - 1) / (n_out - 1)
    if mode == "pytorch_half_pixel" and n_out == 1:
        return np.zeros(1)
    return (i + 0.5) / scale - 0.5  # half_pixel and pytorch_half_pixel


def _nearest_taps(coord: np.ndarray, n_in: int, nearest_mode: str):
    down = np.floor(coord)
    if nearest_mode in ("floor", "ceil"):
        rounded = down if nearest_mode == "floor" else np.ceil(coord)
    else:  # a tie is tested exactly (never by rounding coord + 0.5, which can itself round up to a tie)
        tie = coord == down + 0.5
        rounded = np.where(tie, down + (nearest_mode == "round_prefer_ceil"), np.rint(coord))
    return [(np.clip(rounded, 0, n_in - 1).astype(np.intp), None)]


def _linear_taps(coord: np.ndarray, n_in: int):
    c = np.clip(coord, 0, n_in - 1)
    lo = np.floor(c).astype(np.intp)
    frac = c - lo
    return [(lo, 1 - frac), (np.minimum(lo + 1, n_in - 1), frac)]


def _gather(x, axis: int, taps):
    out = None
    for idx, w in taps:
        part = np.take(x, idx, axis=axis)
        if w is not None:
            shape = [1] * x.ndim
            shape[axis] = w.size
            part = part * w.astype(x.dtype).reshape(shape)  # weight broadcast along `axis`
        out = part if out is None else out + part
    return out


def _scatter(g, axis: int, n_in: int, taps):
    moved = np.moveaxis(g, axis, 0)  # (n_out, ...)
    folded = np.zeros((n_in,) + moved.shape[1:], dtype=g.dtype)  # (n_in, ...)
    for idx, w in taps:
        part = moved if w is None else moved * w.astype(g.dtype).reshape((-1,) + (1,) * (moved.ndim - 1))
        np.add.at(folded, idx, part)
    return np.moveaxis(folded, 0, axis)


def _resize_forward(x, needs, taps_h, taps_w):
    out = _gather(_gather(x, 1, taps_h), 2, taps_w)
    return out, (x.shape, taps_h, taps_w)


def _resize_backward(ctx, g, needs):
    shape, taps_h, taps_w = ctx
    g = _scatter(g, 2, shape[2], taps_w)
    return (np.ascontiguousarray(_scatter(g, 1, shape[1], taps_h)),)


def _choice(value, name: str, allowed: tuple) -> str:
    if value not in allowed:
        raise ValueError(f"resize: {name} must be one of {', '.join(allowed)}; received {value!r}")
    return value


def _pair(value, name: str, kind, check) -> tuple:
    try:
        pair = tuple(value)
        ok = len(pair) == 2 and all(isinstance(v, kind) and not isinstance(v, (bool, np.bool_)) and check(v)
                                    for v in pair)
    except TypeError:
        ok = False
    if not ok:
        what = "positive ints" if kind is not float else "positive numbers"
        raise ValueError(f"resize: {name} must be a pair (height, width) of {what}; received {value!r}")
    return pair


def resize(x, size_hw, mode: str = "nearest", coordinate_transformation_mode: str = "half_pixel",
           nearest_mode: str = "round_prefer_floor", scales=None):
    """Resize NHWC maps to `size_hw` = (H_out, W_out) (see the module docstring for the rules).

    `scales` = (scale_h, scale_w) replaces out / in in the coordinate transform, as ONNX Resize does
    when it is given scales rather than sizes (and PyTorch with an explicit `scale_factor`); it does
    not change the output size. `nearest_mode` is read only when `mode` is 'nearest'.
    """
    x = floating(x, "x", "resize")
    if x.ndim != 4:
        raise ValueError(f"resize: x must be (N, H, W, C) maps; received shape {x.shape}")
    h_out, w_out = (int(v) for v in _pair(size_hw, "size_hw", (int, np.integer), lambda v: v >= 1))
    _choice(mode, "mode", MODES)
    _choice(coordinate_transformation_mode, "coordinate_transformation_mode", COORDINATE_MODES)
    _choice(nearest_mode, "nearest_mode", NEAREST_MODES)
    if scales is not None:
        scales = tuple(float(s) for s in _pair(scales, "scales", (int, float, np.integer, np.floating),
                                               lambda v: np.isfinite(v) and v > 0))
    _, h, w, _ = x.shape
    if h < 1 or w < 1:
        raise ValueError(f"resize: x must have at least one row and one column; received shape {x.shape}")
    taps = []
    for n_out, n_in, k in ((h_out, h, 0), (w_out, w, 1)):
        coord = source_coordinates(n_out, n_in, coordinate_transformation_mode, None if scales is None else scales[k])
        taps.append(_nearest_taps(coord, n_in, nearest_mode) if mode == "nearest" else _linear_taps(coord, n_in))
    return apply(_resize_forward, _resize_backward, x, taps_h=taps[0], taps_w=taps[1])
