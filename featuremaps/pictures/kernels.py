"""`kernel_grid`: the learned kernels of one conv layer as a picture.

Layout (channels-last, HWIO weights): the filters of output map n are `w[:, :, :, n]`.

- A layer on 3-channel input is drawn like AlexNet's conv1 figure: one colour image per output map,
  `w[:, :, :, n]` read as (kh, kw, RGB), min-max scaled to [0, 1] (per filter or over the layer).
- Any other layer is an in × out grid of kh × kw tiles: row i = input map i, column n = output map n,
  so column n is `w[:, :, :, n]` and tile (i, n) is the 2-D kernel `w[:, :, i, n]` that output map n
  applies to input map i. Colours diverge around 0 (blue negative, red positive, white zero) with
  symmetric limits and a colour bar. Pairs that the layer does not connect (groups, depthwise, a
  connection table such as LeNet-5's C3) are hatched grey, not drawn as zeros.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _layers, _mpl

__all__ = ["kernel_grid"]

_NORMALIZE = ("global", "per_filter")


def kernel_grid(layer, path: str | Path | None = None, *, normalize: str | None = None,
                name: str | None = None, max_in: int = 64, max_out: int = 64, rgb: bool | None = None,
                highlight: int | None = None):
    """Draw the kernels of conv `layer`; save a PNG at `path` (returns the Path) or return the Figure.

    normalize: 'global' (one scale for the whole layer) or 'per_filter' (each output map's filter
      `w[:, :, :, n]` scaled on its own). Default: 'per_filter' for colour (3-channel) kernels,
      'global' for the diverging grid. The choice is stated in the title.
    rgb: draw 3-channel kernels as colour images (default: True exactly when the layer has 3 input
      channels and is fully connected).
    max_in, max_out: cap on grid rows/columns (the title says when the picture is truncated).
    name: the layer's name for the title (the CLI passes the model's name for it).
    highlight: outline column n of the grid, i.e. `w[:, :, :, n]`, the filters of output map n.
    """
    _mpl.require("kernel_grid")
    _layers.check_conv(layer, "kernel_grid")
    if normalize is not None and normalize not in _NORMALIZE:
        raise ValueError(f"kernel_grid: normalize must be one of {_NORMALIZE}; received {normalize!r}")
    kernels, conn = _layers.full_kernels(layer)  # (kh, kw, C_in, C_out), (C_in, C_out)
    kernels = kernels.astype(np.float64)
    title = _layers.layer_name(layer, name)
    if rgb is None:
        rgb = kernels.shape[2] == 3 and bool(conn.all())
    if rgb:
        if kernels.shape[2] != 3:
            raise ValueError(f"kernel_grid: rgb=True needs 3 input channels; layer {title} has {kernels.shape[2]}")
        return _colour(kernels, path, normalize or "per_filter", title, max_out)
    if highlight is not None and not (isinstance(highlight, (int, np.integer)) and 0 <= highlight < min(kernels.shape[3], max_out)):
        raise ValueError(f"kernel_grid: highlight must be an output map drawn in the grid, in [0, "
                         f"{min(kernels.shape[3], max_out) - 1}]; received {highlight!r}")
    return _diverging(kernels, conn, path, normalize or "global", title, max_in, max_out, layer, highlight)


def _colour(kernels: np.ndarray, path, normalize: str, title: str, max_out: int):
    kh, kw, _, c_out = kernels.shape
    shown = min(c_out, max(max_out, 1) * 2)
    tiles = [kernels[:, :, :, n] for n in range(shown)]  # each (kh, kw, 3)
    if normalize == "per_filter":
        tiles = [_minmax(t, t.min(), t.max()) for t in tiles]
        how = "each filter min–max scaled to [0, 1]"
    else:
        lo, hi = kernels.min(), kernels.max()
        tiles = [_minmax(t, lo, hi) for t in tiles]
        how = "one min–max scale for the layer"
    ncols = int(np.ceil(np.sqrt(shown * 1.5)))
    img = _mpl.mosaic(tiles, ncols, gap=1)  # (rows, cols, 3), NaN gaps
    img = np.where(np.isnan(img), 1.0, img)  # white gaps
    nrows = -(-shown // ncols)
    scale = 0.55 if kh <= 7 else 0.75
    fig = _mpl.figure(max(3.2, ncols * scale + 0.4), max(1.6, nrows * scale * kh / kw + 0.9))
    ax = fig.add_axes((0.03, 0.03, 0.94, 0.80))
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    more = f" (first {shown} of {c_out})" if shown < c_out else ""
    fig.suptitle(f"{title}: {c_out} filters {kh}×{kw}×3 drawn as RGB{more}\n{how}", fontsize=9)
    return _mpl.finish(fig, path)


def _minmax(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    return np.full_like(t, 0.5) if span <= 0 else (t - lo) / span


def _diverging(kernels: np.ndarray, conn: np.ndarray, path, normalize: str, title: str,
               max_in: int, max_out: int, layer, highlight: int | None = None):
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    kh, kw, c_in, c_out = kernels.shape
    n_in, n_out = min(c_in, max_in), min(c_out, max_out)
    k = kernels[:, :, :n_in, :n_out]  # (kh, kw, n_in, n_out)
    if normalize == "per_filter":
        scale = np.abs(kernels).max(axis=(0, 1, 2))[:n_out]  # (n_out,) max |w[:, :, :, n]|
        k = k / np.where(scale > 0, scale, 1.0)
        limit, how, bar = 1.0, "each column (filter) scaled by its own max |w|", "w / max|w[:, :, :, n]|"
    else:
        limit = float(np.abs(kernels).max()) or 1.0
        how, bar = f"one scale for the layer, |w| ≤ {limit:.3g}", "weight w"
    gap = 1
    tiles = [k[:, :, i, n] for i in range(n_in) for n in range(n_out)]  # row-major: row i, column n
    img = _mpl.mosaic(tiles, n_out, gap=gap)  # (n_in*(kh+1)-1, n_out*(kw+1)-1)
    for i in range(n_in):
        for n in range(n_out):
            if not conn[i, n]:
                img[i * (kh + gap): i * (kh + gap) + kh, n * (kw + gap): n * (kw + gap) + kw] = np.nan

    # Layout in inches: tiles ≈ 0.3 in for small layers, ≥ 3 screen pixels per kernel pixel for big
    # ones; room on the left for the row labels, on the right for the colour bar, on top for the title.
    dpi = 110
    width_in = 6.4 if n_in <= 2 else 3.2  # a one- or two-row grid (first layer on grey input) spreads wider
    tile_in = float(np.clip(width_in / max(n_out, n_in * 0.8), 3.0 * (kw + gap) / dpi, 0.45))
    ax_w = tile_in * img.shape[1] / (kw + gap)
    ax_h = ax_w * img.shape[0] / img.shape[1]
    lines = 2 + (n_in * n_out > int(conn[:n_in, :n_out].sum())) + (highlight is not None)
    left, right, top_in, bottom = 0.75, 1.15, 0.65 + 0.15 * lines, 0.15
    box_h = max(ax_h, 1.2)  # a one-row grid still gets room for its colour bar
    fig_w, fig_h = max(ax_w + left + right, 5.6), box_h + top_in + bottom
    fig = _mpl.figure(fig_w, fig_h, dpi=dpi)
    x0 = (left + (fig_w - ax_w - left - right) / 2) / fig_w
    ax = fig.add_axes((x0, bottom / fig_h, ax_w / fig_w, box_h / fig_h))
    ax.set_anchor("C")
    cmap = _cmap("RdBu_r")
    im = ax.imshow(img, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    missing = [Rectangle((n * (kw + gap) - 0.5, i * (kh + gap) - 0.5), kw, kh)
               for i in range(n_in) for n in range(n_out) if not conn[i, n]]
    if missing:
        ax.add_collection(PatchCollection(missing, facecolor="0.85", edgecolor="0.55",
                                          hatch="////", linewidth=0.0))
    if highlight is not None:
        ax.add_patch(Rectangle((highlight * (kw + gap) - 0.5 - gap / 2, -0.5 - gap / 2), kw + gap,
                               img.shape[0] + gap, fill=False, edgecolor="black", linewidth=1.6, clip_on=False))
    _grid_ticks(ax, n_in, n_out, kh, kw, gap)
    ax.set_xlabel("output map n  (column n = w[:, :, :, n])", fontsize=8)
    ax.set_ylabel("input map i", fontsize=8)
    ax.xaxis.set_label_position("top")
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False, labelsize=6, length=2)
    for side in ax.spines.values():
        side.set_visible(False)
    cax = fig.add_axes((x0 + (ax_w + 0.25) / fig_w, bottom / fig_h, 0.12 / fig_w, box_h / fig_h))
    cb = fig.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=6)
    cb.set_label(bar, fontsize=7)
    trunc = []
    if n_in < c_in:
        trunc.append(f"first {n_in} of {c_in} inputs")
    if n_out < c_out:
        trunc.append(f"first {n_out} of {c_out} outputs")
    more = f" — showing {', '.join(trunc)}" if trunc else ""
    hatched = f"\nhatched = pair not connected ({_layers.pattern(layer, conn)})" if missing else ""
    if highlight is not None:
        hatched += f"\noutlined: column {highlight} = w[:, :, :, {highlight}], the filters of output map {highlight}"
    fig.suptitle(f"{title}: kernels w[:, :, i, n], {kh}×{kw}, {_n(c_in, 'input')} × {_n(c_out, 'output')}{more}\n"
                 f"normalize={normalize!r}: {how}{hatched}", fontsize=8, y=1.0 - 0.05 / fig.get_figheight(),
                 va="top")
    return _mpl.finish(fig, path)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="white")  # NaN = gaps between tiles


def _grid_ticks(ax, n_rows: int, n_cols: int, th: int, tw: int, gap: int) -> None:
    """Ticks at tile centres, thinned so that at most ~16 labels show per axis."""
    for count, size, setter in ((n_cols, tw, (ax.set_xticks, ax.set_xticklabels)),
                                (n_rows, th, (ax.set_yticks, ax.set_yticklabels))):
        step = max(1, int(np.ceil(count / 16)))
        idx = list(range(0, count, step))
        setter[0]([j * (size + gap) + (size - 1) / 2 for j in idx])
        setter[1]([str(j) for j in idx])
