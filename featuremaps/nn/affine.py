"""`Affine`: a per-channel scale and shift, `y = x · weight + bias` (what an ONNX Mul / Add / Sub /
Div by a per-channel constant is, when it cannot be folded into the layer before it)."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .conv import _positive_int
from .module import Module, kwarg_repr, register

__all__ = ["Affine"]


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
