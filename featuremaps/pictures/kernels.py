"""`kernel_grid`: the learned kernels of one conv layer as a picture.

Layout (channels-last, HWIO weights): the filters of output map n are `w[:, :, :, n]`.

- A layer on 3-channel input is drawn like AlexNet's conv1 figure: one colour image per output map,
  `w[:, :, :, n]` read as (kh, kw, RGB) and mapped to [0, 1] around mid-grey,
  `tile = 0.5 + w / (2·max|w|)` with max|w| over that filter ('per_filter', the default) or over the
  layer ('global'). So 0 is mid-grey (0.5, 0.5, 0.5): a colour-opponent kernel shows red against
  green around grey, a luminance kernel (equal R, G, B) light against dark grey.
- `channels=True` draws such a layer as the grid below instead, rows labelled R, G, B: the conv sums
  each column's three 2-D slices, so one 3-D kernel is three 2-D kernels summed.
- Any other layer is an in × out grid of kh × kw tiles: row i = input map i, column n = output map n,
  so column n is `w[:, :, :, n]` and tile (i, n) is the 2-D kernel `w[:, :, i, n]` that output map n
  applies to input map i. Colours diverge around 0 (blue negative, red positive, white zero) with
  symmetric limits and a colour bar. Pairs that the layer does not connect (groups, depthwise, a
  connection table such as LeNet-5's C3) are hatched grey, not drawn as zeros.

The figure is sized to its content: each tile is 20–48 pixels (a whole number of pixels per weight),
the grid aiming at about 900 × 700 pixels, and the row/column labels are thinned (every 1, 2, 5, 10,
... maps) so that none overlap, whatever the numbers of maps; the margins hold only the labels, the
colour bar and the title.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _layers, _mpl

__all__ = ["kernel_grid"]

_NORMALIZE = ("global", "per_filter")


def kernel_grid(layer, path: str | Path | None = None, *, normalize: str | None = None,
                name: str | None = None, max_in: int = 64, max_out: int = 64, rgb: bool | None = None,
                highlight: int | None = None, model=None, channels: bool = False):
    """Draw the kernels of conv `layer`; save a PNG at `path` (returns the Path) or return the Figure.

    normalize: 'global' (one scale for the whole layer) or 'per_filter' (each output map's filter
      `w[:, :, :, n]` scaled on its own). Default: 'per_filter' for colour (3-channel) kernels,
      'global' for the diverging grid. The choice is stated in the title. A colour tile is
      `0.5 + w / (2·max|w|)`, max|w| over the filter or the layer, so 0 is mid-grey.
    rgb: draw 3-channel kernels as colour images (default: True exactly when the layer has 3 input
      channels and is fully connected and `channels` is False).
    channels: on a layer with 3 input channels, draw the diverging in × out grid instead of colour
      tiles, rows labelled R, G, B, the title saying that the conv sums each column's three slices.
      An error with rgb=True, or on a layer without 3 input channels.
    max_in, max_out: cap on grid rows/columns (the title says when the picture is truncated).
    name: the layer's name for the title (the CLI passes the model's name for it).
    highlight: outline column n of the grid, i.e. `w[:, :, :, n]`, the filters of output map n.
    model: with `layer` given as a node name, the Graph or Sequential that holds it (the title names the node).
    """
    _mpl.require("kernel_grid")
    layer, node, _ = _layers.resolve(layer, model, "kernel_grid")
    name = name or node
    _layers.check_conv(layer, "kernel_grid")
    if normalize is not None and normalize not in _NORMALIZE:
        raise ValueError(f"kernel_grid: normalize must be one of {_NORMALIZE}; received {normalize!r}")
    kernels, conn = _layers.full_kernels(layer)  # (kh, kw, C_in, C_out), (C_in, C_out)
    kernels = kernels.astype(np.float64)
    title = _layers.layer_name(layer, name)
    if channels:
        _check_channels(rgb, kernels.shape[2], title)
        rgb = False
    if rgb is None:
        rgb = kernels.shape[2] == 3 and bool(conn.all())
    if rgb:
        if kernels.shape[2] != 3:
            raise ValueError(f"kernel_grid: rgb=True needs 3 input channels; layer {title} has {kernels.shape[2]}")
        return _colour(kernels, path, normalize or "per_filter", title, max_out)
    drawn = min(kernels.shape[3], max_out)  # output maps shown in the grid
    if highlight is not None and not (isinstance(highlight, (int, np.integer)) and 0 <= highlight < drawn):
        raise ValueError(f"kernel_grid: highlight must be an output map drawn in the grid, in [0, "
                         f"{drawn - 1}]; received {highlight!r}")
    return _diverging(kernels, conn, path, normalize or "global", title, max_in, max_out, layer, highlight,
                      channels)


def _check_channels(rgb, c_in: int, title: str) -> None:
    if rgb:
        raise ValueError("kernel_grid: rgb=True and channels=True exclude each other (rgb draws one colour "
                         "tile per filter, channels its R, G, B slices in a grid); pass one of them")
    if c_in != 3:
        raise ValueError(f"kernel_grid: channels=True needs 3 input channels; layer {title} has {c_in}")


# Layout, in pixels at _DPI: a tile (one kernel) is drawn MIN_TILE_PX..MAX_TILE_PX wide, with a whole
# number of screen pixels per kernel pixel; the grid aims at GRID_PX (width, height) when tiles allow.
_DPI = 100
MIN_TILE_PX, MAX_TILE_PX = 20, 48
GRID_PX = (900, 700)
_TICK_PT, _LABEL_PT, _TITLE_PT = 6.5, 8, 8.5


def _pixel_scale(kh: int, kw: int, rows: int, cols: int, gap: int) -> int:
    """Screen pixels per kernel pixel: fill GRID_PX, keep every tile within [MIN_TILE_PX, MAX_TILE_PX]."""
    fit = min(GRID_PX[0] / (cols * (kw + gap)), GRID_PX[1] / (rows * (kh + gap)))
    lo = int(np.ceil(MIN_TILE_PX / max(kh, kw)))
    hi = max(lo, MAX_TILE_PX // max(kh, kw))
    return int(np.clip(np.floor(fit), lo, hi))


def _colour(kernels: np.ndarray, path, normalize: str, title: str, max_out: int):
    kh, kw, _, c_out = kernels.shape
    shown = min(c_out, max(max_out, 1) * 2)
    tiles = [kernels[:, :, :, n] for n in range(shown)]  # each (kh, kw, 3)
    if normalize == "per_filter":
        tiles = [_around_grey(t, np.abs(t).max()) for t in tiles]
        how = "per filter, 0.5 + w / (2·max|w[:, :, :, n]|): 0 = mid-grey"
    else:
        top = float(np.abs(kernels).max())
        tiles = [_around_grey(t, top) for t in tiles]
        how = f"one scale for the layer, 0.5 + w / (2·max|w|), max|w| = {top:.3g}: 0 = mid-grey"
    ncols = int(np.ceil(np.sqrt(shown * 1.5)))
    img = _mpl.mosaic(tiles, ncols, gap=1)  # (rows, cols, 3), NaN gaps
    img = np.where(np.isnan(img), 1.0, img)  # white gaps
    s = _pixel_scale(kh, kw, -(-shown // ncols), ncols, 1)
    more = f" (first {shown} of {c_out})" if shown < c_out else ""
    text = f"{title}: {_n(c_out, 'filter')} {kh}×{kw}×3 drawn as RGB{more}\nnormalize={normalize!r}: {how}"
    fig = _mpl.figure(4.0, 3.0, dpi=_DPI)
    box = _Box(fig, img.shape[1] * s, img.shape[0] * s, text, left=8, right=8, top=8, bottom=8)
    ax = fig.add_axes(box.grid)
    ax.imshow(img, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    box.title(fig)
    return _mpl.finish(fig, path)


def _around_grey(t: np.ndarray, top: float) -> np.ndarray:
    """`t` mapped to [0, 1] around mid-grey: 0.5 + t / (2·top); all mid-grey when top is 0."""
    return np.full_like(t, 0.5) if top <= 0 else 0.5 + t / (2.0 * top)


class _Box:
    """Figure size and axes rectangles, in pixels, for a grid of `grid_w` × `grid_h` pixels with
    `left`/`right`/`top`/`bottom` pixels of labels around it and `text` (a title, one line per
    line) above; the figure is as wide as the grid block, the title or the axis label over the grid,
    whichever is widest, and the block is centred under the title. Nothing else is left empty but
    the space under a grid shorter than its colour bar."""

    def __init__(self, fig, grid_w: float, grid_h: float, text: str, *, left: float, right: float,
                 top: float, bottom: float, bar_h: float = 0.0, label_w: float = 0.0, pad: float = 8.0):
        lines = text.split("\n")
        sizes = [_mpl.text_size(fig, line, _TITLE_PT) for line in lines]
        self.text, self.title_h = text, sum(h for _, h in sizes) * 1.25 + pad
        title_w = max(w for w, _ in sizes) + 2 * pad
        box_h = max(grid_h, bar_h)
        # an axis label centred over the grid, `label_w` wide, must fit too (however left and right differ)
        self.w = max(left + grid_w + right, title_w, label_w + 2 * pad + abs(right - left))
        self.h = self.title_h + top + box_h + bottom
        fig.set_size_inches(self.w / fig.dpi, self.h / fig.dpi)
        x0 = left + (self.w - left - grid_w - right) / 2
        y0 = bottom + box_h - grid_h  # a grid shorter than its colour bar hangs from the top
        self.x0, self.grid_w, self.box_h, self.bottom = x0, grid_w, box_h, bottom
        self.grid = (x0 / self.w, y0 / self.h, grid_w / self.w, grid_h / self.h)

    def bar(self, gap: float, width: float):
        """The colour bar's rectangle: `gap` pixels right of the grid, as tall as the box."""
        x = self.x0 + self.grid_w + gap
        return (x / self.w, self.bottom / self.h, width / self.w, self.box_h / self.h)

    def title(self, fig) -> None:
        fig.suptitle(self.text, fontsize=_TITLE_PT, y=1.0 - 4.0 / self.h, va="top")


def _diverging(kernels: np.ndarray, conn: np.ndarray, path, normalize: str, title: str,
               max_in: int, max_out: int, layer, highlight: int | None = None, channels: bool = False):
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
    text = _grid_title(title, kh, kw, c_in, c_out, n_in, n_out, normalize, how,
                       _layers.pattern(layer, conn) if not conn[:n_in, :n_out].all() else None, highlight)
    if channels:
        text += "\n" + _channels_note(conn)
    s = _pixel_scale(kh, kw, n_in, n_out, gap)
    fig = _mpl.figure(4.0, 3.0, dpi=_DPI)
    ticks = _grid_ticks(fig, n_in, n_out, (kh + gap) * s, (kw + gap) * s)
    xlabel = "output map n  (column n = w[:, :, :, n])"
    box = _Box(fig, img.shape[1] * s, img.shape[0] * s, text, left=ticks["left"], top=ticks["top"],
               right=ticks["right"], bottom=8, bar_h=110, label_w=_mpl.text_size(fig, xlabel, _LABEL_PT)[0])
    ax = fig.add_axes(box.grid)
    im = ax.imshow(img, cmap=_cmap("RdBu_r"), vmin=-limit, vmax=limit, interpolation="nearest", aspect="auto")
    _decorate(ax, conn, n_in, n_out, kh, kw, gap, img.shape, highlight)
    rows = "RGB" if channels else None
    for axis, idx, size, names in ((ax.xaxis, ticks["x"], kw, None), (ax.yaxis, ticks["y"], kh, rows)):
        axis.set_ticks([j * (size + gap) + (size - 1) / 2 for j in idx], [names[j] if names else str(j) for j in idx])
    ax.set_xlabel(xlabel, fontsize=_LABEL_PT)
    ax.set_ylabel("input channel" if channels else "input map i", fontsize=_LABEL_PT)
    ax.xaxis.set_label_position("top")
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False, labelsize=_TICK_PT, length=2)
    for side in ax.spines.values():
        side.set_visible(False)
    cax = fig.add_axes(box.bar(14, 11), label="colour bar")
    cb = fig.colorbar(im, cax=cax, ticks=np.linspace(-limit, limit, 5 if box.box_h >= 100 else 3))
    cb.ax.set_yticklabels([f"{v:.2g}" for v in cb.get_ticks()])
    cb.ax.tick_params(labelsize=_TICK_PT, length=2)
    cb.set_label(bar, fontsize=_LABEL_PT - 1)
    box.title(fig)
    return _mpl.finish(fig, path)


def _decorate(ax, conn, n_in: int, n_out: int, kh: int, kw: int, gap: int, shape, highlight) -> None:
    """Hatch the pairs the layer does not connect; outline column `highlight`."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    missing = [Rectangle((n * (kw + gap) - 0.5, i * (kh + gap) - 0.5), kw, kh)
               for i in range(n_in) for n in range(n_out) if not conn[i, n]]
    if missing:
        ax.add_collection(PatchCollection(missing, facecolor="0.85", edgecolor="0.55",
                                          hatch="////", linewidth=0.0))
    if highlight is not None:
        ax.add_patch(Rectangle((highlight * (kw + gap) - 0.5 - gap / 2, -0.5 - gap / 2), kw + gap,
                               shape[0] + gap, fill=False, edgecolor="black", linewidth=1.6, clip_on=False))


def _grid_title(title, kh, kw, c_in, c_out, n_in, n_out, normalize, how, pattern, highlight) -> str:
    trunc = []
    if n_in < c_in:
        trunc.append(f"first {n_in} of {c_in} inputs")
    if n_out < c_out:
        trunc.append(f"first {n_out} of {c_out} outputs")
    more = f" — showing {', '.join(trunc)}" if trunc else ""
    text = (f"{title}: kernels w[:, :, i, n], {kh}×{kw}, {_n(c_in, 'input')} × {_n(c_out, 'output')}{more}\n"
            f"normalize={normalize!r}: {how}")
    if pattern is not None:
        text += f"\nhatched = pair not connected ({pattern})"
    if highlight is not None:
        text += f"\noutlined: column {highlight} = w[:, :, :, {highlight}], the filters of output map {highlight}"
    return text


def _channels_note(conn: np.ndarray) -> str:
    if conn.all():
        return ("rows R, G, B: the conv sums each column's three R, G, B slices "
                "(one 3-D kernel = three 2-D slices summed)")
    return "rows R, G, B: the conv sums each column's connected R, G, B slices"


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="white")  # NaN = gaps between tiles


def _grid_ticks(fig, n_rows: int, n_cols: int, row_px: float, col_px: float) -> dict:
    """Tick indices per axis, thinned so that no two labels overlap, and the pixels the labels need
    around the grid (left: row labels and axis label; top: column labels and axis label; right:
    the colour bar and its labels)."""
    digit_w, digit_h = _mpl.text_size(fig, str(max(n_rows, n_cols) - 1), _TICK_PT)
    label_h = _mpl.text_size(fig, "input map i", _LABEL_PT)[1]
    bar_w = max(_mpl.text_size(fig, t, _TICK_PT)[0] for t in ("-0.088", "-1", "-1e-05"))
    return {"x": _mpl.index_ticks(n_cols, col_px, digit_w), "y": _mpl.index_ticks(n_rows, row_px, digit_h),
            "left": 8 + label_h * 1.4 + 6 + digit_w + 6, "top": 6 + label_h * 1.4 + 4 + digit_h + 6,
            "right": 14 + 11 + 5 + bar_w + 6 + label_h * 1.4 + 8}
