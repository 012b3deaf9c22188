"""Activation layers: thin wrappers over `featuremaps.functional.activation`; shapes pass through.

The gradient at a kink follows the functional op (and PyTorch): `Clip` passes it at its bounds
(`torch.clamp`), `ReLU6`, `HardSigmoid` and `HardSwish` do not. The smooth ones of newer nets (`GELU`,
`SiLU`, `Softplus`, `Softsign`, `Mish`, `Exponential`, `CELU`, `Squareplus`), the shrinks (`HardShrink`,
`SoftShrink`, `TanhShrink`), `Threshold` and Keras's `SparsePlus` and `SparseSigmoid` are element-wise too;
`LogSoftmax` and `Sparsemax`, like `Softmax`, are not. `GLU` halves its axis (the channels by default):
output c is channel c gated by channel c + C/2.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .conv import _positive_int
from .module import Module, kwarg_repr, register

_INIT_SLOPE = 0.25  # PyTorch's PReLU init

__all__ = ["ReLU", "LeakyReLU", "ELU", "Tanh", "ScaledTanh", "Sigmoid", "Softmax", "PReLU", "Clip", "ReLU6",
           "HardSigmoid", "HardSwish", "GELU", "SiLU", "Softplus", "Softsign", "Mish", "Exponential", "LogSoftmax",
           "CELU", "Squareplus", "GLU", "HardShrink", "SoftShrink", "TanhShrink", "Threshold", "SparsePlus",
           "SparseSigmoid", "Sparsemax"]


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
    (PyTorch's `nn.PReLU(num_parameters, init)`). With `shape` (a per-example shape that broadcasts to the
    input's, e.g. (H, W, C) or (H, 1, C): Keras's PReLU with `shared_axes` not covering H and W) the slope
    varies by position too, and `num_parameters` is ignored. Each output depends on its own input alone."""

    def __init__(self, num_parameters: int = 1, init: float = _INIT_SLOPE, shape=None):
        super().__init__()
        self.init = _number(init, "init", "PReLU")
        self.shape = None if shape is None else _slope_shape(shape)
        self.slopes = (_positive_int(num_parameters, "num_parameters", "PReLU") if shape is None
                       else int(np.prod(self.shape)))  # (num_parameters() is the count method)
        self.register_parameter("weight", np.full(self.shape or self.slopes, self.init, np.float32))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(input_shape)
        if self.shape is not None:
            if len(self.shape) != len(shape) or any(s not in (1, n) for s, n in zip(self.shape, shape)):
                self._shape_error(shape, f"a shape the slopes {self.shape} broadcast to (each size 1 or equal)")
        elif self.slopes != 1 and shape[-1] != self.slopes:
            self._shape_error(shape, f"{self.slopes} channels on the last axis (num_parameters); "
                                     f"it has {shape[-1]}")
        return shape

    def get_config(self):
        cfg = {"class": "PReLU", "num_parameters": self.slopes, "init": self.init}
        return cfg if self.shape is None else {**cfg, "shape": list(self.shape)}

    def _repr_args(self):
        if self.shape is not None:
            return [f"shape={self.shape!r}"] + kwarg_repr("init", self.init, _INIT_SLOPE)
        return kwarg_repr("num_parameters", self.slopes, 1) + kwarg_repr("init", self.init, _INIT_SLOPE)


def _slope_shape(shape) -> tuple:
    if not isinstance(shape, (tuple, list)) or len(shape) not in (1, 3):
        raise TypeError(f"PReLU: shape must be a per-example shape (H, W, C) or (F,) of the slopes; received "
                        f"{shape!r}")
    return tuple(_positive_int(s, "shape", "PReLU") for s in shape)


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


@register
class CELU(_Elementwise):
    """x for x > 0, alpha·(e^(x/alpha) − 1) otherwise (`F.celu`; PyTorch's `nn.CELU`, ONNX Celu)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = _number(alpha, "alpha", "CELU")
        if not self.alpha > 0:
            raise ValueError(f"CELU: alpha must be > 0; received {self.alpha:g}")

    def forward(self, x):
        return F.celu(x, self.alpha)

    def get_config(self):
        return {"class": "CELU", "alpha": self.alpha}

    def _repr_args(self):
        return kwarg_repr("alpha", self.alpha, 1.0)


@register
class Squareplus(_Elementwise):
    """(x + √(x² + b)) / 2 (`F.squareplus`; Keras's `squareplus`)."""

    def __init__(self, b: float = 4.0):
        super().__init__()
        self.b = _number(b, "b", "Squareplus")
        if not self.b > 0:
            raise ValueError(f"Squareplus: b must be > 0; received {self.b:g}")

    def forward(self, x):
        return F.squareplus(x, self.b)

    def get_config(self):
        return {"class": "Squareplus", "b": self.b}

    def _repr_args(self):
        return kwarg_repr("b", self.b, 4.0)


class _Shrink(_Elementwise):
    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = _number(threshold, "threshold", type(self).__name__)
        if not self.threshold >= 0:
            raise ValueError(f"{type(self).__name__}: threshold must be ≥ 0; received {self.threshold:g}")

    def get_config(self):
        return {"class": type(self).__name__, "threshold": self.threshold}

    def _repr_args(self):
        return kwarg_repr("threshold", self.threshold, 0.5)


@register
class HardShrink(_Shrink):
    """x where |x| > threshold, else 0 (`F.hard_shrink`; PyTorch's `nn.Hardshrink(lambd)`)."""

    def forward(self, x):
        return F.hard_shrink(x, self.threshold)


@register
class SoftShrink(_Shrink):
    """x ∓ threshold where |x| > threshold, else 0 (`F.soft_shrink`; PyTorch's `nn.Softshrink(lambd)`)."""

    def forward(self, x):
        return F.soft_shrink(x, self.threshold)


@register
class TanhShrink(_Elementwise):
    """x − tanh(x) (`F.tanh_shrink`; PyTorch's `nn.Tanhshrink`)."""

    def forward(self, x):
        return F.tanh_shrink(x)


@register
class Threshold(_Elementwise):
    """x where x > threshold, else value (+ negative_slope·(x − threshold)) (`F.threshold`; PyTorch's
    `nn.Threshold(threshold, value)`, and Keras's ReLU with a non-zero threshold)."""

    def __init__(self, threshold: float, value: float, negative_slope: float = 0.0):
        super().__init__()
        self.threshold = _number(threshold, "threshold", "Threshold")
        self.value = _number(value, "value", "Threshold")
        self.negative_slope = _number(negative_slope, "negative_slope", "Threshold")

    def forward(self, x):
        return F.threshold(x, self.threshold, self.value, self.negative_slope)

    def get_config(self):
        return {"class": "Threshold", "threshold": self.threshold, "value": self.value,
                "negative_slope": self.negative_slope}

    def _repr_args(self):
        return ([f"threshold={self.threshold!r}", f"value={self.value!r}"]
                + kwarg_repr("negative_slope", self.negative_slope, 0.0))


@register
class SparsePlus(_Elementwise):
    """0, (x + 1)²/4, x on x ≤ −1, −1 < x < 1, x ≥ 1 (`F.sparse_plus`; Keras's `sparse_plus`)."""

    def forward(self, x):
        return F.sparse_plus(x)


@register
class SparseSigmoid(_Elementwise):
    """0, (x + 1)/2, 1 on x ≤ −1, −1 < x < 1, x ≥ 1 (`F.sparse_sigmoid`; Keras's `sparse_sigmoid`)."""

    def forward(self, x):
        return F.sparse_sigmoid(x)


@register
class Sparsemax(Softmax):
    """The projection onto the probability simplex along `axis` (the last by default; `F.sparsemax`):
    like Softmax, each output depends on every value along `axis`, but many are exactly 0."""

    def forward(self, x):
        return F.sparsemax(x, axis=self.axis)


@register
class GLU(Module):
    """a·σ(b), a and b the two halves of `axis` (`F.glu`; PyTorch's `nn.GLU(dim)`, Keras's `glu`). On the
    default axis, the channels, output map c is map c gated by map c + C/2: the maps halve, the
    positions stay. `axis` counts the batch axis, as Softmax's.

    `spatial` is 'same' on the last axis (the channels, or a vector's features: every position is
    kept) and None on any other axis, which mixes positions. `explain` stops at a GLU after the explained
    value, since its output has half the maps and so does not keep the value's index."""

    role, spatial, elementwise = "activation", None, False

    def __init__(self, axis: int = -1):
        super().__init__()
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or axis == 0:
            raise TypeError(f"GLU: axis must be a non-zero int (0 is the batch axis); received {axis!r}")
        self.axis = int(axis)
        self.spatial = "same" if self.axis == -1 else None

    def forward(self, x):
        return F.glu(x, axis=self.axis)

    def compute_output_shape(self, input_shape):
        shape = list(self._check_rank(input_shape, ranks=(1, 3)))
        at = self.axis - 1 if self.axis > 0 else self.axis + len(shape)
        if not 0 <= at < len(shape) or shape[at] % 2:
            self._shape_error(shape, f"an even size on axis {self.axis} (it is split into two halves)")
        shape[at] //= 2
        return tuple(shape)

    def get_config(self):
        return {"class": "GLU", "axis": self.axis}

    def _repr_args(self):
        return kwarg_repr("axis", self.axis, -1)
