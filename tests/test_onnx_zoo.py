"""The classic zoo: the CNN graphs of the ONNX package's backend model tests
(`onnx/backend/test/data/light/light_*.onnx`: AlexNet, VGG19, ResNet50, SqueezeNet, Inception
v1/v2, DenseNet121, ShuffleNet, ZFNet512) through `featuremaps.onnx.run` and `featuremaps.onnx.load`,
against onnxruntime and against the outputs the ONNX project stored with them.

Their weights are constant fills (ConstantOfShape nodes), which make every channel of a layer
identical and the softmax output uniform, so a layout bug would pass unseen. Each graph therefore
also runs with every fill and every float initializer replaced by seeded random values scaled for
a sane signal (He fan-in scaling for Conv/Gemm weights, positive BatchNorm variances), and with
the logits (the final Softmax's input) exposed as an extra output, since a saturated softmax hides
errors too. The max abs / max relative error per graph is printed (`pytest -s` shows the table).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import helper as oh, numpy_helper  # noqa: E402

from featuremaps.onnx import load, run  # noqa: E402
from featuremaps.tensor import as_array  # noqa: E402
from tests.onnx_oracle import ort_run  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
ZOO = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
       "vgg19", "zfnet512"]
RTOL = 1e-4  # the float32 tolerance; atol = RTOL × the output's largest magnitude
ERRORS: dict[tuple[str, str], tuple[float, float]] = {}  # (graph, weights) → (max abs, max abs / max |ref|)


def zoo_path(name: str) -> str:
    return os.path.join(LIGHT, f"light_{name}.onnx")


def dummy_feeds(model) -> dict:
    """The input the ONNX backend runner feeds these graphs (its stored outputs are for it):
    arange(n) / n in the input's shape, free dimensions taken as 1."""
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for i in model.graph.input:
        if i.name not in inits:
            shape = tuple(d.dim_value or 1 for d in i.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            feeds[i.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    return feeds


# --- random weights -----------------------------------------------------------------------------
def _readers(graph) -> dict:
    """tensor name → [(node, input index)], looking through the Unsqueeze / Reshape / Identity
    nodes that some graphs put between a parameter and the op that uses it."""
    direct = {}
    for n in graph.node:
        for k, x in enumerate(n.input):
            direct.setdefault(x, []).append((n, k))

    def readers(name, depth=0):
        out = []
        for n, k in direct.get(name, ()):
            if n.op_type in ("Unsqueeze", "Reshape", "Identity") and k == 0 and depth < 4:
                out += readers(n.output[0], depth + 1)
            else:
                out.append((n, k))
        return out
    return {name: readers(name) for name in direct}


def _random_like(shape, uses, rng, into_sum=frozenset()) -> np.ndarray:
    """Values for a parameter of `shape`, by what reads it (the first reader decides). A BatchNorm
    whose output goes straight into a residual Sum/Add gets a small scale (the "zero-γ" init of
    residual branches), or the signal would grow ~√3× per block over ResNet50's 16 blocks."""
    node, k = uses[0] if uses else (None, -1)
    op = node.op_type if node is not None else ""
    if op == "Conv" and k == 1:  # (O, I/g, KH, KW): He scaling over the fan-in
        return rng.standard_normal(shape) * np.sqrt(2.0 / int(np.prod(shape[1:])))
    if op == "Gemm" and k == 1:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return rng.standard_normal(shape) * np.sqrt(2.0 / shape[1 if trans_b else 0])
    if op == "BatchNormalization" and k == 1 and node.output[0] in into_sum:
        return rng.uniform(0.1, 0.3, shape)
    if op == "BatchNormalization" and k in (1, 4):  # scale, variance: positive
        return rng.uniform(0.5, 1.5, shape)
    if op in ("Mul", "PRelu"):  # a scale
        return rng.uniform(0.5, 1.5, shape)
    return rng.normal(0.0, 0.1, shape)  # biases, shifts, means


def randomized(model, seed: int = 0):
    """A copy of `model` whose constant-filled weights (ConstantOfShape of an initializer shape)
    and float initializers hold seeded random values, with the logits exposed as an extra output."""
    rng = np.random.default_rng(seed)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    readers = _readers(g)
    into_sum = frozenset(x for n in g.node if n.op_type in ("Sum", "Add") for x in n.input)
    inits = {t.name: t for t in g.initializer}
    keep, fills = [], []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            fills.append((n.output[0], tuple(int(s) for s in numpy_helper.to_array(inits[n.input[0]]))))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    for t in g.initializer:
        if t.data_type == onnx.TensorProto.FLOAT:
            a = _random_like(tuple(t.dims), readers.get(t.name, []), rng, into_sum).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    for name, shape in fills:
        g.initializer.append(numpy_helper.from_array(
            _random_like(shape, readers.get(name, []), rng, into_sum).astype(np.float32), name))
    return with_logits(m)


def with_logits(model):
    """`model` with the final Softmax's input (the logits) exposed as an extra output, in place."""
    last = model.graph.node[-1]
    if last.op_type == "Softmax":
        model.graph.output.append(oh.make_empty_tensor_value_info(last.input[0]))
    return model


# --- comparison ---------------------------------------------------------------------------------
def compare(got, ref, key) -> None:
    """Assert each output within RTOL (atol = RTOL × max |ref|) and record the worst errors."""
    assert len(got) == len(ref)
    worst_abs, worst_rel = 0.0, 0.0
    for g, r in zip(got, ref):
        assert g.shape == r.shape and g.dtype == r.dtype, (g.shape, r.shape, g.dtype, r.dtype)
        scale = float(np.max(np.abs(r)))
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=RTOL * scale, err_msg=str(key))
        err = float(np.max(np.abs(g.astype(np.float64) - r)))
        worst_abs, worst_rel = max(worst_abs, err), max(worst_rel, err / scale)
    ERRORS[key] = (worst_abs, worst_rel)
    print(f"\n{key[0]:>14} {key[1]:>8} weights: max abs error {worst_abs:.3g}, max abs / max |ref| {worst_rel:.3g}")


def loaded_outputs(model, feeds) -> list[np.ndarray]:
    """`load(model)` run on the (single) feed as NHWC, its outputs back in ONNX's layout."""
    (x,) = feeds.values()
    got = load(model)(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))  # (n, c, h, w) -> (n, h, w, c)
    got = [as_array(g) for g in (got if isinstance(got, tuple) else (got,))]
    return [g.transpose(0, 3, 1, 2) if g.ndim == 4 else g for g in got]  # (n, h, w, c) -> (n, c, h, w)


#: Their fully connected layers hold 60–140 M weights (10–16 s each to load and run again): `run` checks
#: them; `load` is checked on the six other graphs, which hold every op kind these three have.
BIG_FC = {"bvlc_alexnet", "vgg19", "zfnet512"}


def well_conditioned(logits) -> bool:
    """Whether a softmax of these float32 logits is determined by them to within RTOL: a change of
    RTOL·max|z| in a logit moves the softmax by up to that factor, so it must stay well below 1.
    (SqueezeNet's constant fills give logits near 1e10, where one ulp is 1024: the softmax of its
    1000 "equal" logits then depends on the summation order of each channel, i.e. on the BLAS kernel.)"""
    return RTOL * float(np.max(np.abs(logits))) <= 1e-3


@pytest.mark.parametrize("name", ZOO)
def test_zoo_with_its_constant_fills_matches_onnxruntime_and_the_stored_output(name):
    model = with_logits(onnx.load(zoo_path(name)))  # the file as shipped: weights made by ConstantOfShape
    feeds = dummy_feeds(model)
    got, ref = run(model, feeds), ort_run(model, feeds)
    loaded = loaded_outputs(model, feeds) if name not in BIG_FC else None
    keep = slice(0 if well_conditioned(ref[-1]) else 1, None)  # the softmax, where it is determined
    compare(got[keep], ref[keep], (name, "constant"))
    if loaded is not None:
        compare(loaded[keep], ref[keep], (name, "constant, load"))
    stored = numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT, f"light_{name}_output_0.pb")))
    if keep.start == 0:
        np.testing.assert_allclose(got[0], stored, rtol=RTOL, atol=RTOL * float(np.max(np.abs(stored))))


@pytest.mark.parametrize("name", ZOO)
def test_zoo_with_random_weights_matches_onnxruntime_in_run_and_load(name):
    model = randomized(onnx.load(zoo_path(name)), seed=ZOO.index(name))
    feeds = {k: np.random.default_rng(1).standard_normal(v.shape).astype(np.float32)
             for k, v in dummy_feeds(model).items()}
    ref = ort_run(model, feeds)
    logits = ref[-1]
    assert float(np.std(logits)) > 1e-3 * float(np.max(np.abs(logits)))  # the maps differ: not constant fills
    compare(run(model, feeds), ref, (name, "random"))
    if name not in BIG_FC:
        compare(loaded_outputs(model, feeds), ref, (name, "random, load"))


def test_randomized_weights_differ_per_channel():
    """The random copy really replaces the fills: a conv weight's output channels differ."""
    model = randomized(onnx.load(zoo_path("resnet50")))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == conv.input[1]))
    assert w.ndim == 4 and not np.allclose(w[0], w[1])
    assert not any(n.op_type == "ConstantOfShape" for n in model.graph.node)
    assert len(model.graph.output) == 2  # the softmax and its logits
