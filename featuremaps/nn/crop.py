"""`Cropping2D`: remove rows and columns from the borders of NHWC maps (Keras's Cropping2D; what an
ONNX Slice over H and W with constant starts and ends is)."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .._json import jsonable
from .module import Module, register, tupled

__all__ = ["Cropping2D"]


def _crops(cropping, op: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) from an int, a pair (rows, cols) or the nested form; each ≥ 0."""
    c = tupled(cropping)

    def ok(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 0

    if ok(c):
        return (int(c), int(c)), (int(c), int(c))
    if isinstance(c, tuple) and len(c) == 2 and all(ok(v) for v in c):
        return (int(c[0]), int(c[0])), (int(c[1]), int(c[1]))
    if isinstance(c, tuple) and len(c) == 2 and all(isinstance(p, tuple) and len(p) == 2 and all(ok(v) for v in p)
                                                    for p in c):
        return (int(c[0][0]), int(c[0][1])), (int(c[1][0]), int(c[1][1]))
    raise ValueError(f"{op}: cropping must be a non-negative int, a pair (rows, cols) or "
                     f"((top, bottom), (left, right)); received {cropping!r}")


@register
class Cropping2D(Module):
    """Crop H and W: output = `x[:, top:H - bottom, left:W - right, :]`.

    `cropping` is an int (every side), a pair (rows, cols) (top = bottom, left = right) or
    ((top, bottom), (left, right)), as Keras. Stored as the nested form in `cropping`.

    `spatial` is None (not 'pad': the tools that read 'pad' layers take a non-negative `padding`):
    `map_sources` traces it as a shape layer that moves values, and `receptive_field` stops at it."""

    role = "shape"

    def __init__(self, cropping=((0, 0), (0, 0))):
        super().__init__()
        self.cropping = _crops(cropping, "Cropping2D")

    def forward(self, x):
        (t, b), (l, r) = self.cropping  # noqa: E741
        h, w = np.shape(x)[1:3]
        if t + b >= h or l + r >= w:
            raise ValueError(f"Cropping2D: cropping {self.cropping} removes every row or column of the "
                             f"{h}×{w} input; it needs more than {t + b} rows and {l + r} columns")
        return F.getitem(x, (slice(None), slice(t, h - b), slice(l, w - r)))  # (n, h - t - b, w - l - r, c)

    def compute_output_shape(self, input_shape):
        h, w, c = self._check_rank(input_shape)
        (t, b), (l, r) = self.cropping  # noqa: E741
        if t + b >= h or l + r >= w:
            self._shape_error((h, w, c), f"more than {t + b} rows and {l + r} columns (cropping {self.cropping})")
        return (h - t - b, w - l - r, c)

    def get_config(self) -> dict:
        return {"class": "Cropping2D", "cropping": jsonable(self.cropping)}

    def _repr_args(self):
        (t, b), (l, r) = self.cropping  # noqa: E741
        if t == b == l == r:
            return [str(t)]
        if t == b and l == r:
            return [repr((t, l))]
        return [repr(self.cropping)]
