"""HTML pieces for the notebook displays (`_repr_html_` of models, `Summary` and `Explanation`).

No dependency beyond NumPy and the standard library. Thumbnails are drawn as the HTML report draws
its canvases (`featuremaps/report/_js.py`): one pixel per value, coloured by the report's `diverging`
scale around 0 (blue negative, white zero, red positive; magenta for a non-finite value) or, for
the input image, in grey from min to max, then scaled up by the browser without smoothing. Here the
pixels travel as an 8-bit RGB PNG (written with zlib + struct) in a `data:` URI, so the display
needs no script and survives a notebook's HTML sanitiser.

Every piece of user text (layer names, reprs, messages) goes through `esc`.
"""
from __future__ import annotations

import base64
import html
import struct
import zlib

import numpy as np

__all__ = ["STOPS", "esc", "diverging", "grey", "png", "thumbnail", "cell_px", "wrap"]

#: The report's diverging colour stops at t = -1, -0.5, 0, 0.5, 1 (`STOPS` in report/_js.py).
STOPS = np.array([[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77], [103, 0, 31]], dtype=np.float64)
_NONFINITE = (255, 0, 255)  # the report's colour for NaN and ±inf


def esc(text) -> str:
    """`text` as HTML text or attribute value (quotes escaped too)."""
    return html.escape(str(text), quote=True)


def _bytes(rgb: np.ndarray) -> np.ndarray:
    """Float RGB to uint8 the way a canvas's ImageData stores it (round half to even, clamp)."""
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def diverging(t) -> np.ndarray:
    """RGB uint8 `(..., 3)` of `t` (values already divided by their scale; clipped to [-1, 1]),
    interpolated linearly between `STOPS` as the report's `diverging(t)` does."""
    t = np.asarray(t, dtype=np.float64)
    finite = np.isfinite(t)
    u = (np.clip(np.where(finite, t, 0.0), -1.0, 1.0) + 1.0) * 2.0  # in [0, 4]: which pair of stops
    i = np.minimum(3, np.floor(u)).astype(np.intp)
    f = (u - i)[..., None]
    rgb = STOPS[i] + (STOPS[i + 1] - STOPS[i]) * f
    rgb[~finite] = _NONFINITE
    return _bytes(rgb)


def grey(v, lo: float, hi: float) -> np.ndarray:
    """RGB uint8 `(..., 3)`: black at `lo`, white at `hi` (the report's colours for the input)."""
    v = np.asarray(v, dtype=np.float64)
    finite = np.isfinite(v)
    span = (hi - lo) or 1.0
    g = 255.0 * np.clip((np.where(finite, v, lo) - lo) / span, 0.0, 1.0)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    rgb[~finite] = _NONFINITE
    return _bytes(rgb)


def png(rgb: np.ndarray) -> bytes:
    """An 8-bit truecolour PNG of `rgb` `(h, w, 3)` uint8: IHDR, one IDAT (filter 0 on every row), IEND."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"png: expected a non-empty (height, width, 3) image; received shape {rgb.shape}")
    h, w, _ = rgb.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)  # (h, 1 + 3w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no filter choice, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
            + chunk(b"IEND", b""))


def cell_px(kh: int, kw: int) -> int:
    """CSS size of a window or kernel thumbnail's longer side (the report's `cellPx`)."""
    return max(36, min(72, 9 * max(kh, kw)))


def thumbnail(rgb: np.ndarray, css_px: int, cls: str, alt: str) -> str:
    """An `<img>` of `rgb` whose longer side is `css_px` CSS pixels, drawn without smoothing."""
    h, w = rgb.shape[:2]
    s = css_px / max(h, w)
    uri = "data:image/png;base64," + base64.b64encode(png(rgb)).decode("ascii")
    return (f'<img class="fm-thumb {esc(cls)}" src="{uri}" width="{round(w * s)}" height="{round(h * s)}" '
            f'alt="{esc(alt)}" style="image-rendering: pixelated">')


_STYLE = """<style>
.fm-repr { font-size: 13px; line-height: 1.4; }
.fm-repr table { border-collapse: collapse; margin: .3em 0; }
.fm-repr th, .fm-repr td { padding: 2px 8px; border-bottom: 1px solid rgba(127, 127, 127, .3);
  text-align: left; vertical-align: middle; }
.fm-repr thead th { font-weight: 600; }
.fm-repr .num { text-align: right; font-family: ui-monospace, Menlo, Consolas, monospace;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
.fm-repr code, .fm-repr .mono { font-family: ui-monospace, Menlo, Consolas, monospace; }
.fm-repr tfoot td, .fm-repr tfoot th { font-weight: 600; }
.fm-repr tr.fm-note td { font-size: 11px; opacity: .75; border-bottom: 0; padding-top: 0; }
.fm-repr img.fm-thumb { display: block; border: 1px solid rgba(127, 127, 127, .5);
  image-rendering: pixelated; image-rendering: crisp-edges; }
.fm-repr .fm-bad { color: #b42318; font-weight: 700; }
.fm-repr .fm-ok { color: #1a7f37; }
.fm-repr p { margin: .2em 0; }
</style>"""


def wrap(body: str, kind: str) -> str:
    """The display's outer `<div>` (class `fm-repr fm-<kind>`) with its scoped style sheet."""
    return f'<div class="fm-repr fm-{esc(kind)}">{_STYLE}{body}</div>'
