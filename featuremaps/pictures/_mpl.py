"""Lazy matplotlib access for `featuremaps.pictures` (the optional extra `plot`).

Figures are built with `matplotlib.figure.Figure` directly and rendered by the Agg canvas, so no
GUI backend is touched, no window ever opens and pyplot's global state is left alone. matplotlib is
imported on first use, never at package import, so the core library needs only NumPy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

INSTALL_HINT = "pip install 'featuremaps[plot]'"


def require(what: str = "featuremaps.pictures") -> Any:
    """Import matplotlib (and Agg) or raise ImportError saying how to install the `plot` extra."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{what} needs matplotlib, which is not installed; install the plot extra: {INSTALL_HINT}"
        ) from exc
    return matplotlib


def figure(width_in: float, height_in: float, dpi: int = 100):
    """A new Agg-backed Figure of the given size in inches (no pyplot, no window)."""
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def finish(fig, path: str | Path | None, *, dpi: int | None = None):
    """Save `fig` as PNG at `path` and return the Path, or return the Figure when `path` is None.

    The PNG carries no 'Software' metadata so the bytes do not depend on the matplotlib version
    string alone.
    """
    if path is None:
        return fig
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"pictures: path must end in .png; received {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi or fig.dpi, metadata={"Software": None})
    return path


def mosaic(tiles: list[np.ndarray], ncols: int, gap: int = 1) -> np.ndarray:
    """Lay equal-shape tiles (h, w) or (h, w, 3) out in a grid, row by row, separated by `gap`
    pixels of NaN (drawn as background). Returns a float64 array."""
    h, w = tiles[0].shape[:2]
    extra = tiles[0].shape[2:]
    nrows = -(-len(tiles) // ncols)
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap) + extra, np.nan)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, ncols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tile
    return out


# --- layout in pixels: measured text, thinned ticks -------------------------------------------------

_STEPS = (1, 2, 5)


def text_size(fig, text: str, fontsize: float, *, family: str | None = None, weight: str = "normal"):
    """(width, height) in pixels at `fig.dpi` of one line of `text`, as Agg will draw it."""
    from matplotlib.font_manager import FontProperties

    renderer = fig.canvas.get_renderer()
    prop = FontProperties(size=fontsize, family=family, weight=weight)
    w, h, _ = renderer.get_text_width_height_descent(text, prop, ismath=False)
    return float(w) * fig.dpi / renderer.dpi, float(h) * fig.dpi / renderer.dpi


def tick_step(pitch_px: float, label_px: float) -> int:
    """The smallest step in 1, 2, 5, 10, 20, 50, ... such that labels `label_px` wide (along the axis),
    one every `step` items spaced `pitch_px` apart, keep a 3-pixel gap between neighbours."""
    need = (label_px + 3.0) / max(pitch_px, 1e-9)
    scale = 1
    while True:
        for s in _STEPS:
            if s * scale >= need:
                return s * scale
        scale *= 10


def index_ticks(count: int, pitch_px: float, label_px: float) -> list[int]:
    """Indices 0, step, 2·step, ... < count whose labels do not overlap (see `tick_step`)."""
    return list(range(0, count, tick_step(pitch_px, label_px)))
