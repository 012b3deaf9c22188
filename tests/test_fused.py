"""The direct compiled conv (`functional._direct`) and the fused inference plan (`nn.fused`) agree with
the NumPy path to float rounding, and with torch; the plan never runs under autograd or with the kernels off.

Tolerances: a sum of n products rounded in another order differs by at most about n·eps·Σ|terms|
(eps of the dtype); random-sign rounding errors grow like √n, so these tests allow
4·eps·√n·Σ|terms| (Σ|terms| is the conv of |x| with |w|), capped at the issue's limits (rtol 1e-5
float32, 1e-12 float64). The plan's whole-model tolerance takes n as the model's longest reduction
and the scale as max |output| of the layer-by-layer path.
"""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import featuremaps.functional as F
from featuremaps import Tensor, models, no_grad, nn
from featuremaps.functional import _direct, accel
from featuremaps.functional import threads as threads_mod
from featuremaps.nn import fused
from featuremaps.tensor import as_array
from tests.test_accel import _numba_on

CAP = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def _rtol(dtype, n_terms: int) -> float:
    dtype = np.dtype(dtype)
    return min(4 * np.finfo(dtype).eps * np.sqrt(n_terms), CAP[dtype])


def _assert_close(got, want, scale, rtol, name=""):
    """Same NaN and ±inf positions; elsewhere |got − want| ≤ rtol·scale (scale ≥ |want|, elementwise or one number)."""
    assert got.shape == want.shape and got.dtype == want.dtype, name
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{name}: NaN positions")
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf], err_msg=f"{name}: ±inf")
    ok = np.isfinite(want)
    scale = np.broadcast_to(scale, want.shape)
    err = np.abs(got[ok].astype(np.float64) - want[ok])
    bound = rtol * scale[ok]
    assert np.all(err <= bound), f"{name}: max error {err.max():.3g}, bound there {bound[err.argmax()]:.3g}"


@st.composite
def conv_case(draw):
    c = draw(st.sampled_from([1, 2, 3, 6, 20]))
    o = draw(st.integers(1, 24))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    hp = draw(st.integers(dh * (kh - 1) + 1, 13))
    wp = draw(st.integers(dw * (kw - 1) + 1, 13))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    special = draw(st.booleans())
    return (draw(st.integers(1, 5)), hp, wp, c), (kh, kw, c, o), (sh, sw), (dh, dw), dtype, special, \
        draw(st.integers(0, 2 ** 16))


def _sprinkle(x, rng):
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=max(1, flat.size // 20), replace=False)
    flat[picks] = rng.choice([np.nan, np.inf, -np.inf], size=picks.size)


@settings(max_examples=60, deadline=None)
@given(conv_case(), st.booleans())
def test_direct_conv_agrees_with_numpy_path(case, two_threads):
    xs, ws, s, d, dtype, special, seed = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    if special:
        _sprinkle(x, rng)
    with np.errstate(invalid="ignore"):  # inf · 0 and inf − inf: NaN, as wanted
        want = F.conv2d(x, w, stride=s, dilation=d)  # xp is already "padded": valid conv
    scale = F.conv2d(np.abs(np.nan_to_num(x, posinf=0, neginf=0)), np.abs(w), stride=s, dilation=d)  # Σ|terms|
    out = np.full(want.shape, np.nan, dtype)
    mp = pytest.MonkeyPatch()
    if two_threads:
        mp.setattr(threads_mod, "THREADS", 2)
        mp.setattr(_direct, "MIN_MACS", 0)
    try:
        with _numba_on():
            _direct.conv_forward(x, w, s, d, out)
    finally:
        mp.undo()
    _assert_close(out, want, scale, _rtol(dtype, ws[0] * ws[1] * ws[2]), "direct conv")


def test_direct_conv_bad_arguments_are_named():
    x, w = np.zeros((1, 6, 6, 2), np.float32), np.zeros((3, 3, 2, 4), np.float32)
    with _numba_on():
        with pytest.raises(ValueError, match=r"out must be \(n, oh, ow, o\) with \(oh, ow\) ≤ \(4, 4\)"):
            _direct.conv_forward(x, w, 1, 1, np.zeros((1, 5, 4, 4), np.float32))
        with pytest.raises(ValueError, match="must share a dtype"):
            _direct.conv_forward(x, w.astype(np.float64), 1, 1, np.zeros((1, 4, 4, 4), np.float32))
        with pytest.raises(ValueError, match="C-contiguous"):
            _direct.conv_forward(x[:, ::2], w, 1, 1, np.zeros((1, 1, 4, 4), np.float32))


def test_direct_conv_rule_encodes_the_measurement():
    """`max_out_maps` is the measured bound (tests/test_conv_algorithms.py checks it on the grid's
    layers); switching the kernels off makes `pays` and `available` false."""
    with _numba_on():
        assert _direct.pays(3, 5, 5, 16) and _direct.pays(1, 5, 5, 6) and _direct.pays(1, 3, 3, 4)
        assert not _direct.pays(3, 5, 5, 32) and not _direct.pays(1, 3, 3, 8) and not _direct.pays(20, 5, 5, 1)
        assert not _direct.pays(1, 1, 1, 1) and not _direct.pays(2, 3, 3, 4, groups=2)
    with accel.numba_disabled():
        assert not _direct.available() and not _direct.pays(1, 3, 3, 1)


def _reference_dw(x, dy, w_shape, s, d):
    """dW of the valid conv by the NumPy path (im2col + colsᵀ · dy), and Σ|terms|."""
    def dw_of(xa, dya):
        xt, wt = Tensor(xa), Tensor(np.zeros(w_shape, xa.dtype), requires_grad=True)
        F.conv2d(xt, wt, stride=s, dilation=d).backward(dya)
        return wt.grad
    with accel.numba_disabled():
        return dw_of(x, dy), dw_of(np.abs(np.nan_to_num(x, posinf=0, neginf=0)), np.abs(dy))


@settings(max_examples=60, deadline=None)
@given(conv_case(), st.booleans())
def test_direct_weight_grad_agrees_with_numpy_path(case, two_threads):
    """dW from the planes against the column path, to rounding over the n·oh·ow terms of each sum;
    non-finite input gives None (the caller then takes the column path)."""
    xs, ws, s, d, dtype, special, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    if special:
        _sprinkle(x, rng)
    y = np.empty(F.conv2d(x, np.zeros(ws, dtype), stride=s, dilation=d).shape, dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    mp = pytest.MonkeyPatch()
    if two_threads:
        mp.setattr(threads_mod, "THREADS", 2)
        mp.setattr(_direct, "MIN_MACS", 0)
    try:
        with _numba_on():
            planes = _direct.conv_forward(x, rng.standard_normal(ws).astype(dtype), s, d, y)
            got = _direct.weight_grad(planes, dy, ws)
    finally:
        mp.undo()
    if special:
        assert got is None
        return
    want, scale = _reference_dw(x, dy, ws, s, d)
    _assert_close(got, want, scale, _rtol(dtype, dy.shape[0] * dy.shape[1] * dy.shape[2]), "direct dW")


@settings(max_examples=25, deadline=None)
@given(conv_case())
def test_direct_conv_and_weight_grad_agree_with_torch(case):
    """y and dW of the direct kernels against torch's, float64, one call with its backward."""
    import torch  # the test extra's oracle: a missing torch fails here rather than skipping
    xs, ws, s, d, _, _, seed = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)  # float64, the oracle's precision
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_()
    yt = torch.nn.functional.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), wt, stride=s, dilation=d)
    dy = rng.standard_normal(yt.shape)
    yt.backward(torch.from_numpy(dy))
    dy = np.ascontiguousarray(dy.transpose(0, 2, 3, 1))
    out = np.empty(dy.shape)
    with _numba_on():
        dw = _direct.weight_grad(_direct.conv_forward(x, w, s, d, out), dy, ws)
    scale = F.conv2d(np.abs(x), np.abs(w), stride=s, dilation=d)
    want_y = np.ascontiguousarray(yt.detach().numpy().transpose(0, 2, 3, 1))
    _assert_close(out, want_y, scale, _rtol(np.float64, ws[0] * ws[1] * ws[2]), "y vs torch")
    _, dw_scale = _reference_dw(x, dy, ws, s, d)
    want_dw = np.ascontiguousarray(wt.grad.numpy().transpose(2, 3, 1, 0))
    _assert_close(dw, want_dw, dw_scale, _rtol(np.float64, dy.size // dy.shape[3]), "dW vs torch")


def test_direct_weight_grad_bad_arguments_are_named():
    x, w = np.zeros((1, 6, 6, 2), np.float32), np.zeros((3, 3, 2, 4), np.float32)
    with _numba_on():
        planes = _direct.conv_forward(x, w, 1, 1, np.zeros((1, 4, 4, 4), np.float32))
        with pytest.raises(ValueError, match=r"dy must be float32 \(1, 4, 4, 4\)"):
            _direct.weight_grad(planes, np.zeros((1, 4, 4, 3), np.float32), w.shape)
        with pytest.raises(ValueError, match="must be a 4-D float32/float64 ndarray"):
            _direct.weight_grad(planes, [[1.0]], w.shape)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 7), st.integers(1, 3),
       st.sampled_from([np.float32, np.float64]), st.sampled_from(["normal", "ties", "special"]), st.booleans(),
       st.integers(0, 2 ** 16))
def test_pool_bias_equals_pool_of_biased(n, h, w, c, k, dtype, kind, bias, seed):
    """max(y) + b is max(y + b) exactly (round-to-nearest is monotonic and no sum is reordered), so this
    one is compared bit for bit, NaN positions included."""
    if h < k or w < k:
        h, w = max(h, k), max(w, k)
    rng = np.random.default_rng(seed)
    y = (rng.integers(-1, 2, (n, h, w, c)) if kind == "ties" else rng.standard_normal((n, h, w, c))).astype(dtype)
    if kind == "special":
        _sprinkle(y, rng)
    b = rng.standard_normal(c).astype(dtype) if bias else None
    want = F.max_pool2d(y if b is None else y + b, k)
    out = np.empty(want.shape, dtype)
    with _numba_on():
        _direct.pool_bias(y, b, k, out)
    np.testing.assert_array_equal(out, want)


def _perturbed(name: str, dtype, seed: int = 0):
    """A zoo model in eval mode with random weights (lenet's output layer starts at 0) and, for
    BatchNorm, random running statistics."""
    return _perturb(models.get(name, rng=np.random.default_rng(seed)), dtype, seed)


def _perturb(model, dtype, seed: int):
    """`model` with noise added to every parameter and random BatchNorm statistics, as `dtype`, in eval mode."""
    rng = np.random.default_rng(seed + 1)
    for p in model.parameters():
        p.data = (p.data + 0.1 * rng.standard_normal(p.shape)).astype(p.data.dtype)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2D):
            m.running_mean[...] = 0.1 * rng.standard_normal(m.num_features)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features)
    return model.astype(dtype).eval()


def _longest_reduction(model) -> int:
    n = 1
    for m in model.modules():
        if isinstance(m, nn.Conv2D):
            n = max(n, m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups)
        elif isinstance(m, nn.Dense):
            n = max(n, m.weight.shape[0])
    return n


def _layer_by_layer(model, x):
    h = x
    for layer in model:
        h = layer(h)
    return h


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plan_agrees_with_layer_by_layer_on_the_zoo(name, dtype):
    model = _perturbed(name, dtype)
    x = np.random.default_rng(2).standard_normal((3, *model.input_shape)).astype(dtype)
    x_before = x.copy()
    with no_grad(), _numba_on():
        assert fused.applies()
        want = _layer_by_layer(model, Tensor(x)).data
        got = model(Tensor(x))
        got_nd, want_nd = model(x), _layer_by_layer(model, x)
    assert isinstance(got, Tensor) and type(got_nd) is type(want_nd)  # the same kind as the layers give
    np.testing.assert_array_equal(x, x_before)  # the caller's input is never written to
    scale = np.abs(want).max()
    _assert_close(got.data, want, scale, _rtol(dtype, _longest_reduction(model)), name)
    _assert_close(np.asarray(getattr(got_nd, "data", got_nd)), want, scale, _rtol(dtype, _longest_reduction(model)),
                  name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plan_propagates_nan_and_inf_like_the_layers(dtype):
    model = _perturbed("lenet", dtype)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 28, 28, 1)).astype(dtype)
    x[0, 3, 4, 0], x[1, 10, 10, 0], x[2, 20, 7, 0] = np.nan, np.inf, -np.inf
    with no_grad(), _numba_on():
        want = _layer_by_layer(model, Tensor(x)).data
        got = model(Tensor(x)).data
    _assert_close(got, want, np.abs(np.nan_to_num(want, nan=0, posinf=0, neginf=0)).max(),
                  _rtol(dtype, _longest_reduction(model)))
    assert np.isnan(got[0]).all() and not np.isnan(got[3]).any()


def test_plan_is_off_under_autograd_and_without_the_kernels(monkeypatch):
    model = _perturbed("lenet", np.float64)
    x = np.random.default_rng(4).standard_normal((2, 28, 28, 1))

    def refuse(*args, **kwargs):
        raise AssertionError("the plan ran")
    monkeypatch.setattr(fused, "run_chain", refuse)
    with _numba_on():
        out = model(Tensor(x))  # autograd on: the layers themselves, bit-identical to the loop
        np.testing.assert_array_equal(out.data, _layer_by_layer(model, Tensor(x)).data)
        with no_grad(), accel.numba_disabled():
            assert not fused.applies()
            model(x)


def test_predict_logits_uses_the_plan(monkeypatch):
    from featuremaps import train
    model = _perturbed("lenet", np.float32)
    calls = []
    run = fused.run_chain
    monkeypatch.setattr(fused, "run_chain", lambda layers, x: calls.append(1) or run(layers, x))
    images = np.random.default_rng(5).integers(0, 256, (10, 28, 28, 1), dtype=np.uint8)
    with _numba_on():
        logits = train.predict_logits(model, images, batch_size=4)
    assert len(calls) == 3 and logits.shape == (10, 10)


def test_batch_norm_fold_and_in_place_activations_keep_parameters():
    model = _perturbed("cnn", np.float32)
    before = [p.data.copy() for p in model.parameters()]
    x = np.random.default_rng(6).standard_normal((2, 28, 28, 1)).astype(np.float32)
    with no_grad(), _numba_on():
        model(x)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)


def test_kernels_are_cached_on_disk():
    """A second process loads the compiled kernels from numba's cache instead of compiling them."""
    code = ("import numpy as np\nfrom featuremaps.functional import _direct, _fused, accel\naccel.use_numba(True)\n"
            "x = np.ones((1, 4, 4, 2), np.float32); w = np.ones((2, 2, 2, 3), np.float32)\n"
            "_direct.conv_forward(x, w, 1, 1, np.empty((1, 3, 3, 3), np.float32))\n"
            "_direct.pool_bias(x, None, 2, np.empty((1, 2, 2, 2), np.float32))\n"
            "print(sum(len(k.stats.cache_misses) for k in (_fused.direct_conv, _fused.pool_bias)),"
            " sum(len(k.stats.cache_hits) for k in (_fused.direct_conv, _fused.pool_bias)))")
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "2"], out


# --- Graph models: each simple chain of nodes runs as the plan ------------------------------------------

def _residual_graph(dtype, seed: int = 0):
    """conv–BN–ReLU–conv–BN + a 1×1 projection of the input, Add, ReLU, then conv–tanh–pool–flatten–dense;
    the first ReLU is also read by a second branch (a fan-out ends a chain) and is a graph output."""
    rng = np.random.default_rng(seed)
    nodes = [("c1", nn.Conv2D(3, 8, 3, padding=1, bias=False, rng=rng), "x"), ("bn1", nn.BatchNorm2D(8), "c1"),
             ("r1", nn.ReLU(), "bn1"), ("c2", nn.Conv2D(8, 8, 3, padding=1, bias=False, rng=rng), "r1"),
             ("bn2", nn.BatchNorm2D(8), "c2"), ("proj", nn.Conv2D(3, 8, 1, rng=rng), "x"),
             ("add", nn.Add(), ["bn2", "proj"]), ("r2", nn.ReLU(), "add"),
             ("c3", nn.Conv2D(8, 6, 3, rng=rng), "r2"), ("t3", nn.Tanh(), "c3"), ("p3", nn.MaxPool2D(2), "t3"),
             ("side", nn.MaxPool2D(2), "r1"), ("flat", nn.Flatten(), "p3"),
             ("fc", nn.Dense(6 * 5 * 5, 4, rng=rng), "flat")]
    return _perturb(nn.Graph({"x": (12, 12, 3)}, nodes, ["fc", "r1", "side"]), dtype, seed)


def _graph_layer_by_layer(model, x) -> tuple:
    env = model.trace(x)  # each node's layer called on its inputs: no plan
    return tuple(as_array(env[o]) for o in model.output_names)


def _check_graph_plan(model, x, dtype, monkeypatch, expect_chains):
    calls = []
    run = fused.run_chain
    monkeypatch.setattr(fused, "run_chain", lambda layers, h: calls.append(len(layers)) or run(layers, h))
    x_before = x.copy()
    with no_grad(), _numba_on():
        assert fused.applies()
        want = _graph_layer_by_layer(model, Tensor(x))
        got = model(Tensor(x))
    got = got if isinstance(got, tuple) else (got,)
    assert len(calls) == expect_chains and all(c > 1 for c in calls), calls
    assert all(isinstance(g, Tensor) for g in got)
    np.testing.assert_array_equal(x, x_before)  # the caller's input is never written to
    rtol = _rtol(dtype, _longest_reduction(model))
    for name, g, w in zip(model.output_names, got, want):
        _assert_close(g.data, w, np.abs(w).max(), rtol, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_graph_plan_agrees_with_layer_by_layer_on_a_residual_graph(dtype, monkeypatch):
    model = _residual_graph(dtype)
    chains = fused.graph_chains(model.nodes(), model.output_names)
    assert {k: [c.name for c in v] for k, v in chains.items()} == {
        "c1": ["c1", "bn1", "r1"], "c2": ["c2", "bn2"], "r2": ["r2", "c3", "t3", "p3", "flat", "fc"]}
    x = np.random.default_rng(2).standard_normal((3, 12, 12, 3)).astype(dtype)
    _check_graph_plan(model, x, dtype, monkeypatch, expect_chains=3)


def test_graph_plan_is_off_under_autograd(monkeypatch):
    model = _residual_graph(np.float64)
    x = np.random.default_rng(4).standard_normal((2, 12, 12, 3))

    def refuse(*args, **kwargs):
        raise AssertionError("the plan ran")
    monkeypatch.setattr(fused, "run_chain", refuse)
    with _numba_on():
        got = model(Tensor(x))  # autograd on: every node runs as itself, bit-identical to trace
        for g, w in zip(got, _graph_layer_by_layer(model, Tensor(x))):
            np.testing.assert_array_equal(g.data, w)
        with no_grad(), accel.numba_disabled():
            model(Tensor(x))


def test_graph_plan_agrees_on_an_onnx_loaded_resnet(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from featuremaps.onnx import load
    from tests import torch_nets
    module, shape = torch_nets.build("resnet_like")
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    model = load(torch_nets.export(module, tmp_path / "resnet_like.onnx", x, dynamo=False))
    assert isinstance(model, nn.Graph)
    expect = len(fused.graph_chains(model.nodes(), model.output_names))
    assert expect > 0
    _check_graph_plan(model, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.float32, monkeypatch, expect)
