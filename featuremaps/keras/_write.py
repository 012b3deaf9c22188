"""One converter per featuremaps layer class: the Keras 3 layers that compute the same values.

A converter is `fn(k, name, layer, ins, shapes, out_shape) -> str`: `k` is the `KerasBuilder`,
`name` the featuremaps node name (the converter's last Keras layer takes it, so a model's values keep
their names), `ins` the Keras names of the input values, `shapes` their per-example shapes and
`out_shape` the layer's. It returns the Keras name of the layer holding the value. Converters are
found by the layer's exact class, so a subclass with another `forward` is never exported as its parent.

Both libraries are channels-last, so weights keep their layout: a Conv2D kernel is HWIO in both, a
Dense kernel `(in, out)` in both, a Flatten reads (h, w, c) in both. What does change is written to
the builder's log: a connection table written as zero kernels, a padding Keras cannot name written
as a ZeroPadding2D before the layer, BatchNorm's momentum convention, and the layers Keras has no
class for (LeNet's Subsampling2D and scaled tanh, a two-sided Clip) written as a few Keras layers.
A layer that Keras cannot express exactly raises `NoKerasForm` with the reason; `export` collects
every such layer into one error.
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..functional import window

__all__ = ["CONVERTERS", "NoKerasForm", "converter_for", "KerasBuilder", "KLayer"]

CONVERTERS: dict[type, object] = {}


class NoKerasForm(Exception):
    """Raised by a converter: this layer (with these arguments) has no exact Keras form; `str()` says why."""


class KLayer:
    """One Keras layer of the file: its unique `name`, Keras `class_name`, `config` (the constructor's
    arguments, without name and dtype), `weights` (arrays in Keras's variable order), the Keras names
    it reads (`inputs`) and its per-example input shapes (`in_shapes`, for build_config)."""

    def __init__(self, name: str, class_name: str, config: dict, weights: list, inputs: list, in_shapes: list):
        self.name, self.class_name, self.config = name, class_name, config
        self.weights, self.inputs, self.in_shapes = list(weights), list(inputs), list(in_shapes)


class KerasBuilder:
    """Collects the Keras layers and the log while the converters run; owns the layer names."""

    def __init__(self, dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        self.layers: list[KLayer] = []
        self.log: list[str] = []
        self.taken: set[str] = set()

    def claim(self, name: str) -> str:
        """Take `name` for a Keras layer, or, when it is taken or holds a '.', the first free variant (logged)."""
        keras_name = self.fresh(name.replace(".", "_"))
        if keras_name != name:
            why = "Keras names cannot hold '.'" if "." in name else "the name was taken"
            self.log.append(f"{name}: Keras layer name {keras_name!r} ({why})")
        self.taken.add(keras_name)
        return keras_name

    def fresh(self, base: str) -> str:
        """A new unique Keras name starting with `base` (for the helper layers of a composite)."""
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        return name

    def add(self, name: str, class_name: str, config: dict, ins: list, shapes: list, weights=()) -> str:
        """Append a Keras layer named `name` (claimed here) reading `ins`; returns `name`."""
        w = [np.ascontiguousarray(np.asarray(a, dtype=self.dtype)) for a in weights]
        kl = KLayer(self.claim(name), class_name, config, w, ins, shapes)
        self.layers.append(kl)
        return kl.name

    def helper(self, name: str, suffix: str, class_name: str, config: dict, ins: list, shapes: list,
               weights=()) -> str:
        """A layer that is not the featuremaps node's last: named `name_suffix` (made unique)."""
        return self.add(self.fresh(f"{name}_{suffix}".replace(".", "_")), class_name, config, ins, shapes, weights)


def converts(*classes):
    def deco(fn):
        for c in classes:
            CONVERTERS[c] = fn
        return fn
    return deco


def converter_for(layer):
    return CONVERTERS.get(type(layer))


def _pads_text(pads) -> str:
    (t, b), (le, r) = pads
    return f"((top {t}, bottom {b}), (left {le}, right {r}))"


def _same_pads(hw, kernel, stride, dilation=(1, 1)):
    """The pads of Keras's (TensorFlow's) 'same' for an input of `hw`: the odd pixel bottom/right."""
    return window.resolve_padding("same", tuple(hw), tuple(kernel), tuple(stride), tuple(dilation), op="export")


def _padding_for_keras(k, name, ins, shapes, pads, kernel, stride, dilation=(1, 1)):
    """('valid' or 'same', the input to read): pads that equal 'same' at this size are written as
    'same'; any other non-zero pads as a ZeroPadding2D layer before (logged)."""
    if pads == ((0, 0), (0, 0)):
        return "valid", ins[0], shapes[0]
    if pads == _same_pads(shapes[0][:2], kernel, stride, dilation):
        k.log.append(f"{name}: padding {_pads_text(pads)} written as Keras padding='same' (the same pads for "
                     f"its {shapes[0][0]}×{shapes[0][1]} input)")
        return "same", ins[0], shapes[0]
    h, w, c = shapes[0]
    (t, b), (le, r) = pads
    padded = k.helper(name, "pad", "ZeroPadding2D", {"padding": [[t, b], [le, r]]}, ins[:1], shapes[:1])
    k.log.append(f"{name}: padding {_pads_text(pads)} written as a ZeroPadding2D layer {padded!r} before it, "
                 "then padding='valid' (Keras's 'same' would pad otherwise)")
    return "valid", padded, (h + t + b, w + le + r, c)


# --- convolution and dense ------------------------------------------------------------------------
@converts(nn.Conv2D)
def _conv(k, name, layer, ins, shapes, out_shape):
    if max(layer.stride) > 1 and max(layer.dilation) > 1:
        raise NoKerasForm(f"stride {layer.stride} with dilation {layer.dilation}: Keras's Conv2D takes a stride "
                          "> 1 or a dilation > 1, not both")
    pads = window.resolve_padding(layer.padding, shapes[0][:2], layer.kernel_size, layer.stride, layer.dilation,
                                  op=name)
    padding, x, x_shape = _padding_for_keras(k, name, ins, shapes, pads, layer.kernel_size, layer.stride,
                                             layer.dilation)
    w = layer.weight.data
    if layer.connections is not None:
        w = w * layer.connections[None, None]  # (kh, kw, in, out): absent links are zero kernels
        absent = int((~layer.connections).sum())
        k.log.append(f"{name}: connection table written as a full Keras Conv2D, {absent} of "
                     f"{layer.connections.size} kernels zero (Keras has no connection tables; training it in "
                     "Keras would fill them)")
    k.log.append(f"{name}: kernel HWIO {tuple(w.shape)} written as is (Keras's Conv2D kernel is (kh, kw, in, out))")
    cfg = {"filters": layer.out_channels, "kernel_size": list(layer.kernel_size), "strides": list(layer.stride),
           "padding": padding, "data_format": "channels_last", "dilation_rate": list(layer.dilation),
           "groups": layer.groups, "activation": "linear", "use_bias": layer.bias is not None}
    weights = [w] + ([layer.bias.data] if layer.bias is not None else [])
    return k.add(name, "Conv2D", cfg, [x], [x_shape], weights)


@converts(nn.Dense)
def _dense(k, name, layer, ins, shapes, out_shape):
    cfg = {"units": layer.out_features, "activation": "linear", "use_bias": layer.bias is not None}
    weights = [layer.weight.data] + ([layer.bias.data] if layer.bias is not None else [])  # (in, out) in both
    return k.add(name, "Dense", cfg, ins, shapes, weights)


@converts(nn.Flatten)
def _flatten(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "Flatten", {"data_format": "channels_last"}, ins, shapes)  # (h, w, c) order in both


# --- pooling --------------------------------------------------------------------------------------
def _pool_pads(layer, shape):
    """The pool's pads on each side, with ceil mode's extra bottom/right rows and columns included."""
    (t, b), (le, r) = layer._pads
    oh, ow = layer.compute_output_shape(shape)[:2]
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    b = max(b, (oh - 1) * sh + kh - shape[0] - t)  # ceil mode: the last window runs past the input
    r = max(r, (ow - 1) * sw + kw - shape[1] - le)
    return (t, b), (le, r)


_NONNEGATIVE = {"relu", "relu6", "sigmoid", "softmax", "hard_sigmoid"}  # Keras activations whose values are ≥ 0
_KEEPS_NONNEGATIVE = {"MaxPooling2D", "Dropout", "Identity", "ZeroPadding2D"}  # ≥ 0 in, ≥ 0 out (at inference)


def _nonnegative(k, keras_name: str) -> str | None:
    """Which Keras layer makes the value `keras_name` ≥ 0 everywhere, or None when that is not provable from
    the layers written so far: ReLU (slope 0), relu, relu6, sigmoid, hard_sigmoid, softmax, possibly through
    max pools, dropouts, identities, zero paddings and Rescalings with scale and offset ≥ 0."""
    layers = {kl.name: kl for kl in k.layers}
    kl = layers.get(keras_name)
    while kl is not None:
        cfg = kl.config
        if kl.class_name == "Activation" and cfg.get("activation") in _NONNEGATIVE:
            return f"{kl.name!r} is {cfg['activation']}"
        if kl.class_name == "Softmax" or (kl.class_name == "ReLU" and not cfg.get("negative_slope")
                                          and (cfg.get("threshold") or 0.0) >= 0.0):
            return f"{kl.name!r} is a {kl.class_name}"
        scaled = kl.class_name == "Rescaling" and all(np.ndim(cfg.get(a, 0.0)) == 0 and cfg.get(a, 0.0) >= 0
                                                      for a in ("scale", "offset"))
        if not (scaled or kl.class_name in _KEEPS_NONNEGATIVE) or len(kl.inputs) != 1:
            return None
        kl = layers.get(kl.inputs[0])
    return None


def _zero_padded_pool(k, name, cls, cfg, ins, shapes, pads, how: str, pool_text: str):
    """The pool as a ZeroPadding2D layer of `pads` before a 'valid' Keras pool (logged)."""
    h, w, c = shapes[0]
    (t, b), (le, r) = pads
    padded = k.helper(name, "pad", "ZeroPadding2D", {"padding": [[t, b], [le, r]]}, ins, shapes)
    k.log.append(f"{name}: pads {_pads_text(pads)}{' ' + how if how else ''} written as a ZeroPadding2D layer "
                 f"{padded!r} before a 'valid' {pool_text}")
    return k.add(name, cls, {**cfg, "padding": "valid"}, [padded], [(h + t + b, w + le + r, c)])


@converts(nn.MaxPool2D, nn.AvgPool2D)
def _pool(k, name, layer, ins, shapes, out_shape):
    is_max = isinstance(layer, nn.MaxPool2D)
    if is_max and layer.dilation != (1, 1):
        raise NoKerasForm(f"dilation {layer.dilation}: Keras's MaxPooling2D has no dilation")
    pads = _pool_pads(layer, shapes[0])
    same = _same_pads(shapes[0][:2], layer.kernel_size, layer.stride)
    explicit = layer._pads != ((0, 0), (0, 0))
    cls = "MaxPooling2D" if is_max else "AveragePooling2D"
    cfg = {"pool_size": list(layer.kernel_size), "strides": list(layer.stride), "data_format": "channels_last"}
    # Keras's 'same' leaves padded cells out of a window (the max and the mean of the real cells)
    ignores_pad = is_max or not layer.count_include_pad or not explicit
    if pads == ((0, 0), (0, 0)):
        return k.add(name, cls, {**cfg, "padding": "valid"}, ins, shapes)
    if pads == same and ignores_pad:
        k.log.append(f"{name}: pads {_pads_text(pads)}" + (" (ceil mode included)" if layer.ceil_mode else "")
                     + f" written as Keras padding='same' (the same windows for its {shapes[0][0]}×{shapes[0][1]} "
                     "input, padded cells left out)")
        return k.add(name, cls, {**cfg, "padding": "same"}, ins, shapes)
    if not is_max and layer.count_include_pad and (pads == layer._pads):
        return _zero_padded_pool(k, name, cls, cfg, ins, shapes, pads, "counted in the mean", "AveragePooling2D")
    why = _nonnegative(k, ins[0]) if is_max else None
    if why:  # max(window with zeros) = max(real cells) when they are ≥ 0; every window holds one (pads ≤ k // 2)
        return _zero_padded_pool(k, name, cls, cfg, ins, shapes, pads, "", f"MaxPooling2D: exact, since its input "
                                 f"is ≥ 0 ({why})")
    how = "ignored (-inf)" if is_max else ("counted" if layer.count_include_pad else "left out of the mean")
    raise NoKerasForm(f"pads {_pads_text(pads)} (padded cells {how}) on a {shapes[0][0]}×{shapes[0][1]} input: "
                      f"Keras's {cls} pads only as 'same' {_pads_text(same)}")


@converts(nn.GlobalAvgPool2D, nn.GlobalMaxPool2D)
def _global_pool(k, name, layer, ins, shapes, out_shape):
    cls = "GlobalAveragePooling2D" if isinstance(layer, nn.GlobalAvgPool2D) else "GlobalMaxPooling2D"
    return k.add(name, cls, {"data_format": "channels_last", "keepdims": False}, ins, shapes)


def _per_channel(k, name, suffix, x, shape, weight, bias, *, last: bool) -> str:
    """x · weight + bias per channel of (H, W, C) maps as a 1×1 DepthwiseConv2D (kernel (1, 1, C, 1))."""
    c = shape[-1]
    cfg = {"kernel_size": [1, 1], "strides": [1, 1], "padding": "valid", "depth_multiplier": 1,
           "data_format": "channels_last", "dilation_rate": [1, 1], "activation": "linear",
           "use_bias": bias is not None}
    weights = [np.asarray(weight).reshape(1, 1, c, 1)] + ([bias] if bias is not None else [])  # (1, 1, c, 1)
    if last:
        return k.add(name, "DepthwiseConv2D", cfg, [x], [shape], weights)
    return k.helper(name, suffix, "DepthwiseConv2D", cfg, [x], [shape], weights)


@converts(nn.Subsampling2D)
def _subsampling(k, name, layer, ins, shapes, out_shape):
    s = layer.kernel_size
    cfg = {"pool_size": [s, s], "strides": [s, s], "padding": "valid", "data_format": "channels_last"}
    mean = k.helper(name, "mean", "AveragePooling2D", cfg, ins, shapes)
    k.log.append(f"{name}: Subsampling2D (no Keras layer) written as AveragePooling2D {mean!r} then a 1×1 "
                 f"DepthwiseConv2D {name!r} holding the {layer.channels} coefficients and biases")
    return _per_channel(k, name, "scale", mean, out_shape, layer.weight.data, layer.bias.data, last=True)


# --- activations ----------------------------------------------------------------------------------
_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.HardSwish: "hard_silu", nn.SiLU: "silu",
                nn.Softsign: "softsign", nn.Mish: "mish", nn.Exponential: "exponential", nn.TanhShrink: "tanh_shrink",
                nn.SparsePlus: "sparse_plus", nn.SparseSigmoid: "sparse_sigmoid"}


@converts(*_ACTIVATIONS)
def _activation(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "Activation", {"activation": _ACTIVATIONS[type(layer)]}, ins, shapes)


@converts(nn.HardSigmoid)
def _hard_sigmoid(k, name, layer, ins, shapes, out_shape):
    if not (np.isclose(layer.alpha, 1 / 6, rtol=1e-12) and layer.beta == 0.5):
        raise NoKerasForm(f"alpha={layer.alpha:g}, beta={layer.beta:g}: Keras's hard_sigmoid is "
                          "clip(x/6 + 1/2, 0, 1) only")
    return k.add(name, "Activation", {"activation": "hard_sigmoid"}, ins, shapes)


def _scaled_activation(k, name, act: str, c: float, ins, shapes, why: str) -> str:
    """c · act(x / c) as Rescaling(1/c), Activation act, Rescaling(c) (logged): the form of an activation
    whose argument Keras's Activation layer cannot pass, for the ones with c·f(x/c) = f with that argument."""
    if c == 1.0:
        return k.add(name, "Activation", {"activation": act}, ins, shapes)
    inner = k.helper(name, "in", "Rescaling", {"scale": 1.0 / c, "offset": 0.0}, ins, shapes)
    a = k.helper(name, act, "Activation", {"activation": act}, [inner], shapes)
    k.log.append(f"{name}: {why} written as {c:.8g}·{act}(x/{c:.8g}): Rescaling {inner!r}, Activation {act} {a!r}, "
                 f"Rescaling {name!r} (Keras's Activation layer takes no arguments)")
    return k.add(name, "Rescaling", {"scale": c, "offset": 0.0}, [a], shapes)


def _gelu_tanh(k, name, ins, shapes) -> str:
    """½x(1 + tanh(√(2/π)(x + 0.044715x³))) from Multiply, Add, Rescaling and Activation tanh (logged)."""
    x = ins[0]
    x2 = k.helper(name, "x2", "Multiply", {}, [x, x], shapes * 2)
    x3 = k.helper(name, "x3", "Multiply", {}, [x2, x], shapes * 2)
    cx3 = k.helper(name, "cx3", "Rescaling", {"scale": 0.044715, "offset": 0.0}, [x3], shapes)
    inner = k.helper(name, "inner", "Add", {}, [x, cx3], shapes * 2)
    scaled = k.helper(name, "scaled", "Rescaling", {"scale": float(np.sqrt(2 / np.pi)), "offset": 0.0}, [inner],
                      shapes)
    t = k.helper(name, "tanh", "Activation", {"activation": "tanh"}, [scaled], shapes)
    one = k.helper(name, "one_plus", "Rescaling", {"scale": 1.0, "offset": 1.0}, [t], shapes)
    half = k.helper(name, "half_x", "Rescaling", {"scale": 0.5, "offset": 0.0}, [x], shapes)
    k.log.append(f"{name}: GELU(approximate='tanh') written as ½x(1 + tanh(√(2/π)(x + 0.044715x³))) in Multiply, "
                 "Add, Rescaling and Activation tanh layers (Keras's Activation 'gelu' is the exact form only)")
    return k.add(name, "Multiply", {}, [half, one], shapes * 2)


@converts(nn.GELU)
def _gelu(k, name, layer, ins, shapes, out_shape):
    if layer.approximate == "tanh":
        return _gelu_tanh(k, name, ins, shapes)
    return k.add(name, "Activation", {"activation": "gelu"}, ins, shapes)


@converts(nn.Softplus)
def _softplus(k, name, layer, ins, shapes, out_shape):
    if layer.threshold not in (None, 20.0):
        raise NoKerasForm(f"threshold={layer.threshold}: Keras's softplus is log(1 + eˣ), x above 20 on the torch "
                          "backend, so only threshold 20 (or none) is written")
    # softplus(βx)/β switches to x where βx > 20: Softplus(β, threshold=20)'s rule, PyTorch's
    return _scaled_activation(k, name, "softplus", 1.0 / layer.beta, ins, shapes, f"Softplus(beta={layer.beta:g})")


@converts(nn.CELU)
def _celu(k, name, layer, ins, shapes, out_shape):
    return _scaled_activation(k, name, "celu", layer.alpha, ins, shapes, f"CELU(alpha={layer.alpha:g})")


@converts(nn.Squareplus)
def _squareplus(k, name, layer, ins, shapes, out_shape):  # c·sq₄(x/c) = sq_b(x) for c = √b / 2
    return _scaled_activation(k, name, "squareplus", float(np.sqrt(layer.b)) / 2, ins, shapes,
                              f"Squareplus(b={layer.b:g})")


@converts(nn.HardShrink, nn.SoftShrink)
def _shrink(k, name, layer, ins, shapes, out_shape):  # c·shrink_{½}(x/c) = shrink_λ(x) for c = 2λ
    act = "hard_shrink" if isinstance(layer, nn.HardShrink) else "soft_shrink"
    if layer.threshold == 0.0:
        return k.add(name, "Identity", {}, ins, shapes)
    return _scaled_activation(k, name, act, 2 * layer.threshold, ins, shapes,
                              f"{type(layer).__name__}({layer.threshold:g})")


@converts(nn.Threshold)
def _threshold(k, name, layer, ins, shapes, out_shape):
    t, v, s = layer.threshold, layer.value, layer.negative_slope
    if t < v or s < 0:
        raise NoKerasForm(f"threshold={t:g}, value={v:g}, negative_slope={s:g}: written as Keras's ReLU(threshold="
                          "threshold − value, negative_slope) between shifts by value, which needs threshold ≥ value "
                          "and negative_slope ≥ 0")
    cfg = {"max_value": None, "negative_slope": s, "threshold": t - v}
    if v == 0.0:
        return k.add(name, "ReLU", cfg, ins, shapes)
    shift = k.helper(name, "shift", "Rescaling", {"scale": 1.0, "offset": -v}, ins, shapes)
    r = k.helper(name, "relu", "ReLU", cfg, [shift], shapes)
    k.log.append(f"{name}: Threshold({t:g}, value={v:g}) written as ReLU(threshold={t - v:g}) of x − value, plus "
                 f"value: Rescaling {shift!r}, ReLU {r!r}, Rescaling {name!r}")
    return k.add(name, "Rescaling", {"scale": 1.0, "offset": v}, [r], shapes)


@converts(nn.GLU)
def _glu(k, name, layer, ins, shapes, out_shape):
    """a·σ(b) with each half picked by a bias-free 1×1 Conv2D (or Dense) of 0/1 weights, exact for finite
    values: Keras's Activation 'glu' reports its input's shape as its output's, so the layers after it
    would be built for twice the maps."""
    if layer.axis not in (-1, len(shapes[0])):
        raise NoKerasForm(f"axis={layer.axis}: only the last axis (the maps) is written")
    c = shapes[0][-1]
    eye = np.eye(c)
    conv = len(shapes[0]) == 3
    cls = "Conv2D" if conv else "Dense"
    halves = []
    for suffix, cols in (("a", eye[:, : c // 2]), ("b", eye[:, c // 2:])):
        cfg = {"units": c // 2, "activation": "linear", "use_bias": False}
        if conv:
            cfg = {"filters": c // 2, "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
                   "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1, "activation": "linear",
                   "use_bias": False}
        kernel = cols.reshape(1, 1, c, c // 2) if conv else cols  # (1, 1, c, c/2) HWIO or (c, c/2)
        halves.append(k.helper(name, suffix, cls, cfg, ins, shapes, [kernel]))
    half_shape = tuple(shapes[0][:-1]) + (c // 2,)
    gate = k.helper(name, "gate", "Activation", {"activation": "sigmoid"}, [halves[1]], [half_shape])
    k.log.append(f"{name}: GLU written as {halves[0]!r} · sigmoid({halves[1]!r}), each half picked by a bias-free "
                 f"1×1 {cls} of 0/1 weights (Keras's Activation 'glu' would report {c} maps, not {c // 2})")
    return k.add(name, "Multiply", {}, [halves[0], gate], [half_shape, half_shape])


@converts(nn.Sparsemax)
def _sparsemax(k, name, layer, ins, shapes, out_shape):
    if layer.axis != -1:
        raise NoKerasForm(f"axis={layer.axis}: Keras's Activation 'sparsemax' reads the last axis only")
    k.log.append(f"{name}: Sparsemax written as Activation 'sparsemax'; Keras up to 3.15 computes a wrong threshold "
                 "when two or more values are in the support (keras-team/keras#23425), so its predict differs there")
    return k.add(name, "Activation", {"activation": "sparsemax"}, ins, shapes)


@converts(nn.LogSoftmax)
def _log_softmax(k, name, layer, ins, shapes, out_shape):
    if layer.axis != -1:
        raise NoKerasForm(f"axis={layer.axis}: Keras's Activation 'log_softmax' reads the last axis only")
    return k.add(name, "Activation", {"activation": "log_softmax"}, ins, shapes)


@converts(nn.Identity)
def _identity(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "Identity", {}, ins, shapes)


@converts(nn.LeakyReLU)
def _leaky(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "LeakyReLU", {"negative_slope": layer.negative_slope}, ins, shapes)


@converts(nn.ELU)
def _elu(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "ELU", {"alpha": layer.alpha}, ins, shapes)


@converts(nn.Softmax)
def _softmax(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "Softmax", {"axis": layer.axis}, ins, shapes)  # both count the batch axis


@converts(nn.ScaledTanh)
def _scaled_tanh(k, name, layer, ins, shapes, out_shape):
    inner = k.helper(name, "times_S", "Rescaling", {"scale": layer.S, "offset": 0.0}, ins, shapes)
    t = k.helper(name, "tanh", "Activation", {"activation": "tanh"}, [inner], shapes)
    k.log.append(f"{name}: ScaledTanh A·tanh(S·x) (no Keras layer) written as Rescaling(S={layer.S:.6g}) "
                 f"{inner!r}, Activation tanh {t!r}, Rescaling(A={layer.A:g}) {name!r}")
    return k.add(name, "Rescaling", {"scale": layer.A, "offset": 0.0}, [t], shapes)


@converts(nn.PReLU)
def _prelu(k, name, layer, ins, shapes, out_shape):
    shape = shapes[0]
    rank = len(shape)
    if layer.shape is not None:  # a slope per position: Keras's alpha has this shape, 1 on the shared axes
        shared = [i + 1 for i, n in enumerate(layer.shape) if n == 1] or None
        k.log.append(f"{name}: PReLU slopes {layer.shape} written as Keras alpha {layer.shape} (shared_axes {shared})")
        return k.add(name, "PReLU", {"shared_axes": shared}, ins, shapes, [layer.weight.data])
    if layer.slopes == 1:
        shared, alpha = list(range(1, rank + 1)), layer.weight.data.reshape((1,) * rank)
    else:  # one slope per channel: Keras's alpha has the input's shape, shared over the positions
        shared = list(range(1, rank)) or None
        alpha = layer.weight.data.reshape((1,) * (rank - 1) + (shape[-1],))  # (1, 1, c) or (f,)
    k.log.append(f"{name}: PReLU slopes {tuple(layer.weight.shape)} written as Keras alpha {alpha.shape} "
                 f"(shared_axes {shared})")
    return k.add(name, "PReLU", {"shared_axes": shared}, ins, shapes, [alpha])


def _clip(k, name, lo, hi, ins, shapes):
    if lo is None and hi is None:
        return k.add(name, "Identity", {}, ins, shapes)
    if lo == 0.0:
        return k.add(name, "ReLU", {"max_value": hi, "negative_slope": 0.0, "threshold": 0.0}, ins, shapes)
    if lo is None:  # min(x, hi) = hi − relu(hi − x)
        flip = k.helper(name, "flip", "Rescaling", {"scale": -1.0, "offset": hi}, ins, shapes)
        r = k.helper(name, "relu", "ReLU", {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
                     [flip], shapes)
        k.log.append(f"{name}: Clip(hi={hi:g}) written as hi − relu(hi − x): Rescaling {flip!r}, ReLU {r!r}, "
                     f"Rescaling {name!r}")
        return k.add(name, "Rescaling", {"scale": -1.0, "offset": hi}, [r], shapes)
    # clip(x, lo, hi) = relu(x − lo, max_value=hi − lo) + lo
    shift = k.helper(name, "shift", "Rescaling", {"scale": 1.0, "offset": -lo}, ins, shapes)
    top = None if hi is None else hi - lo
    r = k.helper(name, "relu", "ReLU", {"max_value": top, "negative_slope": 0.0, "threshold": 0.0}, [shift], shapes)
    k.log.append(f"{name}: Clip(lo={lo:g}, hi={hi}) written as relu(x − lo, max_value=hi − lo) + lo: Rescaling "
                 f"{shift!r}, ReLU {r!r}, Rescaling {name!r}")
    return k.add(name, "Rescaling", {"scale": 1.0, "offset": lo}, [r], shapes)


@converts(nn.Clip)
def _clip_layer(k, name, layer, ins, shapes, out_shape):
    return _clip(k, name, layer.lo, layer.hi, ins, shapes)


@converts(nn.ReLU6)
def _relu6(k, name, layer, ins, shapes, out_shape):
    return _clip(k, name, 0.0, 6.0, ins, shapes)


# --- normalisation --------------------------------------------------------------------------------
@converts(nn.BatchNorm2D)
def _batch_norm(k, name, layer, ins, shapes, out_shape):
    cfg = {"axis": -1, "momentum": 1.0 - layer.momentum, "epsilon": layer.eps, "center": True, "scale": True}
    k.log.append(f"{name}: BatchNorm momentum {layer.momentum:g} (weight of the new batch, PyTorch's convention) "
                 f"written as Keras momentum {1.0 - layer.momentum:g} (weight of the old average); epsilon "
                 f"{layer.eps:g} kept (both add it to the variance)")
    weights = [layer.weight.data, layer.bias.data, layer.running_mean, layer.running_var]  # gamma, beta, mean, var
    return k.add(name, "BatchNormalization", cfg, ins, shapes, weights)


@converts(nn.Dropout)
def _dropout(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "Dropout", {"rate": layer.p}, ins, shapes)


@converts(nn.Affine)
def _affine(k, name, layer, ins, shapes, out_shape):
    shape = shapes[0]
    c = shape[-1]
    weight = layer.weight.data if layer.weight is not None else np.ones(1)
    weight = np.broadcast_to(weight, (c,))
    bias = None if layer.bias is None else np.broadcast_to(layer.bias.data, (c,))
    if len(shape) == 3:
        k.log.append(f"{name}: Affine (per-channel x·w + b; no Keras layer) written as a 1×1 DepthwiseConv2D")
        return _per_channel(k, name, "", ins[0], shape, weight, bias, last=True)
    maps = k.helper(name, "as_maps", "Reshape", {"target_shape": [1, 1, c]}, ins, shapes)
    scaled = _per_channel(k, name, "scale", maps, (1, 1, c), weight, bias, last=False)
    k.log.append(f"{name}: Affine on {c} features written as Reshape (1, 1, {c}) {maps!r}, a 1×1 DepthwiseConv2D "
                 f"{scaled!r} and Reshape ({c},) {name!r}")
    return k.add(name, "Reshape", {"target_shape": [c]}, [scaled], [(1, 1, c)])


# --- shape layers and merges ----------------------------------------------------------------------
@converts(nn.ZeroPad2D)
def _zero_pad(k, name, layer, ins, shapes, out_shape):
    (t, b), (le, r) = layer._pads
    return k.add(name, "ZeroPadding2D", {"padding": [[t, b], [le, r]], "data_format": "channels_last"}, ins, shapes)


@converts(nn.Reshape)
def _reshape(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "Reshape", {"target_shape": list(layer.target_shape)}, ins, shapes)  # both row-major


@converts(nn.Transpose)
def _transpose(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "Permute", {"dims": [p + 1 for p in layer.perm]}, ins, shapes)  # Keras counts from 1


_MERGES = {nn.Add: "Add", nn.Multiply: "Multiply", nn.Average: "Average", nn.Maximum: "Maximum"}


@converts(*_MERGES)
def _merge(k, name, layer, ins, shapes, out_shape):
    if len({tuple(s) for s in shapes}) > 1:
        raise NoKerasForm(f"inputs of shapes {[tuple(s) for s in shapes]}: Keras's {_MERGES[type(layer)]} "
                          "takes inputs of one shape (no broadcasting)")
    return k.add(name, _MERGES[type(layer)], {}, ins, shapes)


@converts(nn.Concatenate)
def _concat(k, name, layer, ins, shapes, out_shape):
    return k.add(name, "Concatenate", {"axis": layer.axis}, ins, shapes)  # both count the batch axis


def _optional(cls_name: str):
    return getattr(nn, cls_name, None)


if _optional("Rescaling") is not None:
    @converts(nn.Rescaling)
    def _rescaling(k, name, layer, ins, shapes, out_shape):
        def keras(v):
            return v if isinstance(v, float) else list(v)
        return k.add(name, "Rescaling", {"scale": keras(layer.scale), "offset": keras(layer.offset)}, ins, shapes)

if _optional("Cropping2D") is not None:
    @converts(nn.Cropping2D)
    def _cropping(k, name, layer, ins, shapes, out_shape):
        (t, b), (le, r) = layer.cropping
        return k.add(name, "Cropping2D", {"cropping": [[t, b], [le, r]], "data_format": "channels_last"}, ins,
                     shapes)

if _optional("Conv2DTranspose") is not None:
    @converts(nn.Conv2DTranspose)
    def _conv_transpose(k, name, layer, ins, shapes, out_shape):
        if layer.groups != 1:
            raise NoKerasForm(f"groups={layer.groups}: Keras's Conv2DTranspose has no groups")
        h, w, _ = shapes[0]
        (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
        size = (h * sh, w * sw) if layer.padding == "same" else (1, 1)
        pads = window.resolve_padding(layer.padding, size, layer.kernel_size, layer.stride, layer.dilation, op=name)
        full = ((h - 1) * sh + window.dilated_span(kh, dh), (w - 1) * sw + window.dilated_span(kw, dw))  # no pads
        # featuremaps' output: rows [top, top + out) of the full output, extended by bias-only rows past its end
        extra = [max(p[0] + o - f, 0) for p, o, f in zip(pads, out_shape[:2], full)]
        if any(e >= s for e, s in zip(extra, layer.stride)):
            raise NoKerasForm(f"output_padding {layer.output_padding} past the padding: Keras's output_padding must "
                              "be smaller than the stride")
        crops = [(p[0], f + e - p[0] - o) for p, o, f, e in zip(pads, out_shape[:2], full, extra)]
        cfg = {"filters": layer.out_channels, "kernel_size": [kh, kw], "strides": [sh, sw], "padding": "valid",
               "output_padding": extra, "data_format": "channels_last",  # None would add max(K, s) − K rows
               "dilation_rate": [dh, dw], "activation": "linear", "use_bias": layer.bias is not None}
        weights = [layer.weight.data] + ([layer.bias.data] if layer.bias is not None else [])  # (kh, kw, out, in)
        k.log.append(f"{name}: kernel (kh, kw, out, in) {tuple(layer.weight.shape)} written as is (Keras's "
                     "Conv2DTranspose kernel has that layout)")
        if crops == [(0, 0), (0, 0)]:
            return k.add(name, "Conv2DTranspose", cfg, ins, shapes, weights)
        full_shape = (full[0] + extra[0], full[1] + extra[1], layer.out_channels)
        t = k.helper(name, "full", "Conv2DTranspose", cfg, ins, shapes, weights)
        k.log.append(f"{name}: padding {layer.padding!r}, output_padding {layer.output_padding} written as a 'valid' "
                     f"Conv2DTranspose {t!r} (output {full_shape[:2]}) then Cropping2D {[list(c) for c in crops]}")
        return k.add(name, "Cropping2D", {"cropping": [list(c) for c in crops], "data_format": "channels_last"},
                     [t], [full_shape])
