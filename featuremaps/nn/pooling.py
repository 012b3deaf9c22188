"""Pooling layers: `MaxPool2D`, `AvgPool2D`, `GlobalAvgPool2D`, `GlobalMaxPool2D`, `Subsampling2D`.

Output sizes follow the rule in `featuremaps.functional.conv` (with `ceil_mode` rounding up).
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .._json import jsonable
from ..functional import window
from .conv import _square, as_pair, normalize_padding, window_output_shape
from .module import Module, kwarg_repr, register

__all__ = ["MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D", "Subsampling2D"]


class _Pool2D(Module):
    """Shared argument handling and shape rule of the windowed pools."""

    role, spatial = "pool", "window"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, dilation=1):
        super().__init__()
        op = type(self).__name__
        self.kernel_size = as_pair(kernel_size, "kernel_size", op)
        self.stride = self.kernel_size if stride is None else as_pair(stride, "stride", op)
        self.stride_given = stride is not None
        self.padding = normalize_padding(padding, op, allow_strings=False)
        self._pads = window.resolve_pool_padding(self.padding, self.kernel_size, op)
        self.dilation = as_pair(dilation, "dilation", op)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"{op}: ceil_mode must be True or False; received {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)

    def compute_output_shape(self, input_shape):
        h, w, c = self._check_rank(input_shape)
        geo = window.Geometry.of((h, w), self.kernel_size, self.stride, self._pads, self.dilation,
                                 ceil_mode=self.ceil_mode, op=type(self).__name__)
        return (*window_output_shape(self, (h, w, c), geo), c)

    def _base_config(self) -> dict:
        return {"class": type(self).__name__, "kernel_size": jsonable(self.kernel_size),
                "stride": jsonable(self.stride) if self.stride_given else None,
                "padding": jsonable(self.padding), "ceil_mode": self.ceil_mode}

    def _base_repr(self) -> list[str]:
        args = [f"kernel_size={_square(self.kernel_size)!r}"]
        if self.stride_given and self.stride != self.kernel_size:
            args.append(f"stride={_square(self.stride)!r}")
        args += kwarg_repr("padding", self.padding, 0)
        args += kwarg_repr("ceil_mode", self.ceil_mode, False)
        return args


@register
class MaxPool2D(_Pool2D):
    """Max over each window: `F.max_pool2d`. `stride` defaults to `kernel_size`."""

    decomposition = "window_max"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, dilation=1):
        super().__init__(kernel_size, stride, padding, ceil_mode, dilation)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                            dilation=self.dilation)

    def get_config(self) -> dict:
        return {**self._base_config(), "dilation": jsonable(self.dilation)}

    def _repr_args(self):
        return self._base_repr() + kwarg_repr("dilation", _square(self.dilation), 1)


@register
class AvgPool2D(_Pool2D):
    """Mean over each window: `F.avg_pool2d`. `stride` defaults to `kernel_size`."""

    decomposition = "window_mean"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise TypeError(f"AvgPool2D: count_include_pad must be True or False; received {count_include_pad!r}")
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                            count_include_pad=self.count_include_pad)

    def get_config(self) -> dict:
        return {**self._base_config(), "count_include_pad": self.count_include_pad}

    def _repr_args(self):
        return self._base_repr() + kwarg_repr("count_include_pad", self.count_include_pad, True)


class _GlobalPool2D(Module):
    role, spatial = "pool", "all"

    def compute_output_shape(self, input_shape):
        h, w, c = self._check_rank(input_shape)
        return (c,)


@register
class GlobalAvgPool2D(_GlobalPool2D):
    """Mean of each whole map: (N, H, W, C) → (N, C)."""

    decomposition = "window_mean"

    def forward(self, x):
        return F.global_avg_pool2d(x)


@register
class GlobalMaxPool2D(_GlobalPool2D):
    """Max of each whole map: (N, H, W, C) → (N, C)."""

    decomposition = "window_max"

    def forward(self, x):
        return F.global_max_pool2d(x)


@register
class Subsampling2D(Module):
    """LeCun et al. 1998's subsampling (S) layer: each unit is the mean of a non-overlapping
    `kernel_size`×`kernel_size` window of its map, times a trainable coefficient of that map, plus a
    trainable bias of that map: `avg_pool2d(x) · weight + bias`, 2·channels parameters (S2: 12).

    The paper adds the four inputs before multiplying; the mean only rescales the coefficient by
    1/4. The coefficients start at 1 and the biases at 0, so the layer starts as plain average
    pooling. The paper passes the result through its sigmoid; here that is a separate layer.
    """

    role, spatial, decomposition = "pool", "window", "window_mean"  # stride = kernel_size, no padding

    def __init__(self, channels: int, kernel_size: int = 2):
        super().__init__()
        if isinstance(channels, (bool, np.bool_)) or not isinstance(channels, (int, np.integer)) or channels < 1:
            raise ValueError(f"Subsampling2D: channels must be a positive int; received {channels!r}")
        if isinstance(kernel_size, (bool, np.bool_)) or not isinstance(kernel_size, (int, np.integer)) \
                or kernel_size < 1:
            raise ValueError(f"Subsampling2D: kernel_size must be a positive int; received {kernel_size!r}")
        self.channels, self.kernel_size = int(channels), int(kernel_size)
        self.register_parameter("weight", np.ones(self.channels, np.float32))
        self.register_parameter("bias", np.zeros(self.channels, np.float32))

    def forward(self, x):
        return F.add(F.mul(F.avg_pool2d(x, self.kernel_size), self.weight), self.bias)

    def compute_output_shape(self, input_shape):
        h, w, c = self._check_rank(input_shape)
        k = self.kernel_size
        if c != self.channels:
            self._shape_error((h, w, c), f"{self.channels} channels; it has {c}")
        return (*window_output_shape(self, (h, w, c), window.Geometry.of((h, w), k, k, op="Subsampling2D")), c)

    def get_config(self) -> dict:
        return {"class": "Subsampling2D", "channels": self.channels, "kernel_size": self.kernel_size}

    def _repr_args(self):
        return [str(self.channels)] + kwarg_repr("kernel_size", self.kernel_size, 2)
