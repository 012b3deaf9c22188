"""Fully connected layers: `Dense`, `Flatten`."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import init as initializers
from .conv import _positive_int
from .module import Module, as_rng, kwarg_repr, register

__all__ = ["Dense", "Flatten"]


@register
class Dense(Module):
    """`y = x · weight + bias` on (N, in_features): `F.linear`.

    `weight` is `(in_features, out_features)`. `init` names an initialiser in `featuremaps.init`
    (default 'lecun_uniform', fan-in `in_features`); biases start at 0. `rng` as in `Conv2D`.
    """

    role, spatial, decomposition = "dense", "all", "weighted_sum"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None,
                 init: str = "lecun_uniform"):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features", "Dense")
        self.out_features = _positive_int(out_features, "out_features", "Dense")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"Dense: bias must be True or False; received {bias!r}")
        self.use_bias = bool(bias)
        self.init = init
        w = initializers.get(init)((self.in_features, self.out_features), self.in_features, self.out_features,
                                   as_rng(rng, "Dense"))
        self.register_parameter("weight", w.astype(np.float32))
        self.register_parameter("bias", np.zeros(self.out_features, np.float32) if self.use_bias else None)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def compute_output_shape(self, input_shape):
        shape = self._check_rank(input_shape, ranks=(1, 3))
        if len(shape) != 1:
            self._shape_error(shape, f"a vector of {self.in_features} features (in_features); "
                                     "put a Flatten or a global pool before it")
        if shape[0] != self.in_features:
            self._shape_error(shape, f"{self.in_features} features (in_features); it has {shape[0]}")
        return (self.out_features,)

    def get_config(self) -> dict:
        return {"class": "Dense", "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.use_bias, "init": self.init}

    def _repr_args(self):
        return ([str(self.in_features), str(self.out_features)] + kwarg_repr("bias", self.use_bias, True)
                + kwarg_repr("init", self.init, "lecun_uniform"))


@register
class Flatten(Module):
    """(N, H, W, C) → (N, H·W·C), flattened in (h, w, c) order (`F.flatten`)."""

    role, spatial = "shape", "flatten"

    def forward(self, x):
        return F.flatten(x)

    def compute_output_shape(self, input_shape):
        shape = self._check_rank(input_shape, ranks=(1, 3))
        return (int(np.prod(shape)),)
