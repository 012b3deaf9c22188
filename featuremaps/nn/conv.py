"""Convolution layers: `Conv2D`, `ZeroPad2D`. The formula and output-size rule are in
`featuremaps.functional.conv`."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import init as initializers
from .. import tables
from .._json import jsonable
from ..functional import window
from .module import Module, as_rng, kwarg_repr, register, tupled

__all__ = ["Conv2D", "ZeroPad2D", "normalize_padding", "as_pair"]


def window_output_shape(layer: Module, input_shape: tuple, geo: window.Geometry) -> tuple[int, int]:
    """(OH, OW) of a window layer's `geo`, or its ShapeError when the kernel does not fit."""
    problem = geo.misfit()
    if problem:
        layer._shape_error(input_shape, f"a padded input of at least {geo.h.span}×{geo.w.span}: {problem}")
    return geo.out_hw


def _positive_int(value, name: str, op: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be a positive int; received {value!r}")
    if value < 1:
        raise ValueError(f"{op}: {name} must be a positive int; received {value}")
    return int(value)


def as_pair(value, name: str, op: str) -> tuple[int, int]:
    """An int or (h, w) pair of ints ≥ 1 as a pair; errors quote the value as the user gave it."""
    try:
        return window.pair(tupled(value), name, op=op)
    except ValueError:
        raise ValueError(f"{op}: {name} must be ≥ 1 (an int or a pair); received {value!r}") from None


def normalize_padding(padding, op: str, *, allow_strings: bool = True):
    """Validate `padding` and return it in a canonical, hashable form "as given":
    an int, a pair `(ph, pw)`, `((top, bottom), (left, right))` or a lower-case string."""
    if isinstance(padding, str):
        padding = padding.lower()
    else:
        padding = tupled(padding)
    # resolve once on a dummy size, only to validate the form
    window.resolve_padding(padding, (1, 1), (1, 1), (1, 1), op=op, allow_strings=allow_strings)
    if isinstance(padding, tuple) and len(padding) == 2 and not isinstance(padding[0], tuple):
        padding = (int(padding[0]), int(padding[1]))
    elif isinstance(padding, (int, np.integer)):
        padding = int(padding)
    return padding


def _square(value):
    """Show a square pair as one int (PyTorch shows (5, 5); `5` reads better and round-trips)."""
    return value[0] if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1] \
        and not isinstance(value[0], tuple) else value


def set_conv_arguments(layer, op: str, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                       bias) -> None:
    """Check and set the arguments Conv2D and Conv2DTranspose share: `in_channels`, `out_channels`,
    `kernel_size`, `stride`, `padding`, `dilation`, `groups` (dividing both channel counts) and `use_bias`."""
    layer.in_channels = _positive_int(in_channels, "in_channels", op)
    layer.out_channels = _positive_int(out_channels, "out_channels", op)
    layer.kernel_size = as_pair(kernel_size, "kernel_size", op)
    layer.stride = as_pair(stride, "stride", op)
    layer.dilation = as_pair(dilation, "dilation", op)
    layer.padding = normalize_padding(padding, op)
    layer.groups = _positive_int(groups, "groups", op)
    if layer.in_channels % layer.groups or layer.out_channels % layer.groups:
        raise ValueError(f"{op}: groups must divide in_channels ({layer.in_channels}) and out_channels "
                         f"({layer.out_channels}); received groups={layer.groups}")
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"{op}: bias must be True or False; received {bias!r}")
    layer.use_bias = bool(bias)


@register
class Conv2D(Module):
    """2-D convolution over NHWC input: `F.conv2d(x, weight, bias, ...)`.

    Args:
        in_channels, out_channels: numbers of input and output maps.
        kernel_size, stride, dilation: an int or an (h, w) pair.
        padding: 'valid', 'same', 'full', an int, a pair, or ((top, bottom), (left, right)).
        groups: split the maps into `groups` independent convolutions (must divide both counts).
        connections: a `(in_channels, out_channels)` table of bools/0-1 (see `featuremaps.tables`);
            output map n sums over the input maps of column n only. Excludes `groups` > 1.
            Unconnected weights are 0 and stay 0 (the op masks their gradient).
        bias: add a learned bias per output map.
        rng: Generator (or int seed) for the initial weights; None means seed 0, so two layers built
            without an rng start with the same numbers. Pass one rng through a model instead.
        init: name of the weight initialiser in `featuremaps.init`. The default, 'lecun_uniform'
            (variance 1/fan_in), suits tanh nets; ReLU nets do better with 'he_uniform'. The fan-in is
            `kh·kw·in_channels/groups`, or, with a table, `kh·kw·k` for an output map that reads k
            input maps (each map's filters drawn with its own fan-in). Biases start at 0.

    Attributes: `weight` (Tensor, HWIO `(kh, kw, in_channels // groups, out_channels)`), `bias`
    (Tensor `(out_channels,)` or None), and the arguments above (`kernel_size`, `stride`,
    `dilation` as pairs; `padding` as given; `connections` as a bool ndarray or None).
    """

    role, spatial, decomposition = "conv", "window", "weighted_sum"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, connections=None, bias: bool = True, rng=None, init: str = "lecun_uniform"):
        super().__init__()
        op = "Conv2D"
        set_conv_arguments(self, op, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        if connections is not None:
            if self.groups != 1:
                raise ValueError(f"{op}: give either groups or connections, not both; received groups={self.groups} "
                                 "and a connections table (express the groups as tables.groups(...) instead)")
            connections = tables.check(connections, self.in_channels, self.out_channels, op=f"{op}: connections")
        self.connections = connections
        self.init = init
        initializer = initializers.get(init)
        rng = as_rng(rng, op)

        kh, kw = self.kernel_size
        cin_g = self.in_channels // self.groups
        shape = (kh, kw, cin_g, self.out_channels)
        if connections is None:
            fan_in, fan_out = kh * kw * cin_g, kh * kw * (self.out_channels // self.groups)
        else:
            fan_in = kh * kw * tables.fan_in(connections)  # (out,): per output map
            fan_out = kh * kw * np.maximum(connections.sum(axis=1, keepdims=True), 1)  # (in, 1): per input map
        w = initializer(shape, fan_in, fan_out, rng)
        if connections is not None:
            w = w * connections[None, None]  # (kh, kw, in, out): unconnected weights are exactly 0
        self.register_parameter("weight", w.astype(np.float32))
        self.register_parameter("bias", np.zeros(self.out_channels, np.float32) if self.use_bias else None)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                        dilation=self.dilation, groups=self.groups, connections=self.connections)

    @property
    def links(self) -> int:
        """(input map, output map) pairs joined by a kernel: in·out / groups, or the table's count."""
        if self.connections is not None:
            return tables.links(self.connections)
        return self.in_channels * self.out_channels // self.groups

    def _own_num_parameters(self) -> int:
        kh, kw = self.kernel_size
        return self.links * kh * kw + (self.out_channels if self.use_bias else 0)

    def compute_output_shape(self, input_shape):
        h, w, c = self._check_rank(input_shape)
        if c != self.in_channels:
            self._shape_error((h, w, c), f"{self.in_channels} input channels (in_channels); it has {c}")
        geo = window.Geometry.of((h, w), self.kernel_size, self.stride, self.padding, self.dilation, op="Conv2D")
        return (*window_output_shape(self, (h, w, c), geo), self.out_channels)

    def get_config(self) -> dict:
        return {"class": "Conv2D", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": jsonable(self.kernel_size), "stride": jsonable(self.stride),
                "padding": jsonable(self.padding), "dilation": jsonable(self.dilation), "groups": self.groups,
                "connections": None if self.connections is None else self.connections.astype(int).tolist(),
                "bias": self.use_bias, "init": self.init}

    def _repr_args(self):
        args = [str(self.in_channels), str(self.out_channels), f"kernel_size={_square(self.kernel_size)!r}"]
        args += kwarg_repr("stride", _square(self.stride), 1)
        args += kwarg_repr("padding", self.padding, 0)
        args += kwarg_repr("dilation", _square(self.dilation), 1)
        args += kwarg_repr("groups", self.groups, 1)
        if self.connections is not None:
            args.append(f"connections=<{self.in_channels}→{self.out_channels} table, {self.links} links>")
        args += kwarg_repr("bias", self.use_bias, True)
        args += kwarg_repr("init", self.init, "lecun_uniform")
        return args


@register
class ZeroPad2D(Module):
    """Pad H and W with zeros: `padding` is an int, a pair (ph, pw), or ((top, bottom), (left, right))."""

    role, spatial = "shape", "pad"

    def __init__(self, padding):
        super().__init__()
        self.padding = normalize_padding(padding, "ZeroPad2D", allow_strings=False)
        self._pads = window.resolve_padding(self.padding, (1, 1), (1, 1), (1, 1), op="ZeroPad2D",
                                            allow_strings=False)

    def forward(self, x):
        (t, b), (l, r) = self._pads
        return F.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))

    def compute_output_shape(self, input_shape):
        h, w, c = self._check_rank(input_shape)
        (t, b), (l, r) = self._pads
        return (h + t + b, w + l + r, c)

    def get_config(self) -> dict:
        return {"class": "ZeroPad2D", "padding": jsonable(self.padding)}

    def _repr_args(self):
        return [repr(self.padding)]
