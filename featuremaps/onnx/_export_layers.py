"""One converter per featuremaps layer class: the ONNX nodes that compute the same values.

A converter is `fn(e, name, layer, ins, shapes, out_shape) -> tensor`: `e` is the `Emitter`, `name`
the featuremaps node name (the converter's last node and tensor take it), `ins` the input tensors,
`shapes` their per-example shapes and `out_shape` the layer's. It returns the tensor holding the
layer's value (its input's, for a layer that is left out). Converters are found by the layer's
exact class, so a subclass with another `forward` is never exported as its parent.

Layouts (see `_export_emit`): convs, pools, the norms, Pad and Resize read NCHW; Flatten, Reshape
and Transpose read the value as featuremaps holds it (NHWC), so a Flatten of maps is a Transpose
to NHWC, then Flatten, and the (h, w, c) feature order a following Dense was trained on is kept;
element-wise layers and merges of equal-rank inputs keep whatever layout their input has.
Softmax and Concatenate count their `axis` on the featuremaps array (batch axis included);
on an NCHW tensor it becomes `NHWC_TO_NCHW[axis]` (−1, the channels, becomes 1).
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..functional import window
from ._export_emit import NHWC_TO_NCHW

__all__ = ["CONVERTERS", "NO_ONNX_FORM", "converter_for"]

CONVERTERS: dict[type, object] = {}
#: Registered layer classes that have no ONNX form (none today); `export` names them in its error.
NO_ONNX_FORM: tuple = ()


def converts(*classes):
    def deco(fn):
        for c in classes:
            CONVERTERS[c] = fn
        return fn
    return deco


def converter_for(layer):
    return CONVERTERS.get(type(layer))


def _keep(e, x):
    """(layout, rank) of `x`, for a layer whose output has its input's layout and rank."""
    return {"layout": e.layout[x], "rank": e.rank[x]}


def _channel_shape(e, x, values) -> np.ndarray:
    """Per-channel `values` shaped to broadcast on `x`: (C, 1, 1) on NCHW maps, else (C,)."""
    v = np.asarray(values)
    return v.reshape(-1, 1, 1) if e.layout[x] == "nchw" and v.size > 1 else v


# --- convolution and dense ------------------------------------------------------------------------
@converts(nn.Conv2D)
def _conv(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for Conv")
    (t, b), (le, r) = window.resolve_padding(layer.padding, shapes[0][:2], layer.kernel_size, layer.stride,
                                             layer.dilation, op=name)
    w = layer.weight.data
    if layer.connections is not None:
        w = w * layer.connections[None, None]  # (kh, kw, in, out): absent links are zero kernels
        absent = int((~layer.connections).sum())
        e.log.append(f"{name}: connection table written as a full conv, {absent} of {layer.connections.size} "
                     "kernels zero")
    w_oihw = np.transpose(w, (3, 2, 0, 1))  # (kh, kw, in/g, out) → (out, in/g, kh, kw)
    e.log.append(f"{name}: weight HWIO {w.shape} → OIHW {w_oihw.shape}")
    inputs = [x, e.const(f"{name}.weight", w_oihw)]
    if layer.bias is not None:
        inputs.append(e.const(f"{name}.bias", layer.bias.data))
    return e.node("Conv", inputs, name, layout="nchw", rank=4, kernel_shape=list(layer.kernel_size),
                  strides=list(layer.stride), dilations=list(layer.dilation), pads=[t, le, b, r], group=layer.groups)


def _convt_pads(layer, in_hw) -> tuple:
    """((top, bottom), (left, right)) and output_padding of ConvTranspose for `layer` on `in_hw`:
    padding='same' as the explicit pads (and, where the kernel spans less than the stride, the
    output_padding) of its H·s output, so that ONNX's output-size rule gives that size."""
    if layer.padding != "same":
        pads = window.resolve_padding(layer.padding, (1, 1), layer.kernel_size, layer.stride, layer.dilation,
                                      op="Conv2DTranspose")
        return pads, tuple(layer.output_padding)
    size = (in_hw[0] * layer.stride[0], in_hw[1] * layer.stride[1])
    pads = window.Geometry.of(size, layer.kernel_size, layer.stride, "same", layer.dilation).pads
    geometry = zip(size, in_hw, layer.stride, layer.kernel_size, layer.dilation, pads)
    extra = tuple(n - ((i - 1) * s + window.dilated_span(k, d) - lo - hi) for n, i, s, k, d, (lo, hi) in geometry)
    return pads, extra


@converts(nn.Conv2DTranspose)
def _conv_transpose(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for ConvTranspose")
    ((t, b), (le, r)), out_pad = _convt_pads(layer, shapes[0][:2])
    w = layer.weight.data
    w_iohw = np.transpose(w, (3, 2, 0, 1))  # (kh, kw, out/g, in) → (in, out/g, kh, kw)
    e.log.append(f"{name}: ConvTranspose weight (kh, kw, out/groups, in) {w.shape} → (in, out/groups, kh, kw) "
                 f"{w_iohw.shape}" + (f"; padding 'same' written as pads {[t, le, b, r]}, output_padding "
                                      f"{list(out_pad)}" if layer.padding == "same" else ""))
    inputs = [x, e.const(f"{name}.weight", w_iohw)]
    if layer.bias is not None:
        inputs.append(e.const(f"{name}.bias", layer.bias.data))
    return e.node("ConvTranspose", inputs, name, layout="nchw", rank=4, kernel_shape=list(layer.kernel_size),
                  strides=list(layer.stride), dilations=list(layer.dilation), pads=[t, le, b, r],
                  output_padding=list(out_pad), group=layer.groups)


@converts(nn.Dense)
def _dense(e, name, layer, ins, shapes, out_shape):
    inputs = [ins[0], e.const(f"{name}.weight", layer.weight.data)]  # (in, out): Gemm's B, not transposed
    if layer.bias is not None:
        inputs.append(e.const(f"{name}.bias", layer.bias.data))
    return e.node("Gemm", inputs, name, layout="plain", rank=2)


@converts(nn.Flatten)
def _flatten(e, name, layer, ins, shapes, out_shape):
    x = e.as_plain(ins[0], name, f"before Flatten, so the {out_shape[0]} features keep the (h, w, c) order")
    return e.node("Flatten", [x], name, layout="plain", rank=2, axis=1)


# --- pooling --------------------------------------------------------------------------------------
def _pool_attrs(layer, shape, name) -> dict:
    (t, b), (le, r) = layer._pads
    k, s = list(layer.kernel_size), list(layer.stride)
    floor_hw = window.Geometry.of(shape[:2], layer.kernel_size, layer.stride, layer._pads,
                                  getattr(layer, "dilation", 1), op=name).out_hw
    ceil = int(layer.ceil_mode and tuple(floor_hw) != tuple(layer.compute_output_shape(shape)[:2]))
    return {"kernel_shape": k, "strides": s, "pads": [t, le, b, r], "ceil_mode": ceil}


@converts(nn.MaxPool2D)
def _max_pool(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for MaxPool")
    return e.node("MaxPool", [x], name, layout="nchw", rank=4, dilations=list(layer.dilation),
                  **_pool_attrs(layer, shapes[0], name))


@converts(nn.AvgPool2D)
def _avg_pool(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for AveragePool")
    return e.node("AveragePool", [x], name, layout="nchw", rank=4, count_include_pad=int(layer.count_include_pad),
                  **_pool_attrs(layer, shapes[0], name))


@converts(nn.GlobalAvgPool2D, nn.GlobalMaxPool2D)
def _global_pool(e, name, layer, ins, shapes, out_shape):
    op = "GlobalAveragePool" if isinstance(layer, nn.GlobalAvgPool2D) else "GlobalMaxPool"
    x = e.as_nchw(ins[0], name, f"for {op}")
    pooled = e.step(op, [x], name, "pool", layout="nchw", rank=4)  # (n, c, 1, 1)
    return e.node("Flatten", [pooled], name, layout="plain", rank=2, axis=1)


@converts(nn.Subsampling2D)
def _subsampling(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for AveragePool")
    k = layer.kernel_size
    mean = e.step("AveragePool", [x], name, "mean", layout="nchw", rank=4, kernel_shape=[k, k], strides=[k, k])
    w = e.const(f"{name}.weight", _channel_shape(e, mean, layer.weight.data))
    scaled = e.step("Mul", [mean, w], name, "scaled", layout="nchw", rank=4)
    b = e.const(f"{name}.bias", _channel_shape(e, mean, layer.bias.data))
    return e.node("Add", [scaled, b], name, layout="nchw", rank=4)


# --- activations ----------------------------------------------------------------------------------
_SIMPLE = {nn.ReLU: "Relu", nn.Tanh: "Tanh", nn.Sigmoid: "Sigmoid", nn.Identity: "Identity"}


@converts(*_SIMPLE)
def _simple(e, name, layer, ins, shapes, out_shape):
    return e.node(_SIMPLE[type(layer)], [ins[0]], name, **_keep(e, ins[0]))


@converts(nn.LeakyReLU)
def _leaky(e, name, layer, ins, shapes, out_shape):
    return e.node("LeakyRelu", [ins[0]], name, alpha=layer.negative_slope, **_keep(e, ins[0]))


@converts(nn.ELU)
def _elu(e, name, layer, ins, shapes, out_shape):
    return e.node("Elu", [ins[0]], name, alpha=layer.alpha, **_keep(e, ins[0]))


@converts(nn.ScaledTanh)
def _scaled_tanh(e, name, layer, ins, shapes, out_shape):
    kw = _keep(e, ins[0])
    inner = e.step("Mul", [ins[0], e.scalar(f"{name}.S", layer.S)], name, "times_S", **kw)
    t = e.step("Tanh", [inner], name, "tanh", **kw)
    return e.node("Mul", [t, e.scalar(f"{name}.A", layer.A)], name, **kw)


def _along_axis(e, op: str, name, layer, ins, shapes):
    """Softmax / LogSoftmax along the layer's axis, renumbered when the tensor is held NCHW."""
    x, rank = ins[0], len(shapes[0]) + 1
    axis = layer.axis % rank
    if e.layout[x] == "nchw":
        axis = NHWC_TO_NCHW[axis]
    return e.node(op, [x], name, axis=axis, **_keep(e, x))


@converts(nn.Softmax)
def _softmax(e, name, layer, ins, shapes, out_shape):
    return _along_axis(e, "Softmax", name, layer, ins, shapes)


@converts(nn.PReLU)
def _prelu(e, name, layer, ins, shapes, out_shape):
    w = layer.weight.data
    if layer.shape is not None and len(layer.shape) == 3:  # a slope per position: (h, w, c), on NCHW (c, h, w)
        w = np.moveaxis(w, -1, 0) if e.layout[ins[0]] == "nchw" else w
        return e.node("PRelu", [ins[0], e.const(f"{name}.weight", w)], name, **_keep(e, ins[0]))
    slope = e.const(f"{name}.weight", _channel_shape(e, ins[0], w))
    return e.node("PRelu", [ins[0], slope], name, **_keep(e, ins[0]))


def _clip(e, name, x, lo, hi):
    bounds = ["" if v is None else e.scalar(f"{name}.{which}", v) for which, v in (("min", lo), ("max", hi))]
    while bounds and bounds[-1] == "":
        bounds.pop()
    return e.node("Clip", [x] + bounds, name, **_keep(e, x))


@converts(nn.Clip)
def _clip_layer(e, name, layer, ins, shapes, out_shape):
    return _clip(e, name, ins[0], layer.lo, layer.hi)


@converts(nn.ReLU6)
def _relu6(e, name, layer, ins, shapes, out_shape):
    return _clip(e, name, ins[0], 0.0, 6.0)


@converts(nn.HardSigmoid)
def _hard_sigmoid(e, name, layer, ins, shapes, out_shape):
    return e.node("HardSigmoid", [ins[0]], name, alpha=layer.alpha, beta=layer.beta, **_keep(e, ins[0]))


@converts(nn.HardSwish)
def _hard_swish(e, name, layer, ins, shapes, out_shape):
    if e.opset >= 14:
        return e.node("HardSwish", [ins[0]], name, **_keep(e, ins[0]))
    gate = e.step("HardSigmoid", [ins[0]], name, "gate", alpha=1.0 / 6.0, beta=0.5, **_keep(e, ins[0]))
    e.log.append(f"{name}: HardSwish written as x · HardSigmoid(x, 1/6, 1/2) (opset {e.opset} < 14 has no HardSwish)")
    return e.node("Mul", [ins[0], gate], name, **_keep(e, ins[0]))


@converts(nn.LogSoftmax)
def _log_softmax(e, name, layer, ins, shapes, out_shape):
    return _along_axis(e, "LogSoftmax", name, layer, ins, shapes)


_SMOOTH = {nn.Softsign: "Softsign", nn.Exponential: "Exp"}


@converts(*_SMOOTH)
def _smooth(e, name, layer, ins, shapes, out_shape):
    return e.node(_SMOOTH[type(layer)], [ins[0]], name, **_keep(e, ins[0]))


@converts(nn.SiLU)
def _silu(e, name, layer, ins, shapes, out_shape):
    if e.opset >= 24:
        return e.node("Swish", [ins[0]], name, **_keep(e, ins[0]))
    gate = e.step("Sigmoid", [ins[0]], name, "gate", **_keep(e, ins[0]))
    e.log.append(f"{name}: SiLU written as x · Sigmoid(x) (opset {e.opset} < 24 has no Swish)")
    return e.node("Mul", [ins[0], gate], name, **_keep(e, ins[0]))


@converts(nn.GELU)
def _gelu(e, name, layer, ins, shapes, out_shape):
    x, kw = ins[0], _keep(e, ins[0])
    if e.opset >= 20:
        return e.node("Gelu", [x], name, approximate=layer.approximate, **kw)
    if layer.approximate == "tanh":  # ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
        cube = e.step("Mul", [e.step("Mul", [x, x], name, "x2", **kw), x], name, "x3", **kw)
        inner = e.step("Add", [x, e.step("Mul", [cube, e.scalar(f"{name}.c", 0.044715)], name, "cx3", **kw)],
                       name, "inner", **kw)
        scaled = e.step("Mul", [inner, e.scalar(f"{name}.k", float(np.sqrt(2 / np.pi)))], name, "scaled", **kw)
        gate = e.step("Tanh", [scaled], name, "tanh", **kw)
        form = "½x(1 + Tanh(√(2/π)(x + 0.044715x³)))"
    else:  # ½x(1 + erf(x/√2))
        scaled = e.step("Mul", [x, e.scalar(f"{name}.k", float(np.sqrt(0.5)))], name, "scaled", **kw)
        gate = e.step("Erf", [scaled], name, "erf", **kw)
        form = "½x(1 + Erf(x/√2))"
    one = e.step("Add", [gate, e.scalar(f"{name}.one", 1.0)], name, "one_plus", **kw)
    half = e.step("Mul", [x, e.scalar(f"{name}.half", 0.5)], name, "half_x", **kw)
    e.log.append(f"{name}: GELU(approximate={layer.approximate!r}) written as {form} "
                 f"(opset {e.opset} < 20 has no Gelu)")
    return e.node("Mul", [half, one], name, **kw)


@converts(nn.Softplus)
def _softplus(e, name, layer, ins, shapes, out_shape):
    x, kw = ins[0], _keep(e, ins[0])
    if layer.threshold is not None:
        e.log.append(f"{name}: Softplus threshold {layer.threshold:g} dropped (ONNX Softplus has none; the two "
                     f"differ by at most e^-{layer.threshold:g}/beta where beta·x > threshold)")
    if layer.beta == 1.0:
        return e.node("Softplus", [x], name, **kw)
    scaled = e.step("Mul", [x, e.scalar(f"{name}.beta", layer.beta)], name, "beta_x", **kw)
    soft = e.step("Softplus", [scaled], name, "softplus", **kw)
    e.log.append(f"{name}: Softplus(beta={layer.beta:g}) written as Softplus(beta·x) / beta")
    return e.node("Div", [soft, e.scalar(f"{name}.div", layer.beta)], name, **kw)


@converts(nn.Mish)
def _mish(e, name, layer, ins, shapes, out_shape):
    x, kw = ins[0], _keep(e, ins[0])
    if e.opset >= 18:
        return e.node("Mish", [x], name, **kw)
    gate = e.step("Tanh", [e.step("Softplus", [x], name, "softplus", **kw)], name, "tanh", **kw)
    e.log.append(f"{name}: Mish written as x · Tanh(Softplus(x)) (opset {e.opset} < 18 has no Mish)")
    return e.node("Mul", [x, gate], name, **kw)


@converts(nn.CELU)
def _celu(e, name, layer, ins, shapes, out_shape):
    return e.node("Celu", [ins[0]], name, alpha=layer.alpha, **_keep(e, ins[0]))  # opset 12


@converts(nn.HardShrink, nn.SoftShrink)
def _shrink(e, name, layer, ins, shapes, out_shape):  # ONNX Shrink: bias 0 is hard, bias = lambd soft
    bias = layer.threshold if isinstance(layer, nn.SoftShrink) else 0.0
    return e.node("Shrink", [ins[0]], name, lambd=layer.threshold, bias=bias, **_keep(e, ins[0]))


@converts(nn.TanhShrink)
def _tanh_shrink(e, name, layer, ins, shapes, out_shape):
    x, kw = ins[0], _keep(e, ins[0])
    return e.node("Sub", [x, e.step("Tanh", [x], name, "tanh", **kw)], name, **kw)


@converts(nn.Threshold)
def _threshold(e, name, layer, ins, shapes, out_shape):
    x, kw = ins[0], _keep(e, ins[0])
    t, v, s = layer.threshold, layer.value, layer.negative_slope
    if v == 0.0 and s == 0.0:
        return e.node("ThresholdedRelu", [x], name, alpha=t, **kw)  # x > alpha ? x : 0 (opset 10)
    low = e.scalar(f"{name}.value", v)
    if s != 0.0:  # value + s·(x − t)
        shifted = e.step("Sub", [x, e.scalar(f"{name}.threshold", t)], name, "minus_t", **kw)
        low = e.step("Add", [e.step("Mul", [shifted, e.scalar(f"{name}.slope", s)], name, "slope", **kw), low],
                     name, "low", **kw)
    above = e.step("Greater", [x, e.scalar(f"{name}.t", t)], name, "above", **kw)
    e.log.append(f"{name}: Threshold({t:g}, value={v:g}, negative_slope={s:g}) written as Where(x > threshold, x, "
                 "low) (ThresholdedRelu has value 0 and no slope)")
    return e.node("Where", [above, x, low], name, **kw)


@converts(nn.SparsePlus)
def _sparse_plus(e, name, layer, ins, shapes, out_shape):
    x, kw = ins[0], _keep(e, ins[0])  # ((clip(x, −1, 1) + 1)²)/4 + relu(x − 1)
    u = e.step("Add", [_clip(e, f"{name}/clip", x, -1.0, 1.0), e.scalar(f"{name}.one", 1.0)], name, "u", **kw)
    quad = e.step("Mul", [e.step("Mul", [u, u], name, "u2", **kw), e.scalar(f"{name}.quarter", 0.25)], name,
                  "quad", **kw)
    tail = e.step("Relu", [e.step("Sub", [x, e.scalar(f"{name}.one_", 1.0)], name, "x_1", **kw)], name, "tail", **kw)
    e.log.append(f"{name}: SparsePlus written as (clip(x, −1, 1) + 1)²/4 + relu(x − 1)")
    return e.node("Add", [quad, tail], name, **kw)


@converts(nn.SparseSigmoid)
def _sparse_sigmoid(e, name, layer, ins, shapes, out_shape):  # clip((x + 1)/2, 0, 1)
    return e.node("HardSigmoid", [ins[0]], name, alpha=0.5, beta=0.5, **_keep(e, ins[0]))


@converts(nn.Squareplus)
def _squareplus(e, name, layer, ins, shapes, out_shape):
    x, kw = ins[0], _keep(e, ins[0])  # (x + √(x² + b)) / 2
    root = e.step("Sqrt", [e.step("Add", [e.step("Mul", [x, x], name, "x2", **kw), e.scalar(f"{name}.b", layer.b)],
                                  name, "x2_b", **kw)], name, "root", **kw)
    e.log.append(f"{name}: Squareplus(b={layer.b:g}) written as (x + Sqrt(x·x + b)) / 2 (no ONNX op; it loses "
                 "relative accuracy far left, where featuremaps's b / (2(√(x² + b) − x)) does not)")
    return e.node("Mul", [e.step("Add", [x, root], name, "sum", **kw), e.scalar(f"{name}.half", 0.5)], name, **kw)


def _onnx_axis(e, x, axis: int, rank: int) -> int:
    axis %= rank
    return NHWC_TO_NCHW[axis] if e.layout[x] == "nchw" else axis


@converts(nn.GLU)
def _glu(e, name, layer, ins, shapes, out_shape):
    x, kw, rank = ins[0], _keep(e, ins[0]), len(shapes[0]) + 1
    n = shapes[0][layer.axis % rank - 1]
    axis = e.ints(f"{name}.axis", [_onnx_axis(e, x, layer.axis, rank)])
    cut = [e.ints(f"{name}.{k}", [v]) for k, v in (("start", 0), ("half", n // 2), ("end", n))]
    a = e.step("Slice", [x, cut[0], cut[1], axis], name, "a", **kw)
    gate = e.step("Sigmoid", [e.step("Slice", [x, cut[1], cut[2], axis], name, "b", **kw)], name, "gate", **kw)
    e.log.append(f"{name}: GLU written as Slice a · Sigmoid(Slice b), the two halves of axis {layer.axis}")
    return e.node("Mul", [a, gate], name, **kw)


@converts(nn.Sparsemax)
def _sparsemax(e, name, layer, ins, shapes, out_shape):
    """The sort-based threshold: TopK sorts descending, a value is in the support when 1 + r·z_(r) > Σ_{j≤r}
    z_(j), and τ = (Σ of the support's values − 1) / its size."""
    x, kw, rank = ins[0], _keep(e, ins[0]), len(shapes[0]) + 1
    ax = _onnx_axis(e, x, layer.axis, rank)
    n = shapes[0][layer.axis % rank - 1]
    ranks = np.ones(rank, np.int64)
    ranks[ax] = n
    r = e.const(f"{name}.r", np.arange(1, n + 1, dtype=np.float64).reshape(ranks))
    srt = e.node("TopK", [x, e.ints(f"{name}.k", [n])], e.fresh(f"{name}/sorted"), axis=ax, largest=1, sorted=1,
                 **kw)
    e.nodes[-1].output.append(e.fresh(f"{name}/sorted_index"))  # TopK's second output, unused
    csum = e.step("CumSum", [srt, e.ints(f"{name}.cum_axis", [ax])], name, "cumsum", **kw)
    bound = e.step("Add", [e.step("Mul", [r, srt], name, "r_z", **kw), e.scalar(f"{name}.one", 1.0)], name,
                   "bound", **kw)
    support = e.step("Cast", [e.step("Greater", [bound, csum], name, "in_support", **kw)], name, "support",
                     to=e.onnx.helper.np_dtype_to_tensor_dtype(e.dtype), **kw)
    axes = e.ints(f"{name}.axes", [ax])
    k = e.step("ReduceSum", [support, axes], name, "k", keepdims=1, **kw)
    total = e.step("ReduceSum", [e.step("Mul", [support, srt], name, "kept", **kw), axes], name, "total",
                   keepdims=1, **kw)
    tau = e.step("Div", [e.step("Sub", [total, e.scalar(f"{name}.one_", 1.0)], name, "total_1", **kw), k], name,
                 "tau", **kw)
    e.log.append(f"{name}: Sparsemax written as TopK, CumSum, ReduceSum and Relu(x − τ) (no ONNX op)")
    return e.node("Relu", [e.step("Sub", [x, tau], name, "x_tau", **kw)], name, **kw)


# --- normalisation --------------------------------------------------------------------------------
@converts(nn.BatchNorm2D)
def _batch_norm(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for BatchNormalization (channels on axis 1)")
    params = [e.const(f"{name}.weight", layer.weight.data), e.const(f"{name}.bias", layer.bias.data),
              e.const(f"{name}.running_mean", layer.running_mean), e.const(f"{name}.running_var", layer.running_var)]
    return e.node("BatchNormalization", [x] + params, name, epsilon=layer.eps, momentum=1.0 - layer.momentum,
                  **_keep(e, x))


@converts(nn.InstanceNorm)
def _instance_norm(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for InstanceNormalization")
    c = layer.num_features
    gamma = layer.weight.data if layer.weight is not None else np.ones(c)
    beta = layer.bias.data if layer.bias is not None else np.zeros(c)
    params = [e.const(f"{name}.weight", gamma), e.const(f"{name}.bias", beta)]
    return e.node("InstanceNormalization", [x] + params, name, epsilon=layer.eps, layout="nchw", rank=4)


@converts(nn.LocalResponseNorm)
def _lrn(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for LRN")
    n = layer.size
    if n % 2:  # ONNX's window c − (n−1)/2 … c + (n−1)/2 is featuremaps' (PyTorch's) for odd sizes
        return e.node("LRN", [x], name, size=n, alpha=layer.alpha, beta=layer.beta, bias=layer.k,
                      layout="nchw", rank=4)
    # even sizes: ONNX's window leans right, featuremaps' left; sum the squares with a banded 1×1 conv
    c = shapes[0][-1]
    o, i = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
    band = ((i >= o - n // 2) & (i <= o + (n - 1) // 2)) * (layer.alpha / n)  # (out, in)
    sq = e.step("Mul", [x, x], name, "square", layout="nchw", rank=4)
    w = e.const(f"{name}.window", band[:, :, None, None])  # (out, in, 1, 1)
    s = e.step("Conv", [sq, w, e.const(f"{name}.k", np.full(c, layer.k))], name, "norm", layout="nchw", rank=4,
               kernel_shape=[1, 1])
    p = e.step("Pow", [s, e.scalar(f"{name}.beta", layer.beta)], name, "pow", layout="nchw", rank=4)
    e.log.append(f"{name}: LRN of even size {n} written as x / (k + α/n·Σ x²)^β with a banded 1×1 Conv "
                 "(ONNX's LRN centres even windows one channel to the right)")
    return e.node("Div", [x, p], name, layout="nchw", rank=4)


@converts(nn.Affine)
def _affine(e, name, layer, ins, shapes, out_shape):
    x, kw = ins[0], _keep(e, ins[0])
    steps = [(op, f"{name}.{p}", getattr(layer, p)) for op, p in (("Mul", "weight"), ("Add", "bias"))
             if getattr(layer, p) is not None]
    if not steps:
        return e.node("Identity", [x], name, **kw)
    for k, (op, const, param) in enumerate(steps):
        inputs = [x, e.const(const, _channel_shape(e, x, param.data))]
        x = e.node(op, inputs, name, **kw) if k == len(steps) - 1 else e.step(op, inputs, name, "scaled", **kw)
    return x


@converts(nn.Rescaling)
def _rescaling(e, name, layer, ins, shapes, out_shape):
    x, kw = ins[0], _keep(e, ins[0])
    steps = [(op, f"{name}.{p}", v) for op, p, v, neutral in (("Mul", "scale", layer.scale, 1.0),
                                                               ("Add", "offset", layer.offset, 0.0))
             if np.any(np.asarray(v) != neutral)]
    if not steps:
        return e.node("Identity", [x], name, **kw)
    for k, (op, const, v) in enumerate(steps):
        inputs = [x, e.const(const, _channel_shape(e, x, np.asarray(v, np.float64)))]
        x = e.node(op, inputs, name, **kw) if k == len(steps) - 1 else e.step(op, inputs, name, "scaled", **kw)
    return x


@converts(nn.Dropout)
def _dropout(e, name, layer, ins, shapes, out_shape):
    e.log.append(f"{name}: Dropout left out (inference: the identity)")
    return ins[0]


# --- shape layers ---------------------------------------------------------------------------------
def _pad(e, name, x_in, pads, mode: str, value: float):
    x = e.as_nchw(x_in, name, "for Pad")
    (t, b), (le, r) = pads
    inputs = [x, e.ints(f"{name}.pads", [0, 0, t, le, 0, 0, b, r])]
    if mode == "constant" and value != 0.0:
        inputs.append(e.scalar(f"{name}.value", value))
    return e.node("Pad", inputs, name, mode=mode, layout="nchw", rank=4)


@converts(nn.ZeroPad2D)
def _zero_pad(e, name, layer, ins, shapes, out_shape):
    return _pad(e, name, ins[0], layer._pads, "constant", 0.0)


@converts(nn.Pad)
def _pad_layer(e, name, layer, ins, shapes, out_shape):
    return _pad(e, name, ins[0], layer._pads, layer.mode, layer.value)


@converts(nn.Cropping2D)
def _cropping(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for Slice")
    (t, b), (le, r) = layer.cropping
    h, w = shapes[0][:2]
    inputs = [x, e.ints(f"{name}.starts", [t, le]), e.ints(f"{name}.ends", [h - b, w - r]),
              e.ints(f"{name}.axes", [2, 3])]
    return e.node("Slice", inputs, name, layout="nchw", rank=4)


@converts(nn.Reshape)
def _reshape(e, name, layer, ins, shapes, out_shape):
    x = e.as_plain(ins[0], name, "before Reshape (target_shape is in featuremaps' (h, w, c) order)")
    shape = e.ints(f"{name}.shape", (0,) + layer.target_shape)  # 0 copies the batch size
    return e.node("Reshape", [x, shape], name, layout="plain", rank=len(out_shape) + 1)


@converts(nn.Transpose)
def _transpose(e, name, layer, ins, shapes, out_shape):
    x = e.as_plain(ins[0], name, "before Transpose (perm is in featuremaps' axis order)")
    return e.node("Transpose", [x], name, perm=[0] + [p + 1 for p in layer.perm], layout="plain",
                  rank=len(out_shape) + 1)


def _resize_scales(e, name, in_hw, scales) -> str:
    """Resize's float32 scales input for the layer's `scales`; nudged up (and logged) where float32
    rounding would make ⌊in·scale⌋ smaller than featuremaps' ⌊in·scale⌋ (runtimes compute it in
    float32 or float64)."""
    out = []
    for n_in, given in zip(in_hw, scales):
        want, s = int(np.floor(n_in * given)), np.float32(given)
        while min(int(np.floor(np.float32(n_in) * s)), int(np.floor(n_in * float(s)))) < want:
            s = np.nextafter(s, np.float32(np.inf))
        if float(s) != float(np.float32(given)):
            e.log.append(f"{name}: scale {given!r} written as {float(s)!r} so that ⌊{n_in}·scale⌋ = {want}")
        out.append(float(s))
    return e.const(f"{name}.scales", np.asarray([1.0, 1.0] + out, np.float32), exact=True)


def _resize_sizes(e, name, x, out_hw) -> tuple[list, dict]:
    """Resize's inputs after X for an output of `out_hw`: sizes for H and W (opset ≥ 18, `axes`),
    or (N, C) read with Shape/Slice and joined to (H, W), since the batch size is not known."""
    hw = e.ints(f"{name}.sizes", list(out_hw))
    if e.opset >= 18:
        return ["", "", hw], {"axes": [2, 3]}
    shape = e.step("Shape", [x], name, "shape", layout="plain", rank=1)
    nc = e.step("Slice", [shape, e.ints(f"{name}.from", [0]), e.ints(f"{name}.to", [2])], name, "nc",
                layout="plain", rank=1)
    sizes = e.step("Concat", [nc, hw], name, "sizes", layout="plain", rank=1, axis=0)
    return ["", "", sizes], {}


@converts(nn.Upsample)
def _upsample(e, name, layer, ins, shapes, out_shape):
    x = e.as_nchw(ins[0], name, "for Resize")
    if layer.size is not None:  # featuremaps maps coordinates with out / in: ONNX does so for sizes
        operands, attrs = _resize_sizes(e, name, x, out_shape[:2])
    else:
        operands, attrs = ["", _resize_scales(e, name, shapes[0][:2], layer._scales())], {}
    if layer.mode == "nearest":
        attrs.update(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        attrs.update(mode="linear",
                     coordinate_transformation_mode="align_corners" if layer.align_corners else "half_pixel")
    return e.node("Resize", [x] + operands, name, layout="nchw", rank=4, **attrs)


# --- merges ---------------------------------------------------------------------------------------
def _common(e, name, ins, op):
    """The inputs in one layout: NCHW when all are maps (rank 4), else as featuremaps holds them."""
    if all(e.rank[x] == 4 for x in ins):
        return [e.as_nchw(x, name, f"for {op}") for x in ins]
    return [e.as_plain(x, name, f"for {op} of inputs of different ranks") for x in ins]


_MERGES = {nn.Add: "Add", nn.Maximum: "Max", nn.Average: "Mean"}


@converts(*_MERGES)
def _merge(e, name, layer, ins, shapes, out_shape):
    op = _MERGES[type(layer)]
    op = "Sum" if op == "Add" and len(ins) > 2 else op
    xs = _common(e, name, ins, op)
    return e.node(op, xs, name, layout=e.layout[xs[0]], rank=max(e.rank[x] for x in xs))


@converts(nn.Multiply)
def _multiply(e, name, layer, ins, shapes, out_shape):
    xs = _common(e, name, ins, "Mul")
    kw = {"layout": e.layout[xs[0]], "rank": max(e.rank[x] for x in xs)}
    acc = xs[0]
    for k, x in enumerate(xs[1:-1], start=1):
        acc = e.step("Mul", [acc, x], name, f"product{k}", **kw)
    return e.node("Mul", [acc, xs[-1]], name, **kw)


@converts(nn.Concatenate)
def _concat(e, name, layer, ins, shapes, out_shape):
    xs = _common(e, name, ins, "Concat")
    axis = layer.axis % (len(out_shape) + 1)
    if e.layout[xs[0]] == "nchw":
        axis = NHWC_TO_NCHW[axis]
    return e.node("Concat", xs, name, axis=axis, layout=e.layout[xs[0]], rank=len(out_shape) + 1)
