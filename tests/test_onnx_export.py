"""featuremaps.onnx.export: every zoo model, graph models and every layer kind written to ONNX, checked
with `onnx.checker.check_model(full_check=True)` and run by onnxruntime (the oracle) against
featuremaps' own forward pass on the same input (NHWC here, NCHW in the file)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import featuremaps as fm  # noqa: E402
from featuremaps import nn, tables  # noqa: E402
from featuremaps.nn.module import layer_classes  # noqa: E402
from featuremaps.onnx import ONNXError, export  # noqa: E402
from featuremaps.onnx._export_layers import CONVERTERS, NO_ONNX_FORM  # noqa: E402
from tests.onnx_oracle import ort_run  # noqa: E402

RTOL32 = 1e-4  # the float32 tolerance; the sums here have ≤ ~1,200 terms, K·2**-24 < 1e-4
RTOL64 = 1e-10  # float64: K·2**-53 for K ≤ 10⁴ terms is ~1e-12
OPSETS = (13, 17, 21)


# --- helpers ----------------------------------------------------------------------------------------
def randomize(model, seed: int = 0):
    """Well-scaled random weights (variance 1/fan-in), biases and norm parameters away from their
    initial values, and trained-looking BatchNorm statistics (nonzero means, variances ≠ 1)."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        a = p.data
        if a.ndim >= 2:
            fan = int(np.prod(a.shape[:-1]))
            v = rng.standard_normal(a.shape) / np.sqrt(fan)
        elif name.endswith("bias"):
            v = rng.normal(0.0, 0.3, a.shape)
        else:  # BatchNorm's γ, PReLU's slopes, Subsampling2D's coefficients
            v = rng.uniform(0.3, 1.5, a.shape)
        p.data = v.astype(a.dtype)
    for _, m in model.named_modules():
        if getattr(m, "connections", None) is not None:
            m.weight.data = m.weight.data * m.connections[None, None]
        if isinstance(m, nn.BatchNorm2D):
            m.running_mean = rng.normal(0.0, 0.5, m.num_features).astype(m.running_mean.dtype)
            m.running_var = rng.uniform(0.5, 2.0, m.num_features).astype(m.running_var.dtype)
    return model.eval()


def _array(y):
    return np.asarray(getattr(y, "data", y))


def forward(model, xs: dict) -> list[np.ndarray]:
    with fm.no_grad():
        y = model(xs["input"]) if isinstance(model, nn.Sequential) else model(xs)
    return [_array(v) for v in (y if isinstance(y, tuple) else (y,))]


def inputs_for(model, n: int = 2, seed: int = 1, dtype=np.float32, input_shape=None) -> dict:
    rng = np.random.default_rng(seed)
    shapes = model.input_shapes if isinstance(model, nn.Graph) else {"input": input_shape or model.input_shape}
    return {k: rng.standard_normal((n,) + tuple(s)).astype(dtype) for k, s in shapes.items()}


def to_onnx_layout(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a  # (n, h, w, c) → (n, c, h, w)


def assert_close(got, ref, rtol):
    """rtol from the dtype; atol = rtol × the output's largest magnitude (a value near 0 that is a sum of
    large terms carries the terms' rounding, not its own)."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
    scale = float(np.max(np.abs(ref))) if ref.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * max(scale, 1e-30))


def check_export(model, tmp_path, *, opset: int = 17, n: int = 2, dtype=np.float32, name: str = "m.onnx", **kw):
    """Export, run the full checker, run onnxruntime and compare with featuremaps; returns the ModelProto."""
    path = export(model, tmp_path / name, opset=opset, **kw)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    xs = inputs_for(model, n=n, dtype=dtype, input_shape=kw.get("input_shape"))
    got = ort_run(path, {k: to_onnx_layout(v) for k, v in xs.items()})
    ref = forward(model, xs)
    assert [o.name for o in proto.graph.output] == list(model.output_names)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert_close(g.transpose(0, 2, 3, 1) if r.ndim == 4 else g, r, RTOL64 if dtype == np.float64 else RTOL32)
    return proto


def seq(layers, input_shape):
    return randomize(nn.Sequential(layers, input_shape=input_shape))


# --- the zoo ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", fm.models.names())
def test_every_zoo_model_runs_in_onnxruntime_as_in_featuremaps(name, opset, tmp_path):
    model = randomize(fm.models.get(name, rng=0), seed=len(name))
    proto = check_export(model, tmp_path, opset=opset)
    layer_names = [n for n, layer in model.named_children() if not isinstance(layer, nn.Dropout)]
    onnx_names = {n.name for n in proto.graph.node}
    assert set(layer_names) <= onnx_names  # every featuremaps node keeps its name
    assert proto.graph.input[0].name == "input" and proto.graph.output[0].name == model.output_names[0]


def test_lenet5_keeps_its_table_and_trainable_pooling(tmp_path):
    model = randomize(fm.models.get("lenet5", rng=0, scaled_tanh=True))
    proto = check_export(model, tmp_path)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    w = inits["C3.weight"]  # (16, 6, 5, 5) OIHW
    assert w.shape == (16, 6, 5, 5)
    absent = ~tables.lenet5_c3().T  # (out, in)
    assert np.all(w[absent] == 0) and np.all(np.abs(w[~absent]).sum(axis=(1, 2)) > 0)
    np.testing.assert_array_equal(w, model.C3.weight.data.transpose(3, 2, 0, 1))  # one path: bit-identical
    ops = [n.op_type for n in proto.graph.node if n.name.split("/")[0] == "S2"]
    assert ops == ["AveragePool", "Mul", "Add"]
    assert any("C3: connection table" in line for line in model.export_log)


def test_flatten_of_maps_is_a_transpose_to_nhwc_then_flatten_and_logged(tmp_path):
    model = randomize(fm.models.get("lenet", rng=0))
    proto = check_export(model, tmp_path)
    nodes = {n.name: n for n in proto.graph.node}
    pre = nodes["flatten/to_nhwc"]
    assert pre.op_type == "Transpose" and list(pre.attribute[0].ints) == [0, 2, 3, 1]
    assert nodes["flatten"].op_type == "Flatten" and nodes["flatten"].input[0] == "flatten/to_nhwc"
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(
        next(t for t in proto.graph.initializer if t.name == "fc1.weight")), model.fc1.weight.data)
    log = model.export_log
    assert any(line.startswith("flatten: Transpose") and "(h, w, c)" in line for line in log)
    assert any(line.startswith("conv1: weight HWIO (5, 5, 1, 20) → OIHW (20, 1, 5, 5)") for line in log)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["featuremaps.export_log"].splitlines() == log


def test_batch_is_symbolic_unless_given(tmp_path):
    model = randomize(fm.models.get("cnn", rng=0))
    sym = onnx.load(str(export(model, tmp_path / "a.onnx")))
    dims = sym.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    for n in (1, 3):
        x = inputs_for(model, n=n)
        got = ort_run(tmp_path / "a.onnx", {"input": to_onnx_layout(x["input"])})[0]
        assert_close(got, forward(model, x)[0], RTOL32)
    fixed = onnx.load(str(export(model, tmp_path / "b.onnx", batch=4)))
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert [d.dim_value for d in fixed.graph.output[0].type.tensor_type.shape.dim] == [4, 10]


def test_float64_model_is_exported_in_float64(tmp_path):
    """(onnxruntime's CPU Conv has no float64 kernel, so the model is a vector one.)"""
    model = seq([("fc1", nn.Dense(6, 5)), ("bn", nn.BatchNorm2D(5)), ("act", nn.Tanh()), ("fc2", nn.Dense(5, 3)),
                 ("p", nn.Softmax())], (6,)).astype(np.float64)
    proto = check_export(model, tmp_path, dtype=np.float64)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


# --- graph models -------------------------------------------------------------------------------------
def residual():
    r = np.random.default_rng(0)
    return nn.Graph({"image": (8, 8, 3)}, [
        ("stem", nn.Conv2D(3, 8, 3, padding=1, rng=r), "image"),
        ("a", nn.Conv2D(8, 8, 3, stride=2, padding="same", bias=False, rng=r), "stem"),
        ("a_bn", nn.BatchNorm2D(8), "a"), ("a_relu", nn.ReLU(), "a_bn"),
        ("b", nn.Conv2D(8, 8, 3, padding=1, bias=False, rng=r), "a_relu"), ("b_bn", nn.BatchNorm2D(8), "b"),
        ("proj", nn.Conv2D(8, 8, 1, stride=2, rng=r), "stem"),
        ("sum", nn.Add(), ["b_bn", "proj"]), ("out", nn.ReLU(), "sum"),
        ("gap", nn.GlobalAvgPool2D(), "out"), ("fc", nn.Dense(8, 5, rng=r), "gap")], "fc")


def dense_block():
    r = np.random.default_rng(1)
    return nn.Graph({"image": (6, 6, 3)}, [
        ("c1", nn.Conv2D(3, 4, 3, padding=1, rng=r), "image"),
        ("cat1", nn.Concatenate(), ["image", "c1"]),
        ("c2", nn.Conv2D(7, 4, 3, padding=1, rng=r), "cat1"),
        ("cat2", nn.Concatenate(axis=3), ["image", "c1", "c2"]),
        ("pool", nn.AvgPool2D(2), "cat2"), ("flat", nn.Flatten(), "pool"), ("fc", nn.Dense(99, 3, rng=r), "flat")],
        "fc")


def multi_output():
    r = np.random.default_rng(2)
    return nn.Graph({"image": (8, 8, 2)}, [
        ("trunk", nn.Conv2D(2, 6, 3, rng=r), "image"), ("act", nn.Tanh(), "trunk"),
        ("maps", nn.Conv2D(6, 4, 1, rng=r), "act"),
        ("drop", nn.Dropout(0.3), "act"),
        ("gmp", nn.GlobalMaxPool2D(), "drop"), ("fc", nn.Dense(6, 3, rng=r), "gmp"), ("probs", nn.Softmax(), "fc")],
        ["maps", "probs", "drop"])


def channel_shuffle():
    r = np.random.default_rng(3)
    return nn.Graph({"image": (5, 5, 4)}, [
        ("gconv", nn.Conv2D(4, 8, 1, groups=2, rng=r), "image"),
        ("split", nn.Reshape((5, 5, 2, 4)), "gconv"), ("swap", nn.Transpose((0, 1, 3, 2)), "split"),
        ("shuffle", nn.Reshape((5, 5, 8)), "swap"),
        ("dw", nn.Conv2D(8, 8, 3, padding=1, groups=8, rng=r), "shuffle"), ("bn", nn.BatchNorm2D(8), "dw"),
        ("act", nn.ReLU6(), "bn")], "act")


def inception():
    r = np.random.default_rng(4)
    return nn.Graph({"image": (7, 7, 3)}, [
        ("b1", nn.Conv2D(3, 2, 1, rng=r), "image"),
        ("b3", nn.Conv2D(3, 3, 3, padding="same", dilation=2, rng=r), "image"),
        ("bp", nn.MaxPool2D(3, stride=1, padding=1), "image"),
        ("cat", nn.Concatenate(), ["b1", "b3", "bp"]),
        ("pool", nn.MaxPool2D(3, stride=2, ceil_mode=True), "cat"),
        ("up", nn.Upsample(scale_factor=2, mode="bilinear"), "pool"),
        ("pad", nn.Pad(1, mode="reflect"), "up"), ("hs", nn.HardSwish(), "pad")], "hs")


def two_inputs():
    r = np.random.default_rng(5)
    return nn.Graph({"image": (6, 6, 3), "meta": (4,)}, [
        ("conv", nn.Conv2D(3, 4, 3, rng=r), "image"), ("gap", nn.GlobalAvgPool2D(), "conv"),
        ("embed", nn.Dense(4, 4, rng=r), "meta"),
        ("mix", nn.Multiply(), ["gap", "embed", "gap"]), ("avg", nn.Average(), ["mix", "embed"]),
        ("max", nn.Maximum(), ["avg", "gap"]), ("fc", nn.Dense(4, 2, rng=r), "max")], "fc")


def nested():
    r = np.random.default_rng(6)
    block = nn.Sequential([("conv", nn.Conv2D(4, 4, 3, padding=1, rng=r)), ("bn", nn.BatchNorm2D(4)),
                           ("act", nn.PReLU(4))])
    return nn.Graph({"image": (6, 6, 4)}, [("block", block, "image"), ("sum", nn.Add(), ["block", "image"])], "sum")


GRAPHS = {"residual": residual, "dense_block": dense_block, "multi_output": multi_output,
          "channel_shuffle": channel_shuffle, "inception": inception, "two_inputs": two_inputs, "nested": nested}


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("build", GRAPHS.values(), ids=GRAPHS.keys())
def test_graph_models_run_in_onnxruntime_as_in_featuremaps(build, opset, tmp_path):
    check_export(randomize(build()), tmp_path, opset=opset)


def test_channel_shuffle_converts_layout_once_each_way(tmp_path):
    model = randomize(channel_shuffle())
    proto = check_export(model, tmp_path)
    ops = [(n.name, n.op_type) for n in proto.graph.node]
    assert ops == [("gconv", "Conv"), ("split/to_nhwc", "Transpose"), ("split", "Reshape"), ("swap", "Transpose"),
                   ("shuffle", "Reshape"), ("dw/to_nchw", "Transpose"), ("dw", "Conv"),
                   ("bn", "BatchNormalization"), ("act", "Clip")]
    conv = next(n for n in proto.graph.node if n.name == "gconv")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}["group"] == 2


def test_nested_and_aliased_names(tmp_path):
    proto = check_export(randomize(nested()), tmp_path)
    assert [n.name for n in proto.graph.node] == ["block.conv", "block.bn", "block.act", "sum"]
    assert {"block.conv.weight", "block.act.weight"} <= {t.name for t in proto.graph.initializer}
    mo = randomize(multi_output())
    proto = check_export(mo, tmp_path, name="mo.onnx")
    drop = next(n for n in proto.graph.node if n.output[0] == "drop")  # a left-out Dropout as an output
    assert drop.op_type == "Identity" and "Dropout" not in {n.op_type for n in proto.graph.node}
    assert any("drop: Dropout left out" in line for line in mo.export_log)


# --- every layer kind, one at a time ------------------------------------------------------------------
MAPS, VEC = (6, 6, 4), (4,)
LAYER_CASES = [
    ("conv", nn.Conv2D(4, 5, 3), MAPS),
    ("conv-strided-same", nn.Conv2D(4, 6, (3, 2), stride=(2, 1), padding="same", dilation=(1, 2)), MAPS),
    ("conv-full-grouped", nn.Conv2D(4, 6, 2, padding="full", groups=2, bias=False), MAPS),
    ("conv-asymmetric-pads", nn.Conv2D(4, 4, 3, padding=((0, 2), (1, 0)), groups=4), MAPS),
    ("conv-table", nn.Conv2D(4, 3, 3, connections=[[1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 1]]), MAPS),
    ("zeropad", nn.ZeroPad2D(((1, 0), (2, 3))), MAPS),
    ("maxpool", nn.MaxPool2D(2), MAPS),
    ("maxpool-ceil-pad-dilated", nn.MaxPool2D(3, stride=2, padding=1, ceil_mode=True, dilation=(1, 2)), (7, 8, 4)),
    ("avgpool-pad", nn.AvgPool2D(3, stride=2, padding=1), MAPS),
    ("avgpool-exclude-pad", nn.AvgPool2D(3, stride=2, padding=(1, 0), count_include_pad=False), (7, 6, 4)),
    ("avgpool-ceil", nn.AvgPool2D(2, stride=2, ceil_mode=True), (7, 7, 4)),
    ("gap", nn.GlobalAvgPool2D(), MAPS), ("gmp", nn.GlobalMaxPool2D(), MAPS),
    ("subsampling", nn.Subsampling2D(4), MAPS), ("subsampling3", nn.Subsampling2D(4, kernel_size=3), MAPS),
    ("dense", nn.Dense(4, 3), VEC), ("dense-nobias", nn.Dense(4, 3, bias=False), VEC),
    ("flatten-maps", nn.Flatten(), MAPS), ("flatten-vec", nn.Flatten(), VEC),
    ("relu", nn.ReLU(), MAPS), ("leaky", nn.LeakyReLU(0.2), MAPS), ("elu", nn.ELU(0.7), VEC),
    ("tanh", nn.Tanh(), MAPS), ("scaled-tanh", nn.ScaledTanh(), MAPS), ("sigmoid", nn.Sigmoid(), VEC),
    ("softmax-channels", nn.Softmax(), MAPS), ("softmax-rows", nn.Softmax(axis=1), MAPS),
    ("softmax-cols", nn.Softmax(axis=-2), MAPS), ("softmax-vec", nn.Softmax(), VEC),
    ("prelu-channels", nn.PReLU(4), MAPS), ("prelu-shared", nn.PReLU(), MAPS), ("prelu-vec", nn.PReLU(4), VEC),
    ("clip", nn.Clip(-0.5, 0.7), MAPS), ("clip-lo", nn.Clip(lo=0.1), MAPS), ("clip-hi", nn.Clip(hi=0.2), VEC),
    ("relu6", nn.ReLU6(), MAPS), ("hard-sigmoid", nn.HardSigmoid(1 / 6, 0.5), MAPS),
    ("hard-swish", nn.HardSwish(), MAPS),
    ("gelu", nn.GELU(), MAPS), ("gelu-tanh", nn.GELU("tanh"), VEC), ("silu", nn.SiLU(), MAPS),
    ("softplus", nn.Softplus(), MAPS), ("softplus-beta", nn.Softplus(2.5, threshold=None), VEC),
    ("softsign", nn.Softsign(), MAPS), ("mish", nn.Mish(), MAPS), ("exponential", nn.Exponential(), VEC),
    ("log-softmax-channels", nn.LogSoftmax(), MAPS), ("log-softmax-rows", nn.LogSoftmax(axis=1), MAPS),
    ("log-softmax-vec", nn.LogSoftmax(), VEC),
    ("celu", nn.CELU(0.7), MAPS), ("squareplus", nn.Squareplus(2.0), VEC), ("glu", nn.GLU(), MAPS),
    ("hard-shrink", nn.HardShrink(0.4), MAPS), ("soft-shrink", nn.SoftShrink(0.3), VEC),
    ("tanh-shrink", nn.TanhShrink(), MAPS), ("threshold", nn.Threshold(0.1, 0.5), MAPS),
    ("sparse-plus", nn.SparsePlus(), MAPS), ("sparse-sigmoid", nn.SparseSigmoid(), VEC),
    ("sparsemax", nn.Sparsemax(), MAPS),
    ("batchnorm", nn.BatchNorm2D(4, eps=1e-3), MAPS), ("batchnorm-vec", nn.BatchNorm2D(4), VEC),
    ("instancenorm", nn.InstanceNorm(4), MAPS), ("instancenorm-plain", nn.InstanceNorm(4, affine=False), MAPS),
    ("lrn-odd", nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0), MAPS),
    ("lrn-even", nn.LocalResponseNorm(2, alpha=0.5, beta=0.6, k=1.5), MAPS),
    ("dropout", nn.Dropout(0.4), MAPS),
    ("affine", nn.Affine(4), MAPS), ("affine-vec", nn.Affine(4, scale=False), VEC),
    ("affine-shared", nn.Affine(1, shift=False), MAPS), ("affine-none", nn.Affine(4, scale=False, shift=False), MAPS),
    ("reshape-maps", nn.Reshape((3, 12, 4)), MAPS), ("reshape-rank3", nn.Reshape((36, -1)), MAPS),
    ("reshape-vec", nn.Reshape((2, 2)), VEC),
    ("transpose", nn.Transpose((2, 0, 1)), MAPS), ("transpose-hw", nn.Transpose((1, 0, 2)), MAPS),
    ("pad-constant", nn.Pad(((1, 2), (0, 1)), value=0.5), MAPS), ("pad-reflect", nn.Pad((2, 1), mode="reflect"), MAPS),
    ("pad-edge", nn.Pad(1, mode="edge"), MAPS),
    ("identity", nn.Identity(), MAPS), ("identity-vec", nn.Identity(), VEC),
    ("upsample-nearest", nn.Upsample(scale_factor=(2, 3)), MAPS),
    ("upsample-size", nn.Upsample(size=(9, 14)), MAPS),
    ("upsample-bilinear", nn.Upsample(scale_factor=1.5, mode="bilinear"), MAPS),
    ("upsample-bilinear-size", nn.Upsample(size=(7, 11), mode="bilinear"), MAPS),
    ("upsample-align-corners", nn.Upsample(size=(11, 8), mode="bilinear", align_corners=True), MAPS),
    ("conv-transpose", nn.Conv2DTranspose(4, 3, 3), MAPS),
    ("conv-transpose-strided", nn.Conv2DTranspose(4, 6, (3, 2), stride=2, padding=(1, 0), output_padding=(1, 0),
                                                  dilation=(1, 2), groups=2), MAPS),
    ("conv-transpose-asymmetric", nn.Conv2DTranspose(4, 2, 3, stride=2, padding=((0, 2), (1, 0)), bias=False), MAPS),
    ("conv-transpose-same", nn.Conv2DTranspose(4, 3, 3, stride=2, padding="same"), MAPS),
    ("conv-transpose-same-short", nn.Conv2DTranspose(4, 3, 2, stride=3, padding="same"), MAPS),
    ("cropping", nn.Cropping2D(((1, 0), (2, 1))), MAPS), ("cropping-none", nn.Cropping2D(), MAPS),
    ("rescaling", nn.Rescaling(1 / 255, -0.5), MAPS), ("rescaling-channels", nn.Rescaling([0.5, 2.0, 1.0, -1.0]), MAPS),
    ("rescaling-vec", nn.Rescaling(2.0, [1.0, 0.0, 0.5, 3.0]), VEC), ("rescaling-none", nn.Rescaling(1.0), VEC),
]
MERGE_CASES = [("add", nn.Add()), ("multiply", nn.Multiply()), ("average", nn.Average()),
               ("maximum", nn.Maximum()), ("concat", nn.Concatenate()), ("concat-rows", nn.Concatenate(axis=1)),
               ("concat-cols", nn.Concatenate(axis=-2))]


@pytest.mark.parametrize("layer, shape", [c[1:] for c in LAYER_CASES], ids=[c[0] for c in LAYER_CASES])
def test_each_layer_kind_alone(layer, shape, tmp_path):
    check_export(seq([("L", layer)], shape), tmp_path, opset=17)


@pytest.mark.parametrize("opset", (13, 18))
@pytest.mark.parametrize("layer", [nn.Upsample(size=(9, 14)), nn.Upsample(size=(4, 5), mode="bilinear"),
                                   nn.Upsample(scale_factor=0.7),
                                   nn.Upsample(scale_factor=(1.1, 2.5), mode="bilinear")],
                         ids=["nearest-size", "bilinear-size", "nearest-scale", "bilinear-scale"])
def test_upsample_sizes_and_scales_in_both_resize_forms(layer, opset, tmp_path):
    proto = check_export(seq([("L", layer)], (10, 6, 3)), tmp_path, opset=opset, n=3)
    resize = next(n for n in proto.graph.node if n.op_type == "Resize")
    assert resize.name == "L" and (len(resize.input) == 4) == (layer.size is not None)


@pytest.mark.parametrize("opset", (13, 14))
def test_hard_swish_before_and_after_opset_14(opset, tmp_path):
    proto = check_export(seq([("L", nn.HardSwish())], MAPS), tmp_path, opset=opset)
    assert [n.op_type for n in proto.graph.node] == (["HardSigmoid", "Mul"] if opset == 13 else ["HardSwish"])


MERGE_PLACEMENTS = [(name, layer, ranks) for name, layer in MERGE_CASES for ranks in ("maps", "vectors", "reshaped")
                    if ranks != "vectors" or getattr(layer, "axis", -1) == -1]  # a vector has one axis


@pytest.mark.parametrize("layer, ranks", [c[1:] for c in MERGE_PLACEMENTS],
                         ids=[f"{c[0]}-{c[2]}" for c in MERGE_PLACEMENTS])
def test_each_merge_kind(layer, ranks, tmp_path):
    if ranks == "vectors":
        nodes = [("a", nn.Dense(4, 3), "x"), ("b", nn.Tanh(), "x2"), ("L", layer, ["a", "b", "a"])]
        inputs = {"x": VEC, "x2": (3,)}
    else:  # one branch NCHW (a conv), the other NCHW or as featuremaps holds it (a Reshape): the merge converts
        second = ("b", nn.Reshape(MAPS), "x2") if ranks == "reshaped" else ("b", nn.Sigmoid(), "x2")
        nodes = [("a", nn.Conv2D(4, 4, 3, padding=1), "x"), second, ("L", layer, ["a", "b"])]
        inputs = {"x": MAPS, "x2": MAPS}
    check_export(randomize(nn.Graph(inputs, nodes, "L")), tmp_path)


def test_every_registered_layer_kind_is_exported_or_listed_as_having_no_onnx_form():
    kinds = {c for c in layer_classes() if c not in (nn.Sequential, nn.Graph)}
    tested = {type(c[1]) for c in LAYER_CASES} | {type(c[1]) for c in MERGE_CASES}
    assert set(NO_ONNX_FORM) == kinds - set(CONVERTERS), "a layer kind has no converter and is not in NO_ONNX_FORM"
    assert tested | set(NO_ONNX_FORM) == kinds, f"untested kinds: {sorted(c.__name__ for c in kinds - tested)}"


# --- bad input ---------------------------------------------------------------------------------------
class Squarer(nn.Module):
    """A layer kind of the user's own, without an ONNX form."""

    def forward(self, x):
        return x * x


class MyReLU(nn.ReLU):
    """A subclass may compute something else: it is not exported as its parent."""


def test_layers_without_an_onnx_form_are_all_named_in_one_error(tmp_path):
    model = nn.Sequential([("c", nn.Conv2D(1, 2, 3)), ("sq1", Squarer()), ("r", MyReLU()), ("sq2", Squarer())],
                          input_shape=(5, 5, 1))
    with pytest.raises(ONNXError) as err:
        export(model, tmp_path / "m.onnx")
    msg = str(err.value)
    assert "3 layer(s)" in msg and "'sq1' (Squarer)" in msg and "'r' (MyReLU)" in msg and "'sq2' (Squarer)" in msg
    assert not (tmp_path / "m.onnx").exists() and list(tmp_path.iterdir()) == []


def test_arguments_are_checked(tmp_path):
    model = randomize(fm.models.get("lenet", rng=0))
    with pytest.raises(TypeError, match="model must be a featuremaps.nn.Sequential or Graph; received Conv2D"):
        export(nn.Conv2D(1, 1, 1), tmp_path / "m.onnx")
    for bad in (12, 10_000, "17", True):
        with pytest.raises(ValueError, match=f"opset must be an int from 13 to .*received {bad!r}"):
            export(model, tmp_path / "m.onnx", opset=bad)
    with pytest.raises(ValueError, match="batch must be None"):
        export(model, tmp_path / "m.onnx", batch=0)
    with pytest.raises(ValueError, match=r"no per-example shape for input\(s\) \['input'\].*input_shape="):
        export(nn.Sequential([("c", nn.Conv2D(1, 2, 3))]), tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError, match="directory of path"):
        export(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(IsADirectoryError):
        export(model, tmp_path)
    shapeless = nn.Sequential([("c", nn.Conv2D(1, 2, 3)), ("f", nn.Flatten()), ("d", nn.Dense(18, 2))])
    check_export(randomize(shapeless), tmp_path, input_shape=(5, 5, 1), name="given.onnx")
    with pytest.raises(nn.ShapeError, match="layer 'd'"):
        export(shapeless, tmp_path / "s.onnx", input_shape=(6, 6, 1))


def test_an_existing_file_is_replaced_only_when_asked_and_atomically(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    model = randomize(fm.models.get("lenet", rng=0))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export(model, path)
    assert path.read_bytes() == b"old"
    assert export(model, str(path), overwrite=True) == path
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporary file left


def test_mixed_dtypes_are_refused(tmp_path):
    model = randomize(fm.models.get("lenet", rng=0))
    model.fc2.weight.data = model.fc2.weight.data.astype(np.float64)
    with pytest.raises(ValueError, match="mixes parameter dtypes.*astype"):
        export(model, tmp_path / "m.onnx")


# --- round trips with featuremaps.onnx.load --------------------------------------------------------------
def _fwd(model, xs: dict) -> list[np.ndarray]:
    return forward(model, {"input": next(iter(xs.values()))} if isinstance(model, nn.Sequential) else xs)


#: every zoo model and graph example (`two_inputs`'s Average exports as ONNX Mean)
ROUND_TRIP = {**{n: (lambda n=n: fm.models.get(n, rng=0)) for n in fm.models.names()}, **GRAPHS}


@pytest.mark.parametrize("build", ROUND_TRIP.values(), ids=ROUND_TRIP.keys())
def test_export_then_load_gives_identical_weights_and_outputs(build, tmp_path):
    from featuremaps.onnx import load
    model = randomize(build(), seed=3)
    back = load(export(model, tmp_path / "m.onnx"))
    weights = sorted((a.shape, a.tobytes()) for a in model.state_dict().values())
    assert sorted((a.shape, a.tobytes()) for a in back.state_dict().values()) == weights  # the same numbers, copied
    same_names = set(model.state_dict()) & set(back.state_dict())
    assert all(np.array_equal(model.state_dict()[k], back.state_dict()[k]) for k in same_names)
    xs = inputs_for(model)
    for got, ref in zip(_fwd(back, xs), _fwd(model, xs)):
        assert_close(got, ref, RTOL32)  # the same layers, or an equivalent split of one (Subsampling2D)


LOAD_THEN_EXPORT = [("lenet", False), ("resnet_like", False), ("vgg_like", False), ("mobilenetv2_block", False),
                    ("densenet_block", False), ("shufflenet_unit", False), ("squeezenet_fire", False),
                    ("inception_block", False), ("shufflenet_unit", True)]


@pytest.mark.parametrize("net, dynamo", LOAD_THEN_EXPORT,
                         ids=[f"{n}-{'dynamo' if d else 'legacy'}" for n, d in LOAD_THEN_EXPORT])
def test_load_then_export_runs_in_onnxruntime_as_the_original(net, dynamo, tmp_path):
    from featuremaps.onnx import load
    from tests import torch_nets
    module, shape = torch_nets.build(net)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)  # NCHW
    original = torch_nets.export(module, tmp_path / "torch.onnx", x, dynamo=dynamo)
    model = load(original)
    again = export(model, tmp_path / "again.onnx")
    onnx.checker.check_model(onnx.load(str(again)), full_check=True)
    ref = ort_run(original, {"x": x})
    name = onnx.load(str(again)).graph.input[0].name
    got = ort_run(again, {name: x})
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert_close(g, r, RTOL32)
