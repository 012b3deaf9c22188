"""The ops that graph models and ONNX imports need, against PyTorch in float64 (values and every input
gradient), central-difference gradient checks, float32 against the float64 oracle with derived
tolerances, onnxruntime for the Resize modes PyTorch lacks, and the errors for bad input.

clip, relu6, hard_sigmoid, hard_swish, prelu, instance_norm, resize, pad (constant/reflect/edge),
maximum, minimum and average.
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import featuremaps.functional as F
from featuremaps import Tensor
from featuremaps.functional.resize import source_coordinates
from tests.oracles import assert_sum_close, check_op, gradcheck, nchw_to_nhwc, nhwc_to_nchw

U64 = np.finfo(np.float64).eps / 2  # unit roundoff of float64
U32 = np.finfo(np.float32).eps / 2  # and of float32
seeds = st.integers(0, 2**32 - 1)


def _kinky(shape, seed, points=(0.0,), scale=3.0):
    """Normal values, with every third one moved onto one of `points` (the kinks) exactly."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    flat = x.reshape(-1)
    flat[::3] = rng.choice(np.asarray(points, np.float64), size=flat[::3].size)
    return x, rng.standard_normal(shape)


def _both(ours, theirs, arrays, g, to_torch=torch.tensor, from_torch=lambda t: t.detach().numpy(), rtol=0.0,
          atol=0.0):
    """Run ours on Tensors and theirs on torch tensors; compare the values and every input gradient."""
    ts = [Tensor(a, requires_grad=True) for a in arrays]
    tt = [to_torch(a).requires_grad_(True) for a in arrays]
    out, ref = ours(*ts), theirs(*tt)
    out.backward(g)
    ref.backward(to_torch(g))
    np.testing.assert_allclose(out.data, from_torch(ref), rtol=rtol, atol=atol, equal_nan=True)
    for k, (t, r) in enumerate(zip(ts, tt)):
        np.testing.assert_allclose(t.grad, from_torch(r.grad), rtol=rtol, atol=atol, err_msg=f"gradient of input {k}")
    return out.data


def _nhwc(a):
    return torch.tensor(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))


def _from_nchw(t):
    return nchw_to_nhwc(t)


# --- element-wise: clip, relu6, hard sigmoid, hard swish ---------------------------------------------
@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=seeds,
       lo=st.one_of(st.none(), st.sampled_from([-1.5, 0.0, 0.25])),
       hi=st.one_of(st.none(), st.sampled_from([0.25, 1.0, 2.0])))
def test_clip_matches_torch_clamp_including_at_the_bounds(shape, seed, lo, hi):
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    x, g = _kinky(shape, seed, points=[b for b in (lo, hi) if b is not None] or [0.0])
    _both(lambda t: F.clip(t, lo, hi), lambda t: torch.clamp(t, lo, hi) if (lo, hi) != (None, None) else t * 1, [x], g)


# torch's hardsigmoid backward multiplies by 1/6 rounded to float32 even in float64: its gradient is
# within 2**-24 relative of the exact g/6, ours within a float64 rounding
KINKED = [
    ("relu6", F.relu6, TF.relu6, (0.0, 6.0), 4.0, 4 * U64),
    ("hard_sigmoid-torch", lambda t: F.hard_sigmoid(t, 1 / 6, 0.5), TF.hardsigmoid, (-3.0, 3.0), 3.0, 2 * U32),
    ("hard_swish", F.hard_swish, TF.hardswish, (-3.0, 0.0, 3.0), 3.0, 4 * U64),
]


@pytest.mark.parametrize("name,ours,theirs,points,scale,grad_rtol", KINKED, ids=[k[0] for k in KINKED])
@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=seeds)
def test_kinked_activations_match_torch_at_and_between_the_kinks(name, ours, theirs, points, scale, grad_rtol,
                                                                  shape, seed):
    x, g = _kinky(shape, seed, points, scale)
    t, tt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = ours(t), theirs(tt)
    out.backward(g)
    ref.backward(torch.tensor(g))
    # one multiply-add and a rounding or two: a few ulps of the value
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=4 * U64, atol=4 * U64)
    np.testing.assert_allclose(t.grad, tt.grad.numpy(), rtol=grad_rtol, atol=4 * U64)
    assert np.array_equal(t.grad == 0, tt.grad.numpy() == 0), "the gradient vanishes exactly where torch's does"


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=seeds,
       alpha=st.floats(0.05, 2.0), beta=st.floats(-1.0, 1.0))
def test_hard_sigmoid_with_onnx_parameters_matches_its_formula_in_torch(shape, seed, alpha, beta):
    rng = np.random.default_rng(seed)
    x, g = rng.standard_normal(shape) * 3, rng.standard_normal(shape)  # the kinks are hit with probability 0
    _both(lambda t: F.hard_sigmoid(t, alpha, beta), lambda t: torch.clamp(alpha * t + beta, 0, 1), [x], g,
          rtol=4 * U64, atol=4 * U64)
    assert F.hard_sigmoid(np.array([0.0, 2.5, -2.5, 1.0])).tolist() == [0.5, 1.0, 0.0, 0.7]  # ONNX defaults 0.2, 0.5


SPECIAL = [
    ("clip", lambda t: F.clip(t, 0, 1), lambda t: torch.clamp(t, 0, 1)),
    ("clip-lo", lambda t: F.clip(t, 0), lambda t: torch.clamp(t, min=0)),
    ("clip-hi", lambda t: F.clip(t, hi=1), lambda t: torch.clamp(t, max=1)),
    ("relu6", F.relu6, TF.relu6),
    ("hard_sigmoid", lambda t: F.hard_sigmoid(t, 1 / 6, 0.5), TF.hardsigmoid),
    ("hard_swish", F.hard_swish, TF.hardswish),
    ("prelu", lambda t: F.prelu(t, np.array([0.25])), lambda t: TF.prelu(t, torch.tensor([0.25], dtype=torch.float64))),
]


@pytest.mark.parametrize("name,ours,theirs", SPECIAL, ids=[s[0] for s in SPECIAL])
def test_nan_and_infinities_behave_as_in_torch(name, ours, theirs):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1.0, 6.0, 3.0, -3.0])
    t, tt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = ours(t), theirs(tt)
    out.backward(np.ones_like(x))
    ref.backward(torch.ones_like(tt))
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=4 * U64, equal_nan=True)
    # torch's own gradient at NaN for relu6 and hardswish depends on the length of the array (its
    # vectorised kernel answers 0 or NaN from 8 or 16 elements, its scalar one 1): compare there off NaN
    keep = ~np.isnan(x) if name in ("relu6", "hard_swish") else np.ones(x.shape, bool)
    # (rtol: torch's 1/6 is a float32)
    np.testing.assert_allclose(t.grad[keep], tt.grad.numpy()[keep], rtol=2 * U32, equal_nan=True)
    assert not np.isnan(t.grad).any(), "our gradient at NaN is a number (PyTorch's scalar rule)"


@pytest.mark.parametrize("name,ours,theirs", SPECIAL, ids=[s[0] for s in SPECIAL])
def test_elementwise_gradcheck_off_the_kinks(name, ours, theirs):
    x = np.random.default_rng(6).standard_normal((3, 4)) * 4
    x = x[np.abs(x[:, :, None] - np.array([0.0, 1.0, 6.0, 3.0, -3.0])).min(axis=-1) > 1e-3]  # central differences
    gradcheck(ours, x)


def test_prelu_gradcheck_for_both_inputs():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 3, 4))
    x[np.abs(x) < 1e-3] = 0.5
    gradcheck(F.prelu, x, rng.uniform(-0.5, 1.0, 4))
    gradcheck(F.prelu, x, rng.uniform(-0.5, 1.0, (3, 1, 1)))


# --- prelu ----------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4), c=st.integers(1, 4), seed=seeds,
       form=st.sampled_from(["channel", "shared", "scalar-shaped", "per-position", "per-row"]))
def test_prelu_matches_torch_for_every_slope_shape(n, h, w, c, seed, form):
    x, g = _kinky((n, h, w, c), seed)
    shape = {"channel": (c,), "shared": (1,), "scalar-shaped": (), "per-position": (h, w, c),
             "per-row": (h, 1, 1)}[form]
    slope = np.random.default_rng(seed + 1).uniform(-0.5, 1.0, shape)
    # an independent formula: torch.where(x > 0, x, slope·x) with torch's broadcasting and autograd
    _both(F.prelu, lambda t, s: torch.where(t > 0, t, s * t), [x, slope], g, rtol=64 * U64, atol=64 * U64)
    if form in ("channel", "shared"):  # and torch's own prelu (slope on dim 1 of NCHW)
        xt, st_ = nhwc_to_nchw(x), torch.tensor(slope, requires_grad=True)
        ref = TF.prelu(xt, st_)
        xs, ss = Tensor(x, requires_grad=True), Tensor(slope, requires_grad=True)
        out = F.prelu(xs, ss)
        out.backward(g)
        ref.backward(nhwc_to_nchw(g))
        np.testing.assert_allclose(out.data, _from_nchw(ref), rtol=0, atol=0)
        np.testing.assert_allclose(xs.grad, _from_nchw(xt.grad), rtol=0, atol=0)
        # the slope gradient is a sum of n·h·w terms, summed in another order by torch
        assert_sum_close(ss.grad, st_.grad.numpy(), np.abs(np.where(x > 0, 0, g * x)).sum(), np.float64, x.size)


# --- instance norm --------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(2, 5), c=st.integers(1, 4), seed=seeds,
       affine=st.booleans(), eps=st.sampled_from([1e-5, 1e-3, 0.5]))
def test_instance_norm_matches_torch(n, h, w, c, seed, affine, eps):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)) * 2 + 1
    g = rng.standard_normal(x.shape)
    gamma, beta = (rng.uniform(0.5, 1.5, c), rng.standard_normal(c)) if affine else (None, None)
    xs = Tensor(x, requires_grad=True)
    ps = [Tensor(p, requires_grad=True) for p in (gamma, beta)] if affine else [None, None]
    out = F.instance_norm(xs, *ps, eps=eps)
    out.backward(g)
    xt = nhwc_to_nchw(x)
    pt = [torch.tensor(p, requires_grad=True) for p in (gamma, beta)] if affine else [None, None]
    ref = TF.instance_norm(xt, weight=pt[0], bias=pt[1], eps=eps)
    ref.backward(nhwc_to_nchw(g))
    m = h * w  # every value is a handful of m-term sums (mean, variance, and their gradients)
    tol = 8 * m * U64 * (1 + np.abs(x).max()) ** 2
    np.testing.assert_allclose(out.data, _from_nchw(ref), rtol=0, atol=tol * 10)
    np.testing.assert_allclose(xs.grad, _from_nchw(xt.grad), rtol=0, atol=tol * 10 * np.abs(g).max() * 8)
    if affine:
        for ours, theirs in zip(ps, pt):  # n·m-term sums
            np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=0,
                                       atol=8 * n * m * U64 * np.abs(g).sum() * 4)


def test_instance_norm_gradcheck():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 2, 3))
    gradcheck(lambda a, gm, b: F.instance_norm(a, gm, b), x, rng.uniform(0.5, 1.5, 3), rng.standard_normal(3))


# --- pad ------------------------------------------------------------------------------------------
TORCH_PAD = {"reflect": "reflect", "edge": "replicate", "constant": "constant"}


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6), c=st.integers(1, 3), seed=seeds,
       mode=st.sampled_from(["constant", "reflect", "edge"]), data=st.data())
def test_pad_matches_torch_in_every_mode(n, h, w, c, seed, mode, data):
    cap_h, cap_w = (h - 1, w - 1) if mode == "reflect" else (4, 4)
    t, b = data.draw(st.integers(0, cap_h)), data.draw(st.integers(0, cap_h))
    le, r = data.draw(st.integers(0, cap_w)), data.draw(st.integers(0, cap_w))
    value = data.draw(st.sampled_from([0.0, -1.5])) if mode == "constant" else 0.0
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c))
    g = rng.standard_normal((n, h + t + b, w + le + r, c))
    # the reflected/replicated gradients add at most (pads + 1)² float64 terms per cell
    terms = (max(t, b, 1) + 1) * (max(le, r, 1) + 1)
    _both(lambda a: F.pad(a, ((0, 0), (t, b), (le, r), (0, 0)), value=value, mode=mode),
          lambda a: TF.pad(a, (le, r, t, b), mode=TORCH_PAD[mode], **({"value": value} if mode == "constant" else {})),
          [x], g, to_torch=_nhwc, from_torch=_from_nchw, rtol=0, atol=2 * terms * U64 * np.abs(g).max())


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_pad_copying_modes_gradcheck_on_every_axis(mode):
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    gradcheck(lambda a: F.pad(a, ((1, 2), (0, 3), (2, 1)), mode=mode), x)


def test_pad_constant_keeps_its_behaviour():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(F.pad(x, ((1, 0), (0, 2)), 7.0), np.pad(x, ((1, 0), (0, 2)), constant_values=7.0))
    np.testing.assert_array_equal(F.pad(x, ((1, 0), (0, 2))), np.pad(x, ((1, 0), (0, 2))))


# --- maximum and average --------------------------------------------------------------------------
def _broadcastable(data, k):
    base = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    shapes = []
    for _ in range(k):
        drop = data.draw(st.integers(0, len(base) - 1))
        shapes.append(tuple(1 if data.draw(st.booleans()) else s for s in base[drop:]))
    return shapes


@settings(max_examples=50, deadline=None)
@given(data=st.data(), k=st.integers(2, 4), seed=seeds)
def test_maximum_matches_torch_ties_included(data, k, seed):
    shapes = _broadcastable(data, k)
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-2, 3, s).astype(np.float64) for s in shapes]  # small integers: many ties
    g = rng.standard_normal(np.broadcast_shapes(*shapes))
    if k == 2:  # torch.maximum splits a tie evenly between its two inputs
        theirs = torch.maximum
    else:  # for more, torch.amax over the stacked inputs splits it evenly among all that attain it
        def theirs(*ts):
            return torch.amax(torch.stack(torch.broadcast_tensors(*ts)), dim=0)
    # each gradient is a sum of shares g/count over broadcast cells: exact for count ∈ {1, 2, 4}, else rounded
    cells = int(np.prod(g.shape))
    _both(F.maximum, theirs, xs, g, rtol=0, atol=4 * cells * U64 * np.abs(g).sum())
    if k == 2:
        _both(F.minimum, torch.minimum, xs, g, rtol=0, atol=4 * cells * U64 * np.abs(g).sum())
    else:
        _both(F.minimum, lambda *ts: torch.amin(torch.stack(torch.broadcast_tensors(*ts)), dim=0), xs, g, rtol=0,
              atol=4 * cells * U64 * np.abs(g).sum())


@settings(max_examples=50, deadline=None)
@given(data=st.data(), k=st.integers(2, 4), seed=seeds)
def test_average_matches_torch(data, k, seed):
    shapes = _broadcastable(data, k)
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(s) for s in shapes]
    g = rng.standard_normal(np.broadcast_shapes(*shapes))
    bound = (k + 1) * U64 * sum(np.abs(np.broadcast_to(x, g.shape)) for x in xs) / k  # a k-term sum and a division
    ts = [Tensor(x, requires_grad=True) for x in xs]
    out = F.average(*ts)
    out.backward(g)
    tt = [torch.tensor(x, requires_grad=True) for x in xs]
    ref = torch.stack(torch.broadcast_tensors(*tt)).mean(dim=0)
    ref.backward(torch.tensor(g))
    assert np.all(np.abs(out.data - ref.detach().numpy()) <= 2 * bound)
    for t, r in zip(ts, tt):  # sums of g/k over the broadcast cells
        assert_sum_close(t.grad, r.grad.numpy(), np.abs(g).sum() / k, np.float64, g.size + 1)


def test_maximum_nan_propagates_and_gets_the_gradient():
    a = Tensor(np.array([np.nan, 1.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([0.0, np.nan, 2.0]), requires_grad=True)
    out = F.maximum(a, b)
    assert np.isnan(out.data[:2]).all() and out.data[2] == 2.0
    out.backward(np.ones(3))
    assert a.grad.tolist() == [1.0, 0.0, 0.5] and b.grad.tolist() == [0.0, 1.0, 0.5]


def test_merge_gradchecks():
    rng = np.random.default_rng(2)
    a, b, c = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 1)), rng.standard_normal((4,))
    gradcheck(F.maximum, a, b, c)
    gradcheck(F.minimum, a, b, c)
    gradcheck(F.average, a, b, c)


# --- resize against torch -------------------------------------------------------------------------
TORCH_RESIZE = {  # torch.interpolate mode → our (mode, coordinate mode, nearest mode)
    ("nearest", None): ("nearest", "asymmetric", "floor"),
    ("nearest-exact", None): ("nearest", "half_pixel", "round_prefer_ceil"),
    ("bilinear", False): ("linear", "half_pixel", "round_prefer_floor"),  # torch: half-pixel, even for 1 output
    ("bilinear", True): ("linear", "align_corners", "round_prefer_floor"),
}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6), c=st.integers(1, 3),
       oh=st.integers(1, 13), ow=st.integers(1, 13), seed=seeds, which=st.sampled_from(sorted(TORCH_RESIZE, key=str)))
def test_resize_matches_torch_interpolate(n, h, w, c, oh, ow, seed, which):
    mode, coord, nearest = TORCH_RESIZE[which]
    tmode, align = which
    rng = np.random.default_rng(seed)
    x, g = rng.standard_normal((n, h, w, c)), rng.standard_normal((n, oh, ow, c))
    kw = {} if align is None else {"align_corners": align}
    # torch computes its coordinates in float32 (in/out as a float scale): with sizes whose ratio is
    # not a float32 number, a nearest index can differ from the exact rule; compare only exact ratios
    if mode == "nearest" and not all(float(np.float32(a / b)) == a / b for a, b in ((h, oh), (w, ow))):
        oh, ow = 2 * h if oh > h else h, 2 * w if ow > w else w
        g = rng.standard_normal((n, oh, ow, c))
    # bilinear: 4 weighted terms per value (weights rounded in float32 by torch? no: float64 here)
    tol = 64 * U64 * max(np.abs(x).max(), np.abs(g).max()) * max(h * w, 4)
    _both(lambda a: F.resize(a, (oh, ow), mode, coord, nearest),
          lambda a: TF.interpolate(a, size=(oh, ow), mode=tmode, **kw), [x], g,
          to_torch=_nhwc, from_torch=_from_nchw, rtol=0, atol=tol)


def test_resize_scale_factor_matches_torch_with_a_non_integer_scale():
    x = np.random.default_rng(0).standard_normal((1, 5, 4, 2))
    for tmode, ours in (("bilinear", ("linear", "half_pixel")), ("nearest", ("nearest", "asymmetric"))):
        ref = TF.interpolate(_nhwc(x), scale_factor=(1.5, 2.5), mode=tmode, recompute_scale_factor=False,
                             **({"align_corners": False} if tmode == "bilinear" else {}))
        out = F.resize(x, ref.shape[2:], ours[0], ours[1], "floor", scales=(1.5, 2.5))
        np.testing.assert_allclose(out, _from_nchw(ref), rtol=0, atol=16 * U64 * np.abs(x).max())


@pytest.mark.parametrize("mode,nearest", [("linear", "round_prefer_floor"), ("nearest", "round_prefer_ceil")])
@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"])
def test_resize_gradcheck(mode, nearest, coord):
    x = np.random.default_rng(3).standard_normal((1, 3, 4, 2))
    gradcheck(lambda a: F.resize(a, (5, 3), mode, coord, nearest), x)


# --- resize against onnxruntime (the coordinate and nearest modes torch does not have) -------------
def _ort_resize(x_nchw, size, mode, coord, nearest, scales=None):
    attrs = {"mode": mode, "coordinate_transformation_mode": coord}
    if mode == "nearest":
        attrs["nearest_mode"] = nearest
    if scales is None:
        inputs, inits = ["x", "", "", "sizes"], [helper.make_tensor("sizes", TensorProto.INT64, [4],
                                                                   list(x_nchw.shape[:2]) + list(size))]
    else:
        inputs = ["x", "", "scales"]
        inits = [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1] + list(scales))]
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_nchw.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x_nchw})[0]


def _candidates(n_out, n_in, coord_mode, nearest):
    """Per output cell, the input cells nearest may read: ours (computed independently here from the
    float64 coordinate), and where that coordinate is within 1e-6 of a rounding boundary (onnxruntime
    computes it in float32, we in float64) also the neighbours on either side."""
    c = source_coordinates(n_out, n_in, coord_mode)
    if nearest in ("floor", "ceil"):
        ours, boundary = (np.floor(c) if nearest == "floor" else np.ceil(c)), np.abs(c - np.round(c))
    else:
        tie = c - np.floor(c) == 0.5
        ours = np.where(tie, np.floor(c) + (nearest == "round_prefer_ceil"), np.round(c))
        boundary = np.abs(c - np.floor(c) - 0.5)
    near = boundary < 1e-6
    ours = np.clip(ours, 0, n_in - 1).astype(int)
    return ours, [np.clip(ours + d * near, 0, n_in - 1).astype(int) for d in (-1, 0, 1)], near


@settings(max_examples=80, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 20), ow=st.integers(1, 20), seed=seeds,
       mode=st.sampled_from(["nearest", "linear"]),
       coord=st.sampled_from(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]),
       nearest=st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]))
def test_resize_matches_onnxruntime(h, w, oh, ow, seed, mode, coord, nearest):
    x = np.random.default_rng(seed).standard_normal((2, h, w, 3)).astype(np.float32)
    ref = _ort_resize(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), (oh, ow), mode, coord, nearest)
    ref = ref.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    out = F.resize(x, (oh, ow), mode, coord, nearest)
    assert out.dtype == np.float32
    if mode == "linear":
        # onnxruntime works out coordinates and weights in float32, we in float64: a value is a 4-term
        # float32 sum, and its weights come from a coordinate of magnitude ≤ max(h, w) whose few float32
        # roundings move them by ≲ 3·max(h, w)·u (as in test_bilinear_resize_in_each_dtype_...); the
        # terms are bounded by 2·|x|max
        terms = 4 + 2 * 3 * max(h, w)
        np.testing.assert_allclose(out, ref, rtol=0, atol=2 * terms * U32 * 2 * np.abs(x).max())
        return
    rows, r_alt, r_near = _candidates(oh, h, coord, nearest)
    cols, c_alt, c_near = _candidates(ow, w, coord, nearest)
    np.testing.assert_array_equal(out, x[:, rows][:, :, cols])  # our rule, written out independently
    clear = ~r_near[:, None] & ~c_near[None, :]  # (oh, ow): no rounding boundary within reach
    np.testing.assert_array_equal(out[:, clear], ref[:, clear])  # nearest copies a cell: no rounding at all
    allowed = np.stack([x[:, a][:, :, b] for a in r_alt for b in c_alt])  # (9, 2, oh, ow, 3)
    assert np.all((allowed == ref[None]).any(axis=0)), "onnxruntime read a cell that is not a neighbour of ours"


def test_resize_with_onnx_scales_matches_onnxruntime():
    x = np.random.default_rng(4).standard_normal((1, 5, 6, 2)).astype(np.float32)
    for mode in ("nearest", "linear"):
        for coord in ("half_pixel", "asymmetric"):
            ref = _ort_resize(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), None, mode, coord, "round_prefer_floor",
                              scales=(1.5, 0.75))
            out = F.resize(x, ref.shape[2:], mode, coord, "round_prefer_floor", scales=(1.5, 0.75))
            np.testing.assert_allclose(out, ref.transpose(0, 2, 3, 1), rtol=0, atol=16 * U32 * np.abs(x).max())


# --- float32 against the float64 oracle ------------------------------------------------------------
def test_float32_stays_float32_and_is_within_rounding_of_float64():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 5, 3))
    x32 = x.astype(np.float32)
    ops = {
        "clip": (lambda a: F.clip(a, -0.5, 0.5), 1),
        "hard_sigmoid": (F.hard_sigmoid, 2),
        "hard_swish": (F.hard_swish, 3),
        "prelu": (lambda a: F.prelu(a, np.full(3, 0.25, a.dtype)), 1),
        "resize": (lambda a: F.resize(a, (7, 9), "linear"), 6),  # 4 terms, 2 weight roundings
        "pad": (lambda a: F.pad(a, ((0, 0), (2, 1), (1, 2), (0, 0)), mode="reflect"), 0),
        "maximum": (lambda a: F.maximum(a, a[:, :1]), 0),
        "average": (lambda a: F.average(a, a[:, :1], a[:1]), 4),
    }
    for name, (op, roundings) in ops.items():
        out64, out32 = op(x), op(x32)
        assert out32.dtype == np.float32, name
        # `roundings` float32 roundings of values of magnitude ≤ |x|max (+1 for casting x itself)
        np.testing.assert_allclose(out32, out64, rtol=0, atol=2 * (roundings + 1) * U32 * (np.abs(x).max() + 1),
                                   err_msg=name)
    m = 4 * 5  # instance norm: m-term sums for the mean and the variance
    out = F.instance_norm(x32, np.ones(3, np.float32), np.zeros(3, np.float32))
    assert out.dtype == np.float32
    ref = F.instance_norm(x, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(out, ref, rtol=0, atol=4 * m * U32 * np.abs(ref).max() * 4)


DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_in_each_dtype_within_the_rounding_of_its_sums(dtype, mode):
    x = np.random.default_rng(8).standard_normal((2, 5, 6, 3)).astype(dtype)
    (t, b), (le, r) = (2, 4), (3, 1)
    # a copy (0 roundings) forward; each input gradient sums at most (4 + 1)·(3 + 1) folded cells
    check_op(lambda a: F.pad(a, ((0, 0), (t, b), (le, r), (0, 0)), mode=mode),
             lambda a: TF.pad(a, (le, r, t, b), mode={"edge": "replicate"}.get(mode, mode)), [x], ["NHWC"],
             terms=[0, (max(t, b) + 1) * (max(le, r) + 1)])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("align", [False, True])
def test_bilinear_resize_in_each_dtype_within_the_rounding_of_its_sums(dtype, align):
    x = np.random.default_rng(9).standard_normal((2, 4, 5, 3)).astype(dtype)
    size = (9, 7)
    # forward: 4 products with non-negative weights, so Σ|terms| is the op on |x|. Each weight comes
    # from a coordinate of magnitude ≤ 5 (the longer side) whose few roundings, here and in torch, move
    # the weight by ≲ 3·5·u: count 2·(3·5) more terms. An input gradient gathers ≤ (⌈9/4⌉ + 2)·(⌈7/5⌉ + 2)
    # weighted upstream values, plus the same weight error
    coordinate_terms = 2 * 3 * max(x.shape[1:3])
    check_op(lambda a: F.resize(a, size, "linear", "align_corners" if align else "half_pixel"),
             lambda a: TF.interpolate(a, size=size, mode="bilinear", align_corners=align), [x], ["NHWC"],
             terms=[4 + coordinate_terms, 5 * 4 + coordinate_terms])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_merges_in_each_dtype_within_the_rounding_of_their_sums(dtype):
    rng = np.random.default_rng(10)
    a, b, c = (rng.standard_normal(s).astype(dtype) for s in ((2, 3, 4), (3, 4), (2, 1, 4)))
    # average: a 3-term sum and a division; its gradients sum g/3 over ≤ 2·3·4 broadcast cells
    check_op(F.average, lambda *ts: torch.stack(torch.broadcast_tensors(*ts)).mean(dim=0), [a, b, c],
             [None, None, None], terms=[4, 25, 25, 25])
    # maximum: a pick (no rounding); a gradient sums ≤ 24 routed upstream values (ties share them)
    check_op(F.maximum, lambda *ts: torch.amax(torch.stack(torch.broadcast_tensors(*ts)), dim=0), [a, b, c],
             [None, None, None], terms=[0, 24, 24, 24], scale="route")


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda: F.clip(np.ones(2), 1.0, 0.0), r"clip: lo must be ≤ hi; received lo=1, hi=0"),
    (lambda: F.clip(np.ones(2), "a"), r"clip: lo must be a real number; received 'a'"),
    (lambda: F.clip(np.ones(2, int), 0), r"clip: x must have a floating dtype; received int"),
    (lambda: F.hard_sigmoid(np.ones(2), alpha=None), r"hard_sigmoid: alpha must be a real number"),
    (lambda: F.prelu(np.ones((1, 2, 2, 3)), np.ones(4)), r"prelu: slope must broadcast to x's shape \(1, 2, 2, 3\)"
                                                         r".*received slope of shape \(4,\)"),
    (lambda: F.instance_norm(np.ones((2, 3)), None, None), r"instance_norm: x must be \(N, H, W, C\) maps; received "
                                                           r"shape \(2, 3\)"),
    (lambda: F.instance_norm(np.ones((1, 2, 2, 3)), np.ones(2), None), r"instance_norm: gamma must have shape \(3,\)"),
    (lambda: F.resize(np.ones((1, 2, 2, 1)), (0, 3)), r"resize: size_hw must be a pair \(height, width\) of positive"
                                                      r" ints; received \(0, 3\)"),
    (lambda: F.resize(np.ones((1, 2, 2, 1)), (2, 3), mode="cubic"), r"resize: mode must be one of nearest, linear; "
                                                                     r"received 'cubic'"),
    (lambda: F.resize(np.ones((1, 2, 2, 1)), (2, 3), coordinate_transformation_mode="tf_crop_and_resize"),
     r"coordinate_transformation_mode must be one of half_pixel, asymmetric, align_corners, pytorch_half_pixel"),
    (lambda: F.resize(np.ones((1, 2, 2, 1)), (2, 3), nearest_mode="round"), r"nearest_mode must be one of"),
    (lambda: F.resize(np.ones((2, 2, 1)), (2, 3)),
     r"resize: x must be \(N, H, W, C\) maps; received shape \(2, 2, 1\)"),
    (lambda: F.resize(np.ones((1, 2, 2, 1)), (2, 3), scales=(0, 1)), r"resize: scales must be a pair"),
    (lambda: F.pad(np.ones((2, 3)), ((0, 0), (3, 0)), mode="reflect"),
     r"pad: reflect padding must be smaller than the axis it pads; received \(3, 0\) for axis 1 of size 3"),
    (lambda: F.pad(np.ones((2, 3)), ((0, 0), (1, 0)), mode="wrap"), r"pad: mode must be one of constant, reflect, "
                                                                    r"edge; received 'wrap'"),
    (lambda: F.maximum(np.ones(2)), r"maximum: needs at least 2 arrays; received 1"),
    (lambda: F.average(np.ones(2), np.ones(3)), r"average: the inputs' shapes must broadcast together; received "
                                                r"\[\(2,\), \(3,\)\]"),
    (lambda: F.maximum(np.ones(2), np.ones(2, int)), r"maximum: input 1 must have a floating dtype; received int"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
