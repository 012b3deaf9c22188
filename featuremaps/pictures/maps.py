"""`feature_maps`: what one input looks like at every layer of a model.

One row per layer, in order (the input first; after each conv, after its activation, after pooling,
and so on): each map of shape (H, W) is a tile, labelled with the layer's name, kind and per-example
shape (H, W, C). Vectors (flatten, dense) are drawn as a strip of cells. The values come from
`featuremaps.inspect.activations`, which runs the model in eval mode.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _mpl

__all__ = ["feature_maps"]


def feature_maps(model, x, path: str | Path | None = None, *, layers: list[str] | None = None,
                 max_maps: int = 16, max_features: int = 128, cmap: str = "viridis"):
    """Draw the activations of one input `x` ((H, W, C) or a batch of one) at every layer of `model`.

    Each row is scaled on its own (min–max over the maps shown), so maps within a row are comparable.
    At most `max_maps` maps per row and `max_features` values per vector row are drawn; a row that
    shows fewer says so in its label. `layers` picks the rows to draw by name ("input" is the input;
    default: all). Save a PNG at `path` (returns the Path) or return the Figure.
    """
    _mpl.require("feature_maps")
    if int(max_maps) < 1 or int(max_features) < 1:
        raise ValueError(f"feature_maps: max_maps and max_features must be ≥ 1; received {max_maps}, {max_features}")
    from featuremaps.inspect import activations

    rows = activations(model, x)
    if layers is not None:
        known = [r[0] for r in rows]
        unknown = [n for n in layers if n not in known]
        if unknown:
            raise ValueError(f"feature_maps: layers must be names of the model's layers (or 'input'); "
                             f"unknown {unknown}; valid names: {known}")
        rows = [r for r in rows if r[0] in set(layers)]
    import matplotlib

    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")
    # Row height follows the widest row of tiles, so a few maps per row are drawn larger.
    widest = max([min(np.shape(r[2])[2], int(max_maps)) for r in rows if np.ndim(r[2]) == 3 and
                  np.shape(r[2])[0] * np.shape(r[2])[1] > 1] or [int(max_maps)])
    row_h = float(np.clip(4.9 / widest / 0.76 + 0.1, 0.72, 1.6))
    fig = _mpl.figure(7.2, 0.35 + row_h * len(rows), dpi=100)
    top = 1.0 - 0.25 / fig.get_figheight()
    height = (top - 0.05 / fig.get_figheight()) / len(rows)
    for r, act in enumerate(rows):
        name, kind, arr = act[0], act[1], np.asarray(act[2], dtype=np.float64)
        ax = fig.add_axes((0.30, top - (r + 1) * height + 0.12 * height, 0.68, height * 0.76))
        ax.set_axis_off()
        shape = str(tuple(int(s) for s in arr.shape))  # (H, W, C) or (F,)
        if arr.ndim == 3 and (arr.shape[2] == 3 and name == "input"):
            img = _minmax(arr)
            ax.imshow(img, interpolation="nearest")
            ax.set_anchor("W")
            note = "RGB"
        elif arr.ndim == 3 and arr.shape[0] * arr.shape[1] > 1:
            shown = min(arr.shape[2], int(max_maps))
            tiles = [arr[:, :, c] for c in range(shown)]
            img = _mpl.mosaic(tiles, shown, gap=max(1, arr.shape[0] // 8))
            lo, hi = np.nanmin(img), np.nanmax(img)
            ax.imshow(img, cmap=colormap, vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
            ax.set_anchor("W")
            note = _count(shown, arr.shape[2], "map")
            note += f"\nrange [{lo:.2g}, {hi:.2g}]"
        else:
            flat = arr.reshape(-1)
            shown = min(flat.size, int(max_features))
            img = flat[None, :shown]  # (1, shown)
            lo, hi = img.min(), img.max()
            ax.imshow(img, cmap=colormap, vmin=lo, vmax=hi if hi > lo else lo + 1,
                      interpolation="nearest", aspect="auto" if shown > 32 else "equal")
            ax.set_anchor("W")
            note = _count(shown, flat.size, "value")
            note += f"\nrange [{lo:.2g}, {hi:.2g}]"
        fig.text(0.01, top - (r + 0.5) * height, f"{name}  ({kind})\n{shape}  {note}",
                 fontsize=7, va="center", ha="left", family="monospace", gid="row-label")
    fig.suptitle("feature maps of one input, layer by layer (each row scaled on its own)",
                 fontsize=9, y=1.0 - 0.04 / fig.get_figheight(), va="top")
    return _mpl.finish(fig, path)


def _count(shown: int, total: int, word: str) -> str:
    plural = "" if total == 1 else "s"
    return f"{total} {word}{plural}" if shown == total else f"first {shown} of {total} {word}s"


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return np.full_like(a, 0.5) if hi <= lo else (a - lo) / (hi - lo)
