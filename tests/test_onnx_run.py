"""featuremaps.onnx.run against onnxruntime, on ONNX files these tests build themselves:
one- and few-node graphs from onnx.helper (with the attribute forms exporters never write) and
the small torch modules of tests/torch_nets.py exported with both torch exporters."""
from __future__ import annotations


import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from hypothesis import example, given, settings, strategies as st  # noqa: E402
from onnx import TensorProto, helper as oh, numpy_helper  # noqa: E402

from featuremaps.onnx import ONNXError, run  # noqa: E402

RTOL32 = 1e-4  # the float32 tolerance; each sum here has ≤ a few hundred terms (K·2**-24 ≪ 1e-4)
RTOL64 = 1e-10  # float64: K·2**-53 for K ≤ 10⁴ terms is ~1e-12


def rng(seed=0):
    return np.random.default_rng(seed)


def make(nodes, inputs: dict, outputs, inits: dict | None = None, opset: int = 17):
    """A model from nodes, named input arrays (their shapes fixed), output names and initializers."""
    ttype = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
             np.dtype(np.int64): TensorProto.INT64}
    ins = [oh.make_tensor_value_info(k, ttype[v.dtype], v.shape) for k, v in inputs.items()]
    outs = [oh.make_empty_tensor_value_info(o) for o in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    g = oh.make_graph(nodes, "g", ins, outs, inits)
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])
    m.ir_version = min(m.ir_version, 10)
    return m


def assert_close(got, ref, dtype=np.float32, rtol=None):
    """rtol from the dtype; atol = rtol × the output's largest magnitude (values near 0 in a sum of
    large terms carry the terms' rounding, not their own)."""
    rtol = rtol or (RTOL64 if np.dtype(dtype) == np.float64 else RTOL32)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape, (g.shape, r.shape)
        if r.dtype.kind in "iub":
            np.testing.assert_array_equal(g, r)
            continue
        assert g.dtype == r.dtype, (g.dtype, r.dtype)
        scale = float(np.max(np.abs(r))) if r.size and np.isfinite(r).all() else 1.0
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * max(scale, 1e-30))


def check(model, feeds, dtype=np.float32, rtol=None):
    ref = ort_run(model, feeds)
    got = run(model, feeds)
    assert_close(got, ref, dtype, rtol)
    return got


def x4(shape=(2, 3, 7, 6), seed=0, dtype=np.float32):
    return rng(seed).standard_normal(shape).astype(dtype)


# --- Conv ---------------------------------------------------------------------------------------
@st.composite
def conv_case(draw):
    g = draw(st.sampled_from([1, 2, 3]))
    cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    auto = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    attrs = dict(strides=[sh, sw], dilations=[dh, dw], group=g, kernel_shape=[kh, kw])
    if auto == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, 3)) for _ in range(4)]  # (top, left, bottom, right), asymmetric
    else:  # onnxruntime refuses dilation with SAME_*
        attrs["auto_pad"] = auto
        dh = dw = 1 if auto != "VALID" else dh
        attrs["dilations"] = [dh, dw if auto == "VALID" else 1]
        dw = attrs["dilations"][1]
    h, w = draw(st.integers(dh * (kh - 1) + 1, 9)), draw(st.integers(dw * (kw - 1) + 1, 9))
    return cin, cout, (kh, kw), h, w, attrs, draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(conv_case(), st.integers(0, 2**16))
def test_conv_attributes_match_onnxruntime(case, seed):
    cin, cout, (kh, kw), h, w, attrs, bias = case
    r = rng(seed)
    wt = r.standard_normal((cout, cin // attrs["group"], kh, kw)).astype(np.float32)
    inits = {"w": wt}
    if bias:
        inits["b"] = r.standard_normal(cout).astype(np.float32)
    node = oh.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], **attrs)
    x = r.standard_normal((2, cin, h, w)).astype(np.float32)
    check(make([node], {"x": x}, ["y"], inits, opset=11), {"x": x})


def test_conv_1d_and_opset7():
    r = rng(1)
    x = r.standard_normal((2, 3, 11)).astype(np.float32)
    node = oh.make_node("Conv", ["x", "w"], ["y"], pads=[2, 1], strides=[2], dilations=[2])
    check(make([node], {"x": x}, ["y"], {"w": r.standard_normal((4, 3, 3)).astype(np.float32)}, opset=7), {"x": x})


@pytest.mark.parametrize("attrs", [
    dict(strides=[2, 2]),
    dict(strides=[2, 3], pads=[1, 0, 0, 2], output_padding=[1, 0]),
    dict(strides=[2, 2], dilations=[2, 1], group=2),
    dict(strides=[2, 2], output_shape=[8, 10]),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(strides=[3, 2], auto_pad="SAME_LOWER"),
])
def test_conv_transpose_matches_onnxruntime(attrs):
    r = rng(2)
    x = r.standard_normal((2, 4, 4, 5)).astype(np.float32)
    w = r.standard_normal((4, 3, 3, 3)).astype(np.float32)  # (C_in, C_out // group, KH, KW)
    b = r.standard_normal(3 * attrs.get("group", 1)).astype(np.float32)
    node = oh.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    check(make([node], {"x": x}, ["y"], {"w": w, "b": b}, opset=11), {"x": x})


# --- pooling ------------------------------------------------------------------------------------
@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    attrs = dict(kernel_shape=[kh, kw], strides=[draw(st.integers(1, 3)), draw(st.integers(1, 3))])
    if draw(st.booleans()):
        attrs["dilations"] = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    auto = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto == "NOTSET":  # onnxruntime requires each pad < the kernel
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw)]
        attrs["ceil_mode"] = int(draw(st.booleans()))
    elif auto == "VALID":
        attrs["auto_pad"] = auto
    else:  # onnxruntime's SAME_* ignores dilation and refuses a negative total pad (kernel < stride)
        attrs.update(auto_pad=auto, dilations=[1, 1])
        attrs["strides"] = [min(s, k) for s, k in zip(attrs["strides"], (kh, kw))]
    dh, dw = attrs.get("dilations", [1, 1])
    h, w = draw(st.integers(dh * (kh - 1) + 1, 9)), draw(st.integers(dw * (kw - 1) + 1, 9))
    return h, w, attrs


@settings(max_examples=60, deadline=None)
@given(pool_case(), st.sampled_from(["MaxPool", "AveragePool0", "AveragePool1"]), st.integers(0, 2**16))
def test_pool_attributes_match_onnxruntime(case, op, seed):
    h, w, attrs = case
    if op.startswith("AveragePool"):
        attrs = dict(attrs, count_include_pad=int(op[-1]))
        op = "AveragePool"
    outputs = ["y"]
    if op == "MaxPool":  # and its Indices output, row- or column-major (random data: no ties)
        attrs = dict(attrs, storage_order=seed % 2)
        outputs.append("i")
    x = rng(seed).standard_normal((2, 3, h, w)).astype(np.float32)
    check(make([oh.make_node(op, ["x"], outputs, **attrs)], {"x": x}, outputs, opset=19), {"x": x})


# --- the same attributes in float64, and SAME_* with dilation, against loops of the spec ----------
def _out_len(n, k, s, d, lo, hi, ceil=False):
    """ONNX's output length; with ceil_mode the last window must start inside the input or its
    leading pad (the rule onnxruntime and PyTorch apply)."""
    span = d * (k - 1) + 1
    out = -(-(n + lo + hi - span) // s) + 1 if ceil else (n + lo + hi - span) // s + 1
    return out - 1 if ceil and (out - 1) * s >= n + lo else out


def _same_pads(n, k, s, d, auto):
    """auto_pad SAME_*: output ceil(n / s), total pad from the dilated kernel (the spec's formula)."""
    total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return (total // 2, total - total // 2) if auto == "SAME_UPPER" else (total - total // 2, total // 2)


def loop_conv(x, w, b, pads, strides, dils, group):
    """ONNX Conv by its definition (NCHW, OIHW), one output cell and kernel tap at a time."""
    (t, bt), (l, r) = pads
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + t + bt, wd + l + r), x.dtype)
    xp[:, :, t:t + h, l:l + wd] = x
    oh = _out_len(h, kh, strides[0], dils[0], t, bt)
    ow = _out_len(wd, kw, strides[1], dils[1], l, r)
    y = np.zeros((n, o, oh, ow), x.dtype) + (0 if b is None else b[:, None, None])
    for oc in range(o):
        g = oc // (o // group)
        for i, j, p, q in np.ndindex(oh, ow, kh, kw):
            y[:, oc, i, j] += xp[:, g * cg:(g + 1) * cg, i * strides[0] + p * dils[0],
                                 j * strides[1] + q * dils[1]] @ w[oc, :, p, q]
    return y


def loop_pool(x, kind, kernel, pads, strides, dils, ceil=False, include_pad=False):
    """ONNX MaxPool / AveragePool by their definition: each window's cells inside the input (or,
    with count_include_pad, inside the padded extent) reduced; cells past the pads never count. A
    dilated window that meets no input cell gives −inf (max, as padding with −inf does) or NaN
    (average, 0 / 0 counted cells): the spec leaves it open, featuremaps gives these."""
    n, c, h, w = x.shape
    (t, b), (l, r) = pads
    oh = _out_len(h, kernel[0], strides[0], dils[0], t, b, ceil)
    ow = _out_len(w, kernel[1], strides[1], dils[1], l, r, ceil)
    y = np.empty((n, c, oh, ow), x.dtype)
    for i, j in np.ndindex(oh, ow):
        rows = i * strides[0] + np.arange(kernel[0]) * dils[0] - t
        cols = j * strides[1] + np.arange(kernel[1]) * dils[1] - l
        ri, ci = rows[(rows >= 0) & (rows < h)], cols[(cols >= 0) & (cols < w)]
        cells = x[:, :, ri][:, :, :, ci]  # (n, c, rows in the input, cols in the input)
        if kind == "max":
            y[:, :, i, j] = cells.max(axis=(2, 3)) if cells.size else -np.inf
            continue
        if include_pad:
            count = np.sum((rows >= -t) & (rows < h + b)) * np.sum((cols >= -l) & (cols < w + r))
        else:
            count = ri.size * ci.size
        y[:, :, i, j] = cells.sum(axis=(2, 3)) / count if count else np.nan
    return y


def _pairs_from(attrs, x_hw, kernel):
    """(pads as ((top, bottom), (left, right)), strides, dilations) from ONNX attributes."""
    strides, dils = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    auto = attrs.get("auto_pad", "NOTSET")
    if auto.startswith("SAME"):
        pads = tuple(_same_pads(n, k, s, d, auto) for n, k, s, d in zip(x_hw, kernel, strides, dils))
    elif auto == "VALID":
        pads = ((0, 0), (0, 0))
    else:
        p = attrs.get("pads", [0, 0, 0, 0])
        pads = ((p[0], p[2]), (p[1], p[3]))
    return pads, strides, dils


@st.composite
def same_dilated_case(draw):
    """SAME_UPPER / SAME_LOWER with a dilation > 1: onnxruntime refuses it for Conv and sizes its
    pools without the dilation, so the oracle is the spec's loop."""
    k = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    d = [draw(st.integers(1, 3)), draw(st.integers(2, 3))]
    s = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    auto = draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER"]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    return h, w, dict(kernel_shape=k, strides=s, dilations=d, auto_pad=auto)


def _loop_oracle(op, x, attrs, r):
    """(model inputs/initializers, loop result) for one Conv / MaxPool / AveragePool node."""
    kernel = attrs["kernel_shape"]
    pads, strides, dils = _pairs_from(attrs, x.shape[2:], kernel)
    if op == "Conv":
        g = attrs.get("group", 1)
        w = r.standard_normal((3 * g, x.shape[1] // g) + tuple(kernel))
        b = r.standard_normal(3 * g)
        return {"w": w, "b": b}, loop_conv(x, w, b, pads, strides, dils, g)
    ceil, inc = bool(attrs.get("ceil_mode", 0)), bool(attrs.get("count_include_pad", 0))
    return {}, loop_pool(x, "max" if op == "MaxPool" else "avg", kernel, pads, strides, dils, ceil, inc)


_EMPTY_WINDOWS = (3, 1, dict(kernel_shape=[1, 2], strides=[1, 1], dilations=[1, 2], auto_pad="SAME_UPPER"))


@settings(max_examples=40, deadline=None)
@given(same_dilated_case(), st.sampled_from(["Conv", "MaxPool", "AveragePool"]), st.integers(0, 2**16))
@example(_EMPTY_WINDOWS, "MaxPool", 0)  # every window's two taps fall in the padding: −inf
@example(_EMPTY_WINDOWS, "AveragePool", 0)  # and NaN (0 / 0)
def test_same_pads_with_dilation_match_a_loop_of_the_spec(case, op, seed):
    h, w, attrs = case
    r = rng(seed)
    x = r.standard_normal((2, 2, h, w))
    inits, want = _loop_oracle(op, x, attrs, r)
    node = oh.make_node(op, ["x"] + list(inits), ["y"], **attrs)
    got = run(make([node], {"x": x}, ["y"], inits, opset=19), {"x": x})
    assert got[0].shape == want.shape, (got[0].shape, want.shape)  # ceil(n / stride) per axis
    assert want.shape[2:] == (-(-h // attrs["strides"][0]), -(-w // attrs["strides"][1]))
    assert_close(got, [want], np.float64)


@settings(max_examples=40, deadline=None)
@given(st.one_of(conv_case().map(lambda c: ("Conv", c[3], c[4], dict(c[5]), c[0])),
                 pool_case().map(lambda c: ("Pool", c[0], c[1], dict(c[2]), 3))),
       st.sampled_from(["MaxPool", "AveragePool0", "AveragePool1"]), st.integers(0, 2**16))
def test_conv_and_pool_attributes_in_float64_match_a_loop(case, pool, seed):
    """The attributes the onnxruntime tests above draw, in float64 (onnxruntime has no float64
    Conv), at a float64 tolerance."""
    op, h, w, attrs, cin = case
    if op == "Pool":
        op = "AveragePool" if pool.startswith("Average") else "MaxPool"
        if op == "AveragePool":
            attrs["count_include_pad"] = int(pool[-1])
    r = rng(seed)
    x = r.standard_normal((2, cin, h, w))
    inits, want = _loop_oracle(op, x, attrs, r)
    node = oh.make_node(op, ["x"] + list(inits), ["y"], **attrs)
    assert_close(run(make([node], {"x": x}, ["y"], inits, opset=19), {"x": x}), [want], np.float64)


@pytest.mark.parametrize("op,attrs", [
    ("Conv", dict(kernel_shape=[3, 2], pads=[2, 0, 1, 1], strides=[2, 1], dilations=[1, 2], group=2)),
    ("MaxPool", dict(kernel_shape=[3, 3], pads=[2, 1, 0, 2], strides=[2, 3], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 2], pads=[1, 1, 2, 0], strides=[3, 2], ceil_mode=1, count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[2, 3], pads=[1, 2, 1, 0], strides=[2, 2], dilations=[2, 1], ceil_mode=1)),
])
def test_the_loop_oracles_agree_with_onnxruntime(op, attrs):
    """The loops above are themselves checked against onnxruntime where it has the kernels."""
    r = rng(15)
    x = r.standard_normal((2, 4, 8, 7)).astype(np.float32)
    inits, want = _loop_oracle(op, x.astype(np.float64), attrs, r)
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    model = make([oh.make_node(op, ["x"] + list(inits), ["y"], **attrs)], {"x": x}, ["y"], inits, opset=19)
    assert_close(ort_run(model, {"x": x}), [want.astype(np.float32)])


@st.composite
def conv1d_case(draw):
    g = draw(st.sampled_from([1, 2]))
    k, s, d = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    attrs = dict(kernel_shape=[k], strides=[s], dilations=[d], group=g, pads=[draw(st.integers(0, 3)),
                                                                              draw(st.integers(0, 3))])
    return g, draw(st.integers(d * (k - 1) + 1, 12)), attrs


@settings(max_examples=25, deadline=None)
@given(conv1d_case(), st.sampled_from(["Conv", "MaxPool", "AveragePool"]), st.integers(0, 2**16))
def test_1d_conv_and_pool_attributes_match_onnxruntime(case, op, seed):
    """(N, C, L) inputs: run as 2-D with H = 1 inside, NCL again at the output."""
    g, length, attrs = case
    r = rng(seed)
    x = r.standard_normal((2, 2 * g, length)).astype(np.float32)
    inits = {}
    if op == "Conv":
        inits["w"] = r.standard_normal((3 * g, 2) + tuple(attrs["kernel_shape"])).astype(np.float32)
    else:
        k = attrs["kernel_shape"][0]
        attrs = dict(attrs, pads=[min(p, k - 1) for p in attrs["pads"]], ceil_mode=seed % 2)
        del attrs["group"]
    check(make([oh.make_node(op, ["x"] + list(inits), ["y"], **attrs)], {"x": x}, ["y"], inits, opset=19), {"x": x})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pools(op):  # onnxruntime has float32 kernels only
    x = x4()
    check(make([oh.make_node(op, ["x"], ["y"])], {"x": x}, ["y"]), {"x": x})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_float64_and_opset8(dtype):
    x = x4((1, 2, 9, 8), dtype=dtype)
    node = oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], pads=[1, 0, 1, 1], strides=[2, 2])
    check(make([node], {"x": x}, ["y"], opset=8), {"x": x}, dtype)


# --- conv chains: element-wise, activations and norms on channels-last tensors ------------------
def conv_then(nodes, inits=None, opset=17, x=None, outputs=("y",)):
    """x → Conv (3 → 4 maps, NHWC inside) → `nodes` reading 'c'."""
    r = rng(3)
    x = x4((2, 3, 6, 5)) if x is None else x
    all_inits = {"w": r.standard_normal((4, 3, 3, 3)).astype(np.float32)}
    all_inits.update(inits or {})
    conv = oh.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])
    return make([conv] + nodes, {"x": x}, list(outputs), all_inits, opset), {"x": x}


C1 = rng(4).standard_normal((4, 1, 1)).astype(np.float32)  # a per-channel constant, as exporters write it
CASES = {
    "add_channel_const": ([oh.make_node("Add", ["c", "k"], ["y"])], {"k": C1}),
    "mul_nchw_const": ([oh.make_node("Mul", ["k", "c"], ["y"])], {"k": C1[None]}),
    "sub_scalar": ([oh.make_node("Sub", ["c", "k"], ["y"])], {"k": np.float32(0.5)}),
    "div_row": ([oh.make_node("Div", ["c", "k"], ["y"])], {"k": rng(5).uniform(1, 2, 5).astype(np.float32)}),
    "sum_max_min": ([oh.make_node("Relu", ["c"], ["r"]), oh.make_node("Sum", ["c", "r", "k"], ["s"]),
                     oh.make_node("Max", ["s", "c"], ["m"]), oh.make_node("Min", ["m", "r", "k"], ["y"])], {"k": C1}),
    "relu": ([oh.make_node("Relu", ["c"], ["y"])], {}),
    "leaky": ([oh.make_node("LeakyRelu", ["c"], ["y"], alpha=0.3)], {}),
    "prelu": ([oh.make_node("PRelu", ["c", "k"], ["y"])], {"k": C1}),
    "sigmoid_tanh": ([oh.make_node("Sigmoid", ["c"], ["s"]), oh.make_node("Tanh", ["s"], ["y"])], {}),
    "clip13": ([oh.make_node("Clip", ["c", "lo", "hi"], ["y"])], {"lo": np.float32(0), "hi": np.float32(1.5)}),
    "clip13_hi_only": ([oh.make_node("Clip", ["c", "", "hi"], ["y"])], {"hi": np.float32(0.5)}),
    "hard_sigmoid": ([oh.make_node("HardSigmoid", ["c"], ["y"], alpha=0.3, beta=0.4)], {}),
    "hard_swish": ([oh.make_node("HardSwish", ["c"], ["y"])], {}),
    "softmax13_axis1": ([oh.make_node("Softmax", ["c"], ["y"], axis=1)], {}),
    "logsoftmax13_last": ([oh.make_node("LogSoftmax", ["c"], ["y"])], {}),
    "batchnorm15": ([oh.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=1e-3)],
                    {"g": rng(6).uniform(0.5, 2, 4).astype(np.float32), "b": C1.ravel(),
                     "m": C1.ravel() * 0.3, "v": rng(7).uniform(0.5, 2, 4).astype(np.float32)}),
    "batchnorm_params_from_nodes": ([oh.make_node("Identity", ["g"], ["g2"]), oh.make_node("Identity", ["m"], ["m2"]),
                                     oh.make_node("BatchNormalization", ["c", "g2", "b", "m2", "v"], ["y"])],
                                    {"g": rng(6).uniform(0.5, 2, 4).astype(np.float32), "b": C1.ravel(),
                                     "m": C1.ravel() * 3, "v": rng(7).uniform(0.5, 2, 4).astype(np.float32)}),
    "instance_norm": ([oh.make_node("InstanceNormalization", ["c", "g", "b"], ["y"], epsilon=1e-4)],
                      {"g": rng(6).uniform(0.5, 2, 4).astype(np.float32), "b": C1.ravel()}),
    "lrn_odd": ([oh.make_node("LRN", ["c"], ["y"], size=3, alpha=0.1, beta=0.6, bias=2.0)], {}),
    "concat_channels": ([oh.make_node("Relu", ["c"], ["r"]), oh.make_node("Concat", ["c", "r"], ["y"], axis=1)], {}),
    "concat_mixed": ([oh.make_node("Concat", ["c", "k"], ["y"], axis=-1)],
                     {"k": rng(8).standard_normal((2, 4, 6, 2)).astype(np.float32)}),
    "flatten": ([oh.make_node("Flatten", ["c"], ["y"])], {}),
    "flatten_axis2": ([oh.make_node("Flatten", ["c"], ["y"], axis=-2)], {}),
    "reshape_0_-1": ([oh.make_node("Reshape", ["c", "s"], ["y"])], {"s": np.array([0, -1, 5], np.int64)}),
    "transpose": ([oh.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1])], {}),
    "shape_gather": ([oh.make_node("Shape", ["c"], ["s"]), oh.make_node("Gather", ["s", "i"], ["y"])],
                     {"i": np.array([1, -1], np.int64)}),
    "gather_axis1": ([oh.make_node("Gather", ["c", "i"], ["y"], axis=1)], {"i": np.array([[3, 0], [1, 1]], np.int64)}),
    "slice13_neg_step": ([oh.make_node("Slice", ["c", "st", "en", "ax", "sp"], ["y"])],
                         {"st": np.array([-1, 4], np.int64), "en": np.array([-100, 0], np.int64),
                          "ax": np.array([1, 2], np.int64), "sp": np.array([-2, -1], np.int64)}),
    "split13": ([oh.make_node("Split", ["c", "sp"], ["y", "z"], axis=1)], {"sp": np.array([1, 3], np.int64)}),
    "squeeze_unsqueeze13": ([oh.make_node("Unsqueeze", ["c", "ax"], ["u"]),
                             oh.make_node("Squeeze", ["u", "ax"], ["y"])], {"ax": np.array([-1, 0], np.int64)}),
    "pad_hw_constant": ([oh.make_node("Pad", ["c", "p", "v"], ["y"])],
                        {"p": np.array([0, 0, 1, 2, 0, 0, 2, 0], np.int64), "v": np.float32(-1.5)}),
    "pad_reflect": ([oh.make_node("Pad", ["c", "p"], ["y"], mode="reflect")],
                    {"p": np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64)}),
    "pad_edge_crop": ([oh.make_node("Pad", ["c", "p"], ["y"], mode="edge")],
                      {"p": np.array([0, 1, -1, 2, 0, 0, 1, -2], np.int64)}),
    "resize_nearest_sizes": ([oh.make_node("Resize", ["c", "", "", "sz"], ["y"], mode="nearest")],
                             {"sz": np.array([2, 4, 12, 15], np.int64)}),
    "resize_linear_half_pixel": ([oh.make_node("Resize", ["c", "", "sc"], ["y"], mode="linear")],
                                 {"sc": np.array([1, 1, 2, 3], np.float32)}),
    "resize_linear_align": ([oh.make_node("Resize", ["c", "", "", "sz"], ["y"], mode="linear",
                                          coordinate_transformation_mode="align_corners")],
                            {"sz": np.array([2, 4, 9, 7], np.int64)}),
    "resize_nearest_asym_floor": ([oh.make_node("Resize", ["c", "", "", "sz"], ["y"], mode="nearest",
                                                coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
                                  {"sz": np.array([2, 4, 3, 11], np.int64)}),
    "cast_identity": ([oh.make_node("Cast", ["c"], ["d"], to=TensorProto.DOUBLE),
                       oh.make_node("Identity", ["d"], ["y"])], {}),
    "dropout12_mask": ([oh.make_node("Dropout", ["c"], ["y", "mask"])], {}),
    "matmul": ([oh.make_node("MatMul", ["c", "k"], ["y"])], {"k": rng(9).standard_normal((5, 3)).astype(np.float32)}),
    "reduce_mean17_hw": ([oh.make_node("ReduceMean", ["c"], ["y"], axes=[2, 3])], {}),
    "reduce_max17_c_drop": ([oh.make_node("ReduceMax", ["c"], ["y"], axes=[1], keepdims=0)], {}),
    "reduce_sum13_all": ([oh.make_node("ReduceSum", ["c"], ["y"])], {}),
    "reduce_sum13_axes_input": ([oh.make_node("ReduceSum", ["c", "ax"], ["y"], keepdims=1)],
                                {"ax": np.array([-1, 1], np.int64)}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ops_after_a_conv_match_onnxruntime(name):
    nodes, inits = CASES[name]
    outputs = [o for o in nodes[-1].output]
    model, feeds = conv_then(nodes, inits, outputs=outputs)
    check(model, feeds)  # float32 rtol: cast_identity's values are float32 conv sums


def lrn_loop(x, size, alpha, beta, bias):
    """ONNX LRN by its spec, as a loop over channels: channels c − ⌊(size−1)/2⌋ … c + ⌈(size−1)/2⌉."""
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        sq = (x[:, max(0, c - lo):c + hi + 1].astype(np.float64) ** 2).sum(axis=1)
        y[:, c] = x[:, c] / (bias + alpha / size * sq) ** beta
    return y


def test_lrn_even_size_matches_a_loop():
    """onnxruntime refuses an even LRN size, and onnx's reference evaluator loops over the batch axis
    instead of the channels (onnx 1.23, op_lrn.py), so the oracle here is the spec as a loop."""
    model, feeds = conv_then([oh.make_node("Identity", ["c"], ["c0"]),
                              oh.make_node("LRN", ["c"], ["y"], size=2, alpha=0.2, bias=1.5)], outputs=["c0", "y"])
    c, y = run(model, feeds)
    assert_close([y], [lrn_loop(c, 2, 0.2, 0.75, 1.5)])


def test_channels_last_chain_does_not_transpose_weights_twice():
    from featuremaps.onnx import prepare
    model, feeds = conv_then([oh.make_node("Relu", ["c"], ["y"])])
    prog = prepare(model)
    a, b = prog.run(feeds)[0], prog.run(feeds)[0]
    np.testing.assert_array_equal(a, b)  # one path against itself: bit-identical
    assert list(prog._cache) == [("w", "hwio")]


def test_tensors_dropped_after_their_last_reader_stay_when_they_are_outputs():
    """run frees each tensor after its last reader, except graph outputs; one node reading a
    tensor twice, and a tensor read again after another output was taken, still see it."""
    from featuremaps.onnx import prepare
    nodes = [oh.make_node("Relu", ["c"], ["r"]), oh.make_node("Add", ["r", "r"], ["s"]),
             oh.make_node("Mul", ["s", "c"], ["y"]), oh.make_node("Sigmoid", ["r"], ["z"])]
    model, feeds = conv_then(nodes, outputs=["r", "y", "z"])
    prog = prepare(model)
    assert "c" in prog._dead[[n.output[0] for n, _, _ in prog.plan].index("y")]  # freed after Mul, its last reader
    assert not any("r" in dead for dead in prog._dead)  # an output: never freed
    r, y, z = check(model, feeds)
    c = ort_run(conv_then([], outputs=["c"])[0], feeds)[0]
    assert_close([y, z], [2 * np.maximum(c, 0) * c, 1 / (1 + np.exp(-np.maximum(c, 0)))])
    again = prog.run(feeds)
    for a, b in zip(again, prog.run(feeds)):  # one path against itself: bit-identical
        np.testing.assert_array_equal(a, b)


def test_batch_norm_affine_is_cached_per_node_and_dtype():
    from featuremaps.onnx import prepare
    model, feeds = conv_then(*CASES["batchnorm15"])
    prog = prepare(model)
    prog.run(feeds)
    prog.run(feeds)
    assert sorted(k[1].split(":")[0] for k in prog._cache) == ["bn_affine", "hwio"]


# --- old opsets' attribute forms ----------------------------------------------------------------
OLD = {
    "softmax11_coerce2d": (11, [oh.make_node("Softmax", ["c"], ["y"], axis=1)], {}),
    "logsoftmax11_axis2": (11, [oh.make_node("LogSoftmax", ["c"], ["y"], axis=2)], {}),
    "softmax7_default": (7, [oh.make_node("Softmax", ["c"], ["y"])], {}),
    "clip6_attrs": (7, [oh.make_node("Clip", ["c"], ["y"], min=-0.5, max=0.7)], {}),
    "batchnorm7": (7, [oh.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"])],
                   {k: rng(i).uniform(0.5, 1.5, 4).astype(np.float32) for i, k in enumerate("gbmv")}),
    "split11_attr": (11, [oh.make_node("Split", ["c"], ["y", "z"], axis=2, split=[2, 4])], {}),
    "split18_num_outputs": (18, [oh.make_node("Split", ["c"], ["y", "z"], axis=3, num_outputs=2)], {}),
    "slice9_attrs": (9, [oh.make_node("Slice", ["c"], ["y"], starts=[1, -3], ends=[3, 1000], axes=[1, 3])], {}),
    "squeeze11_attrs": (11, [oh.make_node("Unsqueeze", ["c"], ["u"], axes=[0, 5]),
                             oh.make_node("Squeeze", ["u"], ["y"], axes=[0, -1])], {}),
    "pad2_attrs": (7, [oh.make_node("Pad", ["c"], ["y"], pads=[0, 0, 1, 0, 0, 0, 0, 2], value=0.25)], {}),
    "pad18_axes": (18, [oh.make_node("Pad", ["c", "p", "", "ax"], ["y"], mode="reflect")],
                   {"p": np.array([1, 2, 2, 0], np.int64), "ax": np.array([3, 2], np.int64)}),
    "upsample9": (9, [oh.make_node("Upsample", ["c", "s"], ["y"], mode="nearest")],
                  {"s": np.array([1, 1, 2, 3], np.float32)}),
    "resize10": (10, [oh.make_node("Resize", ["c", "s"], ["y"], mode="linear")],
                 {"s": np.array([1, 1, 2, 2], np.float32)}),
    "dropout7": (7, [oh.make_node("Dropout", ["c"], ["y"], ratio=0.3)], {}),
    "reshape14_allowzero": (14, [oh.make_node("Reshape", ["c", "s"], ["y"], allowzero=1)],
                            {"s": np.array([2, 4, 30], np.int64)}),
    "shape15_start_end": (15, [oh.make_node("Shape", ["c"], ["y"], start=1, end=-1)], {}),
    "reduce_mean18_axes_input": (18, [oh.make_node("ReduceMean", ["c", "ax"], ["y"])],
                                 {"ax": np.array([3, 2], np.int64)}),
    "reduce_min18_noop": (18, [oh.make_node("ReduceMin", ["c"], ["y"], noop_with_empty_axes=1)], {}),
    "reduce_max18_all_drop": (18, [oh.make_node("ReduceMax", ["c"], ["y"], keepdims=0)], {}),
}


@pytest.mark.parametrize("name", sorted(OLD))
def test_old_opset_forms_match_onnxruntime(name):
    opset, nodes, inits = OLD[name]
    model, feeds = conv_then(nodes, inits, opset=opset, outputs=list(nodes[-1].output))
    check(model, feeds)


# --- dense and constants ------------------------------------------------------------------------
@pytest.mark.parametrize("ta,tb,alpha,beta,c_shape", [(0, 0, 1.0, 1.0, (5,)), (1, 0, 0.5, 2.0, (3, 5)),
                                                       (0, 1, 1.0, 0.0, (1, 5)), (1, 1, -1.5, 0.3, None)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm(ta, tb, alpha, beta, c_shape, dtype):
    r = rng(10)
    a = r.standard_normal((4, 3) if ta else (3, 4)).astype(dtype)
    b = r.standard_normal((5, 4) if tb else (4, 5)).astype(dtype)
    inits = {"b": b}
    ins = ["a", "b"]
    if c_shape is not None:
        inits["c"] = r.standard_normal(c_shape).astype(dtype)
        ins.append("c")
    node = oh.make_node("Gemm", ins, ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)
    check(make([node], {"a": a}, ["y"], inits, opset=13), {"a": a}, dtype)


def test_matmul_batched_float64():
    r = rng(11)
    a, b = r.standard_normal((2, 3, 4)), r.standard_normal((4, 5))
    check(make([oh.make_node("MatMul", ["a", "b"], ["y"])], {"a": a}, ["y"], {"b": b}), {"a": a}, np.float64)


def test_constants_and_shape_ops():
    x = x4((2, 3, 4, 5))
    val = numpy_helper.from_array(np.array([1.5], np.float32))
    nodes = [oh.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([2, -1], np.int64))),
             oh.make_node("Shape", ["x"], ["s"]),
             oh.make_node("ConstantOfShape", ["s"], ["f"], value=val),
             oh.make_node("Add", ["x", "f"], ["xf"]),
             oh.make_node("Constant", [], ["sc"], value_float=0.5),
             oh.make_node("Mul", ["xf", "sc"], ["m"]),
             oh.make_node("Reshape", ["m", "k"], ["y"])]
    check(make(nodes, {"x": x}, ["y", "s"], opset=13), {"x": x})


def test_integer_div_truncates_toward_zero():
    a = np.array([-7, 7, -6, 5], np.int64)
    model = make([oh.make_node("Div", ["a", "b"], ["y"])], {"a": a}, ["y"], {"b": np.array([2, -2, 4, 3], np.int64)})
    check(model, {"a": a})


# --- torch exports ------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


from tests.torch_nets import TORCH_NETS, ResNetLike, build, export  # noqa: E402
from tests.onnx_oracle import ort_run  # noqa: E402


@pytest.mark.parametrize("dynamo,opset", [(False, 11), (False, 17), (True, 18)])
@pytest.mark.parametrize("name", sorted(TORCH_NETS))
def test_torch_exported_nets_match_onnxruntime(name, dynamo, opset, tmp_path):
    """Both exporters: the legacy one (BatchNorm folded) and dynamo (local functions, BatchNorm
    nodes, weights in an external `.onnx.data` file that `run` reads from the path)."""
    module, shape = build(name)
    x = rng(12).standard_normal(shape).astype(np.float32)
    path = export(module, tmp_path / f"{name}.onnx", x, dynamo=dynamo, opset=opset)
    assert (tmp_path / f"{name}.onnx.data").exists() == dynamo
    got = run(path, {"x": x})
    assert_close(got, ort_run(path, {"x": x}))
    with torch.no_grad():  # and torch itself agrees (a second, independent oracle)
        assert_close(got, [module(torch.from_numpy(x)).numpy()])


def test_errors_name_the_node():
    x = x4((1, 3, 4, 4))
    model = make([oh.make_node("Conv", ["x", "w"], ["y"], name="bad_conv")], {"x": x}, ["y"],
                 {"w": np.zeros((2, 5, 3, 3), np.float32)})
    with pytest.raises(ONNXError, match=r"node 'bad_conv' \(Conv\).*channels"):
        run(model, {"x": x})
    with pytest.raises(ValueError, match=r"input 'x' must have shape \(1, 3, 4, 4\); received \(3, 4, 4\)"):
        run(model, {"x": x[0]})
    with pytest.raises(ValueError, match=r"missing \['x'\]"):
        run(model, {})


def test_local_functions_are_inlined():
    """The dynamo exporter writes local functions; run inlines them (onnx.inliner) first."""
    fn = oh.make_function("local", "ScaledRelu", ["a", "s"], ["b"],
                          [oh.make_node("Relu", ["a"], ["r"]), oh.make_node("Mul", ["r", "s"], ["b"])],
                          [oh.make_opsetid("", 17)])
    model, feeds = conv_then([oh.make_node("ScaledRelu", ["c", "k"], ["y"], domain="local")], {"k": C1})
    model.functions.append(fn)
    model.opset_import.append(oh.make_opsetid("local", 1))
    check(model, feeds)


def test_a_conv_net_stays_channels_last_between_its_ends(monkeypatch, tmp_path):
    """ResNet-like export: one NCHW → NHWC conversion (the input) and one NHWC → NCHW (before
    Flatten), although it has 8 convs (BatchNorm folded in by the exporter), residual Adds and pools
    in between."""
    from featuremaps.onnx import _layout
    counts = {"to_nhwc": 0, "to_nchw": 0}
    real_last, real_nchw = _layout.Value.channels_last, _layout.Value.nchw

    def channels_last(self):
        counts["to_nhwc"] += not self.nhwc
        return real_last(self)

    def nchw(self):
        counts["to_nchw"] += self.nhwc
        return real_nchw(self)

    monkeypatch.setattr(_layout.Value, "channels_last", channels_last)
    monkeypatch.setattr(_layout.Value, "nchw", nchw)
    torch.manual_seed(0)
    x = rng(13).standard_normal((1, 3, 32, 32)).astype(np.float32)
    model = onnx.load(export(ResNetLike().eval(), tmp_path / "r.onnx", x, dynamo=False))
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 8
    run(model, {"x": x})
    assert counts == {"to_nhwc": 1, "to_nchw": 1}, counts


@pytest.mark.parametrize("name,dynamo", [(n, False) for n in sorted(TORCH_NETS)] + [
    (n, True) for n in ("densenet_block", "mobilenetv2_block", "resnet_like")])  # BatchNorm nodes, ReduceMean
def test_torch_exported_nets_in_float64_match_torch(name, dynamo, tmp_path):
    """The same nets exported in float64: onnxruntime lacks float64 Conv kernels, so the oracle is
    torch in float64, at a float64 tolerance. (Every net by the legacy exporter; by dynamo, the
    nets whose dynamo graphs differ in kind from the legacy ones.)"""
    module, shape = build(name, dtype=torch.float64)
    x = rng(14).standard_normal(shape)
    got = run(export(module, tmp_path / "m.onnx", x, dynamo=dynamo), {"x": x})
    with torch.no_grad():
        assert_close(got, [module(torch.from_numpy(x)).numpy()], np.float64)


@st.composite
def conv_transpose_case(draw):
    g = draw(st.sampled_from([1, 2]))
    cin, cout_g = g * draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    s = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    d = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    pads = [draw(st.integers(0, ki - 1)) for ki in k + k]
    out_pad = [draw(st.integers(0, si - 1)) for si in s]  # onnxruntime: output_padding < stride
    return cin, cout_g, dict(kernel_shape=k, strides=s, dilations=d, pads=pads, output_padding=out_pad, group=g)


@settings(max_examples=40, deadline=None)
@given(conv_transpose_case(), st.integers(0, 2**16))
def test_conv_transpose_attributes_match_onnxruntime(case, seed):
    cin, cout_g, attrs = case
    r = rng(seed)
    x = r.standard_normal((2, cin, 4, 3)).astype(np.float32)
    w = r.standard_normal((cin, cout_g) + tuple(attrs["kernel_shape"])).astype(np.float32)
    node = oh.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    check(make([node], {"x": x}, ["y"], {"w": w}, opset=11), {"x": x})
