"""The rest of Keras's standard activation names (celu, glu, hard_shrink, soft_shrink, sparse_plus, sparse_sigmoid,
sparsemax, squareplus, tanh_shrink; threshold refused), Keras's ReLU with a threshold, PReLU with a slope per
position, and the Keras export of GELU('tanh') and Softplus(beta): the functional ops against PyTorch (values and
float64 gradients) or against Keras's own code run by torch autograd, and every route: Keras load / export against
Keras, ONNX run / load / export against onnxruntime, torch `from_module`."""
from __future__ import annotations

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
from featuremaps.keras import export as keras_export, load as keras_load
from featuremaps.keras._read import KerasFileError
from featuremaps.onnx import export as onnx_export, load as onnx_load
from tests.oracles import check_op, gradcheck
from tests.test_activation_more import RTOL32, converted_equal_to_torch, loaded_equal_to_predict
from tests.test_onnx_export import check_export, seq
from tests.test_onnx_run import conv_then

# Not sums: exp, expm1, tanh, sqrt and a few products per value, each library with its own formulas; no simple
# rounding bound, so fixed float64 tolerances, as tests/test_activation_more.py
TOL = dict(rtol=1e-12, atol=1e-14)


def _keras_op(name, **kw):
    """Keras's own function on its torch backend (so torch autograd differentiates Keras's code)."""
    f = getattr(keras.activations, name)
    return lambda t: f(t, **kw)


def _torch_sparsemax(t, dim=-1):
    """Keras's torch sparsemax with the fix of keras-team/keras#23469: τ from the support's sum."""
    srt, _ = torch.sort(t, dim=dim, descending=True)
    csum = torch.cumsum(srt, dim=dim)
    shape = [1] * t.ndim
    shape[dim] = -1
    r = torch.arange(1, t.shape[dim] + 1, dtype=t.dtype).view(shape)
    support = (1 + r * srt > csum).to(t.dtype)
    tau = (torch.sum(support * srt, dim=dim, keepdim=True) - 1) / torch.sum(support, dim=dim, keepdim=True)
    return torch.clamp(t - tau, min=0.0)


OPS = [  # (id, ours, the oracle, whether the shape's last axis must be even)
    ("celu", fn.celu, TF.celu, False),
    # alpha 0.25: torch rounds 1/alpha to float32 in celu's gradient (2^-26 relative at alpha 0.4); 4 is exact
    ("celu-alpha", lambda x: fn.celu(x, 0.25), lambda t: TF.celu(t, 0.25), False),
    ("glu", fn.glu, TF.glu, True),
    ("hard_shrink", fn.hard_shrink, TF.hardshrink, False),
    ("hard_shrink-1.3", lambda x: fn.hard_shrink(x, 1.3), lambda t: TF.hardshrink(t, 1.3), False),
    ("soft_shrink", fn.soft_shrink, TF.softshrink, False),
    ("soft_shrink-2", lambda x: fn.soft_shrink(x, 2.0), lambda t: TF.softshrink(t, 2.0), False),
    ("tanh_shrink", fn.tanh_shrink, TF.tanhshrink, False),
    ("threshold", lambda x: fn.threshold(x, 0.5, -2.0), lambda t: TF.threshold(t, 0.5, -2.0), False),
    ("sparse_plus", fn.sparse_plus, _keras_op("sparse_plus"), False),
    ("sparse_sigmoid", fn.sparse_sigmoid, _keras_op("sparse_sigmoid"), False),
    ("sparsemax", fn.sparsemax, _torch_sparsemax, False),
    ("squareplus", fn.squareplus, _keras_op("squareplus"), False),
    # b 0.25: Keras makes b a float32 tensor, so 0.3 would be float32(0.3) there
    ("squareplus-b", lambda x: fn.squareplus(x, 0.25), _keras_op("squareplus", b=0.25), False),
]


def _arr(y) -> np.ndarray:
    return np.asarray(getattr(y, "data", y))


def _inputs(shape, seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    x.flat[::3] = np.round(x.flat[::3] * 2) / 2  # exact halves and integers: the kinks of the shrinks and sparse ones
    return x, rng.standard_normal(shape)


# --- the functional ops against torch, or Keras's code under torch autograd -----------------------------------------
@pytest.mark.parametrize("name,ours,theirs,even", OPS, ids=[o[0] for o in OPS])
@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.5, 1.0, 3.0, 20.0]))
def test_matches_the_oracle_forward_and_float64_gradient(name, ours, theirs, even, shape, seed, scale):
    if even:
        shape[-1] *= 2
    x, g = _inputs(shape, seed, scale)
    if even:  # the upstream gradient has the output's shape: half of the last axis
        g = g[..., : shape[-1] // 2]
    if name.startswith("sparsemax"):  # a tie at the support's edge makes the Jacobian one-sided: break ties
        x = x + np.random.default_rng(seed).uniform(0, 1e-3, x.shape)
    # squareplus: Keras's x + √(x² + b) cancels for x < 0 (relative error ~ eps·x²/b); ours does not
    tol = dict(rtol=1e-9, atol=1e-12) if name.startswith("squareplus") else TOL
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        check_op(ours, theirs, [x], [None], grad=g, **tol)


@pytest.mark.parametrize("name,ours,theirs,even", OPS, ids=[o[0] for o in OPS])
def test_float32_keeps_its_dtype_and_matches(name, ours, theirs, even):
    x = (np.random.default_rng(5).standard_normal((3, 4, 5, 6)) * 3).astype(np.float32)
    got = ours(x)
    assert got.dtype == np.float32
    want = theirs(torch.from_numpy(x.astype(np.float64))).numpy()
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


TORCH_SPECIAL = [o for o in OPS if o[0] in ("celu", "celu-alpha", "hard_shrink", "soft_shrink", "tanh_shrink",
                                             "threshold")]


@pytest.mark.parametrize("name,ours,theirs,even", TORCH_SPECIAL, ids=[o[0] for o in TORCH_SPECIAL])
def test_special_values_as_torch_without_warnings(name, ours, theirs, even):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, 0.5, -0.5, 30.0, -800.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ours(x)
    want = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_squareplus_keeps_relative_accuracy_far_left_and_never_overflows():
    x = np.array([-1e300, -1e10, -1e3, -1.0, 0.0, 1.0, 1e3, 1e300, np.inf, -np.inf])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = fn.squareplus(x)
    # b / (2(√(x² + b) − x)) → 1/|x| far left (b = 4); (x + √(x² + 4))/2 → x far right; values at ±1, 0 by hand
    want = np.array([1e-300, 1e-10, 1 / (np.sqrt(1e6 + 4) / 2 + 500), (np.sqrt(5) - 1) / 2, 1.0, (1 + np.sqrt(5)) / 2,
                     (1e3 + np.sqrt(1e6 + 4)) / 2, 1e300, np.inf, 0.0])
    np.testing.assert_allclose(got, want, rtol=1e-14)


def _naive_sparsemax(row):
    """Martins & Astudillo 2016, Algorithm 1, one row in plain Python."""
    z = sorted(row, reverse=True)
    k, total = 0, 0.0
    for j, v in enumerate(z, 1):
        if 1 + j * v > total + v:
            k, total = j, total + v
        else:
            break
    tau = (total - 1) / k
    return [max(v - tau, 0.0) for v in row]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), rows=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.1, 1.0, 10.0]), axis=st.sampled_from([-1, 0]))
def test_sparsemax_is_the_simplex_projection_of_the_paper(n, rows, seed, scale, axis):
    x = np.random.default_rng(seed).standard_normal((rows, n)) * scale
    got = fn.sparsemax(x if axis == -1 else x.T, axis=axis)
    got = got if axis == -1 else got.T
    want = np.array([_naive_sparsemax(list(r)) for r in x])
    # τ is a sum of up to n values over n: rtol n·eps on the largest |x|, and the output sums to 1 as closely
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * n * np.finfo(float).eps * (np.abs(x).max() + 1))
    assert (got >= 0).all() and np.allclose(got.sum(axis=-1), 1.0, rtol=0, atol=4 * n * np.finfo(float).eps * (
        np.abs(x).max() + 1))
    gradcheck(lambda t: fn.sparsemax(t, axis=-1), x + np.random.default_rng(seed).uniform(0, 1e-3, x.shape))


def test_keras_sparsemax_of_this_version_is_the_simplex_projection_only_on_one_hot_supports():
    x = np.array([[0.0, 0.5, 1.0], [0.0, 0.1, 5.0]])
    keras_out = keras.ops.convert_to_numpy(keras.activations.sparsemax(torch.from_numpy(x)))
    ours = fn.sparsemax(x)
    np.testing.assert_allclose(ours, [[0, 0.25, 0.75], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(keras_out[1], ours[1], atol=1e-15)  # support of size 1: the two agree
    if not np.isclose(keras_out[0].sum(), 1.0):  # keras-team/keras#23425: fixed upstream after 3.15
        assert not np.allclose(keras_out[0], ours[0])


def test_keras_relu_threshold_forms_are_threshold_then_clip():
    x = np.random.default_rng(1).standard_normal((4, 50)) * 2
    for kw in ({"threshold": 0.5}, {"threshold": 0.3, "negative_slope": 0.2}, {"threshold": 0.3, "max_value": 1.2},
               {"threshold": 1.5, "negative_slope": 0.1, "max_value": 1.0}):
        want = keras.ops.convert_to_numpy(keras.activations.relu(torch.from_numpy(x), **kw))
        got = fn.threshold(x, kw["threshold"], 0.0, kw.get("negative_slope", 0.0))
        if "max_value" in kw:
            got = fn.clip(got, None, kw["max_value"])
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="celu: alpha must be > 0; received 0"):
        fn.celu(np.zeros(2), 0.0)
    with pytest.raises(ValueError, match=r"glu: the size of axis 1 must be even .* received shape \(2, 3\)"):
        fn.glu(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="hard_shrink: threshold \\(λ\\) must be ≥ 0; received -1"):
        fn.hard_shrink(np.zeros(2), -1.0)
    with pytest.raises(TypeError, match="threshold: value must be a real number"):
        fn.threshold(np.zeros(2), 0.0, "0")
    with pytest.raises(ValueError, match="squareplus: b must be > 0"):
        fn.squareplus(np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="sparsemax: axis must be in"):
        fn.sparsemax(np.zeros((2, 3)), axis=2)
    with pytest.raises(TypeError, match="GLU: axis must be a non-zero int"):
        nn.GLU(0)
    with pytest.raises(ValueError, match="SoftShrink: threshold must be ≥ 0"):
        nn.SoftShrink(-0.5)
    with pytest.raises(nn.ShapeError, match="even size on axis -1"):
        nn.GLU().compute_output_shape((4, 4, 3))
    with pytest.raises(nn.ShapeError, match=r"slopes \(3, 1, 4\) broadcast"):
        nn.PReLU(shape=(3, 1, 4)).compute_output_shape((3, 5, 2))


# --- the layers ------------------------------------------------------------------------------------------------
LAYERS = [nn.CELU(), nn.CELU(0.5), nn.GLU(), nn.GLU(axis=2), nn.HardShrink(), nn.HardShrink(1.0), nn.SoftShrink(0.25),
          nn.TanhShrink(), nn.Threshold(0.1, -1.0), nn.Threshold(0.3, 0.0, 0.2), nn.SparsePlus(), nn.SparseSigmoid(),
          nn.Sparsemax(), nn.Sparsemax(axis=1), nn.Squareplus(), nn.Squareplus(1.5), nn.PReLU(shape=(3, 4, 6))]


@pytest.mark.parametrize("layer", LAYERS, ids=repr)
def test_layer_attributes_config_and_forward(layer):
    assert layer.role == "activation"
    assert layer.elementwise is not isinstance(layer, (nn.Sparsemax, nn.GLU))
    again = nn.from_config(layer.get_config())
    assert type(again) is type(layer) and again.get_config() == layer.get_config() and repr(again) == repr(layer)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 6))
    y = _arr(again(x))
    assert np.array_equal(y, _arr(layer(x))) and y.shape[1:] == layer.compute_output_shape((3, 4, 6))


def test_reprs_show_only_non_default_arguments():
    assert repr(nn.CELU()) == "CELU()" and repr(nn.CELU(0.5)) == "CELU(alpha=0.5)"
    assert repr(nn.GLU()) == "GLU()" and repr(nn.GLU(axis=1)) == "GLU(axis=1)"
    assert repr(nn.Threshold(0.1, 0.0)) == "Threshold(threshold=0.1, value=0.0)"
    assert repr(nn.Threshold(0.1, 0.0, 0.2)) == "Threshold(threshold=0.1, value=0.0, negative_slope=0.2)"
    assert repr(nn.PReLU(shape=(3, 1, 4))) == "PReLU(shape=(3, 1, 4))" and repr(nn.Squareplus()) == "Squareplus()"


def test_glu_halves_the_maps_in_summary_and_value_shapes():
    from featuremaps import summary
    model = nn.Sequential([("c", nn.Conv2D(3, 8, 3, padding=1, rng=0)), ("g", nn.GLU()),
                           ("p", nn.GlobalAvgPool2D()), ("d", nn.Dense(4, 2, rng=0))], input_shape=(5, 5, 3))
    assert nn.graph.value_shapes(model, {"input": (5, 5, 3)})["g"] == (5, 5, 4)
    assert "5×5×4" in str(summary(model))
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32)
    assert _arr(model(x)).shape == (2, 2)


# --- Keras load ----------------------------------------------------------------------------------------------
KERAS_NAMES = ["celu", "hard_shrink", "soft_shrink", "sparse_plus", "sparse_sigmoid", "squareplus", "tanh_shrink"]


def _keras_model():
    inp = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="celu")(inp)
    for name in KERAS_NAMES:
        h = keras.layers.Activation(name, name=f"act_{name}")(h)
        h = keras.layers.Conv2D(4, 1, activation=name)(h)
    h = keras.layers.ReLU(threshold=0.2, negative_slope=0.1, max_value=1.5)(h)
    h = keras.layers.Conv2D(4, 1)(h)
    h = keras.layers.ReLU(threshold=0.1)(h)
    h = keras.layers.Conv2D(4, 1)(h)
    h = keras.layers.ReLU(threshold=0.3, max_value=0.9)(h)
    h = keras.layers.Conv2D(4, 1)(h)
    for shared in (None, [2], [3]):  # alpha (6, 6, 4), (6, 1, 4), (6, 6, 1): slopes vary by position
        prelu = keras.layers.PReLU(shared_axes=shared)
        h = prelu(h)
        prelu.set_weights([np.random.default_rng(len(shared or [])).uniform(-1, 1, prelu.alpha.shape)])
    # glu last: Keras's Activation says its output has its input's shape (8 maps here), so a layer after it
    # would be built for 8 maps and fail on the 4 it receives
    h = keras.layers.Conv2D(8, 1)(h)
    return keras.Model(inp, keras.layers.Activation("glu")(h))


def test_keras_models_using_each_name_load_equal_to_predict(tmp_path):
    keras.utils.set_random_seed(0)
    km = _keras_model()
    x = np.random.default_rng(3).standard_normal((2, 6, 6, 3)).astype(np.float32)
    for m in loaded_equal_to_predict(km, x, tmp_path):
        kinds = {type(node.layer) for node in m.nodes()}
        assert {nn.CELU, nn.GLU, nn.HardShrink, nn.SoftShrink, nn.SparsePlus, nn.SparseSigmoid, nn.Squareplus,
                nn.TanhShrink, nn.Threshold, nn.PReLU} <= kinds
        shapes = sorted(tuple(node.layer.shape) for node in m.nodes() if isinstance(node.layer, nn.PReLU))
        assert shapes == [(6, 1, 4), (6, 6, 1), (6, 6, 4)]
        log = "\n".join(m.import_log)
        assert "threshold 0.2" in log and "varies over positions" in log and "GLU(-1)" in log


def test_keras_sparsemax_loads_as_the_simplex_projection(tmp_path):
    keras.utils.set_random_seed(1)
    inp = keras.Input((4, 4, 3))
    pre = keras.layers.Conv2D(5, 1, name="pre")(inp)
    km = keras.Model(inp, keras.layers.Activation("sparsemax", name="sm")(pre))
    km.save(tmp_path / "s.keras")
    m = keras_load(tmp_path / "s.keras")
    x = np.random.default_rng(2).standard_normal((2, 4, 4, 3)).astype(np.float32) * 0.3
    before = np.asarray(keras.Model(inp, pre).predict(x, verbose=0)).astype(np.float64)
    want = np.array([_naive_sparsemax(list(r)) for r in before.reshape(-1, 5)]).reshape(before.shape)
    np.testing.assert_allclose(_arr(m(x)), want, rtol=0, atol=1e-5)  # float32 conv against Keras's float32 conv
    assert "keras-team/keras#23425" in "\n".join(m.import_log)


def test_keras_activation_threshold_is_refused_with_the_reason(tmp_path):
    inp = keras.Input((4,))
    km = keras.Model(inp, keras.layers.Activation("threshold", name="th")(inp))
    km.save(tmp_path / "t.keras")
    with pytest.raises(KerasFileError, match="layer 'th' \\(Activation\\): activation 'threshold': .*no default "
                                             "arguments"):
        keras_load(tmp_path / "t.keras")
    with pytest.raises(TypeError, match="missing 2 required positional arguments"):  # Keras cannot run it either
        km.predict(np.zeros((1, 4), np.float32), verbose=0)


# --- Keras export -----------------------------------------------------------------------------------------------
def _export_layers():
    return [("c", nn.Conv2D(3, 8, 3, padding="same", rng=0)), ("glu", nn.GLU()), ("celu", nn.CELU()),
            ("celu2", nn.CELU(0.6)), ("hs", nn.HardShrink()), ("hs2", nn.HardShrink(0.2)), ("ss", nn.SoftShrink(0.3)),
            ("ts", nn.TanhShrink()), ("sp", nn.SparsePlus()), ("sg", nn.SparseSigmoid()), ("c2", nn.Conv2D(4, 4, 1)),
            ("sq", nn.Squareplus(2.0)), ("th", nn.Threshold(0.1, -0.4)), ("th2", nn.Threshold(0.2, 0.0, 0.3)),
            ("gt", nn.GELU("tanh")), ("spl", nn.Softplus(2.5)), ("spl2", nn.Softplus(0.5, None)),
            ("pr", nn.PReLU(shape=(5, 1, 4)))]


def test_keras_export_of_each_layer_loads_in_keras_equal(tmp_path):
    model = seq(_export_layers(), (5, 5, 3)).eval()
    path = keras_export(model, tmp_path / "out.keras")
    km = keras.models.load_model(path)
    x = np.random.default_rng(4).standard_normal((2, 5, 5, 3)).astype(np.float32)
    ref, got = _arr(model(x)), np.asarray(km.predict(x, verbose=0))
    np.testing.assert_allclose(got, ref, rtol=RTOL32, atol=RTOL32 * float(np.abs(ref).max()))
    back = keras_load(path)
    np.testing.assert_allclose(_arr(back(x)), ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    log = "\n".join(model.export_log)
    assert "GELU(approximate='tanh') written as" in log and "Softplus(beta=2.5)" in log


def test_keras_export_of_sparsemax_is_keras_s_activation(tmp_path):
    model = seq([("c", nn.Conv2D(3, 5, 1, rng=0)), ("sm", nn.Sparsemax())], (4, 4, 3)).eval()
    path = keras_export(model, tmp_path / "sm.keras")
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(_arr(keras_load(path)(x)), _arr(model(x)), rtol=0, atol=1e-6)
    assert "keras-team/keras#23425" in "\n".join(model.export_log)


@pytest.mark.parametrize("layer", [nn.Threshold(0.1, 0.5), nn.Threshold(0.3, 0.0, -0.2), nn.GLU(axis=1),
                                   nn.Softplus(2.0, 5.0), nn.Sparsemax(axis=1), nn.LogSoftmax(axis=1)], ids=repr)
def test_keras_export_refuses_forms_keras_lacks(layer, tmp_path):
    model = nn.Sequential([("L", layer)], input_shape=(4, 4, 6))
    with pytest.raises(ValueError, match="'L' \\("):
        keras_export(model, tmp_path / "no.keras")


# --- ONNX: run, load, export --------------------------------------------------------------------------------------
def test_onnx_shrink_with_another_bias_is_refused():
    model, feeds = conv_then([oh.make_node("Shrink", ["c"], ["y"], lambd=0.5, bias=0.2)])
    with pytest.raises(ValueError, match="Shrink with bias 0.2 and lambd 0.5"):
        onnx_load(model)


@pytest.mark.parametrize("opset", (13, 17))
def test_onnx_export_of_each_layer_runs_in_onnxruntime(opset, tmp_path):
    layers = _export_layers() + [("th3", nn.Threshold(0.2, 0.0)), ("sm", nn.Sparsemax()), ("pr2", nn.PReLU(4))]
    check_export(seq(layers, (5, 5, 3)), tmp_path, opset=opset)


def test_onnx_export_then_load_keeps_the_layers(tmp_path):
    model = seq([("c", nn.Conv2D(3, 4, 1, rng=0)), ("celu", nn.CELU(0.5)), ("hs", nn.HardShrink(0.3)),
                 ("ss", nn.SoftShrink(0.2)), ("th", nn.Threshold(0.1, 0.0))], (5, 5, 3))
    back = onnx_load(onnx_export(model, tmp_path / "a.onnx", opset=17))
    kinds = [type(node.layer).__name__ for node in back.nodes()]
    assert {"CELU", "HardShrink", "SoftShrink", "Threshold"} <= set(kinds)
    x = np.random.default_rng(2).standard_normal((2, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(_arr(back(x)), _arr(model(x)), rtol=1e-5, atol=1e-6)


# --- torch from_module ------------------------------------------------------------------------------------------
class Shrinks(torch.nn.Module):
    def __init__(self):
        super().__init__()
        t = torch.nn
        self.conv = t.Conv2d(3, 8, 3, padding=1)
        self.glu = t.GLU(dim=1)
        self.acts = t.ModuleList([t.CELU(0.7), t.Hardshrink(0.3), t.Softshrink(0.2), t.Tanhshrink(),
                                  t.Threshold(0.1, -0.5)])

    def forward(self, x):
        h = self.glu(self.conv(x))
        for a in self.acts:
            h = a(h)
        h = TF.celu(h) + TF.hardshrink(h, 0.1) + TF.softshrink(h) + TF.tanhshrink(h) + TF.threshold(h, 0.2, 1.0)
        return TF.glu(torch.cat([h, h * 0.5], dim=1), dim=1)


def test_torch_from_module_on_every_form_float64():
    _, kinds = converted_equal_to_torch(Shrinks)
    assert {nn.CELU, nn.GLU, nn.HardShrink, nn.SoftShrink, nn.TanhShrink, nn.Threshold} <= kinds
