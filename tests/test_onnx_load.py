"""featuremaps.onnx.load against onnxruntime: torch nets (both exporters), onnx.helper graphs with
attribute forms exporters never write (the classic zoo graphs are loaded in test_onnx_zoo.py, next to
`run`). The loaded model is fed NHWC, onnxruntime the same input as NCHW."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper as oh, numpy_helper  # noqa: E402

from featuremaps import nn  # noqa: E402
from featuremaps.onnx import ONNXError, load  # noqa: E402
from featuremaps.tensor import as_array  # noqa: E402
from tests import torch_nets  # noqa: E402
from tests.onnx_oracle import ort_run  # noqa: E402

RTOL32 = 1e-4  # the float32 tolerance


def rng(seed=0):
    return np.random.default_rng(seed)


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def assert_matches(model, x_nchw, ref: list):
    """model(x as NHWC) equals onnxruntime's outputs (NHWC where 4-D): rtol 1e-4, atol from the scale."""
    got = model(nhwc(x_nchw))
    got = list(got) if isinstance(got, tuple) else [got]
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        g, r = as_array(g), nhwc(r)
        assert g.shape == r.shape, (g.shape, r.shape)
        scale = float(np.max(np.abs(r)))
        np.testing.assert_allclose(g, r, rtol=RTOL32, atol=RTOL32 * max(scale, 1e-30))


def make(nodes, x_shape, outputs, inits=None, opset=17, x_dims=None):
    ins = [oh.make_tensor_value_info("x", TensorProto.FLOAT, x_dims or x_shape)]
    outs = [oh.make_empty_tensor_value_info(o) for o in outputs]
    g = oh.make_graph(nodes, "g", ins, outs, [numpy_helper.from_array(np.asarray(v), k)
                                              for k, v in (inits or {}).items()])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])
    m.ir_version = min(m.ir_version, 10)
    return m


# --- torch nets, both exporters -------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name, dynamo → (path, NCHW input); each net exported once per module."""
    cache, root = {}, tmp_path_factory.mktemp("onnx_load")

    def get(name, dynamo):
        if (name, dynamo) not in cache:
            module, shape = torch_nets.build(name)
            x = rng(7).standard_normal(shape).astype(np.float32)
            d = root / f"{name}_{int(dynamo)}"
            d.mkdir()
            cache[name, dynamo] = (str(torch_nets.export(module, d / "m.onnx", x, dynamo=dynamo)), x)
        return cache[name, dynamo]
    return get


CHAINS = {"lenet", "vgg_like"}


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("name", sorted(torch_nets.TORCH_NETS))
def test_torch_nets_load_and_match_onnxruntime(exported, name, dynamo):
    path, x = exported(name, dynamo)
    model = load(path)
    assert isinstance(model, nn.Sequential if name in CHAINS else nn.Graph)
    assert_matches(model, x, ort_run(path, {"x": x}))
    for n in model.names():
        assert "." not in n and len(n) <= 40, n


def test_flatten_before_dense_is_channels_last_without_a_transpose(exported):
    path, x = exported("lenet", False)
    model = load(path)
    assert not any(isinstance(layer, nn.Transpose) for layer in model)
    assert [type(layer).__name__ for layer in model][5:8] == ["MaxPool2D", "Flatten", "Dense"]
    log = "\n".join(model.import_log)
    assert "Reshape '/Reshape' flattens channels-last maps (2, 16, 5, 5)" in log
    assert "layer 'f1''s weight rows were permuted" in log
    assert model.names()[:2] == ["c1", "tanh"]


def test_shape_subgraph_is_folded_for_the_given_input_shape():
    """torch's x.view(x.size(0), -1): Shape → Gather → Unsqueeze → Concat → Reshape, with a free batch
    and free H, W (so input_shape is needed)."""
    r = rng(1)
    w, fw = r.standard_normal((4, 3, 3, 3)).astype(np.float32), r.standard_normal((5, 4 * 4 * 5)).astype(np.float32)
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             oh.make_node("Shape", ["c"], ["s"], name="shape"),
             oh.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
             oh.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq"),
             oh.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
             oh.make_node("Reshape", ["c", "target"], ["flat"], name="view"),
             oh.make_node("Gemm", ["flat", "fw"], ["y"], name="fc", transB=1)]
    inits = {"w": w, "fw": fw, "zero": np.array(0, np.int64), "ax": np.array([0], np.int64),
             "minus1": np.array([-1], np.int64)}
    m = make(nodes, None, ["y"], inits, 13, x_dims=["N", 3, "H", "W"])
    with pytest.raises(ONNXError, match=r"input 'x' has free dims \['N', 3, 'H', 'W'\].*input_shape"):
        load(m)
    model = load(m, input_shape=(6, 7, 3))
    assert isinstance(model, nn.Sequential) and model.input_shape == (6, 7, 3)
    line = next(s for s in model.import_log if s.startswith("shape subgraph"))
    assert "Shape 'shape'" in line and "Gather 'gather'" in line and "Concat 'cat'" in line and "[1, -1]" in line
    x = r.standard_normal((3, 3, 6, 7)).astype(np.float32)  # any batch size runs
    assert_matches(model, x, ort_run(m, {"x": x}))


def test_conv_then_per_channel_add_becomes_a_conv_bias():
    r = rng(2)
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             oh.make_node("Add", ["c", "k"], ["y"], name="bias_add")]
    m = make(nodes, (2, 3, 5, 6), ["y"], {"w": r.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                          "k": r.standard_normal((1, 4, 1, 1)).astype(np.float32)})
    model = load(m)
    assert len(model) == 1 and model["conv"].bias is not None
    assert any("Add 'bias_add'" in s and "bias of layer 'conv'" in s for s in model.import_log)
    assert model.onnx_tensors == {"conv": "y"}
    x = r.standard_normal((2, 3, 5, 6)).astype(np.float32)
    assert_matches(model, x, ort_run(m, {"x": x}))


# --- onnx.helper graphs with the forms exporters never write ---------------------------------------
def _c(*shape, seed=0, lo=None):
    r = rng(seed)
    return (r.uniform(lo, lo + 1, shape) if lo is not None else r.standard_normal(shape)).astype(np.float32)


CASES = {
    "asymmetric_pads_dilation_groups": ([oh.make_node("Conv", ["x", "w"], ["y"], pads=[0, 2, 1, 1], dilations=[2, 1],
                                                      strides=[1, 2], group=2)], {"w": _c(4, 2, 3, 2)}, 11),
    "same_lower_stride": ([oh.make_node("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_LOWER", strides=[2, 2])],
                          {"w": _c(6, 4, 2, 3), "b": _c(6)}, 11),
    "maxpool_big_pads": ([oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 0],
                                       strides=[2, 1])], {}, 12),
    "avgpool_ceil_include_pad": ([oh.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                               strides=[2, 2], ceil_mode=1, count_include_pad=1)], {}, 19),
    "bn_prelu_affines": ([oh.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["b1"], epsilon=1e-3),
                          oh.make_node("PRelu", ["b1", "slope"], ["p"]),
                          oh.make_node("Mul", ["p", "k"], ["q"]), oh.make_node("Sub", ["half", "q"], ["y"])],
                         {"s": _c(4, lo=0.5), "bb": _c(4, seed=1), "m": _c(4, seed=2), "v": _c(4, seed=3, lo=0.5),
                          "slope": _c(4, 1, 1, seed=4), "k": _c(4, 1, 1, seed=5), "half": np.float32(0.5)}, 13),
    "pad_reflect_resize_lrn": ([oh.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"),
                                oh.make_node("Resize", ["p", "", "sc"], ["r"], mode="nearest",
                                             coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
                                oh.make_node("LRN", ["r"], ["y"], size=3, alpha=1e-2, beta=0.7, bias=2.0)],
                               {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 0], np.int64),
                                "sc": np.array([1, 1, 2, 1.5], np.float32)}, 13),
    "transpose_maps_then_softmax11": ([oh.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),
                                       oh.make_node("Conv", ["t", "w"], ["c"]),
                                       oh.make_node("GlobalAveragePool", ["c"], ["g"]),
                                       oh.make_node("Flatten", ["g"], ["f"]),
                                       oh.make_node("Softmax", ["f"], ["y"], axis=1)], {"w": _c(5, 4, 2, 2)}, 11),
    "bilinear_concat_max": ([oh.make_node("Resize", ["x", "", "", "sz"], ["r"], mode="linear"),
                             oh.make_node("Relu", ["r"], ["a"]), oh.make_node("Sigmoid", ["r"], ["s"]),
                             oh.make_node("Max", ["a", "s"], ["m"]), oh.make_node("Concat", ["m", "r"], ["y"], axis=1)],
                            {"sz": np.array([2, 4, 9, 5], np.int64)}, 13),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_attribute_forms_match_onnxruntime(name):
    nodes, inits, opset = CASES[name]
    x = rng(3).standard_normal((2, 4, 6, 7)).astype(np.float32)
    m = make(nodes, x.shape, ["y"], inits, opset)
    assert_matches(load(m), x, ort_run(m, {"x": x}))


def test_channel_shuffle_is_reshape_transpose_reshape(exported):
    path, x = exported("shufflenet_unit", False)
    model = load(path)
    kinds = [type(n.layer).__name__ for n in model.nodes()]
    i = kinds.index("Transpose")
    assert kinds[i - 1:i + 2] == ["Reshape", "Transpose", "Reshape"]
    assert model.node(model.names()[i]).layer.perm == (0, 1, 3, 2)  # (h, w, g, c/g) -> (h, w, c/g, g)


def test_ops_without_a_layer_form_are_listed_in_one_error():
    r = rng(4)
    nodes = [oh.make_node("Min", ["x", "c"], ["a"], name="min1"),
             oh.make_node("Min", ["a", "c"], ["b"], name="min2"),
             oh.make_node("ReduceSum", ["b"], ["y"], name="lsm", keepdims=1)]
    m = make(nodes, (1, 4, 3, 3), ["y"], {"c": r.standard_normal((1, 4, 1, 1)).astype(np.float32)})
    with pytest.raises(ONNXError, match=r"Min: nodes 'min1', 'min2'; ReduceSum: nodes 'lsm'\. No model"):
        load(m)


# --- explain on an imported ResNet, checked against onnxruntime ------------------------------------
def test_explain_on_an_imported_resnet_agrees_with_the_engine_and_onnxruntime(exported):
    from featuremaps.inspect import activations, explain
    path, x = exported("resnet_like", False)
    model = load(path)
    layer = "blocks_1_c2"
    assert layer in model.names()
    x1 = x[:1]
    e = explain(model, nhwc(x1)[0], layer, 5, (2, 3))
    assert e.difference <= 1e-5 * max(1.0, abs(e.engine_value))
    tensor = model.onnx_tensors[layer]
    m = onnx.load(path)
    m.graph.output.append(oh.make_empty_tensor_value_info(tensor))
    ref = ort_run(m, {"x": x})[-1][:1]  # (1, C, H, W): the file's batch is fixed at 2
    act = next(a.array for a in activations(model, nhwc(x1)[0]) if a.name == layer)
    np.testing.assert_allclose(act, nhwc(ref)[0], rtol=RTOL32, atol=RTOL32 * float(np.abs(ref).max()))
    assert abs(e.engine_value - float(ref[0, 5, 2, 3])) <= RTOL32 * float(np.abs(ref).max())


def test_loaded_weights_are_writable_so_the_model_trains_and_reloads(exported):
    """Every parameter of an imported model is its own writable array (a Gemm bias was once a
    read-only broadcast view, and load_state_dict then failed)."""
    path, _ = exported("lenet", False)
    model = load(path)
    for name, p in model.named_parameters():
        assert p.data.flags.writeable and p.data.flags.owndata, name
    model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})


def _conv_stack(layers=16, maps=256):
    """A chain of 3×3 convs with many mid-sized weights (as a ResNet has): (model, weight bytes)."""
    r, x, nodes, inits = rng(3), "x", [], {}
    for i in range(layers):
        inits[f"w{i}"] = (r.standard_normal((maps, maps, 3, 3)) * 0.02).astype(np.float32)
        nodes.append(oh.make_node("Conv", [x, f"w{i}"], [f"y{i}"], pads=[1, 1, 1, 1]))
        x = f"y{i}"
    return make(nodes, [1, maps, 4, 4], [x], inits), sum(v.nbytes for v in inits.values())


_PEAK = """
import sys
import featuremaps.nn, featuremaps.onnx as fo, onnx  # imported before the mark: their code is not counted
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) * 1024
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
base = status("VmRSS")
fo.load(sys.argv[1])
print(status("VmHWM") - base)
"""


def test_loading_holds_the_weights_at_most_about_twice(tmp_path):
    """Peak memory of `load` from a file: the parsed file's bytes are dropped once the initializers are
    arrays, and the interpreter's converted weights once the layers have theirs. Measured: 2.35× the
    weights (the arrays, the layers' HWIO copies, a transient copy of one weight); it was 4.35× when
    the parsed bytes and the run's HWIO cache were kept to the end. Kernels off: numba's code is
    not memory of the model's. Linux only (VmHWM), as CI is."""
    model, nbytes = _conv_stack()
    path = tmp_path / "stack.onnx"
    onnx.save(model, str(path))
    env = dict(os.environ, FEATUREMAPS_NUMBA="0")
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, env=env,
                         timeout=300, check=True).stdout
    assert int(out) <= 3 * nbytes, f"load's peak grew by {int(out) / nbytes:.2f}× the weights' {nbytes:,} bytes"


def test_a_model_proto_passed_in_keeps_its_initializers():
    """`load` drops the weights' bytes only of a model it parsed itself: a ModelProto handed in is
    the caller's, and comes back as it was."""
    model, _ = _conv_stack(layers=2, maps=4)
    before = model.SerializeToString()
    x = rng(4).standard_normal((1, 4, 4, 4)).astype(np.float32)
    assert_matches(load(model), x, ort_run(before, {"x": x}))
    assert model.SerializeToString() == before
