"""GELU (exact and tanh), SiLU, Softplus, Softsign, Mish, Exponential and LogSoftmax: the functional ops
against PyTorch (values and float64 gradients), the erf against `math`, the layers, and every route:
ONNX run / export / load against onnxruntime, Keras load / export against Keras, torch `from_module`."""
from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st
from onnx import helper as oh

import featuremaps.functional as fn
from featuremaps import nn
from featuremaps.functional._erf import erf, erfc
from featuremaps.keras import export as keras_export, load as keras_load
from featuremaps.onnx import export as onnx_export, load as onnx_load
from featuremaps.torch import from_module
from tests.onnx_oracle import ort_run
from tests.oracles import check_op
from tests.test_onnx_export import check_export, seq
from tests.test_onnx_run import check, conv_then

# Not sums: erf, exp, log1p, tanh and a few products per value, each library with its own formulas; no
# simple rounding bound, so fixed float64 tolerances, as tests/test_activation.py
TOL = dict(rtol=1e-12, atol=1e-14)
RTOL32 = 1e-4  # the float32 tolerance against another framework

OPS = [
    ("gelu", fn.gelu, TF.gelu),
    ("gelu-tanh", lambda x: fn.gelu(x, "tanh"), lambda t: TF.gelu(t, approximate="tanh")),
    ("silu", fn.silu, TF.silu),
    ("softplus", fn.softplus, TF.softplus),
    ("softplus-beta-threshold", lambda x: fn.softplus(x, 2.5, 7.0), lambda t: TF.softplus(t, 2.5, 7.0)),
    ("softplus-small-beta", lambda x: fn.softplus(x, 0.3), lambda t: TF.softplus(t, 0.3)),
    ("softsign", fn.softsign, TF.softsign),
    ("mish", fn.mish, TF.mish),
]


def _arr(y) -> np.ndarray:
    """A model's output (an ndarray, or a Tensor when the model has trainable weights) as an ndarray."""
    return np.asarray(getattr(y, "data", y))


# --- erf ----------------------------------------------------------------------------------------------
def test_erf_and_erfc_match_math_on_a_dense_grid():
    x = np.concatenate([np.linspace(-8, 8, 400_001), np.linspace(8, 27, 20_001)])
    want_erf = np.array([math.erf(v) for v in x])
    want_erfc = np.array([math.erfc(v) for v in x])
    got_erf, got_erfc = erf(x), erfc(x)
    rel_erf = np.abs(got_erf - want_erf) / np.maximum(np.abs(want_erf), 1e-300)
    rel_erfc = np.abs(got_erfc - want_erfc) / np.maximum(want_erfc, 1e-300)
    assert rel_erf[x != 0].max() < 2e-15 and got_erf[x == 0] == 0
    assert rel_erfc[want_erfc > 1e-300].max() < 5e-15
    assert np.array_equal(erf(np.array([np.inf, -np.inf])), [1.0, -1.0])
    assert np.array_equal(erfc(np.array([np.inf, -np.inf])), [0.0, 2.0]) and np.isnan(erf(np.nan))


# --- the functional ops against torch -------------------------------------------------------------------
def _inputs(shape, seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    x.flat[::3] = np.round(x.flat[::3])  # exact integers and zeros among them
    return x, rng.standard_normal(shape)


@pytest.mark.parametrize("name,ours,theirs", OPS, ids=[o[0] for o in OPS])
@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.5, 3.0, 40.0, 1e4, 1e150]))
def test_matches_torch_forward_and_float64_gradient(name, ours, theirs, shape, seed, scale):
    x, g = _inputs(shape, seed, scale)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # none of these for any finite input
        check_op(ours, theirs, [x], [None], grad=g, **TOL)


@pytest.mark.parametrize("name,ours,theirs", OPS, ids=[o[0] for o in OPS])
def test_float32_keeps_its_dtype_and_matches_torch(name, ours, theirs):
    x = (np.random.default_rng(5).standard_normal((3, 4, 5, 6)) * 6).astype(np.float32)
    got = ours(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, theirs(torch.from_numpy(x)).numpy(), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name,ours,theirs", OPS, ids=[o[0] for o in OPS])
def test_special_values_as_torch_without_warnings(name, ours, theirs):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, 30.0, -30.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warning from NumPy
        got = ours(x)
    want = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_softplus_without_threshold_is_log1p_exp_without_overflow():
    x = np.array([-1e300, -800.0, -30.0, 0.0, 1e-8, 30.0, 800.0, 1e300])
    for beta in (0.5, 1.0, 3.0):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            got = fn.softplus(x, beta, threshold=None)
        np.testing.assert_allclose(got, np.logaddexp(0.0, beta * x) / beta, rtol=1e-15, atol=0)


def test_exact_gelu_keeps_relative_accuracy_far_left():
    x = np.array([-5.0, -10.0, -20.0, -37.0])  # x·Φ(x) with Φ = erfc(−x/√2)/2, from math.erfc
    want = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    # rtol 1e-12: x/√2 may round differently on the two sides, which moves erfc by ~2(x²/2) ulps (6e-14 at −37);
    # torch's 1 + erf(x/√2) has no correct digit past x ≈ −8.5
    np.testing.assert_allclose(fn.gelu(x), want, rtol=1e-12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh'; received 'erf'"):
        fn.gelu(np.zeros(2), "erf")
    with pytest.raises(ValueError, match="softplus: beta must be > 0; received -1"):
        fn.softplus(np.zeros(2), -1)
    with pytest.raises(TypeError, match="softplus: threshold must be a real number"):
        fn.softplus(np.zeros(2), 1.0, "20")
    with pytest.raises(ValueError, match="GELU: approximate"):
        nn.GELU("exact")
    with pytest.raises(TypeError, match="LogSoftmax: axis must be an int"):
        nn.LogSoftmax(1.5)


# --- the layers ------------------------------------------------------------------------------------------
LAYERS = [nn.GELU(), nn.GELU("tanh"), nn.SiLU(), nn.Softplus(), nn.Softplus(2.0, None), nn.Softsign(), nn.Mish(),
          nn.Exponential(), nn.LogSoftmax(), nn.LogSoftmax(axis=1)]


@pytest.mark.parametrize("layer", LAYERS, ids=repr)
def test_layer_attributes_config_and_forward(layer):
    assert layer.role == "activation"
    assert layer.elementwise is not isinstance(layer, nn.LogSoftmax)
    assert layer.spatial == (None if getattr(layer, "axis", -1) != -1 else "same")
    again = nn.from_config(layer.get_config())
    assert type(again) is type(layer) and again.get_config() == layer.get_config() and repr(again) == repr(layer)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    assert np.array_equal(again(x), layer(x)) and layer.compute_output_shape((3, 4, 5)) == (3, 4, 5)


def test_reprs():
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')" and repr(nn.GELU()) == "GELU()"
    assert repr(nn.Softplus(2.0, None)) == "Softplus(beta=2.0, threshold=None)"
    assert repr(nn.LogSoftmax(axis=1)) == "LogSoftmax(axis=1)"


def test_log_softmax_layer_matches_torch_along_channels():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    want = TF.log_softmax(torch.from_numpy(x), dim=-1).numpy()
    np.testing.assert_allclose(nn.LogSoftmax()(x), want, rtol=1e-12, atol=1e-14)


# --- ONNX: run, export, load ------------------------------------------------------------------------------
RUN_CASES = {
    "gelu20": (20, [oh.make_node("Gelu", ["c"], ["y"])]),
    "gelu20_tanh": (20, [oh.make_node("Gelu", ["c"], ["y"], approximate="tanh")]),
    "softplus": (17, [oh.make_node("Softplus", ["c"], ["y"])]),
    "softsign": (17, [oh.make_node("Softsign", ["c"], ["y"])]),
    "mish18": (18, [oh.make_node("Mish", ["c"], ["y"])]),
    "exp": (17, [oh.make_node("Exp", ["c"], ["y"])]),
    "swish24": (24, [oh.make_node("Swish", ["c"], ["y"])]),
    "logsoftmax_axis1": (17, [oh.make_node("LogSoftmax", ["c"], ["y"], axis=1)]),
    "logsoftmax_axis2": (17, [oh.make_node("LogSoftmax", ["c"], ["y"], axis=2)]),
    "celu": (17, [oh.make_node("Celu", ["c"], ["y"], alpha=0.7)]),
    "shrink_hard": (17, [oh.make_node("Shrink", ["c"], ["y"], lambd=0.8)]),
    "shrink_soft": (17, [oh.make_node("Shrink", ["c"], ["y"], lambd=0.6, bias=0.6)]),
    "thresholded_relu": (17, [oh.make_node("ThresholdedRelu", ["c"], ["y"], alpha=0.4)]),
}


@pytest.mark.parametrize("name", sorted(RUN_CASES))
def test_onnx_run_and_load_match_onnxruntime(name):
    opset, nodes = RUN_CASES[name]
    model, feeds = conv_then(nodes, opset=opset)
    check(model, feeds)
    ref = ort_run(model, feeds)[0]
    m = onnx_load(model)
    got = _arr(m(feeds["x"].transpose(0, 2, 3, 1)))
    got = got.transpose(0, 3, 1, 2) if got.ndim == 4 else got
    np.testing.assert_allclose(got, ref, rtol=RTOL32, atol=RTOL32 * float(np.abs(ref).max()))
    kinds = {type(node.layer) for node in m.nodes()}
    assert kinds & {nn.GELU, nn.SiLU, nn.Softplus, nn.Softsign, nn.Mish, nn.Exponential, nn.LogSoftmax, nn.CELU,
                    nn.HardShrink, nn.SoftShrink, nn.Threshold}


def test_onnx_swish_with_another_alpha_runs_but_has_no_layer():
    model, feeds = conv_then([oh.make_node("Swish", ["c"], ["y"], alpha=0.7)], opset=24)
    check(model, feeds)
    with pytest.raises(ValueError, match="Swish with alpha 0.7"):
        onnx_load(model)


@pytest.mark.parametrize("opset", (13, 17, 18, 20, 24))
@pytest.mark.parametrize("layer", [nn.GELU(), nn.GELU("tanh"), nn.Mish(), nn.Softplus(0.5), nn.SiLU()], ids=repr)
def test_onnx_export_before_and_after_the_op_exists(layer, opset, tmp_path):
    proto = check_export(seq([("L", layer)], (6, 6, 4)), tmp_path, opset=opset)
    ops = [n.op_type for n in proto.graph.node]
    native = {nn.GELU: ("Gelu", 20), nn.Mish: ("Mish", 18), nn.Softplus: ("Softplus", 1),
              nn.SiLU: ("Swish", 24)}[type(layer)]
    assert (native[0] in ops) == (opset >= native[1])
    if isinstance(layer, nn.GELU) and opset < 20:
        assert ("Erf" in ops) == (layer.approximate == "none")


def test_onnx_export_then_load_keeps_the_layers(tmp_path):
    layers = [("g", nn.GELU()), ("s", nn.SiLU()), ("p", nn.Softplus()), ("n", nn.Softsign()), ("m", nn.Mish()),
              ("t", nn.GELU("tanh")), ("e", nn.Exponential()), ("l", nn.LogSoftmax())]
    model = seq(layers, (5, 5, 3))
    path = onnx_export(model, tmp_path / "a.onnx", opset=20)
    back = onnx_load(path)
    kinds = [type(node.layer).__name__ for node in back.nodes()]
    assert {"GELU", "Softplus", "Softsign", "Mish", "Exponential", "LogSoftmax", "Sigmoid", "Multiply"} <= set(kinds)
    x = np.random.default_rng(2).standard_normal((2, 5, 5, 3)).astype(np.float32) * 0.5
    np.testing.assert_allclose(_arr(back(x)), _arr(model(x)), rtol=1e-5, atol=1e-6)


# --- Keras ---------------------------------------------------------------------------------------------
KERAS_NAMES = ["gelu", "silu", "swish", "softplus", "softsign", "mish", "exponential", "log_softmax"]


def _keras_model(names):
    inp = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="gelu")(inp)
    for name in names:
        h = keras.layers.Activation(name, name=f"act_{name}")(h)
        h = keras.layers.Conv2D(4, 1, activation=name if name != "exponential" else "linear")(h)
    return keras.Model(inp, h)


def test_keras_models_using_each_name_load_equal_to_predict(tmp_path):
    keras.utils.set_random_seed(0)
    km = _keras_model(KERAS_NAMES)
    x = np.random.default_rng(3).standard_normal((2, 6, 6, 3)).astype(np.float32) * 0.5
    for m in loaded_equal_to_predict(km, x, tmp_path):
        log = "\n".join(m.import_log)
        assert "exact x·Φ(x)" in log and "Softplus(beta=1, threshold=20)" in log


def loaded_equal_to_predict(km, x, tmp_path) -> list:
    """The Keras model `km` saved as .keras and as legacy .h5, each read by featuremaps.keras.load and
    checked equal to Keras's own predict on `x` (float32: rtol RTOL32); the two loaded models."""
    ref = np.asarray(km.predict(x, verbose=0))
    loaded = []
    for ext in ("keras", "h5"):
        p = tmp_path / f"m.{ext}"
        km.save(p)
        m = keras_load(p)
        np.testing.assert_allclose(_arr(m(x)), ref, rtol=RTOL32, atol=RTOL32 * float(np.abs(ref).max()), err_msg=ext)
        loaded.append(m)
    return loaded


def test_keras_export_of_each_layer_loads_in_keras_equal(tmp_path):
    layers = [("c", nn.Conv2D(3, 4, 3, padding="same", rng=0)), ("g", nn.GELU()), ("s", nn.SiLU()),
              ("p", nn.Softplus()), ("n", nn.Softsign()), ("m", nn.Mish()), ("e", nn.Exponential()),
              ("l", nn.LogSoftmax())]
    model = nn.Sequential(layers, input_shape=(5, 5, 3)).eval()
    path = keras_export(model, tmp_path / "out.keras")
    km = keras.models.load_model(path)
    x = np.random.default_rng(4).standard_normal((2, 5, 5, 3)).astype(np.float32) * 0.5
    ref, got = _arr(model(x)), np.asarray(km.predict(x, verbose=0))
    np.testing.assert_allclose(got, ref, rtol=RTOL32, atol=RTOL32 * float(np.abs(ref).max()))
    back = keras_load(path)
    np.testing.assert_allclose(_arr(back(x)), ref, rtol=1e-5, atol=1e-6)


# --- torch from_module ------------------------------------------------------------------------------------
class Smooth(torch.nn.Module):
    def __init__(self):
        super().__init__()
        t = torch.nn
        self.conv = t.Conv2d(3, 4, 3, padding=1)
        self.acts = t.ModuleList([t.GELU(), t.GELU(approximate="tanh"), t.SiLU(), t.Softplus(), t.Softplus(2.0, 3.0),
                                  t.Softsign(), t.Mish()])
        self.out = t.LogSoftmax(dim=1)

    def forward(self, x):
        h = self.conv(x)
        for a in self.acts:
            h = a(h)
        h = TF.gelu(h) + TF.gelu(h, approximate="tanh") + TF.silu(h) + TF.softplus(h, beta=0.5, threshold=4.0)
        h = TF.mish(TF.softsign(h)) + torch.exp(h * 0.1)
        return self.out(TF.log_softmax(h, dim=1))


def converted_equal_to_torch(module_class):
    """from_module of a float64 `module_class()` (input (3, 6, 7) NCHW), checked equal to torch at
    rtol 1e-5 on a seeded input; the featuremaps model and the layer kinds it holds."""
    torch.manual_seed(0)
    module = module_class().double().eval()
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 7)) * 2
    model = from_module(module, (6, 7, 3))
    got = _arr(model(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
    return model, {type(node.layer) for node in model.nodes()}


def test_torch_from_module_on_every_form_float64():
    model, kinds = converted_equal_to_torch(Smooth)
    assert {nn.GELU, nn.SiLU, nn.Softplus, nn.Softsign, nn.Mish, nn.Exponential, nn.LogSoftmax} <= kinds
    sp = [node.layer for node in model.nodes() if isinstance(node.layer, nn.Softplus)]
    assert {(s.beta, s.threshold) for s in sp} == {(1.0, 20.0), (2.0, 3.0), (0.5, 4.0)}
