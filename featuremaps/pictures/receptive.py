"""`receptive_field_overlay`: the exact input pixels that one output unit sees, on the input image
(or, without one, on a blank canvas of the model's input size).

The mask comes from `featuremaps.inspect.receptive_field(model, layer, position)`; it is exact (strides,
dilation and padding included), so with dilation or strided pooling it can have holes, which the
overlay shows as they are.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _mpl

__all__ = ["receptive_field_overlay"]


def receptive_field_overlay(model, x, layer: str, position: tuple[int, int],
                            path: str | Path | None = None, *, color=(1.0, 0.15, 0.1), alpha: float = 0.3):
    """Overlay the receptive field of unit `position` = (row, col) of layer `layer` on input `x`.

    `x` is one input (H, W, C) or a batch of one, or None: then the field is drawn on a blank (white)
    canvas of the model's input size, in `color` itself. Left panel: the whole image with the seen
    pixels tinted (by `alpha`), the others faded, and the bounding box outlined; right panel: the
    bounding box enlarged. Save a PNG at `path` (returns the Path) or return the Figure.
    """
    _mpl.require("receptive_field_overlay")
    from featuremaps.inspect import receptive_field

    mask, (rows, cols) = receptive_field(model, layer, tuple(position))
    mask = np.asarray(mask, dtype=bool)
    tint = np.asarray(color, dtype=np.float64)
    if x is None:  # a blank canvas: seen pixels in the tint, the others white
        over = np.ones(mask.shape + (3,))  # (H, W, 3)
        over[mask] = tint
        crop_src = over
    else:
        img = _one_input(x, mask.shape)
        rgb = _as_rgb(img)  # (H, W, 3) in [0, 1]
        over = 0.55 * rgb + 0.45  # pixels the unit does not see: faded toward white
        over[mask] = (1 - alpha) * rgb[mask] + alpha * tint
        crop_src = rgb
    return _draw(over, crop_src, mask, rows, cols, tint, layer, position, blank=x is None, path=path)


def _one_input(x, hw: tuple[int, int]) -> np.ndarray:
    """`x` as one (H, W, C) float image matching the model's input size `hw`, or a clear ValueError."""
    img = np.asarray(getattr(x, "data", x), dtype=np.float64)
    if img.ndim == 4:
        if img.shape[0] != 1:
            raise ValueError(f"receptive_field_overlay: x must be one input (H, W, C) or a batch of one; "
                             f"received shape {img.shape}")
        img = img[0]
    if img.ndim != 3:
        raise ValueError(f"receptive_field_overlay: x must be one input (H, W, C); received shape {img.shape}")
    if hw != img.shape[:2]:
        raise ValueError(f"receptive_field_overlay: the model's input is {hw} but x is {img.shape[:2]}")
    return img


def _draw(over, crop_src, mask, rows, cols, tint, layer, position, *, blank: bool, path):
    """Left: `over` (H, W, 3) with the field's bounding box; right: the box of `crop_src` enlarged."""
    from matplotlib.patches import Rectangle

    h, w = mask.shape
    r0, r1 = rows.start or 0, rows.stop if rows.stop is not None else h
    c0, c1 = cols.start or 0, cols.stop if cols.stop is not None else w

    fig = _mpl.figure(7.2, 3.9, dpi=100)
    ax = fig.add_axes((0.02, 0.04, 0.46, 0.76))
    ax.imshow(over, interpolation="nearest")
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor=tint,
                           linewidth=1.6))
    ax.set_title(f"input {h}×{w}" + (" (no image: a blank canvas)" if blank else ""), fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():  # a frame, so that a blank canvas shows where the input ends
        side.set_visible(blank)
        side.set_edgecolor("0.6")
    bx = fig.add_axes((0.52, 0.04, 0.46, 0.76))
    crop = crop_src[r0:r1, c0:c1].copy()  # what the unit sees (an image untinted); unseen pixels get hatched
    bx.imshow(crop, interpolation="nearest", extent=(c0 - 0.5, c1 - 0.5, r1 - 0.5, r0 - 0.5))
    unseen = [Rectangle((c - 0.5, r - 0.5), 1, 1) for r, c in zip(*np.nonzero(~mask[r0:r1, c0:c1]))]
    if unseen:
        from matplotlib.collections import PatchCollection
        unseen = [Rectangle((p.get_x() + c0, p.get_y() + r0), 1, 1) for p in unseen]
        bx.add_collection(PatchCollection(unseen, facecolor=(1, 1, 1, 0.75), edgecolor="0.5",
                                          hatch="///", linewidth=0.3))
    if blank and max(r1 - r0, c1 - c0) <= 64:  # no picture to look at: show the pixels instead
        bx.set_xticks(np.arange(c0 - 0.5, c1, 1), minor=True)
        bx.set_yticks(np.arange(r0 - 0.5, r1, 1), minor=True)
        bx.grid(which="minor", color="white", linewidth=0.5)
        bx.tick_params(which="minor", length=0)
    for side in bx.spines.values():
        side.set_edgecolor(tint)
        side.set_linewidth(1.2)
    bx.set_title(f"rows {r0}–{r1 - 1}, cols {c0}–{c1 - 1} enlarged"
                 + (" (hatched: not seen)" if unseen else ""), fontsize=8)
    bx.tick_params(labelsize=6, length=2)
    n_seen = int(mask.sum())
    unseen_in_box = (r1 - r0) * (c1 - c0) - n_seen
    holes = f" (holes: {unseen_in_box} pixels in the box are not seen)" if unseen_in_box else ""
    fig.suptitle(f"receptive field of {layer} at (row, col) = {tuple(int(p) for p in position)}: "
                 f"{n_seen} input pixels{holes}", fontsize=9)
    return _mpl.finish(fig, path)


def _as_rgb(img: np.ndarray) -> np.ndarray:
    """(H, W, C) → (H, W, 3) in [0, 1]: grey repeated, RGB min–max scaled, other C use channel mean."""
    if img.shape[2] == 3:
        a = img
    else:
        a = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    lo, hi = a.min(), a.max()
    a = np.full_like(a, 0.5) if hi <= lo else (a - lo) / (hi - lo)
    return a * 0.85 + 0.075 if img.shape[2] != 3 else a  # keep grey off pure black/white so the tint shows
