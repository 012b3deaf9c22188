"""`connectivity_diagram`: which input maps each output map of a conv layer reads.

Two panels from the boolean matrix `featuremaps.inspect.connections(layer)` (rows = input maps,
columns = output maps, True where output map n has a kernel for input map i):

- left: the matrix drawn like Table I of LeCun et al. (1998) for LeNet-5's C3 — an X where connected;
- right: a bipartite drawing, input maps on the left, output maps on the right, one line per
  connection.

A full layer is a solid block / complete bipartite graph; groups give diagonal blocks; a depthwise
layer gives one line per input map; a connection table gives its own irregular pattern.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _layers, _mpl

__all__ = ["connectivity_diagram"]


def connectivity_diagram(layer, path: str | Path | None = None, *, name: str | None = None):
    """Draw the connection matrix and the bipartite graph of conv `layer`.

    Save a PNG at `path` (returns the Path) or return the Figure. `name` is used in the title.
    """
    _mpl.require("connectivity_diagram")
    _layers.check_conv(layer, "connectivity_diagram")
    from featuremaps.inspect import connections
    from matplotlib.collections import LineCollection

    conn = np.asarray(connections(layer), dtype=bool)  # (C_in, C_out)
    c_in, c_out = conn.shape
    title = _layers.layer_name(layer, name)
    kind = _layers.pattern(layer, conn)

    fig = _mpl.figure(9.0, 4.4, dpi=100)
    # Left: the matrix, columns = output maps, rows = input maps.
    ax = fig.add_axes((0.06, 0.08, 0.50, 0.72))
    marks = c_in * c_out <= 40 * 40  # X marks like Table I; bigger matrices are filled cells
    ax.imshow(np.where(conn, 0.80 if marks else 0.25, 1.0), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest", aspect="equal")
    if marks:
        ii, nn = np.nonzero(conn)
        size = float(np.clip(240 / max(c_in, c_out, 1), 2, 11))
        ax.scatter(nn, ii, marker="x", s=size ** 2 * 0.45, c="black", linewidths=max(0.5, size / 9))
    if max(c_in, c_out) <= 64:  # cell borders
        ax.set_xticks(np.arange(-0.5, c_out, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, c_in, 1), minor=True)
        ax.grid(which="minor", color="0.6", linewidth=0.4)
        ax.tick_params(which="minor", length=0)
    _thin_ticks(ax, c_in, c_out)
    ax.xaxis.set_label_position("top")
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False, labelsize=6, length=2)
    ax.set_xlabel("output map n", fontsize=8)
    ax.set_ylabel("input map i", fontsize=8)

    # Right: bipartite graph.
    bx = fig.add_axes((0.62, 0.04, 0.36, 0.78))
    bx.set_axis_off()
    yi = _spread(c_in)
    yo = _spread(c_out)
    ii, nn = np.nonzero(conn)
    segs = np.stack([np.stack([np.zeros(ii.size), yi[ii]], 1), np.stack([np.ones(ii.size), yo[nn]], 1)], 1)
    alpha = 0.8 if ii.size <= 128 else max(0.05, 4 / ii.size ** 0.5)
    bx.add_collection(LineCollection(segs, colors="tab:blue", linewidths=0.7 if ii.size <= 200 else 0.4,
                                     alpha=alpha))
    dot = float(np.clip(300 / max(c_in, c_out), 4, 60))
    bx.scatter(np.zeros(c_in), yi, s=dot, c="tab:orange", zorder=3, edgecolors="black", linewidths=0.4)
    bx.scatter(np.ones(c_out), yo, s=dot, c="tab:green", zorder=3, edgecolors="black", linewidths=0.4)
    bx.set_xlim(-0.25, 1.25)
    bx.set_ylim(1.04, -0.06)
    bx.text(0, -0.05, f"{c_in} input maps", ha="center", va="bottom", fontsize=8)
    bx.text(1, -0.05, f"{c_out} output maps", ha="center", va="bottom", fontsize=8)
    if max(c_in, c_out) <= 24:
        for i in range(c_in):
            bx.text(-0.06, yi[i], str(i), ha="right", va="center", fontsize=6)
        for n in range(c_out):
            bx.text(1.06, yo[n], str(n), ha="left", va="center", fontsize=6)

    fan_in = conn.sum(axis=0)
    fan = f"{fan_in.min()}" if fan_in.min() == fan_in.max() else f"{fan_in.min()}–{fan_in.max()}"
    maps = "input map" if fan_in.max() == 1 else "input maps"
    fig.suptitle(f"{title}: {kind} — {int(conn.sum()):,} of {c_in * c_out:,} input/output map pairs connected\n"
                 f"each output map reads {fan} {maps} ({'X' if marks else 'dark cell'} at (i, n) = "
                 "output map n has a kernel w[:, :, i, n] for input map i)",
                 fontsize=9)
    return _mpl.finish(fig, path)


def _spread(count: int) -> np.ndarray:
    return np.array([0.5]) if count == 1 else np.linspace(0.0, 1.0, count)


def _thin_ticks(ax, n_rows: int, n_cols: int) -> None:
    for count, setter in ((n_cols, ax.set_xticks), (n_rows, ax.set_yticks)):
        step = max(1, int(np.ceil(count / 16)))
        setter(list(range(0, count, step)))
