"""`connectivity_diagram`: which input maps each output map of a conv layer reads.

Two panels from the boolean matrix `featuremaps.inspect.connections(layer)` (rows = input maps,
columns = output maps, True where output map n has a kernel for input map i):

- left: the matrix drawn like Table I of LeCun et al. (1998) for LeNet-5's C3 — an X where connected;
- right: a bipartite drawing, input maps on the left, output maps on the right, one line per
  connection. With `weights` (e.g. each input map's partial sum in an `explain` result) a line's
  width is proportional to |weight| and its opacity grows with it, red for positive, blue for
  negative; a zero weight is a faint grey hairline.

A full layer is a solid block / complete bipartite graph; groups give diagonal blocks; a depthwise
layer gives one line per input map; a connection table gives its own irregular pattern.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _layers, _mpl

__all__ = ["connectivity_diagram"]


# Layout, in pixels at _DPI: matrix cells are CELL_PX wide and tall at most, at least MIN_CELL_PX, and
# the matrix aims at MATRIX_PX (width, height); a row (column) keeps LABEL_CELL_PX when the budget
# allows, so that every input (output) map can carry its label. The graph panel is GRAPH_PX wide.
_DPI = 100
CELL_PX, MIN_CELL_PX, LABEL_CELL_PX = 28.0, 4.0, 12.0
MATRIX_PX = (520.0, 380.0)
GRAPH_PX, GAP_PX = 340.0, 60.0
_TICK_PT, _LABEL_PT, _TITLE_PT = 6.5, 8, 9


def connectivity_diagram(layer, path: str | Path | None = None, *, name: str | None = None, model=None,
                         weights=None, out_map: int | None = None):
    """Draw the connection matrix and the bipartite graph of conv `layer`.

    `layer` is a conv layer, or the name of a node of `model` (a Graph or Sequential): then the title
    names the node and the value its input maps come from (`conv ← its input`).
    Save a PNG at `path` (returns the Path) or return the Figure. `name` is used in the title. The
    figure's size depends only on the numbers of input and output maps (and one more title line
    with `weights`); labels are thinned so that none overlap, whatever those numbers.

    weights: optional link weights, a (C_in, C_out) array (weights[i, n] for the line from input map
      i to output map n), or a (C_in,) array for output map `out_map` only (its other lines are drawn
      as zero weights). Each line's width is proportional to |weight| (red positive, blue negative,
      zero a faint hairline) and the title says "line width ∝ |contribution|". Weights must be finite
      and zero on the pairs the layer does not connect.
    """
    _mpl.require("connectivity_diagram")
    layer, node, reads = _layers.resolve(layer, model, "connectivity_diagram")
    _layers.check_conv(layer, "connectivity_diagram")
    if node is not None:
        name = f"{name or node} ← {', '.join(reads)}"
    from featuremaps.inspect import connections

    conn = np.asarray(connections(layer), dtype=bool)  # (C_in, C_out)
    c_in, c_out = conn.shape
    links = None if weights is None and out_map is None else _links(weights, out_map, conn)
    fig = _mpl.figure(9.0, 4.4, dpi=_DPI)
    cw, ch = _cell_px(c_in, c_out)
    digit_w, digit_h = _mpl.text_size(fig, str(max(c_in, c_out) - 1), _TICK_PT)
    label_h = _mpl.text_size(fig, "input map i", _LABEL_PT)[1]
    title_h = (2 if links is None else 3) * _mpl.text_size(fig, "Xg", _TITLE_PT)[1] * 1.25 + 10
    left = 8 + 1.4 * label_h + 6 + digit_w + 6
    m_top = 6 + 1.4 * label_h + 4 + digit_h + 6  # x tick labels and the axis label, above the matrix
    g_top = 1.4 * label_h + 6  # "N input maps" above the graph
    mat_w, mat_h = c_out * cw, c_in * ch
    graph_h = max(mat_h + m_top - g_top, min(300.0, 24.0 * max(c_in, c_out, 2)))
    ylabel_w = _mpl.text_size(fig, "input map i", _LABEL_PT)[0]
    flat = mat_h < ylabel_w + 4  # a short matrix gets its "input map i" written across, not up
    if flat:
        left += ylabel_w - 1.4 * label_h
    block_w = left + mat_w + GAP_PX + GRAPH_PX + digit_w + 12
    # as wide as the block or the title's second line at its widest for these counts, not wider: the
    # size depends on the counts only (the title's first line shrinks to fit when a name is long)
    widest = _mpl.text_size(fig, _fan_line(f"{c_in}–{c_in}", "input maps", _marks_word(c_in, c_out, cw, ch)),
                            _TITLE_PT)[0]
    width = max(block_w, widest + 24)
    height = title_h + max(m_top + mat_h, g_top + graph_h) + 10
    fig.set_size_inches(width / _DPI, height / _DPI)
    x0 = (width - block_w) / 2 + left
    top = height - title_h  # pixels from the bottom to the top of the panels
    ax = fig.add_axes(((x0) / width, (top - m_top - mat_h) / height, mat_w / width, mat_h / height))
    marks = _matrix(ax, conn, min(cw, ch))
    _label_matrix(ax, c_in, c_out, cw, ch, digit_w, digit_h, flat)
    bx = fig.add_axes(((x0 + mat_w + GAP_PX) / width, (top - g_top - graph_h) / height,
                       GRAPH_PX / width, graph_h / height))
    _graph(bx, conn, graph_h, digit_h, links)
    extra = None if links is None else _weights_line(links, out_map)
    _title(fig, conn, _layers.layer_name(layer, name), _layers.pattern(layer, conn), marks, width, height, extra)
    return _mpl.finish(fig, path)


def _cell_px(c_in: int, c_out: int) -> tuple[float, float]:
    """(cell width, cell height) in pixels: square when the budget allows, else as square as it can be."""
    cw = float(np.clip(MATRIX_PX[0] / c_out, MIN_CELL_PX, CELL_PX))
    ch = float(np.clip(MATRIX_PX[1] / c_in, MIN_CELL_PX, CELL_PX))
    if cw < ch:
        ch = max(cw, min(ch, LABEL_CELL_PX))
    elif ch < cw:
        cw = max(ch, min(cw, LABEL_CELL_PX))
    return cw, ch


def _matrix(ax, conn: np.ndarray, cell: float) -> bool:
    """The matrix like Table I of LeCun et al. (1998): an X per connected pair when the cells are big
    enough to hold one, else a dark cell. Returns whether X marks were drawn."""
    c_in, c_out = conn.shape
    marks = _marks_word(c_in, c_out, cell, cell) == "X"
    ax.imshow(np.where(conn, 0.80 if marks else 0.25, 1.0), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest", aspect="auto")
    if marks:
        ii, nn = np.nonzero(conn)
        size_pt = 0.55 * cell * 72 / _DPI
        ax.scatter(nn, ii, marker="x", s=size_pt ** 2, c="black", linewidths=max(0.5, size_pt / 8))
    if max(c_in, c_out) <= 64 and cell >= 6:  # cell borders
        ax.set_xticks(np.arange(-0.5, c_out, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, c_in, 1), minor=True)
        ax.grid(which="minor", color="0.6", linewidth=0.4)
        ax.tick_params(which="minor", length=0)
    return marks


def _label_matrix(ax, c_in: int, c_out: int, cw: float, ch: float, digit_w: float, digit_h: float,
                  flat: bool) -> None:
    ax.set_xticks(_mpl.index_ticks(c_out, cw, digit_w))
    ax.set_yticks(_mpl.index_ticks(c_in, ch, digit_h))
    ax.xaxis.set_label_position("top")
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False, labelsize=_TICK_PT, length=2)
    ax.set_xlabel("output map n", fontsize=_LABEL_PT)
    if flat:
        ax.set_ylabel("input map i", fontsize=_LABEL_PT, rotation=0, ha="right", va="center")
    else:
        ax.set_ylabel("input map i", fontsize=_LABEL_PT)


def _graph(bx, conn: np.ndarray, height_px: float, digit_h: float, links: np.ndarray | None = None) -> None:
    """The bipartite drawing: input maps on the left, output maps on the right, one line per pair
    (widths from `links` when given, see `_weighted_lines`)."""
    from matplotlib.collections import LineCollection

    c_in, c_out = conn.shape
    bx.set_axis_off()
    yi, yo = _spread(c_in), _spread(c_out)
    if links is None:
        ii, nn = np.nonzero(conn)
        alpha = 0.8 if ii.size <= 128 else max(0.05, 4 / ii.size ** 0.5)
        bx.add_collection(LineCollection(_segments(ii, nn, yi, yo), colors="tab:blue",
                                         linewidths=0.7 if ii.size <= 200 else 0.4, alpha=alpha))
    else:
        _weighted_lines(bx, conn, links, yi, yo)
    dot = float(np.clip(300 / max(c_in, c_out), 4, 60))
    bx.scatter(np.zeros(c_in), yi, s=dot, c="tab:orange", zorder=3, edgecolors="black", linewidths=0.4)
    bx.scatter(np.ones(c_out), yo, s=dot, c="tab:green", zorder=3, edgecolors="black", linewidths=0.4)
    bx.set_xlim(-0.25, 1.25)
    bx.set_ylim(1.03, -0.03)
    bx.text(0, -0.035, f"{_n(c_in, 'input map')}", ha="center", va="bottom", fontsize=_LABEL_PT)
    bx.text(1, -0.035, f"{_n(c_out, 'output map')}", ha="center", va="bottom", fontsize=_LABEL_PT)
    px_per_unit = height_px / 1.06
    for count, ys, x, ha in ((c_in, yi, -0.06, "right"), (c_out, yo, 1.06, "left")):
        pitch = px_per_unit * (ys[1] - ys[0]) if count > 1 else height_px
        for j in _mpl.index_ticks(count, pitch, digit_h):
            bx.text(x, ys[j], str(j), ha=ha, va="center", fontsize=_TICK_PT)


def _segments(ii: np.ndarray, nn: np.ndarray, yi: np.ndarray, yo: np.ndarray) -> np.ndarray:
    """(pairs, 2, 2) line segments from input map ii (x = 0) to output map nn (x = 1)."""
    return np.stack([np.stack([np.zeros(ii.size), yi[ii]], 1), np.stack([np.ones(ii.size), yo[nn]], 1)], 1)


# widest weighted line (points) for few / many lines; zero weights: a faint hairline
MAX_LW, MAX_LW_MANY, ZERO_LW = 4.0, 2.0, 0.4
POSITIVE, NEGATIVE, ZERO = "tab:red", "tab:blue", "0.6"


def _weighted_lines(bx, conn: np.ndarray, links: np.ndarray, yi: np.ndarray, yo: np.ndarray) -> None:
    """Connected pairs with a nonzero weight: one LineCollection ("weighted lines"), width exactly
    proportional to |weight| (the largest MAX_LW), alpha 0.25–0.9 growing with it, red > 0, blue < 0.
    Pairs with weight 0: a second collection ("zero-weight lines") of faint grey hairlines."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba

    ii, nn = np.nonzero(conn & (links == 0))
    if ii.size:
        bx.add_collection(LineCollection(_segments(ii, nn, yi, yo), colors=ZERO, linewidths=ZERO_LW, alpha=0.3,
                                         linestyles="dotted", label="zero-weight lines"))
    ii, nn = np.nonzero(links != 0)
    if not ii.size:
        return
    w = links[ii, nn]
    rel = np.abs(w) / np.abs(w).max()
    widest = MAX_LW if ii.size <= 200 else MAX_LW_MANY
    colours = np.array([to_rgba(POSITIVE if v > 0 else NEGATIVE, 0.25 + 0.65 * r) for v, r in zip(w, rel)])
    order = np.argsort(rel)  # the strongest lines on top
    bx.add_collection(LineCollection(_segments(ii, nn, yi, yo)[order], colors=colours[order],
                                     linewidths=widest * rel[order], label="weighted lines"))


def _links(weights, out_map, conn: np.ndarray) -> np.ndarray:
    """`weights` (and `out_map`) checked and as a (C_in, C_out) float array."""
    c_in, c_out = conn.shape
    fn = "connectivity_diagram"
    if weights is None:
        raise ValueError(f"{fn}: out_map={out_map!r} needs weights, a ({c_in},) array for that output map; "
                         "received weights=None")
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: weights must be a numeric array of shape (C_in, C_out) = ({c_in}, {c_out}); "
                        f"received {type(weights).__name__}") from None
    if w.shape == (c_in,):
        w = _one_map(w, out_map, c_out)
    elif w.shape == (c_in, c_out):
        if out_map is not None:
            raise ValueError(f"{fn}: out_map goes with (C_in,) = ({c_in},) weights for one output map; received "
                             f"out_map={out_map!r} with weights of shape {w.shape}")
    else:
        raise ValueError(f"{fn}: weights must have shape (C_in, C_out) = ({c_in}, {c_out}), or ({c_in},) with "
                         f"out_map=n; received shape {w.shape}")
    _check_values(w, conn)
    return w


def _one_map(w: np.ndarray, out_map, c_out: int) -> np.ndarray:
    if not (isinstance(out_map, (int, np.integer)) and not isinstance(out_map, bool) and 0 <= out_map < c_out):
        raise ValueError(f"connectivity_diagram: weights of shape {w.shape} are for one output map, so out_map "
                         f"must be an output map in [0, {c_out - 1}]; received out_map={out_map!r}")
    full = np.zeros((w.shape[0], c_out))
    full[:, out_map] = w
    return full


def _check_values(w: np.ndarray, conn: np.ndarray) -> None:
    bad = np.argwhere(~np.isfinite(w))
    if bad.size:
        i, n = bad[0]
        raise ValueError(f"connectivity_diagram: weights must be finite; received {w[i, n]} at (i, n) = ({i}, {n})")
    stray = np.argwhere((w != 0) & ~conn)
    if stray.size:
        i, n = stray[0]
        raise ValueError(f"connectivity_diagram: weights must be 0 where the layer connects no kernel; received "
                         f"{w[i, n]:g} at (i, n) = ({i}, {n}), a pair the layer does not connect")


def _weights_line(links: np.ndarray, out_map) -> str:
    top = float(np.abs(links).max())
    which = "" if out_map is None else f" into output map {out_map}"
    return (f"line width ∝ |contribution|{which} (largest {top:.3g}): red positive, blue negative, "
            "dotted grey zero")


def _marks_word(c_in: int, c_out: int, cw: float, ch: float) -> str:
    """'X' when the matrix draws an X per connected pair (small matrices, cells ≥ 8 pixels), else 'dark cell'."""
    return "X" if c_in * c_out <= 40 * 40 and min(cw, ch) >= 8 else "dark cell"


def _fan_line(fan: str, maps: str, mark: str) -> str:
    return (f"each output map reads {fan} {maps} ({mark} at (i, n) = output map n has a kernel "
            "w[:, :, i, n] for input map i)")


def _title(fig, conn: np.ndarray, title: str, kind: str, marks: bool, width: float, height: float,
           extra: str | None = None) -> None:
    c_in, c_out = conn.shape
    fan_in = conn.sum(axis=0)
    fan = f"{fan_in.min()}" if fan_in.min() == fan_in.max() else f"{fan_in.min()}–{fan_in.max()}"
    maps = "input map" if fan_in.max() == 1 else "input maps"
    text = (f"{title}: {kind} — {int(conn.sum()):,} of {c_in * c_out:,} input/output map pairs connected\n"
            + _fan_line(fan, maps, "X" if marks else "dark cell") + ("" if extra is None else f"\n{extra}"))
    widest = max(_mpl.text_size(fig, line, _TITLE_PT)[0] for line in text.split("\n"))
    size = _TITLE_PT * min(1.0, (width - 16) / widest)  # a long layer name shrinks the title, not the figure
    fig.suptitle(text, fontsize=size, y=1.0 - 4 / height, va="top")


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _spread(count: int) -> np.ndarray:
    return np.array([0.5]) if count == 1 else np.linspace(0.0, 1.0, count)
