"""One converter per torch module class, function or tensor method that `from_module` maps.

A converter is `fn(cx, node)` for a torch.fx node computed from the input. Most build the ONNX
node that torch's exporter would write and hand it to the ONNX importer's converter
(`featuremaps.onnx._import_ops.IMPORTERS`), so padding, pooling, flatten and permute rules are
written once; each weighted conversion also logs its layout change in `import_log`.
"""
from __future__ import annotations

import operator
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from .. import nn
from ..functional.window import dilated_span
from ..onnx._import_build import _clean
from ..onnx._import_layout import NHWC, Unsupported
from ..onnx._import_ops import IMPORTERS, _same_form

__all__ = ["converter_for"]


# --- plumbing -----------------------------------------------------------------------------------
def _base(n) -> str:
    return _clean(str(n.target)) if n.op == "call_module" else n.name


def _module(cx, n):
    return cx.gm.get_submodule(n.target)


def _is_node(a) -> bool:
    return hasattr(a, "name") and hasattr(a, "op") and hasattr(a, "users")


def _key(cx, a, dtype=None) -> str:
    """The Builder key of an argument: a node's name, or a new constant for a number."""
    if _is_node(a):
        return a.name
    key = f"__const{len(cx.b.consts)}"
    cx.b.consts[key] = np.asarray(a, dtype=dtype or np.float64)
    return key


def _param(cx, n, tensor, what: str):
    if tensor is None:
        return ""
    key = f"{n.name}.{what}"
    cx.b.consts[key] = tensor.detach().cpu().numpy()
    return key


def _onnx(cx, op, n, inputs, attrs=None, *, version=17, out=None):
    """Run the ONNX importer's converter for `op` on a node made from the fx node `n`."""
    node = SimpleNamespace(op_type=op, name=n.name, input=list(inputs), output=[out or n.name])
    IMPORTERS[op](cx.b, node, dict(attrs or {}), version, _base(n))


def _arg(n, k, name, default=None):
    if len(n.args) > k:
        return n.args[k]
    return n.kwargs.get(name, default)


def _value(cx, a):
    """A non-tensor argument's concrete value (ints computed from sizes are looked up)."""
    if _is_node(a):
        return cx.values[a.name]
    if isinstance(a, (tuple, list)):
        return type(a)(_value(cx, v) for v in a)
    return a


def _pair(v) -> tuple:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _rank(cx, n) -> int:
    return len(cx.b.shapes[n.name])


# --- conv, dense, norm --------------------------------------------------------------------------
def _same_pads(k, d) -> list:
    """torch's padding='same': total d·(k − 1), the odd one extra at the bottom/right."""
    total = [dilated_span(kk, dd) - 1 for kk, dd in zip(k, d)]
    return [(t // 2, t - t // 2) for t in total]


def conv2d(cx, n):
    m = _module(cx, n)
    k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
    if m.padding == "same":
        pads = _same_pads(k, d)
    elif m.padding == "valid":
        pads = [(0, 0), (0, 0)]
    else:
        pads = [(p, p) for p in _pair(m.padding)]
    x = n.args[0].name
    if m.padding_mode != "zeros" and any(any(p) for p in pads):
        mode = {"reflect": "reflect", "replicate": "edge"}.get(m.padding_mode)
        if mode is None:
            raise Unsupported(f"padding_mode {m.padding_mode!r} has no featuremaps layer (zeros, reflect and "
                              f"replicate do)")
        (t, bo), (le, r) = pads
        shape = cx.b.shapes[x]
        padded = f"{n.name}__padded"
        cx.b.shapes[padded] = (shape[0], shape[1], shape[2] + t + bo, shape[3] + le + r)
        cx.b.consts[f"{padded}.pads"] = np.array([0, 0, t, le, 0, 0, bo, r])
        _onnx(cx, "Pad", n, [x, f"{padded}.pads"], {"mode": mode}, version=11, out=padded)
        cx.b.log.append(f"Conv2d {n.target!r}: padding_mode {m.padding_mode!r} as a Pad layer ({mode}) "
                        f"before the conv")
        x, pads = padded, [(0, 0), (0, 0)]
    attrs = {"strides": s, "dilations": d, "group": m.groups, "pads": [pads[0][0], pads[1][0], pads[0][1],
                                                                        pads[1][1]]}
    _onnx(cx, "Conv", n, [x, _param(cx, n, m.weight, "weight"), _param(cx, n, m.bias, "bias")], attrs)
    o, i, kh, kw = m.weight.shape
    cx.b.log.append(f"Conv2d {n.target!r}: weight OIHW ({o}, {i}, {kh}, {kw}) → HWIO ({kh}, {kw}, {i}, {o})")


def conv_transpose2d(cx, n):
    m = _module(cx, n)
    if not hasattr(nn, "Conv2DTranspose"):
        raise Unsupported("featuremaps has no Conv2DTranspose layer yet")
    if m.padding_mode != "zeros":
        raise Unsupported(f"ConvTranspose2d with padding_mode {m.padding_mode!r}")
    cin, cout_g, kh, kw = m.weight.shape
    layer = nn.Conv2DTranspose(cin, cout_g * m.groups, (kh, kw), stride=_pair(m.stride), padding=_pair(m.padding),
                               output_padding=_pair(m.output_padding), dilation=_pair(m.dilation), groups=m.groups,
                               bias=m.bias is not None)
    w = m.weight.detach().cpu().numpy()
    layer.weight.data = np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # (I, O/g, KH, KW) -> (KH, KW, O/g, I)
    if m.bias is not None:
        layer.bias.data = m.bias.detach().cpu().numpy().copy()
    x = cx.b.maps(cx.b.held[n.args[0].name], _base(n))
    shape = cx.b.shapes[n.name]
    cx.b.emit(n.name, _base(n), layer, [x], NHWC, (shape[2], shape[3], shape[1]))
    cx.b.log.append(f"ConvTranspose2d {n.target!r}: weight (in, out/groups, kh, kw) ({cin}, {cout_g}, {kh}, {kw}) → "
                    f"(kh, kw, out/groups, in) ({kh}, {kw}, {cout_g}, {cin})")


def linear(cx, n):
    m = _module(cx, n)
    if _rank(cx, n) != 2:
        raise Unsupported(f"Linear on a {_rank(cx, n)}-D input (only (N, F) has a Dense layer)")
    _onnx(cx, "Gemm", n, [n.args[0].name, _param(cx, n, m.weight, "weight"), _param(cx, n, m.bias, "bias")],
          {"transB": 1})
    o, i = m.weight.shape
    cx.b.log.append(f"Linear {n.target!r}: weight (out, in) ({o}, {i}) → Dense (in, out) ({i}, {o})")


def batch_norm(cx, n):
    m = _module(cx, n)
    if not m.track_running_stats or m.running_mean is None:
        raise Unsupported("BatchNorm without running statistics (track_running_stats=False) normalises by the "
                          "batch at inference; it has no featuremaps eval-mode layer")
    c = m.num_features
    w = m.weight if m.affine else cx.torch.ones(c, dtype=m.running_mean.dtype)
    bias = m.bias if m.affine else cx.torch.zeros(c, dtype=m.running_mean.dtype)
    keys = [_param(cx, n, t, k) for t, k in ((w, "weight"), (bias, "bias"), (m.running_mean, "running_mean"),
                                             (m.running_var, "running_var"))]
    _onnx(cx, "BatchNormalization", n, [n.args[0].name] + keys, {"epsilon": float(m.eps)})
    layer = cx.b.layers[cx.b.nodes[-1][0]]
    momentum = 0.1 if m.momentum is None else float(m.momentum)
    layer.momentum = momentum
    cx.b.log.append(f"{type(m).__name__} {n.target!r}: eps {m.eps:g}; momentum {momentum:g} kept as is (torch and "
                    f"featuremaps both update running = (1 − momentum)·running + momentum·batch; Keras's momentum "
                    f"would be {1 - momentum:g})" + ("; momentum=None (a cumulative average) became 0.1"
                                                     if m.momentum is None else ""))


# --- pooling ------------------------------------------------------------------------------------
def _pool(cx, n, op, k, s, p, d=1, ceil=False, include=True):
    k = _pair(k)
    s = _pair(s) if s not in (None, ()) and s != [] else k
    p = _pair(p)
    attrs = {"kernel_shape": k, "strides": s, "pads": [p[0], p[1], p[0], p[1]], "dilations": _pair(d),
             "ceil_mode": int(bool(ceil)), "count_include_pad": int(bool(include))}
    if op == "AveragePool":
        attrs.pop("dilations")
    _onnx(cx, op, n, [n.args[0].name], attrs)


def max_pool_module(cx, n):
    m = _module(cx, n)
    if m.return_indices:
        raise Unsupported("MaxPool2d with return_indices=True")
    _pool(cx, n, "MaxPool", m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)


def avg_pool_module(cx, n):
    m = _module(cx, n)
    if m.divisor_override:
        raise Unsupported(f"AvgPool2d with divisor_override={m.divisor_override}")
    _pool(cx, n, "AveragePool", m.kernel_size, m.stride, m.padding, 1, m.ceil_mode, m.count_include_pad)


def max_pool_fn(cx, n):
    v = lambda k, name, default=None: _value(cx, _arg(n, k, name, default))  # noqa: E731
    if v(6, "return_indices", False):
        raise Unsupported("max_pool2d with return_indices=True")
    _pool(cx, n, "MaxPool", v(1, "kernel_size"), v(2, "stride"), v(3, "padding", 0), v(4, "dilation", 1),
          v(5, "ceil_mode", False))


def avg_pool_fn(cx, n):
    v = lambda k, name, default=None: _value(cx, _arg(n, k, name, default))  # noqa: E731
    if v(6, "divisor_override"):
        raise Unsupported("avg_pool2d with divisor_override")
    _pool(cx, n, "AveragePool", v(1, "kernel_size"), v(2, "stride"), v(3, "padding", 0), 1,
          v(4, "ceil_mode", False), v(5, "count_include_pad", True))


def _adaptive(cx, n, size, kind):
    shape = cx.b.shapes[n.args[0].name]
    if len(shape) != 4:
        raise Unsupported(f"adaptive pooling of a {len(shape)}-D input")
    size = _pair(size) if not isinstance(size, (tuple, list)) else tuple(size)
    size = tuple(shape[2 + i] if s is None else int(s) for i, s in enumerate(size))
    if size == (1, 1):
        _onnx(cx, "GlobalAveragePool" if kind == "avg" else "GlobalMaxPool", n, [n.args[0].name])
        return
    h, w = shape[2:]
    if h % size[0] or w % size[1]:
        raise Unsupported(f"adaptive pooling of {h}×{w} to {size[0]}×{size[1]}: only output 1 or an exact divisor "
                          f"of the input has a featuremaps layer (the windows would overlap unevenly)")
    k = (h // size[0], w // size[1])
    _pool(cx, n, "AveragePool" if kind == "avg" else "MaxPool", k, k, 0)
    cx.b.log.append(f"adaptive {kind} pool {n.name!r}: {h}×{w} → {size[0]}×{size[1]} as a {k[0]}×{k[1]} pool, "
                    f"stride {k[0]}×{k[1]}")


def adaptive_module(kind):
    def convert(cx, n):
        if kind == "max" and _module(cx, n).return_indices:
            raise Unsupported("AdaptiveMaxPool2d with return_indices=True")
        _adaptive(cx, n, _module(cx, n).output_size, kind)
    return convert


def adaptive_fn(kind):
    def convert(cx, n):
        _adaptive(cx, n, _value(cx, _arg(n, 1, "output_size")), kind)
    return convert


def mean(cx, n):
    dims = _value(cx, _arg(n, 1, "dim"))
    keep = bool(_value(cx, _arg(n, 2, "keepdim", False)))
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    _onnx(cx, "ReduceMean", n, [n.args[0].name], {"axes": dims, "keepdims": int(keep)})


# --- activations --------------------------------------------------------------------------------
def unary(op, **fixed):
    def convert(cx, n):
        _onnx(cx, op, n, [n.args[0].name], fixed, version=6)
    return convert


def leaky_relu(cx, n):
    slope = _module(cx, n).negative_slope if n.op == "call_module" else _value(cx, _arg(n, 1, "negative_slope", .01))
    _onnx(cx, "LeakyRelu", n, [n.args[0].name], {"alpha": float(slope)})


def elu(cx, n):
    alpha = _module(cx, n).alpha if n.op == "call_module" else _value(cx, _arg(n, 1, "alpha", 1.0))
    _onnx(cx, "Elu", n, [n.args[0].name], {"alpha": float(alpha)})


def hardtanh(cx, n):
    if n.op == "call_module":
        lo, hi = _module(cx, n).min_val, _module(cx, n).max_val
    else:
        lo, hi = _value(cx, _arg(n, 1, "min_val", -1.0)), _value(cx, _arg(n, 2, "max_val", 1.0))
    _onnx(cx, "Clip", n, [n.args[0].name], {"min": float(lo), "max": float(hi)}, version=6)


def softmax(cx, n):
    dim = _module(cx, n).dim if n.op == "call_module" else _value(cx, _arg(n, 1, "dim"))
    if dim is None:
        raise Unsupported("softmax without dim (torch's implicit dim is deprecated); give dim")
    _onnx(cx, "Softmax", n, [n.args[0].name], {"axis": int(dim)}, version=13)


def log_softmax(cx, n):
    dim = _module(cx, n).dim if n.op == "call_module" else _value(cx, _arg(n, 1, "dim"))
    if dim is None:
        raise Unsupported("log_softmax without dim (torch's implicit dim is deprecated); give dim")
    _onnx(cx, "LogSoftmax", n, [n.args[0].name], {"axis": int(dim)}, version=13)


def gelu(cx, n):
    mode = _module(cx, n).approximate if n.op == "call_module" else _value(cx, _arg(n, 1, "approximate", "none"))
    _onnx(cx, "Gelu", n, [n.args[0].name], {"approximate": str(mode)}, version=20)


def softplus(cx, n):
    """torch's beta and threshold ride on the Softplus node as extra attributes (the importer reads them)."""
    if n.op == "call_module":
        beta, threshold = _module(cx, n).beta, _module(cx, n).threshold
    else:
        beta, threshold = _value(cx, _arg(n, 1, "beta", 1.0)), _value(cx, _arg(n, 2, "threshold", 20.0))
    _onnx(cx, "Softplus", n, [n.args[0].name], {"beta": float(beta), "threshold": float(threshold)})


def silu(cx, n):
    """SiLU has no ONNX op (torch exports Sigmoid · Mul): the layer is added directly, held as its input."""
    node = SimpleNamespace(op_type="SiLU", name=n.name, input=[n.args[0].name], output=[n.name])
    _same_form(cx.b, node, _base(n), nn.SiLU())


def _option(cx, n, k: int, name: str, attr: str, default):
    """An activation's argument: the module's attribute `attr`, or the function's argument k / `name`."""
    if n.op == "call_module":
        return getattr(_module(cx, n), attr)
    return _value(cx, _arg(n, k, name, default))


def _direct(cx, n, layer) -> None:
    """An element-wise layer with no ONNX op of its own, added directly and held as its input."""
    node = SimpleNamespace(op_type=type(layer).__name__, name=n.name, input=[n.args[0].name], output=[n.name])
    _same_form(cx.b, node, _base(n), layer)


def celu(cx, n):
    _onnx(cx, "Celu", n, [n.args[0].name], {"alpha": float(_option(cx, n, 1, "alpha", "alpha", 1.0))}, version=12)


def shrink(kind):
    def convert(cx, n):  # Hardshrink / Softshrink(lambd); ONNX Shrink's bias is 0 or lambd
        lambd = float(_option(cx, n, 1, "lambd", "lambd", 0.5))
        _onnx(cx, "Shrink", n, [n.args[0].name], {"lambd": lambd, "bias": lambd if kind == "soft" else 0.0},
              version=9)
    return convert


def tanhshrink(cx, n):
    _direct(cx, n, nn.TanhShrink())


def threshold(cx, n):
    t, v = _option(cx, n, 1, "threshold", "threshold", None), _option(cx, n, 2, "value", "value", None)
    _direct(cx, n, nn.Threshold(float(t), float(v)))


def glu(cx, n):
    """GLU halves torch's `dim`: renumbered to the held layout, as the Softmax importer does."""
    b = cx.b
    h = b.held[n.args[0].name]
    rank = len(h.shape)
    dim = int(_option(cx, n, 1, "dim", "dim", -1)) % rank
    if dim == 0:
        raise Unsupported("glu over the batch dimension (dim 0)")
    h = b.canonical(h, _base(n))
    k = h.perm.index(dim)  # the axis of featuremaps's array
    layer = nn.GLU(-1 if k == rank - 1 else k)
    fshape = list(h.fshape)
    fshape[k - 1] //= 2
    name = b.add(_base(n), layer, [h.name])
    b.origin[name] = n.name
    b.set(n.name, replace(h, name=name, fshape=tuple(fshape)))


def prelu_module(cx, n):
    m = _module(cx, n)
    key = _param(cx, n, m.weight, "weight")
    rank = _rank(cx, n)
    if m.weight.numel() > 1 and rank > 2:
        cx.b.consts[key] = cx.b.consts[key].reshape((-1,) + (1,) * (rank - 2))  # (c,) -> (c, 1, 1): per channel
    _onnx(cx, "PRelu", n, [n.args[0].name, key])


def passthrough(cx, n):
    what = type(_module(cx, n)).__name__ if n.op == "call_module" else getattr(n.target, "__name__", n.target)
    cx.b.held[n.name] = cx.b.held[n.args[0].name]
    if what not in ("contiguous",):
        cx.b.log.append(f"{what} {n.name!r} removed (the identity at inference)")


# --- structure ----------------------------------------------------------------------------------
def reshape(cx, n):
    _onnx(cx, "Reshape", n, [n.args[0].name])


def _dims(cx, n):
    rank = len(cx.b.shapes[n.args[0].name])
    return rank, [int(d) % rank for d in _value(cx, list(n.args[1:]) or n.kwargs.get("dims"))]


def permute(cx, n):
    rank, dims = _dims(cx, n)
    if len(dims) == 1 and isinstance(_value(cx, n.args[1]), (tuple, list)):
        dims = [int(d) % rank for d in _value(cx, n.args[1])]
    _onnx(cx, "Transpose", n, [n.args[0].name], {"perm": dims})


def transpose(cx, n):
    rank = len(cx.b.shapes[n.args[0].name])
    a, b = (int(_value(cx, _arg(n, k, name))) % rank for k, name in ((1, "dim0"), (2, "dim1")))
    perm = list(range(rank))
    perm[a], perm[b] = perm[b], perm[a]
    _onnx(cx, "Transpose", n, [n.args[0].name], {"perm": perm})


def cat(cx, n):
    tensors = _arg(n, 0, "tensors")
    dim = int(_value(cx, _arg(n, 1, "dim", 0)))
    _onnx(cx, "Concat", n, [_key(cx, t) for t in tensors], {"axis": dim})


def binary(op):
    def convert(cx, n):
        x, y = _arg(n, 0, "input"), _arg(n, 1, "other")
        alpha = n.kwargs.get("alpha", 1)
        if alpha != 1:
            raise Unsupported(f"{op} with alpha={alpha}")
        dtype = cx.values[n.name].detach().cpu().numpy().dtype
        keys = [a.name if _is_node(a) and (a.name in cx.b.held or a.name in cx.b.consts)
                else _key(cx, _value(cx, a), dtype) for a in (x, y)]
        _onnx(cx, op, n, keys)
    return convert


# --- lookup -------------------------------------------------------------------------------------
def _tables(torch):
    tnn, F = torch.nn, torch.nn.functional
    modules = {tnn.Conv2d: conv2d, tnn.ConvTranspose2d: conv_transpose2d, tnn.Linear: linear,
               tnn.BatchNorm2d: batch_norm, tnn.BatchNorm1d: batch_norm, tnn.MaxPool2d: max_pool_module,
               tnn.AvgPool2d: avg_pool_module, tnn.AdaptiveAvgPool2d: adaptive_module("avg"),
               tnn.AdaptiveMaxPool2d: adaptive_module("max"), tnn.ReLU: unary("Relu"), tnn.Sigmoid: unary("Sigmoid"),
               tnn.Tanh: unary("Tanh"), tnn.Hardswish: unary("HardSwish"),
               tnn.Hardsigmoid: unary("HardSigmoid", alpha=1 / 6, beta=0.5), tnn.ReLU6: unary("Clip", min=0.0, max=6.0),
               tnn.Hardtanh: hardtanh, tnn.LeakyReLU: leaky_relu, tnn.ELU: elu, tnn.Softmax: softmax,
               tnn.PReLU: prelu_module, tnn.GELU: gelu, tnn.SiLU: silu, tnn.Softplus: softplus,
               tnn.Softsign: unary("Softsign"), tnn.Mish: unary("Mish"), tnn.LogSoftmax: log_softmax,
               tnn.CELU: celu, tnn.Hardshrink: shrink("hard"), tnn.Softshrink: shrink("soft"),
               tnn.Tanhshrink: tanhshrink, tnn.Threshold: threshold, tnn.GLU: glu,
               tnn.Dropout: passthrough, tnn.Dropout2d: passthrough,
               tnn.AlphaDropout: passthrough, tnn.Identity: passthrough, tnn.Flatten: reshape}
    relu, sig, tanh = unary("Relu"), unary("Sigmoid"), unary("Tanh")
    add, mul, sub, div = binary("Add"), binary("Mul"), binary("Sub"), binary("Div")
    functions = {F.relu: relu, torch.relu: relu, F.relu_: relu, torch.relu_: relu, torch.sigmoid: sig,
                 F.sigmoid: sig, torch.tanh: tanh, F.tanh: tanh, F.hardswish: unary("HardSwish"),
                 F.hardsigmoid: unary("HardSigmoid", alpha=1 / 6, beta=0.5), F.relu6: unary("Clip", min=0.0, max=6.0),
                 F.hardtanh: hardtanh, F.leaky_relu: leaky_relu, F.elu: elu, F.softmax: softmax,
                 torch.softmax: softmax, F.gelu: gelu, F.silu: silu, F.softplus: softplus,
                 F.softsign: unary("Softsign"), F.mish: unary("Mish"), F.log_softmax: log_softmax,
                 F.celu: celu, torch.celu: celu, F.hardshrink: shrink("hard"), torch.hardshrink: shrink("hard"),
                 F.softshrink: shrink("soft"), F.tanhshrink: tanhshrink, F.threshold: threshold,
                 torch.threshold: threshold, F.glu: glu,
                 torch.log_softmax: log_softmax, torch.exp: unary("Exp"),
                 F.dropout: passthrough, F.dropout2d: passthrough,
                 F.max_pool2d: max_pool_fn, F.avg_pool2d: avg_pool_fn, torch.max_pool2d: max_pool_fn,
                 F.adaptive_avg_pool2d: adaptive_fn("avg"), F.adaptive_max_pool2d: adaptive_fn("max"),
                 torch.flatten: reshape, torch.reshape: reshape, torch.squeeze: reshape, torch.unsqueeze: reshape,
                 torch.permute: permute, torch.transpose: transpose, torch.cat: cat, torch.concat: cat,
                 torch.add: add, operator.add: add, operator.iadd: add, torch.mul: mul, operator.mul: mul,
                 operator.imul: mul, torch.sub: sub, operator.sub: sub, operator.truediv: div, torch.div: div,
                 torch.mean: mean}
    methods = {"relu": relu, "relu_": relu, "sigmoid": sig, "sigmoid_": sig, "tanh": tanh, "tanh_": tanh,
               "softmax": softmax, "log_softmax": log_softmax, "exp": unary("Exp"), "flatten": reshape, "view": reshape,
               "reshape": reshape, "squeeze": reshape,
               "unsqueeze": reshape, "permute": permute, "transpose": transpose, "contiguous": passthrough,
               "add": add, "add_": add, "mul": mul, "mul_": mul, "sub": sub, "div": div, "mean": mean}
    return modules, functions, methods


_TABLES = {}


def converter_for(gm, n):
    """The converter of the fx node `n`, or None when it has no featuremaps form."""
    import torch
    if not _TABLES:
        _TABLES["t"] = _tables(torch)
    modules, functions, methods = _TABLES["t"]
    if n.op == "call_module":
        return modules.get(type(gm.get_submodule(n.target)))
    if n.op == "call_function":
        try:
            return functions.get(n.target)
        except TypeError:  # an unhashable target
            return None
    if n.op == "call_method":
        return methods.get(n.target)
    return None

