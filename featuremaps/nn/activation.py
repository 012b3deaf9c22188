"""Activation layers: thin wrappers over `featuremaps.functional.activation`; shapes pass through."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .module import Module, kwarg_repr, register

__all__ = ["ReLU", "LeakyReLU", "ELU", "Tanh", "ScaledTanh", "Sigmoid", "Softmax"]


class _Elementwise(Module):
    role, spatial, elementwise = "activation", "same", True

    def compute_output_shape(self, input_shape):
        return self._check_rank(input_shape, ranks=(1, 3))


def _number(value, name: str, op: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a number; received {value!r}")
    return float(value)


@register
class ReLU(_Elementwise):
    """max(x, 0)."""

    def forward(self, x):
        return F.relu(x)


@register
class LeakyReLU(_Elementwise):
    """x for x > 0, negative_slope·x otherwise."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = _number(negative_slope, "negative_slope", "LeakyReLU")

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def get_config(self):
        return {"class": "LeakyReLU", "negative_slope": self.negative_slope}

    def _repr_args(self):
        return kwarg_repr("negative_slope", self.negative_slope, 0.01)


@register
class ELU(_Elementwise):
    """x for x > 0, alpha·(eˣ − 1) otherwise."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = _number(alpha, "alpha", "ELU")

    def forward(self, x):
        return F.elu(x, self.alpha)

    def get_config(self):
        return {"class": "ELU", "alpha": self.alpha}

    def _repr_args(self):
        return kwarg_repr("alpha", self.alpha, 1.0)


@register
class Tanh(_Elementwise):
    """tanh(x)."""

    def forward(self, x):
        return F.tanh(x)


@register
class ScaledTanh(_Elementwise):
    """LeCun's sigmoid `A·tanh(S·x)` with A = 1.7159, S = 2/3 (LeCun et al. 1998, appendix A), so
    that f(±1) = ±1. Built from `F.tanh` and `F.mul`."""

    A, S = 1.7159, 2.0 / 3.0

    def forward(self, x):
        return F.mul(F.tanh(F.mul(x, self.S)), self.A)


@register
class Sigmoid(_Elementwise):
    """1 / (1 + e⁻ˣ)."""

    def forward(self, x):
        return F.sigmoid(x)


@register
class Softmax(_Elementwise):
    """Softmax along `axis` (the last by default). Models output logits; use this only for probabilities."""

    elementwise = False  # each output depends on every value along `axis`

    def __init__(self, axis: int = -1):
        super().__init__()
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"Softmax: axis must be an int; received {axis!r}")
        self.axis = int(axis)
        if self.axis != -1:
            self.spatial = None  # along another axis than the channels, positions mix

    def forward(self, x):
        return F.softmax(x, axis=self.axis)

    def get_config(self):
        return {"class": "Softmax", "axis": self.axis}

    def _repr_args(self):
        return kwarg_repr("axis", self.axis, -1)
