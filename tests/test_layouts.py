"""featuremaps.layouts against independent oracles: torch (float64) for the weight layouts, the flatten
order and BatchNorm; scipy.signal.convolve2d (a true convolution) for Theano's flip; a NumPy
re-implementation of Caffe's pooling (its output-size formula and window clipping) for
caffe_pool_padding; Keras for its BatchNorm momentum; and verify_conversion on a torch LeNet."""
import math

import keras
import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings, strategies as st

import featuremaps.functional as fn
from featuremaps import layouts, nn
from tests.oracles import assert_sum_close
from tests.torch_nets import LeNet

RNG = np.random.default_rng(0)


def _np(out):
    """A layer's output (a Tensor when called on an array) as an ndarray."""
    return np.asarray(getattr(out, "data", out))


def _t(a):
    """A torch tensor in torch's default (row-major) memory format, whatever `a`'s strides."""
    return torch.from_numpy(np.array(a)).clone(memory_format=torch.contiguous_format)


def _nchw(x):
    return _t(x.transpose(0, 3, 1, 2))  # (n, h, w, c) -> (n, c, h, w)


def _nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)  # (n, c, h, w) -> (n, h, w, c)


# --- OIHW <-> HWIO ------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
def test_oihw_to_hwio_runs_like_torch_conv2d(groups, cin_g, cout_g, kh, kw):
    rng = np.random.default_rng(cin_g * 100 + cout_g * 10 + kh)
    cin, cout = groups * cin_g, groups * cout_g
    x = rng.standard_normal((2, kh + 3, kw + 2, cin))
    w_oihw = rng.standard_normal((cout, cin_g, kh, kw))
    ours = fn.conv2d(x, layouts.oihw_to_hwio(w_oihw), groups=groups)
    ref = _nhwc(TF.conv2d(_nchw(x), _t(w_oihw), groups=groups))
    bound = _nhwc(TF.conv2d(_nchw(np.abs(x)), _t(np.abs(w_oihw)), groups=groups))
    assert_sum_close(ours, ref, bound, np.float64, kh * kw * cin_g)
    assert layouts.oihw_to_hwio(w_oihw).shape == (kh, kw, cin_g, cout)
    assert np.array_equal(layouts.hwio_to_oihw(layouts.oihw_to_hwio(w_oihw)), w_oihw)  # a pure permutation


def test_hwio_to_oihw_runs_in_torch_and_maps_conv_transpose():
    x, w = RNG.standard_normal((1, 6, 5, 4)), RNG.standard_normal((3, 3, 4, 5))
    ref = _nhwc(TF.conv2d(_nchw(x), _t(layouts.hwio_to_oihw(w))))
    bound = _nhwc(TF.conv2d(_nchw(np.abs(x)), _t(layouts.hwio_to_oihw(np.abs(w)))))
    assert_sum_close(fn.conv2d(x, w), ref, bound, np.float64, 36)
    # torch's ConvTranspose2d weight (in, out/groups, kh, kw) -> featuremaps' (kh, kw, out/groups, in)
    wt = RNG.standard_normal((4, 3, 3, 2))  # (in 4, out/groups 3, 3, 2), groups 2 -> 6 outputs
    ours = fn.conv_transpose2d(x, layouts.oihw_to_hwio(wt), stride=2, groups=2)
    ref = _nhwc(TF.conv_transpose2d(_nchw(x), _t(wt), stride=2, groups=2))
    bound = _nhwc(TF.conv_transpose2d(_nchw(np.abs(x)), _t(np.abs(wt)), stride=2, groups=2))
    assert_sum_close(ours, ref, bound, np.float64, 12)


@pytest.mark.parametrize("f, text", [(layouts.oihw_to_hwio, r"oihw_to_hwio: weight must be a 4-D OIHW .*\(3, 3\)"),
                                     (layouts.hwio_to_oihw, r"hwio_to_oihw: weight must be a 4-D HWIO .*\(3, 3\)")])
def test_layout_errors_name_the_argument(f, text):
    with pytest.raises(ValueError, match=text):
        f(np.zeros((3, 3)))
    with pytest.raises(TypeError, match="weight must be a numeric array"):
        f(np.array([["a"]]))
    with pytest.raises(ValueError, match=r"layout must be one of \('HWIO', 'OIHW'\); received 'NCHW'"):
        layouts.flip_kernels(np.zeros((1, 1, 1, 1)), "NCHW")


# --- Theano's flip: scipy's convolve2d is a true convolution ------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 4), st.integers(0, 4), st.integers(1, 3),
       st.integers(1, 3), st.sampled_from(["OIHW", "HWIO"]))
def test_flip_kernels_turns_a_true_convolution_into_featuremaps_conv(kh, kw, dh, dw, cin, cout, layout):
    rng = np.random.default_rng(kh * 1000 + kw * 100 + dh * 10 + dw)
    x = rng.standard_normal((1, kh + dh, kw + dw, cin))
    w_theano = rng.standard_normal((cout, cin, kh, kw))  # Theano's (out, in, kh, kw), applied with a flip
    # Theano's conv2d (filter_flip=True): y[o] = Σ_i true-convolve(x_i, W[o, i]), 'valid'
    ref = np.stack([sum(scipy.signal.convolve2d(x[0, :, :, i], w_theano[o, i], mode="valid") for i in range(cin))
                    for o in range(cout)], axis=-1)
    if layout == "OIHW":
        w = layouts.oihw_to_hwio(layouts.flip_kernels(w_theano, "OIHW"))
    else:
        w = layouts.flip_kernels(layouts.oihw_to_hwio(w_theano), "HWIO")  # the flip commutes with the transpose
    bound = fn.conv2d(np.abs(x), np.abs(w))[0]
    assert_sum_close(fn.conv2d(x, w)[0], ref, bound, np.float64, kh * kw * cin)
    if kh * kw > 1 and not np.allclose(w_theano, w_theano[:, :, ::-1, ::-1]):  # without the flip: wrong
        assert not np.allclose(fn.conv2d(x, layouts.oihw_to_hwio(w_theano))[0], ref)
    assert np.array_equal(layouts.flip_kernels(layouts.flip_kernels(w, "HWIO"), "HWIO"), w)


# --- BGR -> RGB -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["HWIO", "OIHW"])
def test_bgr_to_rgb_makes_a_bgr_trained_first_conv_take_rgb(layout):
    rgb = RNG.standard_normal((1, 7, 6, 3))
    bgr = rgb[..., ::-1]
    w_hwio = RNG.standard_normal((3, 3, 3, 4))
    w = w_hwio if layout == "HWIO" else layouts.hwio_to_oihw(w_hwio)
    converted = layouts.bgr_to_rgb(w, layout)
    converted = converted if layout == "HWIO" else layouts.oihw_to_hwio(converted)
    want = fn.conv2d(bgr, w_hwio)  # what the Caffe model computed on its BGR input
    assert_sum_close(fn.conv2d(rgb, converted), want, fn.conv2d(np.abs(rgb), np.abs(w_hwio)), np.float64, 27)
    assert not np.allclose(fn.conv2d(rgb, w_hwio), want)
    with pytest.raises(ValueError, match=r"bgr_to_rgb: weight must have 3 input channels \(axis 1 of OIHW\)"):
        layouts.bgr_to_rgb(np.zeros((4, 1, 3, 3)), "OIHW")


# --- flatten order --------------------------------------------------------------------------------------
ORDERS = ["CHW", "HWC", "HCW", "WHC", "CWH", "WCH"]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.sampled_from(ORDERS), st.sampled_from(ORDERS))
def test_flatten_permutation_reorders_flat_vectors(h, w, c, source, target):
    x = np.random.default_rng(h * 100 + w * 10 + c).standard_normal((h, w, c))
    flat = {o: x.transpose(["HWC".index(a) for a in o]).ravel() for o in ORDERS}  # (h·w·c,) in order o
    perm = layouts.flatten_permutation(h, w, c, source=source, target=target)
    assert np.array_equal(flat[source][perm], flat[target])  # a pick: exact
    back = layouts.flatten_permutation(h, w, c, source=target, target=source)
    assert np.array_equal(perm[back], np.arange(h * w * c))


def test_flatten_permutation_moves_a_torch_linear_onto_featuremaps_flatten():
    x = RNG.standard_normal((2, 3, 4, 5))  # (n, h, w, c)
    lin = RNG.standard_normal((7, 60))  # torch Linear weight (out, in), trained on (c, h, w) flattening
    ref = torch.flatten(_nchw(x), 1).numpy() @ lin.T
    perm = layouts.flatten_permutation(3, 4, 5)
    dense = nn.Dense(60, 7).astype(np.float64)
    dense.load_state_dict({"weight": lin.T[perm], "bias": np.zeros(7)})  # ours (in, out): rows permuted
    ours = _np(dense(nn.Flatten()(x)))
    ours_torch_layout = _np(nn.Flatten()(x)) @ lin[:, perm].T  # (out, in): columns permuted
    bound = np.abs(x).reshape(2, -1) @ np.abs(lin.T[perm])
    assert_sum_close(ours, ref, bound, np.float64, 61)
    assert_sum_close(ours_torch_layout, ref, bound, np.float64, 61)
    assert not np.allclose(_np(nn.Flatten()(x)) @ lin.T, ref)  # without it: wrong


def test_flatten_permutation_errors():
    with pytest.raises(ValueError, match=r"flatten_permutation: source must be an ordering of the letters H, W, C"):
        layouts.flatten_permutation(2, 2, 2, source="NCHW")
    with pytest.raises(ValueError, match=r"flatten_permutation: c must be an int ≥ 1; received 0"):
        layouts.flatten_permutation(2, 2, 0)


# --- Caffe's ceil-mode pooling: a NumPy re-implementation of Caffe's PoolingLayer ------------------------
def caffe_pool(x, k, s, p, mode):
    """Caffe's PoolingLayer forward on (h, w) `x` with (h, w) pairs k, s, p: pooled size
    ceil((h + 2p − k) / s) + 1, one fewer when there is padding and the last window starts at or past
    h + p; MAX over the window clipped to the input; AVE divides by the window clipped to h + p."""
    (h, w), out = x.shape, []
    sizes = [math.ceil((n + 2 * pp - kk) / ss) + 1 for n, kk, ss, pp in zip((h, w), k, s, p)]
    if p[0] or p[1]:
        sizes = [o - ((o - 1) * ss >= n + pp) for o, n, ss, pp in zip(sizes, (h, w), s, p)]
    for i in range(sizes[0]):
        row = []
        for j in range(sizes[1]):
            hs, ws = i * s[0] - p[0], j * s[1] - p[1]
            if mode == "max":
                he, we = min(hs + k[0], h), min(ws + k[1], w)
                row.append(x[max(hs, 0):he, max(ws, 0):we].max())
            else:
                he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
                size = (he - hs) * (we - ws)
                row.append(x[max(hs, 0):min(he, h), max(ws, 0):min(we, w)].sum() / size)
        out.append(row)
    return np.array(out)


@st.composite
def caffe_case(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    p = (draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)))  # Caffe: pad < kernel
    size = tuple(draw(st.integers(max(1, kk - 2 * pp), kk + 7)) for kk, pp in zip(k, p))
    return size, k, s, p


def _caffe_case_ok(size, k, s, p):
    try:
        layouts.caffe_pool_padding(size, k, s, p)
    except ValueError as e:
        assert "no padding reproduces it" in str(e)
        assert not any(p) and any(kk < ss for kk, ss in zip(k, s))
        return False
    return True


@settings(max_examples=80, deadline=None)
@given(caffe_case())
def test_caffe_pool_padding_equals_caffe_max_pooling(case):
    size, k, s, p = case
    assume(_caffe_case_ok(size, k, s, p))
    x = np.random.default_rng(sum(size) * 7 + k[0]).standard_normal((1, *size, 2))
    want = np.stack([caffe_pool(x[0, :, :, c], k, s, p, "max") for c in range(2)], axis=-1)
    assert layouts.caffe_pool_output_size(size, k, s, p) == want.shape[:2]
    pads = layouts.caffe_pool_padding(size, k, s, p)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-np.inf)  # (1, h + t + b, w + l + r, 2)
    assert np.array_equal(fn.max_pool2d(xp, k, s)[0], want)  # max is a pick: exact
    if all(max(pp) <= kk // 2 for pp, kk in zip(pads, k)):  # what MaxPool2D's padding allows
        assert np.array_equal(_np(nn.MaxPool2D(k, s, padding=pads)(x))[0], want)
    if all(pp <= kk // 2 for pp, kk in zip(p, k)):  # torch's ceil_mode, and ours, with Caffe's own pad
        if any(p) or all(kk >= ss for kk, ss in zip(k, s)):  # (Caffe skips the clipping rule without pads)
            ref = TF.max_pool2d(_nchw(x), k, s, p, ceil_mode=True)
            assert np.array_equal(_nhwc(ref)[0], want)
            assert np.array_equal(fn.max_pool2d(x, k, s, p, ceil_mode=True)[0], want)


@settings(max_examples=60, deadline=None)
@given(caffe_case())
def test_caffe_average_pooling_is_ceil_mode_avg_pool_with_caffe_pad(case):
    size, k, s, p = case
    assume(all(pp <= kk // 2 for pp, kk in zip(p, k)) and _caffe_case_ok(size, k, s, p))
    assume(any(p) or all(kk >= ss for kk, ss in zip(k, s)))
    x = np.random.default_rng(sum(size) * 5 + s[0]).standard_normal((1, *size, 1))
    want = caffe_pool(x[0, :, :, 0], k, s, p, "ave")
    ours = _np(nn.AvgPool2D(k, s, padding=p, ceil_mode=True, count_include_pad=True)(x))[0, :, :, 0]
    bound = caffe_pool(np.abs(x[0, :, :, 0]), k, s, p, "ave")
    assert_sum_close(ours, want, bound, np.float64, k[0] * k[1] + 1)
    ref = _nhwc(TF.avg_pool2d(_nchw(x), k, s, p, ceil_mode=True, count_include_pad=True))[0, :, :, 0]
    assert_sum_close(ref, want, bound, np.float64, k[0] * k[1] + 1)


def test_caffe_pool_padding_examples_and_errors():
    # 6 wide, 3×3 stride 2: Caffe gives 3 windows (0-2, 2-4, 4-6): one extra pixel at the bottom/right
    assert layouts.caffe_pool_padding(6, 3, 2, 0) == ((0, 1), (0, 1))
    assert layouts.caffe_pool_output_size((6, 5), 3, 2, 0) == (3, 2)
    # 4 high, pad 1: ceil((4 + 2 − 3) / 2) + 1 = 3 windows; the last starts at 4 < 4 + 1, so it stays
    assert layouts.caffe_pool_padding((4, 4), 3, 2, 1) == ((1, 2), (1, 2))
    # 7 high, pad 1, 2×2 stride 2: ceil(7 / 2) + 1 = 5, but the 5th starts at 8 ≥ 7 + 1: clipped to 4
    assert layouts.caffe_pool_output_size(7, 2, 2, 1) == (4, 4)
    with pytest.raises(ValueError, match=r"pad must be smaller than kernel \(Caffe's check\) along H; "
                                         r"received pad 3, kernel 3"):
        layouts.caffe_pool_padding(8, 3, 1, 3)
    with pytest.raises(ValueError, match=r"with no padding, Caffe's last window along H starts at 6"):
        layouts.caffe_pool_padding(5, 1, 3, 0)
    with pytest.raises(ValueError, match=r"caffe_pool_output_size: stride must be an int ≥ 1; received 0"):
        layouts.caffe_pool_padding(5, 2, 0, 0)


# --- BatchNorm conventions ------------------------------------------------------------------------------
def _stats(c, seed):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, c), rng.uniform(-0.5, 0.5, c), rng.uniform(-1, 1, c), rng.uniform(0.5, 2, c))


def test_batchnorm_from_torch_runs_like_torch_in_eval_and_training():
    g, b, m, v = _stats(4, 1)
    tbn = torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.3).double()
    with torch.no_grad():
        for p, a in zip((tbn.weight, tbn.bias, tbn.running_mean, tbn.running_var), (g, b, m, v)):
            p.copy_(_t(a))
    args = layouts.batchnorm_from("torch", weight=g, bias=b, running_mean=m, running_var=v, eps=1e-3, momentum=0.3)
    assert (args.momentum, args.eps) == (0.3, 1e-3)
    x = RNG.standard_normal((3, 5, 5, 4))
    bn = args.layer(np.float64)
    np.testing.assert_allclose(_np(bn(x)), _nhwc(tbn.eval()(_nchw(x))), rtol=1e-12, atol=1e-12)
    bn.train()(x)
    tbn.train()(_nchw(x))
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-12)


def test_batchnorm_from_keras_inference_and_momentum():
    g, b, m, v = (a.astype(np.float32) for a in _stats(3, 2))
    kbn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-2)
    kbn.build((None, 4, 4, 3))
    kbn.set_weights([g, b, m, v])
    args = layouts.batchnorm_from("keras", gamma=g, beta=b, moving_mean=m, moving_variance=v, epsilon=1e-2,
                                  momentum=0.9)
    assert args.momentum == pytest.approx(0.1) and "momentum = 1 − momentum 0.9" in args.note
    x = RNG.standard_normal((5, 4, 4, 3)).astype(np.float32)
    xk = keras.ops.convert_to_tensor(x)
    want = kbn(xk, training=False).detach().numpy()  # (the torch backend: conftest)
    bn = args.layer()
    np.testing.assert_allclose(_np(bn(x)), want, rtol=1e-5, atol=1e-6)
    kbn(xk, training=True)  # Keras: moving ← 0.9·moving + 0.1·batch, with the biased batch variance
    bn.train()(x)  # featuremaps (momentum 0.1): running ← 0.9·running + 0.1·batch, the unbiased one
    k_mean, k_var = (w.value.detach().numpy() for w in (kbn.moving_mean, kbn.moving_variance))
    np.testing.assert_allclose(bn.running_mean, k_mean, rtol=1e-5, atol=1e-6)
    n = x.size // 3  # values per channel: the variances differ by the factor n / (n − 1) in their update
    np.testing.assert_allclose(bn.running_var - 0.9 * v, (k_var - 0.9 * v) * n / (n - 1), rtol=1e-4, atol=1e-6)


def test_batchnorm_from_caffe_divides_by_the_scale_factor():
    g, b, m, v = _stats(3, 3)
    lam, s = 0.99, 37.5  # Caffe keeps decayed sums: blobs mean·s, variance·s, [s]
    args = layouts.batchnorm_from("caffe", mean=m * s, variance=v * s, scale_factor=[s], scale=g, bias=b,
                                  moving_average_fraction=lam)
    assert args.momentum == pytest.approx(0.01) and "divided by scale_factor 37.5" in args.note
    x = RNG.standard_normal((2, 3, 3, 3))
    want = g * (x - m) / np.sqrt(v + 1e-5) + b  # Caffe BatchNorm (use_global_stats) then Scale (bias_term)
    np.testing.assert_allclose(_np(args.layer(np.float64)(x)), want, rtol=1e-12, atol=1e-12)
    # at Caffe's steady state s = 1 / (1 − λ), one Caffe update is featuremaps' with momentum 1 − λ
    s = 1 / (1 - lam)
    batch_mean = x.mean(axis=(0, 1, 2))
    caffe_mean = (lam * m * s + batch_mean) / (lam * s + 1)
    bn = layouts.batchnorm_from("caffe", mean=m * s, variance=v * s, scale_factor=[s],
                                moving_average_fraction=lam).layer(np.float64)
    bn.train()(x)
    np.testing.assert_allclose(bn.running_mean, caffe_mean, rtol=1e-12, atol=1e-15)
    zero = layouts.batchnorm_from("caffe", mean=m, variance=v, scale_factor=[0.0])
    assert np.array_equal(zero.running_mean, np.zeros(3))  # Caffe: s = 0 means statistics 0


def test_batchnorm_from_onnx_and_errors():
    g, b, m, v = _stats(2, 4)
    args = layouts.batchnorm_from("onnx", scale=g, B=b, input_mean=m, input_var=v)
    assert (args.momentum, args.eps) == (pytest.approx(0.1), 1e-5)
    with pytest.raises(TypeError, match=r"keras BatchNorm takes the keywords .*received unknown \['running_mean'\]"):
        layouts.batchnorm_from("keras", running_mean=m, moving_mean=m, moving_variance=v)
    with pytest.raises(TypeError, match=r"torch needs 'running_var'"):
        layouts.batchnorm_from("torch", running_mean=m)
    with pytest.raises(ValueError, match=r"torch momentum=None \(a cumulative average\)"):
        layouts.batchnorm_from("torch", running_mean=m, running_var=v, momentum=None)
    with pytest.raises(ValueError, match=r"gamma must be a vector of 2 values, one per channel; received shape \(3,\)"):
        layouts.batchnorm_from("tf", gamma=np.ones(3), moving_mean=m, moving_variance=v)
    with pytest.raises(ValueError, match=r"framework must be one of .*received 'mxnet'"):
        layouts.batchnorm_from("mxnet", mean=m)


# --- verify_conversion: a torch LeNet converted by hand -------------------------------------------------
def _lenet_pair(flatten_fix=True, flip=False):
    torch.manual_seed(0)
    tnet = LeNet().double().eval()
    sd = {k: v.numpy() for k, v in tnet.state_dict().items()}
    conv = (lambda w: layouts.flip_kernels(layouts.oihw_to_hwio(w))) if flip else layouts.oihw_to_hwio
    perm = layouts.flatten_permutation(5, 5, 16) if flatten_fix else np.arange(400)
    model = nn.Sequential([
        ("c1", nn.Conv2D(1, 6, 5, padding=2)), ("t1", nn.Tanh()), ("p1", nn.AvgPool2D(2)),
        ("c2", nn.Conv2D(6, 16, 5)), ("r2", nn.ReLU()), ("p2", nn.MaxPool2D(2)), ("flat", nn.Flatten()),
        ("f1", nn.Dense(400, 120)), ("r3", nn.ReLU()), ("f2", nn.Dense(120, 84)), ("r4", nn.ReLU()),
        ("f3", nn.Dense(84, 10))], input_shape=(28, 28, 1)).astype(np.float64)
    model.load_state_dict({
        "c1.weight": conv(sd["c1.weight"]), "c1.bias": sd["c1.bias"],
        "c2.weight": conv(sd["c2.weight"]), "c2.bias": sd["c2.bias"],
        "f1.weight": sd["f1.weight"].T[perm], "f1.bias": sd["f1.bias"],
        "f2.weight": sd["f2.weight"].T, "f2.bias": sd["f2.bias"], "f3.weight": sd["f3.weight"].T,
        "f3.bias": sd["f3.bias"]})
    return tnet, model


def _torch_reference(tnet, names=("c1", "c2", "f1", "f2", "f3"), channels_first=False):
    """reference_fn for verify_conversion: the named torch submodules' outputs, NHWC, by forward hooks."""
    def run(x):
        got = {}
        hooks = [getattr(tnet, n).register_forward_hook(lambda m, i, o, n=n: got.__setitem__(n, o.detach()))
                 for n in names]
        try:
            with torch.no_grad():
                tnet(_nchw(x.astype(np.float64)))  # the oracle runs in float64
        finally:
            for h in hooks:
                h.remove()
        return {n: (t.numpy() if t.ndim == 2 or channels_first else _nhwc(t)) for n, t in got.items()}
    return run


PROBE = np.random.default_rng(5).standard_normal((28, 28, 1))


def test_verify_conversion_passes_a_right_conversion():
    tnet, model = _lenet_pair()
    res = layouts.verify_conversion(_torch_reference(tnet), model, PROBE)
    assert res.ok and res.first_divergent is None and res.output.name == "f3"
    assert 0 < res.max_diff < 1e-12 and res.rtol == layouts.default_rtol(np.float64)
    assert res.to_text().startswith("conversion verified: max |diff|")
    final = layouts.verify_conversion(lambda x: tnet(_nchw(x)).detach().numpy(), model, PROBE)  # output only
    assert final.ok and final.max_diff == pytest.approx(res.max_diff, rel=1, abs=1e-12)


@pytest.mark.parametrize("broken, first", [(dict(flatten_fix=False), "f1"), (dict(flip=True), "c1")])
def test_verify_conversion_finds_the_first_diverging_layer(broken, first):
    tnet, model = _lenet_pair(**broken)
    res = layouts.verify_conversion(_torch_reference(tnet), model, PROBE)
    assert not res.ok and res.first_divergent == first
    assert res.max_diff > 1e-3
    assert len(res.checked) <= 1 + math.ceil(math.log2(5))  # bisection, not every layer
    assert f"first diverging layer: {first}" in res.to_text() and f"DIFF {first}" in res.to_text()
    final = layouts.verify_conversion(lambda x: tnet(_nchw(x)).detach().numpy(), model, PROBE)
    assert not final.ok and final.first_divergent == "f3" and "return a dict of named activations" in final.to_text()


def test_verify_conversion_in_float32_and_on_bad_references():
    tnet, model = _lenet_pair()
    model.astype(np.float32)
    res = layouts.verify_conversion(_torch_reference(tnet), model, PROBE.astype(np.float32))
    assert res.ok and res.rtol == layouts.default_rtol(np.float32) and res.max_diff < 1e-4
    nchw = layouts.verify_conversion(_torch_reference(tnet, channels_first=True), model, PROBE.astype(np.float32))
    assert nchw.first_divergent == "c1" and "looks channels-first" in nchw.to_text()
    with pytest.raises(ValueError, match=r"returned activations \['conv9'\] that name no featuremaps layer; "
                                         r"valid names: input, c1, t1"):
        layouts.verify_conversion(lambda x: {"conv9": x}, model, PROBE)
    with pytest.raises(ValueError, match=r"x must have shape \(28, 28, 1\)"):
        layouts.verify_conversion(lambda x: x, model, np.zeros((3, 3)))


def test_verify_conversion_on_a_graph_with_an_output_key():
    conv = nn.Conv2D(2, 2, 3, padding=1).astype(np.float64)
    g = nn.Graph({"x": (5, 5, 2)}, [("c", conv, "x"), ("sum", nn.Add(), ["x", "c"]), ("r", nn.ReLU(), "sum")], "r")
    w, b = conv.weight.data, conv.bias.data

    def ref(x):  # the same net in torch, NCHW
        c = TF.conv2d(_nchw(x[0:1]), _t(layouts.hwio_to_oihw(w)), _t(b), padding=1)
        return {"c": _nhwc(c), "output": _nhwc(torch.relu(_nchw(x) + c))}
    x = RNG.standard_normal((5, 5, 2))
    assert layouts.verify_conversion(ref, g, x).ok
    bad = layouts.verify_conversion(lambda xx: {**ref(xx), "output": ref(xx)["output"] + 1}, g, x)
    assert not bad.ok and bad.first_divergent == "r" and bad.max_diff == pytest.approx(1.0)
