"""One converter per ONNX op type for `load`: each turns a node whose input depends on the graph
input into featuremaps layers (`Builder.emit`), or into no layer at all (a relabelling, a fold).

A converter is `fn(b, node, attrs, version, base)`; it reads its inputs with `_arg` (a `Held` for
a value computed from the graph input, an ndarray for a constant) and sets `b.held` for its outputs.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import nn
from ._import_layout import NHWC, Held, Unsupported, factor_groups, grouped_perm, reshape_order, with_ones
from ._ops import _slice_index
from ._ops_nn import _convt_pads, _pads

IMPORTERS: dict[str, object] = {}


def importer(*ops):
    def deco(fn):
        for op in ops:
            IMPORTERS[op] = fn
        return fn
    return deco


def _arg(b, node, k):
    if k >= len(node.input) or not node.input[k]:
        return None
    x = node.input[k]
    return b.held[x] if x in b.held else b.consts[x]


def _dyn(b, node, k=0) -> Held:
    v = _arg(b, node, k)
    if not isinstance(v, Held):
        raise Unsupported(f"input {k} must be computed from the graph input, not a constant")
    return v


def _const(b, node, k, what: str) -> np.ndarray | None:
    v = _arg(b, node, k)
    if isinstance(v, Held):
        raise Unsupported(f"{what} (input {k}) must be a constant; here it is computed from the graph input")
    return v


def _text(attrs, name, default) -> str:
    v = attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def _set(layer, **arrays):
    for k, a in arrays.items():
        getattr(layer, k).data = np.ascontiguousarray(a)
    return layer


def _maps_out(b, node, base, layer, x: str, h: Held) -> Held:
    shape = b.shapes[node.output[0]]
    return b.emit(node.output[0], base, layer, [x], NHWC, (shape[2], shape[3], shape[1]))


def _cheap(cls, *args, **kwargs):
    """A weighted layer built without drawing random weights (the file's replace them); its `init`
    stays the layer's default, for a model rebuilt from its config."""
    layer = cls(*args, init="zeros", **kwargs)
    layer.init = "lecun_uniform"
    return layer


def _pad_arg(pads):
    (t, bo), (le, r) = pads
    if t == bo and le == r:
        return (t, le) if (t or le) else 0
    return ((t, bo), (le, r))


# --- conv and pooling ---------------------------------------------------------------------------
@importer("Conv")
def conv(b, node, attrs, version, base):
    h = _dyn(b, node)
    x = b.maps(h, base)
    w = _const(b, node, 1, "the weight")
    bias = _const(b, node, 2, "the bias")
    if w.ndim != 4:
        raise Unsupported(f"only 2-D convolution has a featuremaps layer; the weight has shape {w.shape}")
    cout, cin_g, kh, kw = w.shape
    g = int(attrs.get("group", 1))
    stride, dil = tuple(attrs.get("strides", (1, 1))), tuple(attrs.get("dilations", (1, 1)))
    pads = _pads(attrs, h.shape[2:], (kh, kw), stride, dil, False)
    layer = _cheap(nn.Conv2D, cin_g * g, cout, (kh, kw), stride, _pad_arg(pads), dil, groups=g,
                   bias=bias is not None)
    _set(layer, weight=w.transpose(2, 3, 1, 0))  # (O, I, KH, KW) -> (KH, KW, I, O)
    if bias is not None:
        _set(layer, bias=bias)
    _maps_out(b, node, base, layer, x, h)


@importer("ConvTranspose")
def conv_transpose(b, node, attrs, version, base):
    h = _dyn(b, node)
    x = b.maps(h, base)
    w = _const(b, node, 1, "the weight")
    bias = _const(b, node, 2, "the bias")
    if w.ndim != 4:
        raise Unsupported(f"only 2-D transposed convolution has a featuremaps layer; the weight has shape {w.shape}")
    cin, cout_g, kh, kw = w.shape
    g = int(attrs.get("group", 1))
    stride, dil = tuple(attrs.get("strides", (1, 1))), tuple(attrs.get("dilations", (1, 1)))
    out_pad = tuple(attrs.get("output_padding", (0, 0)))
    pads = _convt_pads(attrs, h.shape[2:], (kh, kw), stride, dil, out_pad, False)
    if any(lo < 0 for lo, _ in pads):
        raise Unsupported(f"output_shape {list(attrs.get('output_shape', []))} would need negative padding at "
                          "the start")
    out_pad = tuple(a + max(-hi, 0) for a, (_, hi) in zip(out_pad, pads))  # a larger output_shape: extend the end
    pads = tuple((lo, max(hi, 0)) for lo, hi in pads)
    layer = _cheap(nn.Conv2DTranspose, cin, cout_g * g, (kh, kw), stride, _pad_arg(pads), out_pad, dil, groups=g,
                   bias=bias is not None)
    _set(layer, weight=w.transpose(2, 3, 1, 0))  # (in, out/g, kh, kw) -> (kh, kw, out/g, in)
    if bias is not None:
        _set(layer, bias=bias)
    b.log.append(f"{base}: ConvTranspose weight (in, out/groups, kh, kw) {w.shape} → (kh, kw, out/groups, in) "
                 f"{layer.weight.shape}")
    _maps_out(b, node, base, layer, x, h)


def _pool_args(h, attrs, op):
    k = tuple(attrs["kernel_shape"])
    if len(k) != 2:
        raise Unsupported(f"only 2-D pooling has a featuremaps layer; kernel_shape is {list(k)}")
    stride, dil = tuple(attrs.get("strides", (1, 1))), tuple(attrs.get("dilations", (1, 1)))
    pads = _pads(attrs, h.shape[2:], k, stride, dil, False)
    return k, stride, dil, pads, bool(attrs.get("ceil_mode", 0))


@importer("MaxPool", "AveragePool")
def pool(b, node, attrs, version, base):
    if len(node.output) > 1 and node.output[1]:
        raise Unsupported("MaxPool's Indices output has no featuremaps layer form")
    h = _dyn(b, node)
    x = b.maps(h, base)
    k, stride, dil, pads, ceil = _pool_args(h, attrs, node.op_type)
    fits = all(max(p) <= kk // 2 for kk, p in zip(k, pads))
    if node.op_type == "MaxPool":
        if not fits:
            if ceil:
                raise Unsupported(f"ceil_mode with padding {pads} larger than half the kernel {k}")
            x = b.add(f"{base}_pad", nn.Pad(_pad_arg(pads), value=-np.inf), [x])
            pads = ((0, 0), (0, 0))
        layer = nn.MaxPool2D(k, stride, _pad_arg(pads), ceil_mode=ceil, dilation=dil)
    else:
        include = bool(attrs.get("count_include_pad", 0))
        if dil != (1, 1):
            raise Unsupported(f"a dilated AveragePool (dilations {list(dil)}) has no featuremaps layer")
        if not fits:
            if ceil or not include:
                raise Unsupported(f"padding {pads} larger than half the kernel {k} with "
                                  f"{'ceil_mode' if ceil else 'count_include_pad=0'}")
            x = b.add(f"{base}_pad", nn.ZeroPad2D(_pad_arg(pads)), [x])
            pads = ((0, 0), (0, 0))
        layer = nn.AvgPool2D(k, stride, _pad_arg(pads), ceil_mode=ceil, count_include_pad=include)
    _maps_out(b, node, base, layer, x, h)


def _global(b, node, base, kind, keepdims=True):
    h = _dyn(b, node)
    x = b.maps(h, base)
    layer = nn.GlobalAvgPool2D() if kind == "avg" else nn.GlobalMaxPool2D()
    c = h.shape[1]
    perm = NHWC if keepdims else (0, 1)
    b.emit(node.output[0], base, layer, [x], perm, (c,))


@importer("GlobalAveragePool", "GlobalMaxPool")
def global_pool(b, node, attrs, version, base):
    _global(b, node, base, "avg" if node.op_type == "GlobalAveragePool" else "max")


@importer("ReduceMean", "ReduceMax")
def reduce_hw(b, node, attrs, version, base):
    h = _dyn(b, node)
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = _const(b, node, 1, "axes").tolist()
    rank = len(h.shape)
    if rank != 4 or axes is None or sorted(int(a) % rank for a in axes) != [2, 3]:
        raise Unsupported(f"{node.op_type} has a featuremaps layer only over H and W (axes [2, 3]) of 4-D maps; "
                          f"received axes {axes} on shape {h.shape}")
    _global(b, node, base, "avg" if node.op_type == "ReduceMean" else "max", bool(attrs.get("keepdims", 1)))


# --- dense --------------------------------------------------------------------------------------
def _dense(b, node, base, h: Held, w: np.ndarray, bias):
    src = h.src
    v, order = b.vector(h, base)
    if w.shape[0] != h.shape[1]:
        raise Unsupported(f"the weight has {w.shape[0]} rows for {h.shape[1]} input features")
    layer = _cheap(nn.Dense, w.shape[0], w.shape[1], bias=bias is not None)
    if order is not None:  # row k must read featuremaps entry k = ONNX entry order[k]: w[order], as one transpose
        ex, perm = tuple(src[0][1:]), [p - 1 for p in src[1][1:]]
        w = w.reshape(ex + (w.shape[1],)).transpose(perm + [len(ex)]).reshape(w.shape)  # (c, h, w, o) -> (h, w, c, o)
        b.log.append(f"{node.op_type} {node.name!r}: its input is the flatten of channels-last maps, in (h, w, c) "
                     f"order; layer {base!r}'s weight rows were permuted to match (no transpose in the model)")
    layer.weight.data = w  # (in, out); a view of ONNX's (out, in) B when transB and nothing was permuted
    if bias is not None:
        _set(layer, bias=bias)
    b.emit(node.output[0], base, layer, [v.name], (0, 1), (w.shape[1],))


@importer("Gemm")
def gemm(b, node, attrs, version, base):
    h = _dyn(b, node)
    if int(attrs.get("transA", 0)):
        raise Unsupported("Gemm with transA=1 multiplies across the batch; it has no featuremaps layer")
    w = _const(b, node, 1, "B")
    w = w.T if int(attrs.get("transB", 0)) else w
    c = _const(b, node, 2, "C")
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    bias = None
    if c is not None:
        if c.size not in (1, w.shape[1]):
            raise Unsupported(f"C of shape {c.shape} is not a bias of {w.shape[1]} outputs")
        bias = np.array(np.broadcast_to(c.reshape(-1) * np.asarray(beta, c.dtype), (w.shape[1],)))  # writable
    _dense(b, node, base, h, w * np.asarray(alpha, w.dtype) if alpha != 1.0 else w, bias)


@importer("MatMul")
def matmul(b, node, attrs, version, base):
    h = _dyn(b, node)
    w = _const(b, node, 1, "the second operand")
    if w.ndim != 2 or len(h.shape) != 2:
        raise Unsupported(f"MatMul has a featuremaps layer (Dense) only for (N, F) × (F, K); received "
                          f"{h.shape} × {w.shape}")
    _dense(b, node, base, h, w, None)


# --- normalisation ------------------------------------------------------------------------------
def _per_channel_input(b, h: Held, base: str):
    """(featuremaps input name, order of channels or None) for a per-channel layer (axis 1 of ONNX)."""
    if len(h.shape) == 4:
        return b.maps(h, base), None
    if len(h.shape) == 2:
        v, order = b.vector(h, base)
        return v.name, order
    raise Unsupported(f"needs (N, C, H, W) maps or (N, C) vectors; received shape {h.shape}")


@importer("BatchNormalization")
def batch_norm(b, node, attrs, version, base):
    if int(attrs.get("training_mode", 0)) or len([o for o in node.output if o]) > 1:
        raise Unsupported("BatchNormalization in training mode has no featuremaps layer form")
    h = _dyn(b, node)
    x, order = _per_channel_input(b, h, base)
    g, beta, mean, var = (_const(b, node, k, n) for k, n in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
    if order is not None:
        g, beta, mean, var = g[order], beta[order], mean[order], var[order]
    layer = nn.BatchNorm2D(len(g), eps=float(attrs.get("epsilon", 1e-5)))
    _set(layer, weight=g, bias=beta)
    layer.running_mean, layer.running_var = np.array(mean), np.array(var)
    fshape = (h.shape[2], h.shape[3], h.shape[1]) if len(h.shape) == 4 else (h.shape[1],)
    perm = NHWC if len(h.shape) == 4 else (0, 1)
    out = b.emit(node.output[0], base, layer, [x], perm, fshape)
    if order is not None:
        b.set(node.output[0], replace(out, src=h.src, via=h.via))


@importer("InstanceNormalization")
def instance_norm(b, node, attrs, version, base):
    h = _dyn(b, node)
    x = b.maps(h, base)
    g, beta = _const(b, node, 1, "scale"), _const(b, node, 2, "B")
    layer = _set(nn.InstanceNorm(len(g), eps=float(attrs.get("epsilon", 1e-5))), weight=g, bias=beta)
    _maps_out(b, node, base, layer, x, h)


@importer("LRN")
def lrn(b, node, attrs, version, base):
    size = int(attrs["size"])
    if size % 2 == 0:
        raise Unsupported(f"LRN with an even size ({size}) sums an off-centre window, which "
                          f"LocalResponseNorm does not")
    h = _dyn(b, node)
    x = b.maps(h, base)
    layer = nn.LocalResponseNorm(size, alpha=float(attrs.get("alpha", 1e-4)), beta=float(attrs.get("beta", 0.75)),
                                 k=float(attrs.get("bias", 1.0)))
    _maps_out(b, node, base, layer, x, h)


# --- element-wise -------------------------------------------------------------------------------
def _same_form(b, node, base, layer) -> None:
    """An element-wise layer: its output is held exactly as its input."""
    h = _dyn(b, node)
    name = b.add(base, layer, [h.name])
    b.origin[name] = node.output[0]
    b.set(node.output[0], replace(h, name=name))


def _scalar(b, node, k, attrs, attr, default):
    if attr in attrs:
        return float(attrs[attr])
    v = _const(b, node, k, attr)
    return default if v is None else float(v.reshape(-1)[0])


@importer("Relu", "Sigmoid", "Tanh", "HardSwish", "LeakyRelu", "Elu", "HardSigmoid", "Clip")
def unary(b, node, attrs, version, base):
    op = node.op_type
    if op == "Clip":
        lo = attrs.get("min") if version < 11 else None
        hi = attrs.get("max") if version < 11 else None
        if version >= 11:
            lo_a, hi_a = _const(b, node, 1, "min"), _const(b, node, 2, "max")
            lo = None if lo_a is None else float(lo_a.reshape(-1)[0])
            hi = None if hi_a is None else float(hi_a.reshape(-1)[0])
        layer = nn.ReLU6() if (lo, hi) == (0.0, 6.0) else nn.ReLU() if (lo, hi) == (0.0, None) else nn.Clip(lo, hi)
    elif op == "LeakyRelu":
        layer = nn.LeakyReLU(float(attrs.get("alpha", 0.01)))
    elif op == "Elu":
        layer = nn.ELU(float(attrs.get("alpha", 1.0)))
    elif op == "HardSigmoid":
        layer = nn.HardSigmoid(float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5)))
    else:
        layer = {"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "HardSwish": nn.HardSwish}[op]()
    _same_form(b, node, base, layer)


@importer("Gelu", "Softplus", "Softsign", "Mish", "Exp", "Swish")
def smooth(b, node, attrs, version, base):
    """The smooth activations. Softplus's `beta` and `threshold` are not ONNX attributes: only the torch
    route (`featuremaps.torch`) sets them, for `nn.Softplus(beta, threshold)`; ONNX's own Softplus has
    beta 1 and no threshold."""
    op = node.op_type
    if op == "Gelu":
        mode = _text(attrs, "approximate", "none")
        if mode not in ("none", "tanh"):
            raise Unsupported(f"Gelu's approximate must be 'none' or 'tanh'; received {mode!r}")
        layer = nn.GELU(mode)
    elif op == "Softplus":
        threshold = attrs.get("threshold")
        layer = nn.Softplus(float(attrs.get("beta", 1.0)), None if threshold is None else float(threshold))
    elif op == "Swish":
        if float(attrs.get("alpha", 1.0)) != 1.0:
            raise Unsupported(f"Swish with alpha {float(attrs['alpha']):g}: featuremaps's SiLU is x·σ(x) (alpha 1)")
        layer = nn.SiLU()
    else:
        layer = {"Softsign": nn.Softsign, "Mish": nn.Mish, "Exp": nn.Exponential}[op]()
    _same_form(b, node, base, layer)


@importer("Celu", "Shrink", "ThresholdedRelu")
def shrink(b, node, attrs, version, base):
    """Celu, Shrink with bias 0 (HardShrink) or bias = lambd (SoftShrink), ThresholdedRelu (Threshold with
    value 0). Another Shrink bias has no layer."""
    op = node.op_type
    if op == "Celu":
        layer = nn.CELU(float(attrs.get("alpha", 1.0)))
    elif op == "ThresholdedRelu":
        layer = nn.Threshold(float(attrs.get("alpha", 1.0)), 0.0)
    else:
        lambd, bias = float(attrs.get("lambd", 0.5)), float(attrs.get("bias", 0.0))
        if bias not in (0.0, lambd):
            raise Unsupported(f"Shrink with bias {bias:g} and lambd {lambd:g}: featuremaps has bias 0 "
                              "(HardShrink) and bias = lambd (SoftShrink)")
        layer = nn.HardShrink(lambd) if bias == 0.0 else nn.SoftShrink(lambd)
    _same_form(b, node, base, layer)


def _channel_vector(c: np.ndarray, shape: tuple):
    """A constant operand as (None, scalar) or (ONNX axis 1, per-channel vector); None otherwise."""
    c = np.asarray(c)
    if c.size == 1:
        return None, c.reshape(-1)
    full = (1,) * (len(shape) - c.ndim) + c.shape
    big = [a for a, s in enumerate(full) if s != 1]
    if len(full) == len(shape) and big == [1] and full[1] == shape[1]:
        return 1, c.reshape(-1)
    return None


def _per_channel_layer(b, node, base, h: Held, vec, make) -> None:
    """A per-channel layer `make(n)` (n channels, or 1 shared) applied to `h`; `vec` its values."""
    if vec.size == 1:
        layer = make(1, vec)
        _same_form_from(b, node, base, layer, h)
        return
    x, order = _per_channel_input(b, h, base)
    layer = make(vec.size, vec if order is None else vec[order])
    fshape = (h.shape[2], h.shape[3], h.shape[1]) if len(h.shape) == 4 else (h.shape[1],)
    out = b.emit(node.output[0], base, layer, [x], NHWC if len(h.shape) == 4 else (0, 1), fshape)
    if order is not None:
        b.set(node.output[0], replace(out, src=h.src, via=h.via))


def _same_form_from(b, node, base, layer, h: Held) -> None:
    name = b.add(base, layer, [h.name])
    b.origin[name] = node.output[0]
    b.set(node.output[0], replace(h, name=name))


@importer("PRelu")
def prelu(b, node, attrs, version, base):
    h = _dyn(b, node)
    found = _channel_vector(_const(b, node, 1, "slope"), h.shape)
    if found is None:
        raise Unsupported("PRelu's slope must be one value or one per channel (axis 1)")

    def make(n, v):
        return _set(nn.PReLU(n), weight=np.asarray(v, np.float32).reshape(n))
    _per_channel_layer(b, node, base, h, found[1], make)


def _try_bias_fold(b, node, base, h: Held, vec, readers) -> bool:
    """Conv / Gemm / MatMul followed by an Add of a per-channel constant: the constant joins the bias."""
    layer = b.layers.get(h.name)
    src = b.origin.get(h.name)
    if layer is None or layer.role not in ("conv", "dense") or src is None or b.held.get(src) is not h \
            or readers.get(src, 0) != 1 or h.src is not None or vec.size not in (1, h.shape[1]):
        return False
    n = layer.weight.shape[-1]
    old = np.zeros(n, layer.weight.dtype) if layer.bias is None else layer.bias.data
    layer.use_bias = True
    layer.register_parameter("bias", (old + np.broadcast_to(vec, (n,))).astype(layer.weight.dtype))
    b.log.append(f"{node.op_type} {node.name!r} adds a per-channel constant {node.input[1]!r} to the output of "
                 f"{src!r}: folded into the bias of layer {h.name!r}")
    b.onnx_tensors[h.name] = node.output[0]
    b.origin[h.name] = node.output[0]
    b.set(node.output[0], h)
    return True


@importer("Add", "Sub", "Mul", "Div", "Sum", "Max", "Mean")
def binary(b, node, attrs, version, base):
    args = [_arg(b, node, k) for k in range(len(node.input))]
    dyn = [a for a in args if isinstance(a, Held)]
    if len(dyn) == len(args):
        _merge(b, node, base, dyn)
        return
    op = node.op_type
    if len(args) != 2 or op not in ("Add", "Sub", "Mul", "Div"):
        raise Unsupported(f"{op} of a computed value and a constant has no featuremaps layer form")
    h, c = (args[0], args[1]) if isinstance(args[0], Held) else (args[1], args[0])
    first = isinstance(args[0], Held)
    found = _channel_vector(c, h.shape)
    if found is None:
        raise Unsupported(f"the constant operand {c.shape} is not one value or one per channel of {h.shape}")
    vec = found[1]
    if op in ("Div",) and not first:
        raise Unsupported("Div of a constant by a computed value has no featuremaps layer form")
    if op == "Add" or (op == "Sub" and first):
        shift = vec if op == "Add" else -vec
        if _try_bias_fold(b, node, base, h, shift, b.readers):
            return
        scale = None
    elif op == "Sub":
        scale, shift = -np.ones_like(vec), vec
    else:
        scale, shift = (vec if op == "Mul" else 1 / vec), None

    _per_channel_affine(b, node, base, h, vec, scale, shift)


def _per_channel_affine(b, node, base, h, vec, scale, shift):
    def make(n, order_vec):
        layer = nn.Affine(n, scale=scale is not None, shift=shift is not None)
        for k, v in (("weight", scale), ("bias", shift)):
            if v is not None:
                v = np.asarray(v).reshape(-1)
                if order_vec is not None and v.size > 1:
                    v = v[order_vec]
                _set(layer, **{k: v})
        return layer
    if vec.size == 1:
        _same_form_from(b, node, base, make(1, None), h)
        return
    x, order = _per_channel_input(b, h, base)
    fshape = (h.shape[2], h.shape[3], h.shape[1]) if len(h.shape) == 4 else (h.shape[1],)
    out = b.emit(node.output[0], base, make(vec.size, order), [x], NHWC if len(h.shape) == 4 else (0, 1), fshape)
    if order is not None:
        b.set(node.output[0], replace(out, src=h.src, via=h.via))


def _merge(b, node, base, hs: list) -> None:
    op = node.op_type
    if len(hs) == 1:
        b.set(node.output[0], hs[0])
        return
    kinds = {"Add": nn.Add, "Sum": nn.Add, "Mul": nn.Multiply, "Max": nn.Maximum, "Mean": nn.Average}
    if op not in kinds:
        raise Unsupported(f"{op} of two computed values has no featuremaps merge layer (Add, Multiply, "
                          f"Average, Maximum and Concatenate exist)")
    ins = [b.canonical(h, base).name for h in hs]
    shape = b.shapes[node.output[0]]
    perm = NHWC if len(shape) == 4 else tuple(range(len(shape)))
    tmp = Held("", tuple(shape), perm, ())
    b.emit(node.output[0], base, kinds[op](), ins, perm, tmp.full(perm))


# --- structure ----------------------------------------------------------------------------------
@importer("Concat")
def concat(b, node, attrs, version, base):
    hs = [_arg(b, node, k) for k in range(len(node.input))]
    if not all(isinstance(h, Held) for h in hs):
        raise Unsupported("Concat of computed values and constants has no featuremaps layer form")
    shape = b.shapes[node.output[0]]
    rank = len(shape)
    axis = int(attrs["axis"]) % rank
    if axis == 0:
        raise Unsupported("Concat along the batch axis has no featuremaps layer form")
    ins = [b.canonical(h, base).name for h in hs]
    perm = NHWC if rank == 4 else tuple(range(rank))
    k = perm.index(axis)
    tmp = Held("", tuple(shape), perm, ())
    b.emit(node.output[0], base, nn.Concatenate(-1 if k == rank - 1 else k), ins, perm, tmp.full(perm))


def relabel_reshape(b, h: Held, out_shape, base: str) -> Held:
    """`h` reshaped to the ONNX shape `out_shape`: a new label on the same value where the memory
    order allows it, else after the fewest layers that make it allow it."""
    out_shape = tuple(out_shape)
    if h.src is not None:
        if out_shape == h.shape:
            return h
        h = b.unflatten(h, base)
    if out_shape[0] != h.shape[0]:
        raise Unsupported(f"a reshape from {h.shape} to {out_shape} changes the batch axis")
    groups = factor_groups(h.shape, out_shape)
    if groups is None:
        raise Unsupported(f"cannot reshape {h.shape} to {out_shape}")
    order = reshape_order(h, groups)
    if order is not None:
        return Held(h.name, out_shape, with_ones(order, len(out_shape)), h.fshape)
    if len(out_shape) == 2 and len(groups) == 1:  # the flatten of channels-last maps: entries in (h, w, c) order
        return Held(h.name, out_shape, (0, 1), h.fshape, src=(h.shape, h.perm), via=base)
    return relabel_reshape(b, b.need(h, grouped_perm(h, groups), base=base), out_shape, base)


@importer("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(b, node, attrs, version, base):
    h = _dyn(b, node)
    out = relabel_reshape(b, h, b.shapes[node.output[0]], base)
    if out.src is not None and h.src is None:
        b.log.append(f"{node.op_type} {node.name!r} flattens channels-last maps {h.shape}: no transpose, the vector "
                     f"keeps (h, w, c) order (the Dense that reads it absorbs the order)")
    b.set(node.output[0], out)


@importer("Transpose")
def transpose(b, node, attrs, version, base):
    h = _dyn(b, node)
    rank = len(h.shape)
    p = [int(a) for a in attrs.get("perm", range(rank - 1, -1, -1))]
    if p[0] != 0:
        raise Unsupported(f"a Transpose that moves the batch axis (perm {p}) has no featuremaps layer form")
    if h.src is not None:
        h = b.unflatten(h, base)
    inv = list(np.argsort(p))
    b.set(node.output[0], Held(h.name, tuple(b.shapes[node.output[0]]), tuple(int(inv[a]) for a in h.perm), h.fshape))


@importer("Dropout", "Identity", "Cast")
def passthrough(b, node, attrs, version, base):
    h = _dyn(b, node)
    if node.op_type == "Cast":
        raise Unsupported("Cast of a computed value has no featuremaps layer form")
    if node.op_type == "Dropout" and len(node.output) > 1 and b.readers.get(node.output[1]):
        raise Unsupported("Dropout's mask output has no featuremaps layer form")
    b.log.append(f"{node.op_type} {node.name!r} removed (the identity at inference)")
    b.set(node.output[0], h)


@importer("Softmax", "LogSoftmax")
def softmax(b, node, attrs, version, base):
    kind = nn.LogSoftmax if node.op_type == "LogSoftmax" else nn.Softmax
    h = _dyn(b, node)
    shape = h.shape
    rank = len(shape)
    axis = int(attrs.get("axis", -1 if version >= 13 else 1)) % rank
    if version < 13:  # the input is coerced to 2-D at `axis`: one softmax over axes axis … rank − 1
        big = [a for a in range(axis, rank) if shape[a] != 1]
        if len(big) > 1:
            raise Unsupported(f"pre-13 {node.op_type} over the flattened axes {list(range(axis, rank))} of {shape}")
        axis = big[0] if big else axis
    if rank == 2 and axis == 1:
        _same_form(b, node, base, kind(-1))
        return
    h = b.canonical(h, base)
    perm = h.perm
    k = perm.index(axis)
    name = b.add(base, kind(-1 if k == rank - 1 else k), [h.name])
    b.origin[name] = node.output[0]
    b.set(node.output[0], replace(h, name=name))


@importer("Pad")
def pad(b, node, attrs, version, base):
    h = _dyn(b, node)
    if version < 11:
        pads, value = list(attrs["pads"]), float(attrs.get("value", 0.0))
    else:
        pads = _const(b, node, 1, "pads").tolist()
        v = _const(b, node, 2, "constant_value")
        value = 0.0 if v is None or v.size == 0 else float(v.reshape(-1)[0])
        axes = _const(b, node, 3, "axes")
        if axes is not None:
            full = [0] * (2 * len(h.shape))
            for i, a in enumerate(int(a) % len(h.shape) for a in axes):
                full[a], full[a + len(h.shape)] = pads[i], pads[i + len(axes)]
            pads = full
    mode = _text(attrs, "mode", "constant")
    if len(h.shape) != 4 or any(pads[k] for k in (0, 1, 4, 5)) or min(pads) < 0:
        raise Unsupported(f"only non-negative padding of H and W has a featuremaps layer; received pads {pads}")
    x = b.maps(h, base)
    padding = _pad_arg(((pads[2], pads[6]), (pads[3], pads[7])))
    if mode == "constant" and value == 0.0:
        layer = nn.ZeroPad2D(padding)
    elif mode in ("constant", "reflect", "edge"):
        layer = nn.Pad(padding, mode=mode, value=value if mode == "constant" else 0.0)
    else:
        raise Unsupported(f"Pad mode {mode!r} has no featuremaps layer")
    _maps_out(b, node, base, layer, x, h)


@importer("Resize", "Upsample")
def resize(b, node, attrs, version, base):
    h = _dyn(b, node)
    if len(h.shape) != 4:
        raise Unsupported(f"only 4-D maps can be resized; received shape {h.shape}")
    mode = _text(attrs, "mode", "nearest")
    out = b.shapes[node.output[0]]
    if node.op_type == "Upsample" or version < 11:
        coord, nearest = "asymmetric", "floor"
    else:
        coord = _text(attrs, "coordinate_transformation_mode", "half_pixel")
        nearest = _text(attrs, "nearest_mode", "round_prefer_floor")
    if node.op_type == "Upsample":
        scales = attrs.get("scales") if version < 9 else _const(b, node, 1, "scales")
        sizes = None
    else:
        scales = _const(b, node, 1 if version < 11 else 2, "scales")
        sizes = _const(b, node, 3, "sizes") if version >= 11 else None
    if int(attrs.get("antialias", 0)) or attrs.get("axes") is not None:
        raise Unsupported("Resize with antialias or axes has no featuremaps layer form")
    size_given = sizes is not None and np.asarray(sizes).size
    size = (int(out[2]), int(out[3])) if size_given else None
    scale = None if size_given else tuple(float(s) for s in np.asarray(scales).reshape(-1)[2:4])
    if mode == "nearest" and coord == "asymmetric" and nearest == "floor":
        layer = nn.Upsample(size=size, scale_factor=scale, mode="nearest")
    elif mode == "linear" and coord in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        layer = nn.Upsample(size=size, scale_factor=scale, mode="bilinear", align_corners=coord == "align_corners")
    else:
        raise Unsupported(f"mode {mode!r} with coordinate_transformation_mode {coord!r} and nearest_mode {nearest!r} "
                          f"has no featuremaps layer (Upsample: nearest + asymmetric + floor, or linear + "
                          f"half_pixel / align_corners)")
    _maps_out(b, node, base, layer, b.maps(h, base), h)


@importer("Slice")
def slice_maps(b, node, attrs, version, base):
    """A Slice of H and W with step 1 (what torch writes for `x[:, :, a:b, c:d]`) as a Cropping2D."""
    h = _dyn(b, node)
    if version < 10:
        starts, ends, axes, steps = list(attrs["starts"]), list(attrs["ends"]), attrs.get("axes"), None
    else:
        starts, ends = _const(b, node, 1, "starts").tolist(), _const(b, node, 2, "ends").tolist()
        axes, steps = _const(b, node, 3, "axes"), _const(b, node, 4, "steps")
    rank = len(h.shape)
    axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in np.asarray(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else [int(v) for v in np.asarray(steps).reshape(-1)]
    crops = {2: (0, 0), 3: (0, 0)}
    for a, lo, hi, st in zip(axes, starts, ends, steps):
        n = int(h.shape[a])
        cut = _slice_index(n, int(lo), int(hi), st) if st == 1 else None
        if cut is not None and (cut.start, cut.stop) == (0, n):
            continue  # the whole axis
        if rank != 4 or a not in crops or cut is None or cut.stop <= cut.start:
            raise Unsupported(f"only a Slice of H and W with step 1 (a cropping) has a featuremaps layer; received "
                              f"axes {axes}, starts {starts}, ends {ends}, steps {steps} on shape {list(h.shape)}")
        crops[a] = (cut.start, n - cut.stop)
    layer = nn.Cropping2D((crops[2], crops[3]))
    _maps_out(b, node, base, layer, b.maps(h, base), h)
