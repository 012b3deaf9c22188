"""Converters for element-wise, activation, reduction, dense and data-movement ops.

Element-wise ops and activations keep a channels-last input channels-last (see `_layout`); the
data-movement ops (Reshape, Flatten, Transpose, Slice, Gather, ...) work on the NCHW tensor with
plain NumPy, as ONNX defines them. Concat and Softmax remap a channels-last input's axis instead.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ._layout import NCHW_TO_NHWC, Value, broadcast_operands
from ._loader import check_budget, to_array
from ._ops_nn import Unsupported
from ._registry import converter


def _ints(v: Value | None) -> list[int] | None:
    return None if v is None else [int(i) for i in np.asarray(v.nchw()).reshape(-1)]


def _optional(ins, i):
    return ins[i] if len(ins) > i and ins[i] is not None else None


# --- element-wise -------------------------------------------------------------------------------
def _elementwise(fn):
    def run(ctx, node, ins, attrs, version):
        arrays, is_nhwc = broadcast_operands(ins)
        out = arrays[0]
        for a in arrays[1:]:
            out = fn(out, a)
        return [Value(np.asarray(out), is_nhwc)]
    return run


def _div(a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):  # ONNX integer division truncates toward zero
        q = np.abs(a) // np.abs(b)
        return (np.sign(a) * np.sign(b) * q).astype(np.result_type(a, b))
    return np.divide(a, b)


for _name, _fn in {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div, "Sum": np.add,
                   "Max": np.maximum, "Min": np.minimum}.items():
    converter(_name, 6 if _name in ("Sum", "Max", "Min") else 7)(_elementwise(_fn))


@converter("Mean", 6)
def _mean(ctx, node, ins, attrs, version):
    """The element-wise mean of 1 or more broadcast inputs: their sum (left to right) over their count."""
    arrays, is_nhwc = broadcast_operands(ins)
    out = arrays[0]
    for a in arrays[1:]:
        out = np.add(out, a)
    return [Value(np.asarray(out / np.asarray(len(arrays), out.dtype)), is_nhwc)]


def _unary(fn):
    def run(ctx, node, ins, attrs, version):
        return [Value(fn(ins[0].a, attrs), ins[0].nhwc)]
    return run


for _name, _fn in {
        "Relu": lambda a, at: F.relu(a),
        "Sigmoid": lambda a, at: F.sigmoid(a),
        "Tanh": lambda a, at: F.tanh(a),
        "LeakyRelu": lambda a, at: F.leaky_relu(a, float(at.get("alpha", 0.01))),
        "HardSigmoid": lambda a, at: F.hard_sigmoid(a, float(at.get("alpha", 0.2)), float(at.get("beta", 0.5))),
        "HardSwish": lambda a, at: F.hard_swish(a),
        "Softplus": lambda a, at: F.softplus(a, threshold=None),  # ONNX: log(exp(x) + 1), no threshold
        "Softsign": lambda a, at: F.softsign(a),
        "Identity": lambda a, at: a}.items():
    converter(_name, 1)(_unary(_fn))
converter("Exp", 6)(_unary(lambda a, at: F.exp(a)))
converter("Mish", 18)(_unary(lambda a, at: F.mish(a)))


def _gelu_mode(attrs) -> str:
    mode = attrs.get("approximate", "none")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("none", "tanh"):
        raise Unsupported(f"Gelu: approximate must be 'none' or 'tanh'; received {mode!r}")
    return mode


converter("Gelu", 20)(_unary(lambda a, at: F.gelu(a, _gelu_mode(at))))


def _swish(a, attrs):
    alpha = float(attrs.get("alpha", 1.0))
    return F.silu(a) if alpha == 1.0 else F.mul(a, F.sigmoid(F.mul(a, a.dtype.type(alpha))))


converter("Swish", 24)(_unary(_swish))  # x·σ(alpha·x)


@converter("Clip", 6)
def clip(ctx, node, ins, attrs, version):
    if version < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        bounds = (_optional(ins, 1), _optional(ins, 2))
        lo, hi = (None if v is None else float(np.asarray(v.a).reshape(())) for v in bounds)
    x = ins[0].a
    if lo is not None and hi is not None and lo > hi:
        lo = hi  # ONNX: every value becomes max when min > max
    if x.dtype.kind != "f":
        return [Value(np.clip(x, lo, hi).astype(x.dtype), ins[0].nhwc)]
    return [Value(F.clip(x, lo, hi), ins[0].nhwc)]


@converter("PRelu", 7)
def prelu(ctx, node, ins, attrs, version):
    (x, slope), is_nhwc = broadcast_operands(ins[:2])
    return [Value(F.prelu(x, slope.astype(x.dtype, copy=False)), is_nhwc)]


@converter("Dropout", 7)
def dropout(ctx, node, ins, attrs, version):
    training, ratio = _optional(ins, 2), _optional(ins, 1)
    p = 0.5 if ratio is None else float(np.asarray(ratio.a).reshape(()))
    if training is not None and bool(np.asarray(training.a).reshape(())) and p != 0.0:
        raise Unsupported("Dropout: training_mode=True with a ratio above 0 is not supported (inference only)")
    out = [ins[0]]
    if len(node.output) > 1 and node.output[1]:
        out.append(Value(np.ones(ins[0].a.shape, bool), ins[0].nhwc))
    return out


def _softmax(fn):
    def run(ctx, node, ins, attrs, version):
        v = ins[0]
        nd = len(v.shape)
        axis = int(attrs.get("axis", 1 if version < 13 else -1)) % max(nd, 1)
        if version >= 13 or axis == nd - 1:
            if v.nhwc:
                return [Value(fn(v.a, NCHW_TO_NHWC[axis]), True)]
            return [Value(fn(v.a, axis))]
        x = v.nchw()  # before opset 13: coerced to 2-D, (prod(shape[:axis]), prod(shape[axis:]))
        return [Value(fn(x.reshape(int(np.prod(x.shape[:axis])), -1), -1).reshape(x.shape))]
    return run


converter("Softmax", 1)(_softmax(lambda a, axis: F.softmax(a, axis)))
converter("LogSoftmax", 1)(_softmax(lambda a, axis: F.log_softmax(a, axis)))


# --- reductions ---------------------------------------------------------------------------------
def _reduce(fn, axes_input_since: int):
    """ReduceX: axes from the attribute (before `axes_input_since`) or the optional second input.
    A channels-last 4-D input with keepdims stays channels-last (the axes remapped)."""
    def run(ctx, node, ins, attrs, version):
        v = ins[0]
        nd = len(v.shape)
        axes = attrs.get("axes") if version < axes_input_since else _ints(_optional(ins, 1))
        if not axes:
            if version >= axes_input_since and int(attrs.get("noop_with_empty_axes", 0)):
                return [v]
            axes = range(nd)
        axes = tuple(sorted({int(a) % max(nd, 1) for a in axes}))
        keep = bool(int(attrs.get("keepdims", 1)))
        if v.nhwc and keep:
            return [Value(np.asarray(fn(v.a, axis=tuple(NCHW_TO_NHWC[a] for a in axes), keepdims=True)), True)]
        return [Value(np.asarray(fn(v.nchw(), axis=axes, keepdims=keep)))]
    return run


def _extreme(fn, low: bool):
    """np.max / np.min with ONNX's value for an empty set: the dtype's lowest (max) or highest (min)."""
    def reduce(a, axis, keepdims):
        if a.size:
            return fn(a, axis=axis, keepdims=keepdims)
        if a.dtype == bool:
            init = not low
        elif a.dtype.kind == "f":
            init = -np.inf if low else np.inf
        else:
            init = np.iinfo(a.dtype).min if low else np.iinfo(a.dtype).max
        return fn(a, axis=axis, keepdims=keepdims, initial=init)
    return reduce


for _name, _fn, _since in (("ReduceMean", np.mean, 18), ("ReduceSum", np.sum, 13),
                           ("ReduceMax", _extreme(np.max, True), 18), ("ReduceMin", _extreme(np.min, False), 18)):
    converter(_name, 1)(_reduce(_fn, _since))


# --- dense --------------------------------------------------------------------------------------
@converter("MatMul", 1)
def matmul(ctx, node, ins, attrs, version):
    return [Value(np.asarray(F.matmul(ins[0].nchw(), ins[1].nchw())))]


@converter("Gemm", 7)
def gemm(ctx, node, ins, attrs, version):
    a, b = ins[0].nchw(), ins[1].nchw()
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"Gemm: A and B must be 2-D; received shapes {a.shape} and {b.shape}")
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = F.matmul(a, b)
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if alpha != 1.0:
        y = y * y.dtype.type(alpha)
    c = _optional(ins, 2)
    if c is not None and beta != 0.0:
        cc = c.nchw()
        y = y + (cc if beta == 1.0 else cc * cc.dtype.type(beta))
    return [Value(np.asarray(y, dtype=np.result_type(a, b)))]


# --- data movement (NCHW) -----------------------------------------------------------------------
@converter("Flatten", 1)
def flatten(ctx, node, ins, attrs, version):
    x = ins[0].nchw()
    axis = int(attrs.get("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    return [Value(x.reshape(int(np.prod(x.shape[:axis])), -1))]  # (prod(shape[:axis]), prod(shape[axis:]))


@converter("Reshape", 5)
def reshape(ctx, node, ins, attrs, version):
    x = ins[0].nchw()
    shape = _ints(ins[1])
    if not int(attrs.get("allowzero", 0)):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    try:
        return [Value(x.reshape(shape))]
    except ValueError:
        raise ValueError(f"Reshape: cannot reshape a tensor of shape {x.shape} ({x.size} values) to {shape}") from None


@converter("Transpose", 1)
def transpose(ctx, node, ins, attrs, version):
    x = ins[0].nchw()
    perm = list(attrs.get("perm", range(x.ndim)[::-1]))
    return [Value(np.transpose(x, perm))]


@converter("Concat", 4)
def concat(ctx, node, ins, attrs, version):
    nd = len(ins[0].shape)
    axis = int(attrs["axis"]) % nd
    if all(v.nhwc for v in ins):
        return [Value(np.asarray(F.concat([v.a for v in ins], NCHW_TO_NHWC[axis])), True)]
    return [Value(np.concatenate([v.nchw() for v in ins], axis))]


@converter("Split", 2)
def split(ctx, node, ins, attrs, version):
    x = ins[0].nchw()
    axis = int(attrs.get("axis", 0)) % x.ndim
    parts = attrs.get("split") if version < 13 else _ints(_optional(ins, 1))
    n = len(node.output)
    if parts is None:
        if "num_outputs" in attrs:
            n = int(attrs["num_outputs"])
            step = -(-x.shape[axis] // n)
            parts = [min(step, x.shape[axis] - i * step) for i in range(n)]
        else:
            if x.shape[axis] % n:
                raise ValueError(f"Split: axis {axis} of size {x.shape[axis]} does not split into {n} equal parts")
            parts = [x.shape[axis] // n] * n
    if sum(parts) != x.shape[axis]:
        raise ValueError(f"Split: parts {list(parts)} do not add up to axis {axis}'s size {x.shape[axis]}")
    cuts = np.cumsum(parts)[:-1]
    return [Value(p) for p in np.split(x, cuts, axis=axis)]


def _slice_index(dim: int, start: int, end: int, step: int) -> slice:
    """ONNX Slice's clamping rules for one axis, as a Python slice."""
    if step == 0:
        raise ValueError("Slice: steps must not be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    start = min(max(start, 0), dim - 1)
    end = min(max(end, -1), dim - 1)
    return slice(start, None if end == -1 else end, step)


@converter("Slice", 1)
def slice_(ctx, node, ins, attrs, version):
    x = ins[0].nchw()
    if version < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = _ints(ins[1]), _ints(ins[2])
        axes, steps = _ints(_optional(ins, 3)), _ints(_optional(ins, 4))
    axes = list(range(len(starts))) if axes is None else [a % x.ndim for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = _slice_index(x.shape[a], int(s), int(e), int(st))
    return [Value(x[tuple(index)])]


@converter("Squeeze", 1)
def squeeze(ctx, node, ins, attrs, version):
    x = ins[0].nchw()
    axes = attrs.get("axes") if version < 13 else _ints(_optional(ins, 1))
    if axes is None:
        return [Value(np.squeeze(x))]
    axes = tuple(int(a) % x.ndim for a in axes)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"Squeeze: axis {a} has size {x.shape[a]}, not 1 (input shape {x.shape})")
    return [Value(np.squeeze(x, axis=axes))]


@converter("Unsqueeze", 1)
def unsqueeze(ctx, node, ins, attrs, version):
    x = ins[0].nchw()
    axes = attrs.get("axes") if version < 13 else _ints(ins[1])
    nd = x.ndim + len(axes)
    return [Value(np.expand_dims(x, tuple(sorted(int(a) % nd for a in axes))))]


@converter("Pad", 2)
def pad(ctx, node, ins, attrs, version):
    v = ins[0]
    nd = len(v.shape)
    if version < 11:
        pads, value = list(attrs["pads"]), float(attrs.get("value", 0.0))
    else:
        pads = _ints(ins[1])
        cv = _optional(ins, 2)
        value = 0.0 if cv is None or cv.a.size == 0 else np.asarray(cv.a).reshape(-1)[0].item()
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    axes = _ints(_optional(ins, 3)) if version >= 18 else None
    axes = list(range(nd)) if axes is None else [a % nd for a in axes]
    width = [[0, 0] for _ in range(nd)]
    for i, a in enumerate(axes):
        width[a] = [pads[i], pads[i + len(axes)]]
    out_shape = [max(s + lo + hi, 0) for s, (lo, hi) in zip(v.shape, width)]
    check_budget(int(np.prod(out_shape, dtype=object)) * v.a.dtype.itemsize, ctx.max_bytes,
                 f"Pad node {node.name!r} with output shape {out_shape}")
    return [_pad(v, width, mode, value)]


def _pad(v: Value, width, mode, value) -> Value:
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise Unsupported(f"Pad: mode {mode!r} is not supported (constant, reflect, edge, wrap)")
    x = v.nchw()
    crop = tuple(slice(-lo if lo < 0 else 0, x.shape[i] + hi if hi < 0 else None) for i, (lo, hi) in enumerate(width))
    x = x[crop]  # negative pads crop
    width = [(max(lo, 0), max(hi, 0)) for lo, hi in width]
    if len(width) == 4 and width[0] == width[1] == (0, 0) and x.dtype.kind == "f" and mode != "wrap":
        hw = ((0, 0), width[2], width[3], (0, 0))  # pad H and W channels-last
        xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C) (a view if v is NHWC)
        y = F.pad(xl, hw, value) if mode == "constant" else F.pad(xl, hw, mode=mode)
        return Value(np.asarray(y), True)
    if mode == "constant":
        return Value(np.pad(x, width, mode="constant", constant_values=value))
    return Value(np.pad(x, width, mode=mode))


# --- constants and shapes -----------------------------------------------------------------------
@converter("Constant", 1)
def constant(ctx, node, ins, attrs, version):
    if "value" in attrs:
        return [Value(to_array(attrs["value"], f"Constant node {node.name!r}", ctx.base_dir, ctx.max_bytes))]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return [Value(np.array(attrs[key], dtype=dtype))]
    raise Unsupported(f"Constant: only value, value_float(s) and value_int(s) are supported; received {sorted(attrs)}")


@converter("ConstantOfShape", 9)
def constant_of_shape(ctx, node, ins, attrs, version):
    shape = _ints(ins[0])
    if any(s < 0 for s in shape):
        raise ValueError(f"ConstantOfShape: the shape {shape} has a negative dimension")
    fill = (to_array(attrs["value"], f"ConstantOfShape node {node.name!r}", ctx.base_dir, ctx.max_bytes)
            if "value" in attrs else np.zeros(1, np.float32))
    check_budget(int(np.prod(shape, dtype=object)) * fill.dtype.itemsize, ctx.max_bytes,
                 f"ConstantOfShape node {node.name!r} with shape {shape}")
    return [Value(np.full(shape, fill.reshape(-1)[0], dtype=fill.dtype))]


@converter("Shape", 1)
def shape(ctx, node, ins, attrs, version):
    s = np.array(ins[0].shape, dtype=np.int64)
    if version >= 15:
        start, end = int(attrs.get("start", 0)), attrs.get("end")
        s = s[slice(start, None if end is None else int(end))]
    return [Value(s)]


@converter("Gather", 1)
def gather(ctx, node, ins, attrs, version):
    x = ins[0].nchw()
    axis = int(attrs.get("axis", 0)) % x.ndim
    idx = np.asarray(ins[1].nchw()).astype(np.int64)
    dim = x.shape[axis]
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise ValueError(f"Gather: indices must be in [-{dim}, {dim - 1}] for axis {axis}; "
                         f"received {idx.min()}..{idx.max()}")
    return [Value(np.take(x, np.where(idx < 0, idx + dim, idx), axis=axis))]


@converter("Cast", 6)
def cast(ctx, node, ins, attrs, version):
    import onnx
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"]))
    except (KeyError, ValueError, TypeError):
        raise Unsupported(f"Cast: target type {attrs.get('to')} is not supported") from None
    x = np.asarray(ins[0].a)
    name = np.dtype(dtype).name
    if "e8m0" in name:
        raise Unsupported("Cast: the target type FLOAT8E8M0 is not supported")
    if name.startswith("float8") and int(attrs.get("saturate", 1)) and x.dtype.kind == "f":
        x = _saturate(x, dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/out-of-range → int: undefined in ONNX too
        return [Value(x.astype(dtype), ins[0].nhwc)]


def _saturate(x: np.ndarray, dtype) -> np.ndarray:
    """ONNX's saturating cast to float8: out-of-range values and ±inf become ±the type's largest
    value (as onnx's own node tests expect, E5M2 included); NaN stays NaN."""
    import ml_dtypes  # shipped with onnx
    big = float(ml_dtypes.finfo(dtype).max)
    return np.clip(x, -big, big).astype(x.dtype, copy=False)
