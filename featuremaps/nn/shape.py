"""Shape layers the imports need: `Reshape`, `Transpose`, `Pad`, `Identity`, `Upsample`.

Shapes are per example: the batch axis is never named, reshaped, permuted or padded.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .._json import jsonable
from ..functional import window
from ..functional.shape import PAD_MODES
from .activation import _number
from .conv import normalize_padding
from .module import Module, kwarg_repr, register, tupled

__all__ = ["Reshape", "Transpose", "Pad", "Identity", "Upsample"]


def _int_tuple(value, name: str, op: str) -> tuple:
    value = tupled(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value,)
    if not isinstance(value, tuple) or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                                           for v in value):
        raise TypeError(f"{op}: {name} must be a tuple of ints; received {value!r}")
    return tuple(int(v) for v in value)


def _any_rank(layer: Module, input_shape) -> tuple:
    """A per-example shape of any rank ≥ 1, validated as `Module._check_rank` does."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise TypeError(f"{type(layer).__name__}.compute_output_shape: input_shape must be a tuple of ints "
                        f"without the batch dimension; received {input_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        layer._shape_error(shape, "a per-example shape of positive sizes (no batch dimension)")
    return shape


@register
class Reshape(Module):
    """Give each example the shape `target_shape` (without the batch axis; one entry may be −1).

    Values keep their (h, w, c) order, as `np.reshape`. A 1-D target is a flatten (`spatial` =
    'flatten', like `Flatten`); any other target moves values between positions, so the tools that
    trace positions stop at it."""

    role = "shape"

    def __init__(self, target_shape):
        super().__init__()
        self.target_shape = _int_tuple(target_shape, "target_shape", "Reshape")
        shape = self.target_shape
        if not shape or shape.count(-1) > 1 or any(s < 1 and s != -1 for s in shape):
            raise ValueError(f"Reshape: target_shape must be positive sizes with at most one -1 (no batch "
                             f"dimension); received {target_shape!r}")
        self.spatial = "flatten" if len(shape) == 1 else None

    def compute_output_shape(self, input_shape):
        shape = _any_rank(self, input_shape)
        size, known = int(np.prod(shape)), int(np.prod([s for s in self.target_shape if s != -1]))
        if (-1 in self.target_shape and size % known) or (-1 not in self.target_shape and size != known):
            self._shape_error(shape, f"{size} values to fill target_shape {self.target_shape}")
        return tuple(size // known if s == -1 else s for s in self.target_shape)

    def forward(self, x):
        return F.reshape(x, (np.shape(x)[0],) + self.target_shape)

    def get_config(self):
        return {"class": "Reshape", "target_shape": jsonable(self.target_shape)}

    def _repr_args(self):
        return [repr(self.target_shape)]


@register
class Transpose(Module):
    """Permute each example's axes: `perm` is a permutation of 0 … rank − 1 without the batch axis,
    e.g. (2, 0, 1) turns (H, W, C) into (C, H, W)."""

    role = "shape"  # spatial None: positions and channels trade places

    def __init__(self, perm):
        super().__init__()
        self.perm = _int_tuple(perm, "perm", "Transpose")
        if sorted(self.perm) != list(range(len(self.perm))):
            raise ValueError(f"Transpose: perm must be a permutation of 0..{len(self.perm) - 1} (no batch axis); "
                             f"received {perm!r}")

    def compute_output_shape(self, input_shape):
        shape = _any_rank(self, input_shape)
        if len(shape) != len(self.perm):
            self._shape_error(shape, f"{len(self.perm)} axes for perm {self.perm}")
        return tuple(shape[p] for p in self.perm)

    def forward(self, x):
        return F.transpose(x, (0,) + tuple(p + 1 for p in self.perm))

    def get_config(self):
        return {"class": "Transpose", "perm": jsonable(self.perm)}

    def _repr_args(self):
        return [repr(self.perm)]


@register
class Pad(Module):
    """Pad H and W (`F.pad`): `padding` as `ZeroPad2D` takes it (an int, (ph, pw) or ((top, bottom),
    (left, right))), `mode` 'constant' (with `value`), 'reflect' (mirror, edge cell not repeated) or
    'edge' (edge cell repeated; PyTorch's 'replicate').

    Zero padding is traced like `ZeroPad2D` (`spatial` = 'pad'); the other modes read their padded
    cells from inside the map, so the tools that trace positions stop at them."""

    role = "shape"

    def __init__(self, padding, mode: str = "constant", value: float = 0.0):
        super().__init__()
        self.padding = normalize_padding(padding, "Pad", allow_strings=False)
        self._pads = window.resolve_padding(self.padding, (1, 1), (1, 1), (1, 1), op="Pad", allow_strings=False)
        if mode not in PAD_MODES:
            raise ValueError(f"Pad: mode must be one of {', '.join(PAD_MODES)}; received {mode!r}")
        self.mode, self.value = mode, _number(value, "value", "Pad")
        if mode != "constant" and self.value != 0.0:
            raise ValueError(f"Pad: value is used only with mode 'constant'; received value={value!r} with "
                             f"mode {mode!r}")
        self.spatial = "pad" if mode == "constant" and self.value == 0.0 else None

    def compute_output_shape(self, input_shape):
        h, w, c = self._check_rank(input_shape)
        (t, b), (le, r) = self._pads
        if self.mode == "reflect" and (max(t, b) >= h or max(le, r) >= w):
            self._shape_error((h, w, c), f"more rows than the top/bottom and more columns than the left/right "
                                         f"reflect padding {self._pads}")
        return (h + t + b, w + le + r, c)

    def forward(self, x):
        (t, b), (le, r) = self._pads
        return F.pad(x, ((0, 0), (t, b), (le, r), (0, 0)), value=self.value, mode=self.mode)

    def get_config(self):
        return {"class": "Pad", "padding": jsonable(self.padding), "mode": self.mode, "value": self.value}

    def _repr_args(self):
        return [repr(self.padding)] + kwarg_repr("mode", self.mode, "constant") + kwarg_repr("value", self.value, 0.0)


@register
class Identity(Module):
    """Returns its input unchanged (ONNX Identity, an inference-mode Dropout, a placeholder)."""

    role, spatial, elementwise = "other", "same", True

    def compute_output_shape(self, input_shape):
        return _any_rank(self, input_shape)

    def forward(self, x):
        return x


_UPSAMPLE_MODES = ("nearest", "bilinear")


@register
class Upsample(Module):
    """Enlarge (or shrink) the maps, as PyTorch's `nn.Upsample`: give `size` = (H_out, W_out) or
    `scale_factor` (a number or (sh, sw); the output is ⌊H·sh⌋ × ⌊W·sw⌋); with neither, scale_factor 2
    (Keras's UpSampling2D default).

    `mode` 'nearest' reads cell ⌊i / s⌋; 'bilinear' mixes the 2 × 2 nearest cells, with
    `align_corners` False (the default: half-pixel centres) or True (corner cells aligned). Built on
    `F.resize` (ONNX coordinate modes 'asymmetric' + 'floor', 'half_pixel', 'align_corners')."""

    role = "shape"  # spatial None: an output position reads one or four input positions, not a window

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None):
        super().__init__()
        op = "Upsample"
        if size is not None and scale_factor is not None:
            raise ValueError(f"{op}: give size or scale_factor, not both; received size={size!r}, "
                             f"scale_factor={scale_factor!r}")
        if mode not in _UPSAMPLE_MODES:
            raise ValueError(f"{op}: mode must be one of {', '.join(_UPSAMPLE_MODES)}; received {mode!r}")
        if align_corners is not None and (mode != "bilinear" or not isinstance(align_corners, (bool, np.bool_))):
            raise ValueError(f"{op}: align_corners must be True or False with mode 'bilinear' and left out otherwise; "
                             f"received align_corners={align_corners!r} with mode {mode!r}")
        self.size = None if size is None else self._pair(size, "size", int)
        self.scale_factor = None if scale_factor is None else self._pair(scale_factor, "scale_factor", float)
        self.mode, self.align_corners = mode, (None if align_corners is None else bool(align_corners))

    @staticmethod
    def _pair(value, name: str, kind):
        value = tupled(value)
        pair = value if isinstance(value, tuple) else (value, value)
        ints = kind is int
        ok = len(pair) == 2 and all(not isinstance(v, (bool, np.bool_)) and isinstance(
            v, (int, np.integer) if ints else (int, float, np.integer, np.floating)) and np.isfinite(v) and v > 0
            for v in pair)
        if not ok:
            raise ValueError(f"Upsample: {name} must be a positive {'int' if ints else 'number'} or a pair of them; "
                             f"received {value!r}")
        return tuple(int(v) if ints else float(v) for v in pair)

    def _scales(self):
        return (2.0, 2.0) if self.size is None and self.scale_factor is None else self.scale_factor

    def compute_output_shape(self, input_shape):
        h, w, c = self._check_rank(input_shape)
        if self.size is not None:
            return (*self.size, c)
        sh, sw = self._scales()
        out = (int(np.floor(h * sh)), int(np.floor(w * sw)), c)
        if min(out[:2]) < 1:
            self._shape_error((h, w, c), f"at least 1 / scale_factor rows and columns for scale_factor {(sh, sw)}")
        return out

    def forward(self, x):
        _, h, w, c = np.shape(x)
        out = self.compute_output_shape((h, w, c))
        scales = None if self.size is not None else self._scales()
        if self.mode == "nearest":
            return F.resize(x, out[:2], "nearest", "asymmetric", "floor", scales=scales)
        coord = "align_corners" if self.align_corners else "half_pixel"  # PyTorch's, for every output size
        return F.resize(x, out[:2], "linear", coord, scales=None if self.align_corners else scales)

    def get_config(self):
        return {"class": "Upsample", "size": jsonable(self.size), "scale_factor": jsonable(self.scale_factor),
                "mode": self.mode, "align_corners": self.align_corners}

    def _repr_args(self):
        def short(v):
            return v[0] if v is not None and v[0] == v[1] else v

        return (kwarg_repr("size", short(self.size), None) + kwarg_repr("scale_factor", short(self.scale_factor), None)
                + kwarg_repr("mode", self.mode, "nearest") + kwarg_repr("align_corners", self.align_corners, None))
