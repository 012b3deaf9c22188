"""Which layers' values the report embeds exactly, and the previews it embeds for the others.

A LeNet's maps are a few hundred kilobytes; a ResNet-50's at 224 × 224 are about 140 MB of float32.
So every layer's exact values are embedded while they fit `VALUE_BUDGET` bytes, in priority order:
the unit the page opens on and the layers it reads, then from the output back to the input (deep
layers are small, and each embedded layer lets the page decompose the layer after it). A layer past
the budget gets a preview instead: at most `PREVIEW_BYTES` bytes of 8-bit values, its first maps
subsampled to at most `PREVIEW_PX` pixels a side (nearest pixel), on the layer's own colour scale,
enough to draw thumbnails. The page says which layers are previews and how to embed one exactly
(`featuremaps report --layer NAME`).
"""
from __future__ import annotations

import base64

import numpy as np

__all__ = ["VALUE_BUDGET", "PREVIEW_BYTES", "PREVIEW_PX", "choose_exact", "preview"]

#: Bytes of layer values (in the model's dtype) the page embeds exactly.
VALUE_BUDGET = 6_000_000
#: Bytes of one layer's 8-bit preview, and its largest side in pixels.
PREVIEW_BYTES = 16_384
PREVIEW_PX = 16


def choose_exact(nbytes: list[int], inputs: list[list[int]], first: list[int], budget: int) -> set[int]:
    """The entries whose values are embedded: `first` (and what each of them reads), then the
    others from last to first, each while it fits what is left of `budget` bytes."""
    chosen, left = set(), budget
    wanted = []
    for k in first:
        wanted += [k] + list(inputs[k])
    wanted += list(range(len(nbytes) - 1, -1, -1))
    for k in wanted:
        if k not in chosen and nbytes[k] <= left:
            chosen.add(k)
            left -= nbytes[k]
    return chosen


def _pick(n: int, most: int) -> np.ndarray:
    """`min(n, most)` indices spread over range(n) (nearest-pixel subsampling)."""
    m = min(n, most)
    return (np.arange(m) * n) // m


def preview(arr: np.ndarray, grey: bool, lo: float, hi: float, absmax: float) -> dict:
    """An 8-bit preview of one layer's output `(H, W, C)` or `(F,)`.

    Grey layers (the input) map [lo, hi] to 1..255; the others map [-absmax, absmax] to 1..255 around
    128 = 0. 0 stands for a non-finite value. Maps: the first `maps` maps at `(h, w)` pixels, stored
    `(maps, h, w)` row-major; vectors: the first `units` values."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 3:
        h, w, c = a.shape
        rows, cols = _pick(h, PREVIEW_PX), _pick(w, PREVIEW_PX)
        maps = max(1, min(c, PREVIEW_BYTES // (len(rows) * len(cols))))
        small = a[np.ix_(rows, cols)][:, :, :maps].transpose(2, 0, 1)  # (maps, h', w')
        shape = {"maps": int(maps), "h": int(len(rows)), "w": int(len(cols))}
    else:
        small = a.ravel()[:PREVIEW_BYTES]
        shape = {"units": int(small.size)}
    finite = np.isfinite(small)
    if grey:
        t = (np.where(finite, small, lo) - lo) / ((hi - lo) or 1.0)
        q = np.clip(1 + np.rint(t * 254), 1, 255)
    else:
        t = np.where(finite, small, 0.0) / (absmax or 1.0)
        q = np.clip(np.rint(128 + 127 * t), 1, 255)
    q = np.where(finite, q, 0).astype(np.uint8)
    return dict(shape, data=base64.b64encode(np.ascontiguousarray(q).tobytes()).decode("ascii"))
