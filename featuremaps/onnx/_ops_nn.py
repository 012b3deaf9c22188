"""Converters for the spatial ops: they take and return channels-last (NHWC) values and do their
math with `featuremaps.functional`. ONNX's 1-D forms (N, C, L) run as 2-D with H = 1."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..functional.window import Geometry, dilated_span
from ._layout import Value, nhwc
from ._loader import check_budget
from ._registry import converter


class Unsupported(ValueError):
    """An op or attribute value this runner does not implement (named in the message)."""


def _spatial(v: Value, op: str) -> tuple[np.ndarray, bool]:
    """NHWC 4-D array of `v`, and whether it was 1-D (N, C, L) and got an H = 1 axis."""
    if v.nhwc or v.a.ndim == 4:
        return v.channels_last(), False
    if v.a.ndim == 3:
        return np.ascontiguousarray(v.a.transpose(0, 2, 1)[:, None]), True  # (N, C, L) -> (N, 1, L, C)
    raise Unsupported(f"{op}: only 1-D and 2-D inputs ((N, C, L) or (N, C, H, W)) are supported; "
                      f"received shape {v.shape}")


def _out(y: np.ndarray, was_1d: bool) -> Value:
    if was_1d:
        return Value(np.ascontiguousarray(y[:, 0].transpose(0, 2, 1)))  # (N, 1, L, C) -> (N, C, L)
    return nhwc(y)


def _hw(attrs: dict, name: str, k: int, default, was_1d: bool) -> tuple:
    """A per-axis attribute (strides, dilations, ...) as an (h, w) pair; 1-D gets h = `default`."""
    v = list(attrs.get(name, [default] * k))
    if len(v) != k:
        raise ValueError(f"attribute {name} has {len(v)} values for a {k}-D kernel")
    return tuple([default] + v) if was_1d else tuple(v)


def _pads(attrs: dict, size, kernel, stride, dil, was_1d: bool, ceil_mode: bool = False):
    """ONNX pads/auto_pad → ((top, bottom), (left, right))."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for n, k, s, d in zip(size, kernel, stride, dil):
            total = max((-(-n // s) - 1) * s + dilated_span(k, d) - n, 0)
            small = total // 2
            pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return tuple(pads)
    if auto == "VALID":
        return ((0, 0), (0, 0))
    if auto != "NOTSET":
        raise ValueError(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID; received {auto!r}")
    p = list(attrs.get("pads", [0] * (2 * len(kernel) - (2 if was_1d else 0))))
    if was_1d:
        return ((0, 0), (int(p[0]), int(p[1])))
    if len(p) != 4:
        raise ValueError(f"pads must have 4 values (top, left, bottom, right); received {p}")
    return ((int(p[0]), int(p[2])), (int(p[1]), int(p[3])))


def _hwio(ctx, node, w: Value) -> np.ndarray:
    """OIHW (or OIL) weight → HWIO, converted once per initializer."""
    def convert(a):
        if a.ndim == 3:
            a = a[:, :, None]  # (O, I, L) -> (O, I, 1, L)
        if a.ndim != 4:
            raise Unsupported(f"only 1-D and 2-D kernels are supported; the weight has shape {a.shape}")
        return np.ascontiguousarray(a.transpose(2, 3, 1, 0))  # (O, I, KH, KW) -> (KH, KW, I, O)
    return ctx.cached(node.input[1], "hwio", w.nchw(), convert)


def _float_like(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    return a if a.dtype == x.dtype else a.astype(x.dtype)


@converter("Conv", 1)
def conv(ctx, node, ins, attrs, version):
    x, was_1d = _spatial(ins[0], "Conv")
    w = _float_like(_hwio(ctx, node, ins[1]), x)
    kernel = w.shape[:2]
    stride = _hw(attrs, "strides", len(kernel) - was_1d, 1, was_1d)
    dil = _hw(attrs, "dilations", len(kernel) - was_1d, 1, was_1d)
    pads = _pads(attrs, x.shape[1:3], kernel, stride, dil, was_1d)
    b = None if len(ins) < 3 or ins[2] is None else _float_like(ins[2].a, x)
    y = F.conv2d(x, w, b, stride=stride, padding=pads, dilation=dil, groups=int(attrs.get("group", 1)))
    return [_out(y, was_1d)]


def _convt_pads(attrs, size, kernel, stride, dil, out_pad, was_1d):
    """ConvTranspose's pads, from `pads`, `output_shape` or `auto_pad` (the ONNX spec's formulas)."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        shape = list(attrs["output_shape"])[-len(size) + was_1d:] if "output_shape" in attrs else None
        if was_1d and shape is not None:
            shape = [1] + shape
        pads = []
        for i, (n, k, s, d, a) in enumerate(zip(size, kernel, stride, dil, out_pad)):
            target = shape[i] if shape is not None else n * s
            total = s * (n - 1) + a + dilated_span(k, d) - target
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2  # the spec's split
            pads.append((lo, total - lo))
        return tuple(pads)
    return _pads(attrs, size, kernel, stride, dil, was_1d)


@converter("ConvTranspose", 1)
def conv_transpose(ctx, node, ins, attrs, version):
    x, was_1d = _spatial(ins[0], "ConvTranspose")
    w = _float_like(_hwio(ctx, node, ins[1]), x)  # (KH, KW, C_out // g, C_in)
    kernel = w.shape[:2]
    k = len(kernel) - was_1d
    stride = _hw(attrs, "strides", k, 1, was_1d)
    dil = _hw(attrs, "dilations", k, 1, was_1d)
    out_pad = _hw(attrs, "output_padding", k, 0, was_1d)
    pads = _convt_pads(attrs, x.shape[1:3], kernel, stride, dil, out_pad, was_1d)
    if any(lo < 0 for lo, _ in pads):
        raise Unsupported(f"ConvTranspose: output_shape {list(attrs.get('output_shape', []))} would need "
                          f"negative padding at the start")
    # a negative end pad (output_shape one larger than the full output) extends the output at the end
    out_pad = tuple(a + max(-hi, 0) for a, (_, hi) in zip(out_pad, pads))
    pads = tuple((lo, max(hi, 0)) for lo, hi in pads)
    b = None if len(ins) < 3 or ins[2] is None else _float_like(ins[2].a, x)
    y = F.conv_transpose2d(x, w, b, stride=stride, padding=pads, output_padding=out_pad, dilation=dil,
                           groups=int(attrs.get("group", 1)))
    return [_out(y, was_1d)]


# --- pooling ----------------------------------------------------------------------------------
def _pool_geometry(ins, attrs, op):
    x, was_1d = _spatial(ins[0], op)
    if "kernel_shape" not in attrs:
        raise ValueError(f"{op}: the kernel_shape attribute is required")
    k = len(attrs["kernel_shape"])
    kernel = _hw(attrs, "kernel_shape", k, 1, was_1d)
    stride = _hw(attrs, "strides", k, 1, was_1d)
    dil = _hw(attrs, "dilations", k, 1, was_1d)
    ceil = bool(attrs.get("ceil_mode", 0))
    pads = _pads(attrs, x.shape[1:3], kernel, stride, dil, was_1d)
    return x, was_1d, kernel, stride, dil, pads, ceil


def _padded_windows(x, kernel, stride, dil, pads, ceil, fill):
    """The padded input (with ceil_mode's overhang) and its window view (N, OH, OW, KH, KW, C)."""
    geo = Geometry.from_pairs(x.shape[1:3], kernel, stride, pads, dil, ceil)
    if min(geo.out_hw) < 1:
        raise ValueError(f"input of shape {x.shape}: {geo.misfit()}")
    (t, b), (l, r) = geo.array_pads  # noqa: E741
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=fill)  # (n, hp, wp, c)
    return xp, geo, geo.windows(xp)


def _fallback_pool(x, kernel, stride, dil, pads, ceil, kind, include_pad=False):
    """Pooling for what the library's ops refuse (padding > kernel // 2, dilated average, integer
    maps): the padded windows reduced by max, or by sum / the number of counted cells."""
    fill = 0.0 if kind != "max" else (-np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min)
    xp, geo, v = _padded_windows(x, kernel, stride, dil, pads, ceil, fill)  # v: (n, oh, ow, kh, kw, c)
    if kind == "max":
        return v.max(axis=(3, 4))
    mask = np.zeros((1,) + xp.shape[1:3] + (1,), x.dtype)  # 1 where a cell counts toward the divisor
    (t, b), (l, r) = pads  # noqa: E741
    h, w = x.shape[1:3]
    if include_pad:
        mask[:, :t + h + b, :l + w + r] = 1
    else:
        mask[:, t:t + h, l:l + w] = 1
    count = geo.windows(mask).sum(axis=(3, 4))  # (1, oh, ow, 1)
    with np.errstate(invalid="ignore"):  # a dilated window that meets no counted cell: 0 / 0 = NaN
        return v.sum(axis=(3, 4)) / count


def _max_indices(x, kernel, stride, dil, pads, ceil, column_major: bool) -> np.ndarray:
    """MaxPool's Indices output, NCHW: each maximum's flat index into the NCHW input (row-major, or
    column-major within each map with storage_order=1); the first maximum of a window wins."""
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    _, geo, v = _padded_windows(x, kernel, stride, dil, pads, ceil, fill)
    (oh, ow), (n, h, w, c), (kh, kw) = geo.out_hw, x.shape, kernel
    arg = v.reshape(n, oh, ow, kh * kw, c).argmax(axis=3)  # (n, oh, ow, c): tap p·kw + q (first max)
    rows = np.arange(oh)[:, None, None] * stride[0] + (arg // kw) * dil[0] - pads[0][0]  # (n, oh, ow, c)
    cols = np.arange(ow)[None, :, None] * stride[1] + (arg % kw) * dil[1] - pads[1][0]
    within = cols * h + rows if column_major else rows * w + cols
    base = (np.arange(n)[:, None, None, None] * c + np.arange(c)) * (h * w)  # (n, 1, 1, c)
    return (base + within).astype(np.int64).transpose(0, 3, 1, 2)  # (n, oh, ow, c) -> (n, c, oh, ow)


def _fits(kernel, pads) -> bool:
    return all(max(lo, hi) <= k // 2 for k, (lo, hi) in zip(kernel, pads))


@converter("MaxPool", 1)
def max_pool(ctx, node, ins, attrs, version):
    x, was_1d, kernel, stride, dil, pads, ceil = _pool_geometry(ins, attrs, "MaxPool")
    if _fits(kernel, pads) and x.dtype.kind == "f":
        y = F.max_pool2d(x, kernel, stride, pads, ceil_mode=ceil, dilation=dil)
    else:
        y = _fallback_pool(x, kernel, stride, dil, pads, ceil, "max")
    out = [_out(y, was_1d)]
    if len(node.output) > 1 and node.output[1]:
        if was_1d:
            raise Unsupported("MaxPool: the Indices output is supported for 2-D pooling only")
        out.append(Value(_max_indices(x, kernel, stride, dil, pads, ceil, bool(attrs.get("storage_order", 0)))))
    return out


@converter("AveragePool", 1)
def avg_pool(ctx, node, ins, attrs, version):
    x, was_1d, kernel, stride, dil, pads, ceil = _pool_geometry(ins, attrs, "AveragePool")
    include = bool(attrs.get("count_include_pad", 0))
    if _fits(kernel, pads) and dil == (1, 1):
        y = F.avg_pool2d(x, kernel, stride, pads, ceil_mode=ceil, count_include_pad=include)
    else:
        y = _fallback_pool(x, kernel, stride, dil, pads, ceil, "avg", include)
    return [_out(y, was_1d)]


@converter("GlobalAveragePool", 1)
def global_avg_pool(ctx, node, ins, attrs, version):
    x, was_1d = _spatial(ins[0], "GlobalAveragePool")
    return [_out(F.global_avg_pool2d(x, keepdims=True), was_1d)]


@converter("GlobalMaxPool", 1)
def global_max_pool(ctx, node, ins, attrs, version):
    x, was_1d = _spatial(ins[0], "GlobalMaxPool")
    return [_out(F.global_max_pool2d(x, keepdims=True), was_1d)]


# --- normalisation ------------------------------------------------------------------------------
def _channels_last_any(v: Value) -> tuple[np.ndarray, callable]:
    """(N, C, ...) of any rank → channels-last array, and the function that puts a result back."""
    if v.nhwc or v.a.ndim == 4:
        return v.channels_last(), nhwc
    nd = v.a.ndim
    if nd < 2:
        raise ValueError(f"the input must be (N, C, ...); received shape {v.shape}")
    perm = (0,) + tuple(range(2, nd)) + (1,)
    inv = tuple(np.argsort(perm))
    return np.ascontiguousarray(v.a.transpose(perm)), lambda y: Value(y.transpose(inv))  # (N, C, ...) <-> (N, ..., C)


@converter("BatchNormalization", 7)
def batch_norm(ctx, node, ins, attrs, version):
    if int(attrs.get("training_mode", 0)) or (version < 9 and int(attrs.get("spatial", 1)) == 0):
        raise Unsupported("BatchNormalization: only inference with spatial statistics is supported "
                          "(training_mode=1 or spatial=0 was given)")
    if len([o for o in node.output if o]) > 1:
        raise Unsupported("BatchNormalization: the training outputs (running mean/var) are not supported")
    x, back = _channels_last_any(ins[0])
    eps = float(attrs.get("epsilon", 1e-5))
    scale, shift = _bn_affine(ctx, node, ins, eps, x.dtype)
    y = np.multiply(x, scale)  # (..., c) · (c,): one pass and one new array, then the shift in place
    y += shift
    return [back(y)]


def _bn_affine(ctx, node, ins, eps: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm as y = x·scale + shift, scale = γ / √(var + ε), shift = β − mean·scale,
    computed in float64 and cast to x's dtype, once per set of initializers (cached on the scale's)."""
    def affine(_):
        g, b, m, v = (np.asarray(i.a, np.float64).reshape(-1) for i in ins[1:5])
        scale = g / np.sqrt(v + eps)
        return scale.astype(dtype), (b - m * scale).astype(dtype)
    if not all(name in ctx.arrays for name in node.input[1:5]):
        return affine(None)
    return ctx.cached(node.input[1], f"bn_affine:{','.join(node.input[2:5])}:{eps!r}:{np.dtype(dtype).name}",
                      None, affine)


@converter("InstanceNormalization", 6)
def instance_norm(ctx, node, ins, attrs, version):
    x, was_1d = _spatial(ins[0], "InstanceNormalization")
    g, b = (_float_like(i.a, x) for i in ins[1:3])
    return [_out(F.instance_norm(x, g, b, eps=float(attrs.get("epsilon", 1e-5))), was_1d)]


@converter("LRN", 1)
def lrn(ctx, node, ins, attrs, version):
    x, back = _channels_last_any(ins[0])
    size = int(attrs["size"])
    args = dict(size=size, alpha=float(attrs.get("alpha", 1e-4)), beta=float(attrs.get("beta", 0.75)),
                k=float(attrs.get("bias", 1.0)))
    if size % 2:
        return [back(F.local_response_norm(x, **args))]
    # ONNX sums c − ⌊(size−1)/2⌋ … c + ⌈(size−1)/2⌉, featuremaps c − size//2 … c + (size−1)//2: for an
    # even size the window is the mirror image, so run on the channels reversed.
    y = F.local_response_norm(np.ascontiguousarray(x[..., ::-1]), **args)
    return [back(np.ascontiguousarray(y[..., ::-1]))]


# --- resizing -----------------------------------------------------------------------------------
def _full(values, axes, rank: int, fill) -> list:
    """Per-axis values given for `axes` (opset 18) spread over all `rank` axes."""
    if axes is None:
        return list(values)
    out = [fill] * rank
    for a, v in zip(axes, values):
        out[int(a) % rank] = v
    return out


def _resize_size(v: Value, scales, sizes, op: str, attrs=None):
    """((H_out, W_out), (scale_h, scale_w) or None): the output size, and the scales that the
    coordinate transform uses when the model gives scales (ONNX uses them, not out / in)."""
    attrs = attrs or {}
    shape = v.shape
    if len(shape) != 4:
        raise Unsupported(f"{op}: only 4-D (N, C, H, W) inputs are supported; received shape {shape}")
    axes = attrs.get("axes")
    if sizes is not None and len(sizes):
        sizes = _full([int(s) for s in sizes], axes, 4, None)
        sizes = [shape[i] if s is None else s for i, s in enumerate(sizes)]
        if len(sizes) != 4 or sizes[:2] != list(shape[:2]):
            raise Unsupported(f"{op}: only H and W may be resized; received sizes {sizes} for shape {shape}")
        policy = _text(attrs, "keep_aspect_ratio_policy", "stretch")
        if policy == "stretch":
            return (sizes[2], sizes[3]), None
        pick = {"not_larger": min, "not_smaller": max}[policy]
        scale = pick(sizes[i] / shape[i] for i in ((2, 3) if axes is None else [int(a) % 4 for a in axes]))
        return tuple(int(np.floor(scale * n + 0.5)) for n in shape[2:]), (scale, scale)
    scales = _full([float(s) for s in scales], axes, 4, 1.0)
    if len(scales) != 4 or scales[:2] != [1.0, 1.0]:
        raise Unsupported(f"{op}: only H and W may be scaled; received scales {scales}")
    out = tuple(int(np.floor(n * s)) for n, s in zip(shape[2:], scales[2:]))
    return out, tuple(scales[2:])


def _check_out(ctx, node, v: Value, size_hw) -> None:
    n, c = v.shape[:2]
    check_budget(n * c * size_hw[0] * size_hw[1] * v.a.dtype.itemsize, ctx.max_bytes,
                 f"{node.op_type} node {node.name!r} with output size {tuple(size_hw)}")


def _mode(attrs, default="nearest") -> str:
    mode = attrs.get("mode", default.encode())
    mode = mode.decode() if isinstance(mode, bytes) else mode
    mode = {"bilinear": "linear"}.get(mode, mode)
    if mode not in ("nearest", "linear"):
        raise Unsupported(f"resize mode {mode!r} is not supported (nearest, linear)")
    return mode


@converter("Upsample", 7, 9)
def upsample(ctx, node, ins, attrs, version):
    scales = attrs["scales"] if version < 9 else ins[1].nchw()
    size, sc = _resize_size(ins[0], scales, None, "Upsample")
    _check_out(ctx, node, ins[0], size)
    mode = _mode(attrs)
    y = F.resize(ins[0].channels_last(), size, mode=mode, coordinate_transformation_mode="asymmetric",
                 nearest_mode="floor", scales=sc)
    return [nhwc(y)]


def _text(attrs, name, default) -> str:
    v = attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


@converter("Resize", 10)
def resize(ctx, node, ins, attrs, version):
    if version == 10:
        scales, sizes, ctm, nmode = ins[1].nchw(), None, "asymmetric", "floor"
    else:
        scales = ins[2].nchw() if len(ins) > 2 and ins[2] is not None and ins[2].a.size else None
        sizes = ins[3].nchw() if len(ins) > 3 and ins[3] is not None else None
        ctm = _text(attrs, "coordinate_transformation_mode", "half_pixel")
        nmode = _text(attrs, "nearest_mode", "round_prefer_floor")
    if int(attrs.get("antialias", 0)):
        raise Unsupported("Resize: antialias=1 is not supported")
    mode = _mode(attrs)
    if ctm not in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"):
        raise Unsupported(f"Resize: coordinate_transformation_mode {ctm!r} is not supported")
    size, sc = _resize_size(ins[0], scales, sizes, "Resize", attrs)
    _check_out(ctx, node, ins[0], size)
    y = F.resize(ins[0].channels_last(), size, mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nmode,
                 scales=sc)
    return [nhwc(y)]


# --- Celu, Shrink, ThresholdedRelu (element-wise: the input's layout is kept) ------------------------
@converter("Celu", 12)
def celu(ctx, node, ins, attrs, version):
    return [Value(F.celu(ins[0].a, float(attrs.get("alpha", 1.0))), ins[0].nhwc)]


@converter("Shrink", 9)
def shrink(ctx, node, ins, attrs, version):
    """ONNX Shrink: x + bias below −lambd, x − bias above lambd, else 0. bias 0 is `F.hard_shrink`, bias =
    lambd is `F.soft_shrink`; any other bias has no featuremaps op."""
    lambd, bias = float(attrs.get("lambd", 0.5)), float(attrs.get("bias", 0.0))
    if lambd < 0:
        raise Unsupported(f"Shrink with lambd {lambd:g} < 0")
    if bias == 0.0:
        return [Value(F.hard_shrink(ins[0].a, lambd), ins[0].nhwc)]
    if bias == lambd:
        return [Value(F.soft_shrink(ins[0].a, lambd), ins[0].nhwc)]
    raise Unsupported(f"Shrink with bias {bias:g} and lambd {lambd:g}: featuremaps has bias 0 (hard shrink) and "
                      "bias = lambd (soft shrink)")


@converter("ThresholdedRelu", 10)
def thresholded_relu(ctx, node, ins, attrs, version):
    """x where x > alpha, else 0: `F.threshold(x, alpha, 0)` (PyTorch's threshold with value 0)."""
    return [Value(F.threshold(ins[0].a, float(attrs.get("alpha", 1.0)), 0.0), ins[0].nhwc)]
