"""`Conv2DTranspose`: a transposed convolution layer over `F.conv_transpose2d`, where its formula, weight
layout and output-size rule are stated (it is the adjoint of `F.conv2d`).

Why its `role` is 'other', not 'conv': the tools that read conv layers (`connections`,
`filters_for_output`, `explain`, the kernel pictures, `receptive_field`) take a 'conv' layer's weight as
HWIO `(kh, kw, in/groups, out)` and one output value as a window sum `b[o] + Σ w·x` over one window of
the input. A transposed conv's weight is `(kh, kw, out/groups, in)`, and one output value sums over the
input positions whose scattered kernels reach it: with stride s, only every s-th tap lands on a given
output, and which taps land depends on the output position's phase. So the class declares `spatial`
None and `decomposition` None: `summary` shows its parameters (receptive field "?"), `explain` does not
decompose it and `receptive_field` stops at it rather than claim a wrong window.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import init as initializers
from .._json import jsonable
from ..functional import window
from .conv import _square, set_conv_arguments
from .module import Module, as_rng, kwarg_repr, register, tupled

__all__ = ["Conv2DTranspose"]


@register
class Conv2DTranspose(Module):
    """2-D transposed convolution over NHWC input: `F.conv_transpose2d(x, weight, bias, ...)`.

    Args:
        in_channels, out_channels: numbers of input and output maps.
        kernel_size, stride, dilation: an int or an (h, w) pair; stride, padding, dilation and groups are
            those of the conv2d this layer is the adjoint of (as in PyTorch's ConvTranspose2d).
        padding: an int, a pair, ((top, bottom), (left, right)), 'valid', 'same' (output H·sh, as Keras)
            or 'full'. An int p removes p rows/columns from each side of the full output.
        output_padding: an int or pair added to the bottom/right of the output; each must be smaller
            than the stride or the dilation on its axis (0 with 'same').
        groups: must divide both channel counts.
        bias: add a learned bias per output map.
        rng, init: as `Conv2D`. The fan-in is `kh·kw·in_channels/groups` (the terms of one output value
            at stride 1) and the fan-out `kh·kw·out_channels/groups`. Biases start at 0.

    Attributes: `weight` (Tensor `(kh, kw, out_channels // groups, in_channels)`: PyTorch's
    ConvTranspose2d weight `(in, out/groups, kh, kw)` is the same tensor as `torch_w.permute(2, 3, 1, 0)`),
    `bias` (Tensor `(out_channels,)` or None), and the arguments above (pairs; `padding` as given).
    """

    role = "other"  # see the module docstring: its weight is not HWIO and an output is no single window sum

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, rng=None, init: str = "lecun_uniform"):
        super().__init__()
        op = "Conv2DTranspose"
        set_conv_arguments(self, op, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.output_padding = window.pair(tupled(output_padding), "output_padding", minimum=0, op=op)
        for a, s, d, axis in zip(self.output_padding, self.stride, self.dilation, "HW"):
            if a >= max(s, d):
                raise ValueError(f"{op}: output_padding must be smaller than the stride or the dilation along {axis}; "
                                 f"received output_padding={output_padding!r}, stride={stride!r}, "
                                 f"dilation={dilation!r}")
        if self.padding == "same" and self.output_padding != (0, 0):
            raise ValueError(f"{op}: output_padding must be 0 with padding='same'; received {output_padding!r}")
        self.init = init
        initializer = initializers.get(init)
        kh, kw = self.kernel_size
        cout_g = self.out_channels // self.groups
        fan_in, fan_out = kh * kw * (self.in_channels // self.groups), kh * kw * cout_g
        w = initializer((kh, kw, cout_g, self.in_channels), fan_in, fan_out, as_rng(rng, op))
        self.register_parameter("weight", w.astype(np.float32))
        self.register_parameter("bias", np.zeros(self.out_channels, np.float32) if self.use_bias else None)

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                                  output_padding=self.output_padding, dilation=self.dilation, groups=self.groups)

    def compute_output_shape(self, input_shape):
        h, w, c = self._check_rank(input_shape)
        if c != self.in_channels:
            self._shape_error((h, w, c), f"{self.in_channels} input channels (in_channels); it has {c}")
        if self.padding == "same":
            return (h * self.stride[0], w * self.stride[1], self.out_channels)
        pads = window.resolve_padding(self.padding, (1, 1), self.kernel_size, self.stride, self.dilation,
                                      op="Conv2DTranspose")
        geo = window.Geometry.transposed((h, w), self.kernel_size, self.stride, pads, self.dilation,
                                         self.output_padding)
        oh, ow = geo.size_hw
        if oh < 1 or ow < 1:
            self._shape_error((h, w, c), f"an input the padding {self.padding!r} does not crop away "
                                         f"entirely; the output would be {oh}×{ow}")
        return (oh, ow, self.out_channels)

    def get_config(self) -> dict:
        return {"class": "Conv2DTranspose", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": jsonable(self.kernel_size), "stride": jsonable(self.stride),
                "padding": jsonable(self.padding), "output_padding": jsonable(self.output_padding),
                "dilation": jsonable(self.dilation), "groups": self.groups, "bias": self.use_bias,
                "init": self.init}

    def _repr_args(self):
        args = [str(self.in_channels), str(self.out_channels), f"kernel_size={_square(self.kernel_size)!r}"]
        args += kwarg_repr("stride", _square(self.stride), 1)
        args += kwarg_repr("padding", self.padding, 0)
        args += kwarg_repr("output_padding", _square(self.output_padding), 0)
        args += kwarg_repr("dilation", _square(self.dilation), 1)
        args += kwarg_repr("groups", self.groups, 1)
        args += kwarg_repr("bias", self.use_bias, True)
        args += kwarg_repr("init", self.init, "lecun_uniform")
        return args
