"""`Affine`: a per-channel scale and shift, `y = x · weight + bias` (what an ONNX Mul / Add / Sub /
Div by a per-channel constant is, when it cannot be folded into the layer before it), and `Rescaling`:
the same with constants instead of parameters (Keras's Rescaling)."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .._json import jsonable
from ..tensor import as_array
from .conv import _positive_int
from .module import Module, kwarg_repr, register

__all__ = ["Affine", "Rescaling"]


@register
class Affine(Module):
    """`y = x · weight + bias` along the last (channel) axis of NHWC maps or (N, F) vectors.

    `weight` (starts at 1) and `bias` (starts at 0) have shape `(num_features,)`; `num_features` = 1
    shares one value across every channel. `scale=False` / `shift=False` leave that parameter out
    (then it is None). Each output depends on its own input alone (`elementwise`)."""

    role, spatial, elementwise = "other", "same", True

    def __init__(self, num_features: int, scale: bool = True, shift: bool = True):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features", "Affine")
        for name, flag in (("scale", scale), ("shift", shift)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"Affine: {name} must be True or False; received {flag!r}")
        self.scale, self.shift = bool(scale), bool(shift)
        self.register_parameter("weight", np.ones(self.num_features, np.float32) if self.scale else None)
        self.register_parameter("bias", np.zeros(self.num_features, np.float32) if self.shift else None)

    def forward(self, x):
        if self.weight is not None:
            x = F.mul(x, self.weight)
        if self.bias is not None:
            x = F.add(x, self.bias)
        return x

    def compute_output_shape(self, input_shape):
        shape = self._check_rank(input_shape, ranks=(1, 3))
        if self.num_features != 1 and shape[-1] != self.num_features:
            self._shape_error(shape, f"{self.num_features} channels on the last axis (num_features); "
                                     f"it has {shape[-1]}")
        return shape

    def get_config(self):
        return {"class": "Affine", "num_features": self.num_features, "scale": self.scale, "shift": self.shift}

    def _repr_args(self):
        return [str(self.num_features)] + kwarg_repr("scale", self.scale, True) + kwarg_repr("shift", self.shift, True)


def _coefficient(value, name: str):
    """A float, or a tuple of floats (one per channel), from `value`."""
    try:
        arr = None if isinstance(value, (bool, np.bool_, str)) else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim > 1 or arr.size < 1 or not np.isfinite(arr).all():
        raise ValueError(f"Rescaling: {name} must be a finite number or a 1-D list of per-channel numbers; "
                         f"received {value!r}")
    return float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr)


@register
class Rescaling(Module):
    """`y = x · scale + offset` (Keras's Rescaling: e.g. `Rescaling(1 / 255)` for 8-bit images).

    `scale` and `offset` are numbers, or lists of one number per channel (last axis). They are
    constants of the model, not parameters: nothing is trained. Each output depends on its own input
    alone (`elementwise`)."""

    role, spatial, elementwise = "other", "same", True

    def __init__(self, scale, offset=0.0):
        super().__init__()
        self.scale = _coefficient(scale, "scale")
        self.offset = _coefficient(offset, "offset")
        sizes = {len(v) for v in (self.scale, self.offset) if isinstance(v, tuple)} - {1}
        if len(sizes) > 1:
            raise ValueError(f"Rescaling: scale and offset must have one length (or be numbers); received "
                             f"{scale!r} and {offset!r}")
        self._channels = sizes.pop() if sizes else None  # per-channel length, None when both broadcast

    def forward(self, x):
        dtype = as_array(x).dtype
        scale = self.scale if isinstance(self.scale, float) else np.asarray(self.scale, dtype)
        offset = self.offset if isinstance(self.offset, float) else np.asarray(self.offset, dtype)
        return F.add(F.mul(x, scale), offset)

    def compute_output_shape(self, input_shape):
        shape = self._check_rank(input_shape, ranks=(1, 3))
        c = self._channels
        if c is not None and shape[-1] != c:
            self._shape_error(shape, f"{c} channels on the last axis (the length of scale/offset); it has {shape[-1]}")
        return shape

    def get_config(self):
        return {"class": "Rescaling", "scale": jsonable(self.scale), "offset": jsonable(self.offset)}

    def _repr_args(self):
        return [repr(self.scale)] + kwarg_repr("offset", self.offset, 0.0)
