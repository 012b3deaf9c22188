"""`feature_maps`: what one input looks like at every layer of a model.

One row per layer, in order (the input first; after each conv, after its activation, after pooling,
and so on): each map of shape (H, W) is a tile with its index under it, and the row is labelled with
the layer's name, kind and per-example shape (H, W, C). Vectors (flatten, dense, and 1×1×C maps
such as LeNet-5's C5) are drawn as one strip of cells; the model's output strip is labelled with
the class names. The values come from `featuremaps.inspect.activations`, which runs the model in
eval mode.

Colours are the HTML report's (`featuremaps.report`): diverging around zero (blue negative, white
zero, red positive) with limits ±max|value| of the layer, one scale per row, shown by the row's
colour bar; the input (and a zero-padding of it) is drawn in grey from its minimum to its maximum.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _mpl

__all__ = ["feature_maps"]

# Layout, in pixels at _DPI: the tiles of a row share AREA_PX; a tile is MIN_TILE_PX..MAX_TILE_PX on its
# longer side (a row with many maps wraps onto more lines instead of shrinking its tiles further);
# a vector is a strip STRIP_PX tall of cells at most MAX_CELL_PX wide.
_DPI = 100
AREA_PX = 560.0
MIN_TILE_PX, MAX_TILE_PX = 24.0, 100.0
STRIP_PX, MAX_CELL_PX = 22.0, 44.0
_TICK_PT, _LABEL_PT, _TITLE_PT = 6, 7, 9
_BAR_GAP, _BAR_W = 16.0, 9.0


def feature_maps(model, x, path: str | Path | None = None, *, layers: list[str] | None = None,
                 max_maps: int = 16, max_features: int = 128, classes=None, cmap: str = "RdBu_r"):
    """Draw the activations of one input `x` ((H, W, C) or a batch of one) at every layer of `model`.

    Each row has its own colour scale, zero-centred (±max|value| of the layer, as the HTML report
    does), and a colour bar; `cmap` is the diverging colour map (the input row is grey). At most
    `max_maps` maps per row and `max_features` values per vector row are drawn; a row that shows
    fewer says so in its label. `classes` names the output units (default: their indices) on the
    strip of the model's last layer when it is a vector. `layers` picks the rows to draw by name
    ("input" is the input; in a Graph, node and input names; default: all). Save a PNG at `path`
    (returns the Path) or return the Figure.
    """
    _mpl.require("feature_maps")
    if int(max_maps) < 1 or int(max_features) < 1:
        raise ValueError(f"feature_maps: max_maps and max_features must be ≥ 1; received {max_maps}, {max_features}")
    from featuremaps.inspect import activations, resolve_layer
    from featuremaps.nn.graph import model_nodes

    rows = activations(model, x)
    last = rows[-1][0]
    reads = {n.name: n.inputs for n in model_nodes(model)}
    grey = {r[0] for r in rows if r[0] not in reads}  # the inputs, and zero-padding of them, in grey (as the report)
    for act in rows:
        if act[0] in reads and resolve_layer(model, act[0]).spatial == "pad" and reads[act[0]][0] in grey:
            grey.add(act[0])
    if layers is not None:
        known = [r[0] for r in rows]
        unknown = [n for n in layers if n not in known]
        if unknown:
            raise ValueError(f"feature_maps: layers must be names of the model's layers (or 'input'); "
                             f"unknown {unknown}; valid names: {known}")
        rows = [r for r in rows if r[0] in set(layers)]
    fig = _mpl.figure(8.0, 6.0, dpi=_DPI)
    plans = [_plan(fig, r[0], r[1], np.asarray(r[2], dtype=np.float64), r[0] in grey, int(max_maps),
                   int(max_features), r[0] == last, classes) for r in rows]
    _draw(fig, plans, cmap)
    return _mpl.finish(fig, path)


def _plan(fig, name: str, kind: str, arr: np.ndarray, grey: bool, max_maps: int, max_features: int,
          output: bool, classes):
    """What one row draws and how many pixels it needs (no axes yet)."""
    finite = arr[np.isfinite(arr)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    plan = {"name": name, "kind": kind, "shape": str(tuple(int(s) for s in arr.shape)), "grey": grey,
            "lo": lo, "hi": hi, "limit": max(abs(lo), abs(hi)) or 1.0, "extra": None}
    if arr.ndim == 3 and arr.shape[2] == 3 and name == "input":
        s = min(MAX_TILE_PX / max(arr.shape[:2]), AREA_PX / arr.shape[1])
        plan.update(mode="rgb", lines=[_minmax(arr)], s=s, ticks=[None], note="RGB", width=arr.shape[1] * s,
                    line_h=arr.shape[0] * s)
    elif arr.ndim == 3 and arr.shape[0] * arr.shape[1] > 1:
        plan.update(_plan_maps(fig, arr, min(arr.shape[2], max_maps)))
    else:
        plan.update(_plan_vector(fig, arr.reshape(-1), max_features, output, classes))
    plan["height"] = len(plan["lines"]) * plan["line_h"]
    return plan


def _plan_maps(fig, arr: np.ndarray, shown: int) -> dict:
    """Tiles on one line if they stay ≥ MIN_TILE_PX, else on as many lines as that needs."""
    h, w, c = arr.shape
    gap = max(1, h // 8)
    side = max(h, w)
    s = min(AREA_PX / (shown * (w + gap) - gap), MAX_TILE_PX / side)
    per_line = shown
    if s * side < MIN_TILE_PX:
        s = MIN_TILE_PX / side
        per_line = max(1, int((AREA_PX / s + gap) // (w + gap)))
    digit_w, digit_h = _mpl.text_size(fig, str(shown - 1), _TICK_PT)
    idx = _mpl.index_ticks(per_line, (w + gap) * s, digit_w)
    lines, ticks = [], []
    for start in range(0, shown, per_line):
        maps = list(range(start, min(start + per_line, shown)))
        lines.append(_mpl.mosaic([arr[:, :, m] for m in maps], len(maps), gap=gap))
        ticks.append([(j * (w + gap) + (w - 1) / 2, str(maps[j])) for j in idx if j < len(maps)])
    return {"mode": "maps", "lines": lines, "ticks": ticks, "s": s, "note": _count(shown, c, "map"),
            "tile": (h, w, gap),
            "width": (min(per_line, shown) * (w + gap) - gap) * s, "line_h": h * s + digit_h + 8}


def _plan_vector(fig, flat: np.ndarray, max_features: int, output: bool, classes) -> dict:
    """One strip of cells with index labels, thinned so that none overlap; the model's output strip
    carries the class names instead (turned upright when they do not fit across a cell) and its
    largest value in bold."""
    shown = min(flat.size, max_features)
    cell = min(AREA_PX / shown, MAX_CELL_PX)
    names, best, extra = [str(u) for u in range(flat.size)], None, None
    if output:
        if classes is not None:
            names = [str(c) for c in classes]
            if len(names) != flat.size:
                raise ValueError(f"feature_maps: classes must name each of the {flat.size} outputs of the "
                                 f"last layer; received {len(names)} names")
        best = int(np.argmax(np.where(np.isfinite(flat), flat, -np.inf)))
        extra = f"argmax: {names[best]}"
    sizes = [_mpl.text_size(fig, t, _TICK_PT, weight="bold") for t in names[:shown]]
    along = max(w for w, _ in sizes)
    upright = along + 3 > cell and output and classes is not None
    idx = _mpl.index_ticks(shown, cell, max(h for _, h in sizes) if upright else along)
    room = (along if upright else max(h for _, h in sizes)) + 8
    ticks = [(j, names[j]) for j in idx]
    return {"mode": "vector", "lines": [flat[None, :shown]], "ticks": [ticks], "s": cell, "best": best,
            "upright": upright, "note": _count(shown, flat.size, "value"), "extra": extra,
            "width": shown * cell, "line_h": STRIP_PX + room}


def _draw(fig, plans: list[dict], cmap: str) -> None:
    """Size the figure to the rows, then draw every row's axes (in row order), labels and colour bars."""
    import matplotlib

    labels = [_label_text(p) for p in plans]
    line_h = 1.25 * _mpl.text_size(fig, "Xg", _LABEL_PT, family="monospace")[1]
    label_w = max(_mpl.text_size(fig, ln, _LABEL_PT, family="monospace")[0]
                  for t in labels for ln in t.split("\n"))
    for p, text in zip(plans, labels):
        p["row_h"] = max(p["height"], line_h * (text.count("\n") + 1)) + 12
    title = ("feature maps of one input, layer by layer\n"
             "blue < 0 < red, white = 0, one scale per row (±max|value| of the layer); the input in grey")
    title_w = max(_mpl.text_size(fig, t, _TITLE_PT)[0] for t in title.split("\n"))
    title_h = 2.5 * _mpl.text_size(fig, "Xg", _TITLE_PT)[1] + 10
    bar_label_w = _mpl.text_size(fig, "-0.088", _TICK_PT)[0]
    left, area = label_w + 16, max(p["width"] for p in plans)
    right = _BAR_GAP + _BAR_W + 4 + bar_label_w + 8
    width = max(left + area + right, title_w + 16)
    left += (width - left - area - right) / 2
    height = title_h + sum(p["row_h"] for p in plans) + 4
    fig.set_size_inches(width / _DPI, height / _DPI)
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")  # NaN = gaps between tiles
    greys = matplotlib.colormaps["gray"].with_extremes(bad="white")
    top = height - title_h
    for p in plans:  # the image axes first, row by row (fig.axes[r] is row r's first line)
        p["top"] = top
        p["im"] = _draw_row(fig, p, left, top, width, height, greys if p["grey"] else colormap)
        top -= p["row_h"]
    for p, text in zip(plans, labels):
        mid = p["top"] - p["row_h"] / 2
        fig.text(8 / width, mid / height, text, fontsize=_LABEL_PT, va="center", ha="left", family="monospace",
                 gid="row-label")
        if p["im"] is not None:
            _colour_bar(fig, p, left + area + _BAR_GAP, mid, width, height)
    fig.suptitle(title, fontsize=_TITLE_PT, y=1.0 - 4 / height, va="top")


def _draw_row(fig, p: dict, left: float, top: float, width: float, height: float, colormap):
    """The row's image axes, one per line of tiles, with map (or class) indices under the tiles."""
    im = None
    y = top - 6
    for img, ticks in zip(p["lines"], p["ticks"]):
        w_px = img.shape[1] * p["s"]
        h_px = STRIP_PX if p["mode"] == "vector" else img.shape[0] * p["s"]
        ax = fig.add_axes((left / width, (y - h_px) / height, w_px / width, h_px / height))
        if p["mode"] == "rgb":
            ax.imshow(img, interpolation="nearest", aspect="auto")
            ax.set_axis_off()
            return None
        if p["grey"]:  # the input: min to max, as the report draws it
            lo, hi = p["lo"], p["hi"] if p["hi"] > p["lo"] else p["lo"] + 1
        else:  # zero-centred: white is 0
            lo, hi = -p["limit"], p["limit"]
        im = ax.imshow(img, cmap=colormap, vmin=lo, vmax=hi, interpolation="nearest", aspect="auto")
        ax.set_yticks([])
        ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks], fontsize=_TICK_PT,
                      rotation=90 if p.get("upright") else 0)
        ax.tick_params(axis="x", length=2, pad=2)
        for j, tick in enumerate(ax.get_xticklabels()):
            if p.get("best") is not None and ticks[j][0] == p["best"]:
                tick.set_fontweight("bold")
        for side in ax.spines.values():
            side.set_visible(p["mode"] == "vector")
            side.set_linewidth(0.5)
        if p["mode"] == "maps":
            _, w, gap = p["tile"]
            _frames(ax, p["tile"], (img.shape[1] + gap) // (w + gap))  # the tiles on this line
        y -= p["line_h"]
    return im


def _frames(ax, tile: tuple[int, int, int], count: int) -> None:
    """A thin grey frame around each of the `count` tiles of a line, as the report draws them, so
    that white (zero) tiles stay visible."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    h, w, gap = tile
    boxes = [Rectangle((j * (w + gap) - 0.5, -0.5), w, h) for j in range(count)]
    ax.add_collection(PatchCollection(boxes, facecolor="none", edgecolor="0.72", linewidth=0.6, clip_on=False))


def _colour_bar(fig, p: dict, x: float, mid: float, width: float, height: float) -> None:
    bar_h = max(p["row_h"] - 16, 24.0)
    cax = fig.add_axes((x / width, (mid - bar_h / 2) / height, _BAR_W / width, bar_h / height),
                       label="colour bar")
    if p["grey"]:
        ticks = [p["lo"], p["hi"]] if p["hi"] > p["lo"] else [p["lo"]]
    else:
        ticks = [-p["limit"], 0.0, p["limit"]] if bar_h >= 30 else [-p["limit"], p["limit"]]
    cb = fig.colorbar(p["im"], cax=cax, ticks=ticks)
    cb.ax.set_yticklabels([f"{v:.2g}" for v in ticks])
    cb.ax.tick_params(labelsize=_TICK_PT, length=2, pad=2)
    cb.outline.set_linewidth(0.5)


def _label_text(p: dict) -> str:
    text = f"{p['name']}  ({p['kind']})\n{p['shape']}  {p['note']}\nrange [{p['lo']:.2g}, {p['hi']:.2g}]"
    return text + (f"\n{p['extra']}" if p["extra"] else "")


def _count(shown: int, total: int, word: str) -> str:
    plural = "" if total == 1 else "s"
    return f"{total} {word}{plural}" if shown == total else f"first {shown} of {total} {word}s"


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return np.full_like(a, 0.5) if hi <= lo else (a - lo) / (hi - lo)
