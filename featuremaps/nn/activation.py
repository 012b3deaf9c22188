"""Activation layers: thin wrappers over `featuremaps.functional.activation`; shapes pass through.

The gradient at a kink follows the functional op (and PyTorch): `Clip` passes it at its bounds
(`torch.clamp`), `ReLU6`, `HardSigmoid` and `HardSwish` do not. The smooth ones of newer nets (`GELU`,
`SiLU`, `Softplus`, `Softsign`, `Mish`, `Exponential`) are element-wise too; `LogSoftmax`, like
`Softmax`, is not.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .conv import _positive_int
from .module import Module, kwarg_repr, register

_INIT_SLOPE = 0.25  # PyTorch's PReLU init

__all__ = ["ReLU", "LeakyReLU", "ELU", "Tanh", "ScaledTanh", "Sigmoid", "Softmax", "PReLU", "Clip", "ReLU6",
           "HardSigmoid", "HardSwish", "GELU", "SiLU", "Softplus", "Softsign", "Mish", "Exponential", "LogSoftmax"]


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
            raise TypeError(f"{type(self).__name__}: axis must be an int; received {axis!r}")
        self.axis = int(axis)
        if self.axis != -1:
            self.spatial = None  # along another axis than the channels, positions mix

    def forward(self, x):
        return F.softmax(x, axis=self.axis)

    def get_config(self):
        return {"class": type(self).__name__, "axis": self.axis}

    def _repr_args(self):
        return kwarg_repr("axis", self.axis, -1)


@register
class PReLU(_Elementwise):
    """x for x > 0, a·x otherwise, with a learnable slope `weight` (`F.prelu`): one per channel (the
    last axis) when `num_parameters` is the channel count, or one shared by all when it is 1
    (PyTorch's `nn.PReLU(num_parameters, init)`). Each output still depends on its own input alone."""

    def __init__(self, num_parameters: int = 1, init: float = _INIT_SLOPE):
        super().__init__()
        self.slopes = _positive_int(num_parameters, "num_parameters", "PReLU")  # (num_parameters() is the count method)
        self.init = _number(init, "init", "PReLU")
        self.register_parameter("weight", np.full(self.slopes, self.init, np.float32))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(input_shape)
        if self.slopes != 1 and shape[-1] != self.slopes:
            self._shape_error(shape, f"{self.slopes} channels on the last axis (num_parameters); "
                                     f"it has {shape[-1]}")
        return shape

    def get_config(self):
        return {"class": "PReLU", "num_parameters": self.slopes, "init": self.init}

    def _repr_args(self):
        return kwarg_repr("num_parameters", self.slopes, 1) + kwarg_repr("init", self.init, _INIT_SLOPE)


@register
class Clip(_Elementwise):
    """min(max(x, lo), hi) (`F.clip`, ONNX Clip); either bound may be None. The gradient passes on
    [lo, hi], bounds included, as for `torch.clamp`."""

    def __init__(self, lo: float | None = None, hi: float | None = None):
        super().__init__()
        self.lo = None if lo is None else _number(lo, "lo", "Clip")
        self.hi = None if hi is None else _number(hi, "hi", "Clip")
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ValueError(f"Clip: lo must be ≤ hi; received lo={self.lo:g}, hi={self.hi:g}")

    def forward(self, x):
        return F.clip(x, self.lo, self.hi)

    def get_config(self):
        return {"class": "Clip", "lo": self.lo, "hi": self.hi}

    def _repr_args(self):
        return kwarg_repr("lo", self.lo, None) + kwarg_repr("hi", self.hi, None)


@register
class ReLU6(_Elementwise):
    """min(max(x, 0), 6) (`F.relu6`; MobileNet's activation, exported to ONNX as Clip(0, 6))."""

    def forward(self, x):
        return F.relu6(x)


@register
class HardSigmoid(_Elementwise):
    """clip(alpha·x + beta, 0, 1) (`F.hard_sigmoid`). The defaults are ONNX's (0.2, 0.5);
    PyTorch's and Keras 3's hard sigmoid is alpha = 1/6."""

    def __init__(self, alpha: float = 0.2, beta: float = 0.5):
        super().__init__()
        self.alpha = _number(alpha, "alpha", "HardSigmoid")
        self.beta = _number(beta, "beta", "HardSigmoid")

    def forward(self, x):
        return F.hard_sigmoid(x, self.alpha, self.beta)

    def get_config(self):
        return {"class": "HardSigmoid", "alpha": self.alpha, "beta": self.beta}

    def _repr_args(self):
        return kwarg_repr("alpha", self.alpha, 0.2) + kwarg_repr("beta", self.beta, 0.5)


@register
class HardSwish(_Elementwise):
    """x · clip(x/6 + 1/2, 0, 1) (`F.hard_swish`; ONNX HardSwish, PyTorch `nn.Hardswish`)."""

    def forward(self, x):
        return F.hard_swish(x)


@register
class LogSoftmax(Softmax):
    """log(softmax(x)) along `axis` (the last by default), as log-sum-exp (`F.log_softmax`); like
    Softmax, each output depends on every value along `axis`."""

    def forward(self, x):
        return F.log_softmax(x, axis=self.axis)


@register
class GELU(_Elementwise):
    """x·Φ(x) (`F.gelu`); `approximate="tanh"` is the tanh form (PyTorch's `nn.GELU(approximate)`)."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh'; received {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def get_config(self):
        return {"class": "GELU", "approximate": self.approximate}

    def _repr_args(self):
        return kwarg_repr("approximate", self.approximate, "none")


@register
class SiLU(_Elementwise):
    """x·σ(x) (`F.silu`; also called swish)."""

    def forward(self, x):
        return F.silu(x)


@register
class Softplus(_Elementwise):
    """log(1 + e^(βx))/β, x where βx > threshold (`F.softplus`, PyTorch's `nn.Softplus`); threshold None never
    switches (ONNX Softplus)."""

    def __init__(self, beta: float = 1.0, threshold: float | None = 20.0):
        super().__init__()
        self.beta = _number(beta, "beta", "Softplus")
        if not self.beta > 0:
            raise ValueError(f"Softplus: beta must be > 0; received {self.beta:g}")
        self.threshold = None if threshold is None else _number(threshold, "threshold", "Softplus")

    def forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def get_config(self):
        return {"class": "Softplus", "beta": self.beta, "threshold": self.threshold}

    def _repr_args(self):
        return kwarg_repr("beta", self.beta, 1.0) + kwarg_repr("threshold", self.threshold, 20.0)


@register
class Softsign(_Elementwise):
    """x / (1 + |x|) (`F.softsign`)."""

    def forward(self, x):
        return F.softsign(x)


@register
class Mish(_Elementwise):
    """x·tanh(softplus(x)) (`F.mish`)."""

    def forward(self, x):
        return F.mish(x)


@register
class Exponential(_Elementwise):
    """eˣ (`F.exp`; Keras's `exponential` activation, ONNX Exp)."""

    def forward(self, x):
        return F.exp(x)
