"""One converter per Keras layer class: a Keras layer config and its variables → featuremaps nodes.

A converter takes a `Layer` (name, config, input shapes, variables) and returns the chain of nodes it
becomes, `[(name, module, {param or buffer: array})]`: usually one, two when a conv or dense layer has a
fused activation (the activation is its own node, `<name>_<activation>`), and a depthwise and a
pointwise node for a SeparableConv2D. Every choice of convention goes to `layer.log`.

Keras conventions met here: kernels are HWIO `(kh, kw, in, out)` as in featuremaps (no transpose);
'same' follows TensorFlow's rule (output ⌈size / stride⌉, an odd extra pad row/column at the
bottom/right), which is featuremaps's 'same' for convolutions and is made explicit for pooling;
Flatten walks (h, w, c), as featuremaps; BatchNormalization's `momentum` m keeps m of the old
statistic, the opposite of featuremaps's (PyTorch's) momentum.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import nn
from ..functional.window import dilated_span
from ._read import KerasFileError

__all__ = ["Layer", "CONVERTERS", "convert"]


@dataclass
class Layer:
    """One Keras layer call: what a converter reads. `shapes` are per-example input shapes (None: unknown)."""
    kind: str
    name: str
    cfg: dict
    shapes: list
    vars: list = field(default_factory=list)
    log: list = field(default_factory=list)

    def fail(self, what: str):
        raise KerasFileError(f"layer {self.name!r} ({self.kind}): {what}")

    def var(self, i: int, what: str, ndim: int) -> np.ndarray:
        if i >= len(self.vars):
            self.fail(f"the weights file has {len(self.vars)} variables for it; expected the {what} at position {i}")
        a = np.asarray(self.vars[i], dtype=np.float32)
        if a.ndim != ndim:
            self.fail(f"its {what} has shape {a.shape}; expected {ndim} dimensions")
        return a

    @property
    def shape(self):
        return self.shapes[0]


def _pair(v, what: str, layer: Layer) -> tuple:
    v = tuple(v) if isinstance(v, (list, tuple)) else (v, v)
    if len(v) != 2 or not all(isinstance(i, int) for i in v):
        layer.fail(f"{what} must be an int or a pair of ints; received {v!r}")
    return v


def _channels_last(layer: Layer) -> None:
    fmt = layer.cfg.get("data_format") or "channels_last"
    if fmt != "channels_last":
        layer.fail(f"data_format {fmt!r}; featuremaps reads channels_last models only (NHWC)")


def _padding(layer: Layer) -> str:
    pad = str(layer.cfg.get("padding", "valid")).lower()
    if pad not in ("valid", "same"):
        layer.fail(f"padding must be 'valid' or 'same'; received {pad!r}")
    return pad


def _in_channels(layer: Layer, kernel_in: int) -> int:
    if layer.shape is not None:
        return layer.shape[-1]
    return kernel_in


# --- activations ------------------------------------------------------------------------------------
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _selu() -> list:
    scale = nn.Affine(1, shift=False)
    return [("elu", nn.ELU(_SELU_ALPHA), {}), ("scale", scale, {"weight": np.array([_SELU_SCALE], np.float32)})]


def _log_sigmoid() -> list:
    """log σ(x) = −softplus(−x), exactly, in three parameter-free layers."""
    return [("negate", nn.Rescaling(-1.0), {}), ("softplus", nn.Softplus(1.0, None), {}),
            ("negate_back", nn.Rescaling(-1.0), {})]


_ACTIVATIONS = {
    "relu": lambda: [("relu", nn.ReLU(), {})],
    "hard_tanh": lambda: [("hard_tanh", nn.Clip(-1.0, 1.0), {})],
    "log_sigmoid": _log_sigmoid,
    "relu6": lambda: [("relu6", nn.ReLU6(), {})],
    "sigmoid": lambda: [("sigmoid", nn.Sigmoid(), {})],
    "tanh": lambda: [("tanh", nn.Tanh(), {})],
    "softmax": lambda: [("softmax", nn.Softmax(-1), {})],
    "elu": lambda: [("elu", nn.ELU(1.0), {})],
    "selu": _selu,
    "leaky_relu": lambda: [("leaky_relu", nn.LeakyReLU(0.2), {})],
    "hard_sigmoid": lambda: [("hard_sigmoid", nn.HardSigmoid(1 / 6, 0.5), {})],
    "hard_swish": lambda: [("hard_swish", nn.HardSwish(), {})],
    "hard_silu": lambda: [("hard_silu", nn.HardSwish(), {})],
    "gelu": lambda: [("gelu", nn.GELU("none"), {})],
    "silu": lambda: [("silu", nn.SiLU(), {})],
    "swish": lambda: [("swish", nn.SiLU(), {})],
    "softplus": lambda: [("softplus", nn.Softplus(1.0, 20.0), {})],
    "softsign": lambda: [("softsign", nn.Softsign(), {})],
    "mish": lambda: [("mish", nn.Mish(), {})],
    "exponential": lambda: [("exponential", nn.Exponential(), {})],
    "log_softmax": lambda: [("log_softmax", nn.LogSoftmax(-1), {})],
    "celu": lambda: [("celu", nn.CELU(1.0), {})],
    "glu": lambda: [("glu", nn.GLU(-1), {})],
    "hard_shrink": lambda: [("hard_shrink", nn.HardShrink(0.5), {})],
    "soft_shrink": lambda: [("soft_shrink", nn.SoftShrink(0.5), {})],
    "tanh_shrink": lambda: [("tanh_shrink", nn.TanhShrink(), {})],
    "sparse_plus": lambda: [("sparse_plus", nn.SparsePlus(), {})],
    "sparse_sigmoid": lambda: [("sparse_sigmoid", nn.SparseSigmoid(), {})],
    "sparsemax": lambda: [("sparsemax", nn.Sparsemax(-1), {})],
    "squareplus": lambda: [("squareplus", nn.Squareplus(4.0), {})],
}
#: Standard names that a file can hold but that no layer can run, with the reason.
_UNRUNNABLE = {"threshold": "Keras's threshold(x, threshold, default_value) has no default arguments, and an "
                            "Activation layer passes none, so Keras itself fails on this layer when it runs; use "
                            "ReLU(threshold=...) or a layer that takes the two values"}
_NOTES = {  # the convention behind a name, logged when it is not just "the same function"
    "gelu": "Keras's gelu (approximate=False) is the exact x·Φ(x) → GELU('none')",
    "swish": "swish is Keras's other name for silu, x·σ(x) → SiLU",
    "softplus": "Keras's softplus log(1 + eˣ) → Softplus(beta=1, threshold=20) (PyTorch's switch to x above 20, "
                "a change below e^-20)",
    "log_softmax": "log_softmax over the last axis → LogSoftmax(-1)",
    "celu": "Keras's celu (alpha 1) → CELU(alpha=1)",
    "glu": "Keras's glu splits the last axis in halves a, b → GLU(-1), a·σ(b): the maps halve",
    "hard_shrink": "Keras's hard_shrink (threshold 0.5) → HardShrink(0.5)",
    "soft_shrink": "Keras's soft_shrink (threshold 0.5) → SoftShrink(0.5)",
    "squareplus": "Keras's squareplus (b 4) → Squareplus(4)",
    "sparsemax": "sparsemax over the last axis → Sparsemax(-1), the simplex projection; Keras up to 3.15 computes "
                 "a wrong threshold when two or more values are in the support (keras-team/keras#23425), so its "
                 "own predict differs there",
}


def activation_nodes(act, layer: Layer) -> list:
    """The nodes of a Keras activation given by name (a layer's `activation` argument or an Activation
    layer); [] for 'linear'. Names with no featuremaps equivalent fail, naming the layer."""
    if isinstance(act, dict):  # serialised as an object in some versions: {'class_name': 'function', 'config': 'relu'}
        act = act.get("config") if isinstance(act.get("config"), str) else act.get("class_name")
    if act in (None, "linear"):
        return []
    if act in _UNRUNNABLE:
        layer.fail(f"activation {act!r}: {_UNRUNNABLE[act]}")
    if act not in _ACTIVATIONS:
        layer.fail(f"activation {act!r} has no featuremaps layer; supported: linear, {', '.join(sorted(_ACTIVATIONS))}")
    nodes = _ACTIVATIONS[act]()
    if act == "selu":
        layer.log.append(f"{layer.name} ({layer.kind}): activation 'selu' → ELU(alpha={_SELU_ALPHA:.7f}) then "
                         f"Affine scale {_SELU_SCALE:.7f} (selu = scale · elu)")
    if act in _NOTES:
        layer.log.append(f"{layer.name} ({layer.kind}): {_NOTES[act]}")
    if act == "log_sigmoid":
        layer.log.append(f"{layer.name} ({layer.kind}): activation 'log_sigmoid' → Rescaling(-1), Softplus, "
                         "Rescaling(-1) (log σ(x) = −softplus(−x))")
    if act in ("hard_sigmoid",):
        layer.log.append(f"{layer.name} ({layer.kind}): hard_sigmoid is Keras 3's relu6(x + 3) / 6 → "
                         "HardSigmoid(alpha=1/6, beta=0.5)")
    return nodes


def _fused(layer: Layer, nodes: list) -> list:
    act = layer.cfg.get("activation", "linear")
    extra = activation_nodes(act, layer)
    if extra:
        shown = act if isinstance(act, str) else act.get("config")
        layer.log.append(f"{layer.name} ({layer.kind}): fused activation {shown!r} → its own node "
                         f"{layer.name}_{extra[0][0]}")
    return nodes + extra


# --- convolutions and dense ---------------------------------------------------------------------------
def _conv_common(layer: Layer):
    _channels_last(layer)
    return (_pair(layer.cfg["kernel_size"], "kernel_size", layer), _pair(layer.cfg.get("strides", 1), "strides", layer),
            _pair(layer.cfg.get("dilation_rate", 1), "dilation_rate", layer), _padding(layer))


def _same_note(layer: Layer, pad: str, strides) -> None:
    if pad == "same" and max(strides) > 1:
        layer.log.append(f"{layer.name} ({layer.kind}): padding 'same' at stride {strides}: TensorFlow's rule "
                         "(output ⌈size / stride⌉, an odd extra pad at the bottom/right), featuremaps's 'same'")


def conv2d(layer: Layer) -> list:
    k, s, d, pad = _conv_common(layer)
    kernel = layer.var(0, "kernel", 4)
    groups = int(layer.cfg.get("groups", 1))
    cin, cout = kernel.shape[2] * groups, kernel.shape[3]
    use_bias = bool(layer.cfg.get("use_bias", True))
    conv = nn.Conv2D(cin, cout, k, stride=s, padding=pad, dilation=d, groups=groups, bias=use_bias)
    params = {"weight": kernel}
    if use_bias:
        params["bias"] = layer.var(1, "bias", 1)
    layer.log.append(f"{layer.name} (Conv2D): kernel {kernel.shape} is HWIO (kh, kw, in/groups, out), as featuremaps: "
                     "no transpose")
    _same_note(layer, pad, s)
    return _fused(layer, [("", conv, params)])


def _depthwise(layer: Layer, kernel: np.ndarray, k, s, d, pad, bias: np.ndarray | None) -> nn.Conv2D:
    kh, kw, cin, mult = kernel.shape
    return nn.Conv2D(cin, cin * mult, k, stride=s, padding=pad, dilation=d, groups=cin, bias=bias is not None)


def _depthwise_weight(kernel: np.ndarray) -> np.ndarray:
    kh, kw, cin, mult = kernel.shape
    return kernel.reshape(kh, kw, 1, cin * mult)  # (kh, kw, in, mult) → (kh, kw, 1, in·mult): map c·mult + m


def depthwise_conv2d(layer: Layer) -> list:
    k, s, d, pad = _conv_common(layer)
    kernel = layer.var(0, "depthwise kernel", 4)
    use_bias = bool(layer.cfg.get("use_bias", True))
    bias = layer.var(1, "bias", 1) if use_bias else None
    conv = _depthwise(layer, kernel, k, s, d, pad, bias)
    params = {"weight": _depthwise_weight(kernel)}
    if bias is not None:
        params["bias"] = bias
    layer.log.append(f"{layer.name} (DepthwiseConv2D): depthwise kernel {kernel.shape} (kh, kw, in, depth_multiplier) "
                     f"→ Conv2D groups={kernel.shape[2]} weight {params['weight'].shape}; output map c·"
                     f"{kernel.shape[3]} + m is input map c's m-th filter")
    _same_note(layer, pad, s)
    return _fused(layer, [("", conv, params)])


def separable_conv2d(layer: Layer) -> list:
    k, s, d, pad = _conv_common(layer)
    dk = layer.var(0, "depthwise kernel", 4)
    pk = layer.var(1, "pointwise kernel", 4)
    use_bias = bool(layer.cfg.get("use_bias", True))
    depth = _depthwise(layer, dk, k, s, d, pad, None)
    point = nn.Conv2D(pk.shape[2], pk.shape[3], 1, bias=use_bias)
    pparams = {"weight": pk}
    if use_bias:
        pparams["bias"] = layer.var(2, "bias", 1)
    layer.log.append(f"{layer.name} (SeparableConv2D): two nodes, {layer.name}_depthwise (Conv2D groups={dk.shape[2]}, "
                     f"weight {dk.shape} → {_depthwise_weight(dk).shape}, no bias) and {layer.name}_pointwise "
                     f"(1×1 Conv2D, weight {pk.shape} HWIO{', with the bias' if use_bias else ''})")
    _same_note(layer, pad, s)
    return _fused(layer, [("depthwise", depth, {"weight": _depthwise_weight(dk)}), ("pointwise", point, pparams)])


def _keras_transpose_crops(k: int, s: int, d: int, pad: str, a) -> tuple[int, int]:
    """(rows kept off the top, rows kept off the bottom) of the full transposed-conv output, length
    (i − 1)·s + K with K = d·(k − 1) + 1, that Keras's Conv2DTranspose returns along one axis; a negative
    bottom crop is that many bias-only rows added past the end. Keras's rule: 'valid' gives
    (i − 1)·s + K + a, with a = max(K, s) − K when output_padding is None; 'same' gives i·s when it is
    None, else (i − 1)·s + K mod 2 + a; 'same' centres the window, the odd row at the bottom."""
    span = dilated_span(k, d)
    if pad == "valid":
        return 0, -(max(span, s) - span if a is None else a)
    kept = span - s if a is None else span - span % 2 - a  # full length − Keras's length
    top = max(kept, 0) // 2
    return top, kept - top


def conv2d_transpose(layer: Layer) -> list:
    k, s, d, pad = _conv_common(layer)
    given = layer.cfg.get("output_padding")
    extra = (None, None) if given is None else _pair(given, "output_padding", layer)
    crops = [_keras_transpose_crops(*args, pad, a) for args, a in zip(zip(k, s, d), extra)]
    pads = tuple((top, max(bottom, 0)) for top, bottom in crops)  # ((top, bottom), (left, right))
    out_pad = tuple(max(-bottom, 0) for _, bottom in crops)
    if any(a >= max(ss, dd) for a, ss, dd in zip(out_pad, s, d)):
        layer.fail(f"output_padding {given!r} with strides {s}: Keras's output would add {out_pad} bias-only rows "
                   "and columns, and featuremaps's output_padding must be smaller than the stride or the dilation")
    kernel = layer.var(0, "kernel", 4)
    use_bias = bool(layer.cfg.get("use_bias", True))
    fm_pad = "same" if pad == "same" and given is None else pads
    conv = nn.Conv2DTranspose(kernel.shape[3], kernel.shape[2], k, stride=s, padding=fm_pad, dilation=d,
                              output_padding=0 if fm_pad == "same" else out_pad, bias=use_bias)
    params = {"weight": kernel}
    if use_bias:
        params["bias"] = layer.var(1, "bias", 1)
    layer.log.append(f"{layer.name} (Conv2DTranspose): kernel {kernel.shape} is (kh, kw, out, in), as featuremaps's "
                     "Conv2DTranspose: no transpose")
    if fm_pad != "same":
        layer.log.append(f"{layer.name} (Conv2DTranspose): padding {pad!r}, output_padding {given!r} → padding "
                         f"{pads} and output_padding {out_pad} (Keras's output-size rule, made explicit)")
    return _fused(layer, [("", conv, params)])


def dense(layer: Layer) -> list:
    kernel = layer.var(0, "kernel", 2)
    use_bias = bool(layer.cfg.get("use_bias", True))
    params = {"weight": kernel}
    if use_bias:
        params["bias"] = layer.var(1, "bias", 1)
    if layer.shape is not None and len(layer.shape) == 3:
        mod = nn.Conv2D(kernel.shape[0], kernel.shape[1], 1, bias=use_bias)
        params["weight"] = kernel.reshape(1, 1, *kernel.shape)  # (in, out) → (1, 1, in, out)
        layer.log.append(f"{layer.name} (Dense): applied to every position of an {layer.shape} input, as Keras "
                         "does on a rank-4 tensor → a 1×1 Conv2D with the same kernel")
    else:
        mod = nn.Dense(kernel.shape[0], kernel.shape[1], bias=use_bias)
        layer.log.append(f"{layer.name} (Dense): kernel {kernel.shape} is (in, out), as featuremaps: no transpose")
    return _fused(layer, [("", mod, params)])


# --- activation layers ----------------------------------------------------------------------------------
def activation(layer: Layer) -> list:
    nodes = activation_nodes(layer.cfg.get("activation"), layer)
    if not nodes:
        return [("", nn.Identity(), {})]
    if len(nodes) == 1:
        return [("", nodes[0][1], nodes[0][2])]
    return nodes


def relu(layer: Layer) -> list:
    cfg = layer.cfg
    top, slope, th = cfg.get("max_value"), float(cfg.get("negative_slope") or 0.0), float(cfg.get("threshold") or 0.0)
    if th != 0.0:  # Keras: clip(x if x > t else 0, 0, max_value) − slope·relu(t − x)
        nodes = [("", nn.Threshold(th, 0.0, slope), {})]
        shown = f"Threshold({th:g}, value=0, negative_slope={slope:g})"
        if top is not None:  # the slope part is ≤ 0 (slope ≥ 0), below max_value ≥ 0: the clip leaves it
            nodes.append(("clip", nn.Clip(None, float(top)), {}))
            shown += f" then Clip(hi={float(top):g}) ({layer.name}_clip)"
        layer.log.append(f"{layer.name} (ReLU): threshold {th:g} (x above it, else negative_slope·(x − threshold)) "
                         f"→ {shown}")
        return nodes
    if slope == 0.0:
        if top is None:
            return [("", nn.ReLU(), {})]
        return [("", nn.ReLU6() if float(top) == 6.0 else nn.Clip(0.0, float(top)), {})]
    nodes = [("", nn.LeakyReLU(slope), {})]
    if top is not None:
        nodes.append(("clip", nn.Clip(None, float(top)), {}))
        layer.log.append(f"{layer.name} (ReLU): negative_slope {slope:g} and max_value {top:g} → LeakyReLU then "
                         f"Clip(hi={top:g}) ({layer.name}_clip)")
    return nodes


def leaky_relu(layer: Layer) -> list:
    slope = layer.cfg.get("negative_slope", layer.cfg.get("alpha", 0.3))
    return [("", nn.LeakyReLU(float(slope)), {})]


def elu(layer: Layer) -> list:
    return [("", nn.ELU(float(layer.cfg.get("alpha", 1.0))), {})]


def softmax(layer: Layer) -> list:
    axis = layer.cfg.get("axis", -1)
    rank = None if layer.shape is None else len(layer.shape)
    if axis not in (-1, rank):
        layer.fail(f"axis {axis!r}; featuremaps's Softmax layer reads the last axis (-1) only")
    return [("", nn.Softmax(-1), {})]


def prelu(layer: Layer) -> list:
    alpha = np.asarray(layer.vars[0] if layer.vars else layer.fail("no alpha variable in the weights file"), np.float32)
    per_channel = alpha.reshape(-1, alpha.shape[-1]) if alpha.ndim else alpha.reshape(1, 1)
    if not np.all(per_channel == per_channel[:1]):
        layer.log.append(f"{layer.name} (PReLU): alpha {alpha.shape} (shared_axes {layer.cfg.get('shared_axes')}) "
                         f"varies over positions → PReLU(shape={alpha.shape}), a slope per position and channel")
        return [("", nn.PReLU(shape=alpha.shape), {"weight": alpha})]
    slopes = per_channel[0]
    layer.log.append(f"{layer.name} (PReLU): alpha {alpha.shape} is the same at every position → {slopes.size} "
                     f"slope{'s' if slopes.size > 1 else ''} (one per channel)")
    return [("", nn.PReLU(slopes.size), {"weight": slopes})]


# --- normalisation, dropout ----------------------------------------------------------------------------
def batch_norm(layer: Layer) -> list:
    cfg = layer.cfg
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    rank = None if layer.shape is None else len(layer.shape)
    if axis not in (-1, rank):
        layer.fail(f"axis {axis!r}; featuremaps normalises the channel (last) axis only")
    if cfg.get("renorm"):
        layer.fail("renorm=True is not supported")
    i, params = 0, {}
    for flag, pname in (("scale", "weight"), ("center", "bias")):
        if cfg.get(flag, True):
            params[pname] = layer.var(i, "gamma" if flag == "scale" else "beta", 1)
            i += 1
    params["running_mean"] = layer.var(i, "moving mean", 1)
    params["running_var"] = layer.var(i + 1, "moving variance", 1)
    c = params["running_mean"].size
    params.setdefault("weight", np.ones(c, np.float32))
    params.setdefault("bias", np.zeros(c, np.float32))
    m, eps = float(cfg.get("momentum", 0.99)), float(cfg.get("epsilon", 1e-3))
    layer.log.append(f"{layer.name} (BatchNormalization): epsilon {eps:g} kept (added to the variance, as "
                     f"featuremaps); momentum {m:g} (Keras: new = m·old + (1 − m)·batch) → {1 - m:.6g} "
                     "(featuremaps/PyTorch: new = (1 − m)·old + m·batch)")
    return [("", nn.BatchNorm2D(c, momentum=round(1.0 - m, 12), eps=eps), params)]


def dropout(layer: Layer) -> list:
    return [("", nn.Dropout(float(layer.cfg.get("rate", 0.5))), {})]


# --- pooling -----------------------------------------------------------------------------------------------
def _tf_same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pool(layer: Layer, cls) -> list:
    _channels_last(layer)
    k = _pair(layer.cfg.get("pool_size", 2), "pool_size", layer)
    s = _pair(layer.cfg.get("strides") or k, "strides", layer)
    pad = _padding(layer)
    if pad == "valid":
        pads = 0
    elif layer.shape is None:
        layer.fail("padding 'same' needs the input size, and the model's input shape is not fixed; give the Keras "
                   "Input a fixed (H, W, C) shape")
    else:
        pads = tuple(_tf_same_pads(n, kk, ss) for n, kk, ss in zip(layer.shape[:2], k, s))
        what = "padded cells ignored" if cls is nn.MaxPool2D else "the mean over the real cells only"
        layer.log.append(f"{layer.name} ({layer.kind}): padding 'same' on {layer.shape[0]}×{layer.shape[1]} → pads "
                         f"{pads} (TensorFlow: an odd extra at the bottom/right; {what})")
    kwargs = {"count_include_pad": False} if cls is nn.AvgPool2D else {}
    return [("", cls(k, stride=s, padding=pads, **kwargs), {})]


def _global(layer: Layer, cls) -> list:
    _channels_last(layer)
    nodes = [("", cls(), {})]
    if layer.cfg.get("keepdims"):
        c = layer.shape[-1] if layer.shape is not None else layer.fail("keepdims=True needs a known channel count")
        nodes.append(("keepdims", nn.Reshape((1, 1, c)), {}))
    return nodes


# --- shape ---------------------------------------------------------------------------------------------------
def _nested(v, what: str, layer: Layer):
    if isinstance(v, int):
        return (v, v), (v, v)
    v = list(v)
    if len(v) == 2 and all(isinstance(i, int) for i in v):
        return (v[0], v[0]), (v[1], v[1])
    if len(v) == 2 and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in v):
        return tuple(v[0]), tuple(v[1])
    layer.fail(f"{what} must be an int, a pair or ((top, bottom), (left, right)); received {v!r}")


def zero_padding(layer: Layer) -> list:
    _channels_last(layer)
    return [("", nn.ZeroPad2D(_nested(layer.cfg.get("padding", 1), "padding", layer)), {})]


def cropping(layer: Layer) -> list:
    _channels_last(layer)
    return [("", nn.Cropping2D(_nested(layer.cfg.get("cropping", 0), "cropping", layer)), {})]


def flatten(layer: Layer) -> list:
    channels_last = layer.cfg.get("data_format", "channels_last") == "channels_last"  # (a channels_first one: _load)
    if channels_last and layer.shape is not None and len(layer.shape) == 3:
        layer.log.append(f"{layer.name} (Flatten): Keras flattens NHWC maps in (h, w, c) order, as featuremaps: "
                         "the next Dense keeps its rows (no permutation)")
    return [("", nn.Flatten(), {})]


def reshape(layer: Layer) -> list:
    return [("", nn.Reshape(tuple(layer.cfg["target_shape"])), {})]


def rescaling(layer: Layer) -> list:
    scale, offset = layer.cfg.get("scale", 1.0), layer.cfg.get("offset", 0.0)
    return [("", nn.Rescaling(scale, offset), {})]


def _merge(cls):
    return lambda layer: [("", cls(), {})]


def concatenate(layer: Layer) -> list:
    return [("", nn.Concatenate(int(layer.cfg.get("axis", -1))), {})]


def identity(layer: Layer) -> list:
    return [("", nn.Identity(), {})]


def permute(layer: Layer) -> list:
    """Keras's `dims` are 1-based axes of each example (output axis i is input axis dims[i])."""
    return [("", nn.Transpose(tuple(int(d) - 1 for d in layer.cfg["dims"])), {})]


CONVERTERS = {
    "Conv2D": conv2d, "Convolution2D": conv2d, "DepthwiseConv2D": depthwise_conv2d,
    "SeparableConv2D": separable_conv2d, "SeparableConvolution2D": separable_conv2d,
    "Conv2DTranspose": conv2d_transpose, "Convolution2DTranspose": conv2d_transpose, "Dense": dense,
    "Flatten": flatten, "Reshape": reshape, "Activation": activation, "ReLU": relu, "LeakyReLU": leaky_relu,
    "PReLU": prelu, "ELU": elu, "Softmax": softmax, "BatchNormalization": batch_norm, "Dropout": dropout,
    "MaxPooling2D": lambda layer: _pool(layer, nn.MaxPool2D), "MaxPool2D": lambda layer: _pool(layer, nn.MaxPool2D),
    "AveragePooling2D": lambda layer: _pool(layer, nn.AvgPool2D),
    "AvgPool2D": lambda layer: _pool(layer, nn.AvgPool2D),
    "GlobalAveragePooling2D": lambda layer: _global(layer, nn.GlobalAvgPool2D),
    "GlobalAvgPool2D": lambda layer: _global(layer, nn.GlobalAvgPool2D),
    "GlobalMaxPooling2D": lambda layer: _global(layer, nn.GlobalMaxPool2D),
    "GlobalMaxPool2D": lambda layer: _global(layer, nn.GlobalMaxPool2D),
    "ZeroPadding2D": zero_padding, "Cropping2D": cropping, "Rescaling": rescaling,
    "Add": _merge(nn.Add), "Multiply": _merge(nn.Multiply), "Average": _merge(nn.Average),
    "Maximum": _merge(nn.Maximum), "Concatenate": concatenate, "Identity": identity, "Permute": permute,
}


def convert(layer: Layer) -> list:
    """The nodes `[(name, module, arrays)]` of one Keras layer call, with its arrays checked and assigned."""
    nodes = CONVERTERS[layer.kind](layer)
    out = []
    for suffix, module, arrays in nodes:
        name = f"{layer.name}_{suffix}" if suffix else layer.name
        _assign(layer, name, module, arrays)
        out.append((name, module.eval()))
    return out


def _assign(layer: Layer, node: str, module, arrays: dict) -> None:
    params, buffers = dict(module._parameters), dict(module._buffers)
    for key, a in arrays.items():
        target = params[key].data if key in params else buffers[key]
        a = np.asarray(a, np.float32)
        if a.shape != target.shape:
            layer.fail(f"variable for {node}.{key} has shape {a.shape}; the layer built from the config needs "
                       f"{target.shape}")
        if key in params:
            params[key].data = a.copy()
        else:
            setattr(module, key, a.copy())
