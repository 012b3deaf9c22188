"""The layers graph models and ONNX imports need, against their PyTorch counterparts in float64
(outputs, input gradients and parameter gradients), with hypothesis over shapes and options; their
config round trips, reprs, `compute_output_shape` (against the forward pass) and bad-input errors.

PReLU, Clip, ReLU6, HardSigmoid, HardSwish, InstanceNorm, Reshape, Transpose, Pad, Identity,
Upsample, Softmax on any axis, GlobalMaxPool2D, and the merge layers Add, Multiply, Average, Maximum
and Concatenate.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

from featuremaps import Tensor, nn
from tests.oracles import assert_sum_close, nchw_to_nhwc, nhwc_to_nchw

U64 = np.finfo(np.float64).eps / 2
seeds = st.integers(0, 2**32 - 1)


def _run(layer, x, g):
    """Forward and backward of a featuremaps layer in float64: (output, input gradient)."""
    layer.astype(np.float64)
    t = Tensor(x, requires_grad=True)
    out = layer(t)
    out.backward(g)
    return out.data, t.grad


def _torch_run(module, x, g):
    module = module.double()
    t = nhwc_to_nchw(x)
    out = module(t)
    out.backward(nhwc_to_nchw(g))
    return nchw_to_nhwc(out), nchw_to_nhwc(t.grad)


# --- against torch modules ------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 4), w=st.integers(1, 4), c=st.integers(1, 4), seed=seeds,
       shared=st.booleans(), init=st.floats(-0.5, 0.9))
def test_prelu_matches_torch_prelu_with_its_slope_gradient(n, h, w, c, seed, shared, init):
    rng = np.random.default_rng(seed)
    x, g = rng.standard_normal((n, h, w, c)), rng.standard_normal((n, h, w, c))
    x.reshape(-1)[::4] = 0.0  # the kink
    ours = nn.PReLU(1 if shared else c, init=init)
    theirs = torch.nn.PReLU(1 if shared else c, init=init)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data, dtype=torch.float32))  # the same float32 start
    y, gx = _run(ours, x, g)
    ry, rgx = _torch_run(theirs, x, g)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(gx, rgx)
    # the slope gradient sums n·h·w (or every) term, in another order in torch
    assert_sum_close(ours.weight.grad, theirs.weight.grad.numpy(), np.abs(np.where(x > 0, 0, g * x)).sum(),
                     np.float64, x.size)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(2, 5), c=st.integers(1, 4), seed=seeds,
       affine=st.booleans())
def test_instance_norm_matches_torch_instance_norm_2d(n, h, w, c, seed, affine):
    rng = np.random.default_rng(seed)
    x, g = rng.standard_normal((n, h, w, c)) * 2 + 1, rng.standard_normal((n, h, w, c))
    ours, theirs = nn.InstanceNorm(c, affine=affine), torch.nn.InstanceNorm2d(c, affine=affine)
    if affine:
        gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
        ours.weight.data, ours.bias.data = gamma.copy(), beta.copy()
        theirs = theirs.double()
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(gamma))
            theirs.bias.copy_(torch.tensor(beta))
    y, gx = _run(ours, x, g)
    ry, rgx = _torch_run(theirs, x, g)
    m = h * w  # each value rests on m-term sums (mean, variance; and their gradients), rounding ~m·u each
    scale = np.abs(x).max() + 2
    np.testing.assert_allclose(y, ry, rtol=0, atol=64 * m * U64 * scale ** 2)
    np.testing.assert_allclose(gx, rgx, rtol=0, atol=64 * m * U64 * scale ** 2 * np.abs(g).max())
    if affine:
        for p, q in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
            np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=0, atol=64 * n * m * U64 * np.abs(g).sum() * scale)
    ours.eval()  # no running statistics: eval computes the same
    np.testing.assert_array_equal(ours(x).data, y)


ACTIVATIONS = [
    ("Clip", lambda: nn.Clip(-0.5, 1.5), lambda: torch.nn.Hardtanh(-0.5, 1.5), (-0.5, 1.5)),
    ("ReLU6", nn.ReLU6, torch.nn.ReLU6, (0.0, 6.0)),
    ("HardSwish", nn.HardSwish, torch.nn.Hardswish, (-3.0, 0.0, 3.0)),
]


@pytest.mark.parametrize("name,ours,theirs,kinks", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@settings(max_examples=20, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)), seed=seeds)
def test_activation_layers_match_torch_modules(name, ours, theirs, kinks, shape, seed):
    rng = np.random.default_rng(seed)
    x, g = rng.standard_normal(shape) * 4, rng.standard_normal(shape)
    x.reshape(-1)[::3] = rng.choice(kinks, size=x.reshape(-1)[::3].size)
    y, gx = _run(ours(), x, g)
    ry, rgx = _torch_run(theirs(), x, g)
    np.testing.assert_allclose(y, ry, rtol=4 * U64, atol=4 * U64)
    if name == "Clip":  # Hardtanh passes no gradient at its bounds, clamp (our Clip) does: compare off the bounds
        off = ~np.isin(x, kinks)
        np.testing.assert_array_equal(gx[off], rgx[off])
        assert np.all(gx[~off] == g[~off]), "Clip passes the gradient at its bounds, as torch.clamp"
    else:
        np.testing.assert_allclose(gx, rgx, rtol=4 * U64, atol=4 * U64)


def test_hard_sigmoid_layer_is_onnx_by_default_and_torch_with_alpha_one_sixth():
    x = np.linspace(-4, 4, 17).reshape(1, 1, 17, 1)
    np.testing.assert_allclose(nn.HardSigmoid()(x), np.clip(0.2 * x + 0.5, 0, 1), rtol=0, atol=2 * U64)
    ref = TF.hardsigmoid(torch.tensor(x)).numpy()
    np.testing.assert_allclose(nn.HardSigmoid(alpha=1 / 6)(x), ref, rtol=0, atol=2 * U64)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), seed=seeds, data=st.data(),
       how=st.sampled_from(["scale", "size"]), mode=st.sampled_from(["nearest", "bilinear"]),
       align=st.sampled_from([None, False, True]))
def test_upsample_matches_torch_upsample(h, w, seed, data, how, mode, align):
    if mode == "nearest":
        align = None
    if how == "scale":
        kw = {"scale_factor": data.draw(st.sampled_from([2, 3, (2, 1), (1.5, 2.5), 0.5]))}
        s = kw["scale_factor"] if isinstance(kw["scale_factor"], tuple) else (kw["scale_factor"],) * 2
        if min(int(h * s[0]), int(w * s[1])) < 1:
            h, w = 2 * h, 2 * w
    else:
        kw = {"size": (data.draw(st.integers(1, 10)), data.draw(st.integers(1, 10)))}
        if mode == "nearest":  # torch rounds nearest coordinates in float32 (see test_ops_import): exact ratios
            kw = {"size": (2 * h, w)}
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, h, w, 3))
    ours = nn.Upsample(mode=mode, align_corners=align, **kw)
    theirs = torch.nn.Upsample(mode=mode, align_corners=align, **kw)
    out_shape = ours.compute_output_shape((h, w, 3))
    g = rng.standard_normal((2,) + out_shape)
    y, gx = _run(ours, x, g)
    ry, rgx = _torch_run(theirs, x, g)
    assert y.shape[1:] == out_shape
    # bilinear: 4 weighted terms per value; each input gradient gathers at most (⌈out/in⌉ + 1)² of them
    fan = (int(np.ceil(out_shape[0] / h)) + 2) * (int(np.ceil(out_shape[1] / w)) + 2)
    np.testing.assert_allclose(y, ry, rtol=0, atol=16 * U64 * np.abs(x).max())
    np.testing.assert_allclose(gx, rgx, rtol=0, atol=16 * fan * U64 * np.abs(g).max())


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 6), w=st.integers(2, 6), seed=seeds, mode=st.sampled_from(["constant", "reflect", "edge"]),
       data=st.data())
def test_pad_matches_torch_pad(h, w, seed, mode, data):
    cap = (h - 1, w - 1) if mode == "reflect" else (3, 3)
    t, b = data.draw(st.integers(0, cap[0])), data.draw(st.integers(0, cap[0]))
    le, r = data.draw(st.integers(0, cap[1])), data.draw(st.integers(0, cap[1]))
    value = data.draw(st.sampled_from([0.0, 2.5])) if mode == "constant" else 0.0
    layer = nn.Pad(((t, b), (le, r)), mode=mode, value=value)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, h, w, 3))
    out_shape = layer.compute_output_shape((h, w, 3))
    g = rng.standard_normal((2,) + out_shape)
    y, gx = _run(layer, x, g)
    tx = nhwc_to_nchw(x)
    ref = TF.pad(tx, (le, r, t, b), mode={"edge": "replicate"}.get(mode, mode),
                 **({"value": value} if mode == "constant" else {}))
    ref.backward(nhwc_to_nchw(g))
    np.testing.assert_array_equal(y, nchw_to_nhwc(ref))
    fan = (max(t, b) + 1) * (max(le, r) + 1)  # the most padded cells folding into one source
    np.testing.assert_allclose(gx, nchw_to_nhwc(tx.grad), rtol=0, atol=2 * fan * U64 * np.abs(g).max())
    assert layer.spatial == ("pad" if mode == "constant" and value == 0 else None)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 4), w=st.integers(1, 4), c=st.integers(1, 4), seed=seeds, data=st.data())
def test_reshape_and_transpose_match_numpy_on_each_example(h, w, c, seed, data):
    x = np.random.default_rng(seed).standard_normal((2, h, w, c))
    perm = tuple(data.draw(st.permutations([0, 1, 2])))
    layer = nn.Transpose(perm)
    np.testing.assert_array_equal(layer(x), x.transpose((0,) + tuple(p + 1 for p in perm)))
    assert layer.compute_output_shape((h, w, c)) == tuple((h, w, c)[p] for p in perm)
    target = data.draw(st.sampled_from([(-1,), (w, h, c), (c, -1), (h * w, c)]))
    reshape = nn.Reshape(target)
    y = reshape(x)
    np.testing.assert_array_equal(y, x.reshape((2,) + target))
    assert reshape.compute_output_shape((h, w, c)) == y.shape[1:]
    t = Tensor(x, requires_grad=True)
    out = nn.Reshape((-1,))(layer(t))  # the gradient goes back through both, values unchanged
    g = np.random.default_rng(seed + 1).standard_normal(out.shape)
    out.backward(g)
    moved = g.reshape((2,) + layer.compute_output_shape((h, w, c)))
    np.testing.assert_array_equal(t.grad, moved.transpose(np.argsort((0,) + tuple(p + 1 for p in perm))))


def test_channel_shuffle_is_reshape_transpose_reshape():
    """ShuffleNet's channel shuffle (groups g): (H, W, g·k) → (H, W, g, k) → (H, W, k, g) → (H, W, g·k)."""
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 6))
    y = nn.Reshape((2, 3, 6))(nn.Transpose((0, 1, 3, 2))(nn.Reshape((2, 3, 2, 3))(x)))
    np.testing.assert_array_equal(y[..., :2], x[..., [0, 3]])  # output channel j reads input channel (j % g)·k + j // g
    np.testing.assert_array_equal(y, x[..., [0, 3, 1, 4, 2, 5]])


def test_identity_returns_its_input():
    x = Tensor(np.ones((1, 2, 2, 1)), requires_grad=True)
    assert nn.Identity()(x) is x
    assert nn.Identity().compute_output_shape((5,)) == (5,)


def test_softmax_layer_takes_any_axis():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    for axis in (-1, 1, 2, 3, -3):
        ref = TF.softmax(torch.tensor(x), dim=axis).numpy()
        np.testing.assert_allclose(nn.Softmax(axis=axis)(x), ref, rtol=8 * U64, atol=8 * U64)


def test_global_max_pool_matches_torch():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(nn.GlobalMaxPool2D()(x), torch.amax(nhwc_to_nchw(x), dim=(2, 3)).detach().numpy())


# --- merge layers ---------------------------------------------------------------------------------
MERGES = [
    (nn.Add, lambda *ts: ts[0] + ts[1] + ts[2]),
    (nn.Multiply, lambda *ts: ts[0] * ts[1] * ts[2]),
    (nn.Average, lambda *ts: torch.stack(ts).mean(dim=0)),
    (nn.Maximum, lambda *ts: torch.amax(torch.stack(ts), dim=0)),
    (nn.Concatenate, lambda *ts: torch.cat(ts, dim=-1)),
]


@pytest.mark.parametrize("cls,theirs", MERGES, ids=[m[0].__name__ for m in MERGES])
@settings(max_examples=20, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)), seed=seeds)
def test_merge_layers_match_torch(cls, theirs, shape, seed):
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-2, 3, shape).astype(np.float64) for _ in range(3)]  # ties for Maximum
    layer = cls()
    ts = [Tensor(x, requires_grad=True) for x in xs]
    out = layer(*ts)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    tt = [torch.tensor(x, requires_grad=True) for x in xs]
    ref = theirs(*tt)
    ref.backward(torch.tensor(g))
    # sums of 3 terms and a division: a few float64 roundings of the largest magnitude
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=0, atol=8 * U64 * 8)
    for t, r in zip(ts, tt):
        np.testing.assert_allclose(t.grad, r.grad.numpy(), rtol=0, atol=8 * U64 * 8 * np.abs(g).max())
    assert out.shape[1:] == layer.compute_output_shape([x.shape[1:] for x in xs])


def test_concatenate_axis_counts_the_batch_axis_as_keras():
    a, b = np.ones((2, 3, 4, 1)), np.zeros((2, 2, 4, 1))
    layer = nn.Concatenate(axis=1)
    assert layer(a, b).shape == (2, 5, 4, 1) and layer.compute_output_shape((3, 4, 1), (2, 4, 1)) == (5, 4, 1)
    assert layer.spatial is None and nn.Concatenate().spatial == "same"
    with pytest.raises(nn.ShapeError, match=r"Concatenate: got input shape \(3, 4, 1\); needs inputs of one rank "
                                            r"whose sizes agree except on axis 1"):
        layer.compute_output_shape((3, 4, 1), (3, 5, 1))


def test_add_broadcasts_and_says_when_it_cannot():
    assert nn.Add().compute_output_shape((4, 4, 3), (1, 1, 3)) == (4, 4, 3)
    with pytest.raises(nn.ShapeError, match=r"Add: got input shape \(4, 4, 3\); needs input shapes that broadcast "
                                            r"together; received \[\(4, 4, 3\), \(4, 4, 2\)\]"):
        nn.Add().compute_output_shape((4, 4, 3), (4, 4, 2))
    with pytest.raises(nn.ShapeError, match=r"needs the shapes of 2 or more inputs"):
        nn.Maximum().compute_output_shape((4, 4, 3))


# --- config, repr, state ----------------------------------------------------------------------------
CONFIGURED = [
    (nn.PReLU(), "PReLU()"), (nn.PReLU(4, init=0.1), "PReLU(num_parameters=4, init=0.1)"),
    (nn.Clip(hi=6), "Clip(hi=6.0)"), (nn.Clip(-1, 1), "Clip(lo=-1.0, hi=1.0)"), (nn.ReLU6(), "ReLU6()"),
    (nn.HardSigmoid(), "HardSigmoid()"), (nn.HardSigmoid(1 / 6), "HardSigmoid(alpha=0.16666666666666666)"),
    (nn.HardSwish(), "HardSwish()"),
    (nn.InstanceNorm(4), "InstanceNorm(4)"), (nn.InstanceNorm(4, eps=1e-3, affine=False),
                                              "InstanceNorm(4, eps=0.001, affine=False)"),
    (nn.Reshape((-1,)), "Reshape((-1,))"), (nn.Reshape([2, -1, 3]), "Reshape((2, -1, 3))"),
    (nn.Transpose((2, 0, 1)), "Transpose((2, 0, 1))"),
    (nn.Pad(1), "Pad(1)"), (nn.Pad(((1, 0), (0, 2)), mode="edge"), "Pad(((1, 0), (0, 2)), mode='edge')"),
    (nn.Pad((1, 2), value=-1), "Pad((1, 2), value=-1.0)"),
    (nn.Identity(), "Identity()"),
    (nn.Upsample(), "Upsample()"), (nn.Upsample(scale_factor=3), "Upsample(scale_factor=3.0)"),
    (nn.Upsample(size=(4, 6), mode="bilinear", align_corners=True),
     "Upsample(size=(4, 6), mode='bilinear', align_corners=True)"),
    (nn.Add(), "Add()"), (nn.Multiply(), "Multiply()"), (nn.Average(), "Average()"), (nn.Maximum(), "Maximum()"),
    (nn.Concatenate(), "Concatenate()"), (nn.Concatenate(axis=2), "Concatenate(axis=2)"),
]


@pytest.mark.parametrize("layer,text", CONFIGURED, ids=[c[1] for c in CONFIGURED])
def test_config_round_trips_through_json_and_repr_shows_non_defaults(layer, text):
    assert repr(layer) == text
    config = json.loads(json.dumps(layer.get_config()))
    again = nn.from_config(config)
    assert type(again) is type(layer) and again.get_config() == layer.get_config() and repr(again) == text
    assert again.role == layer.role and again.spatial == layer.spatial and again.elementwise == layer.elementwise
    assert set(again.state_dict()) == set(layer.state_dict())


def test_prelu_and_instance_norm_weights_are_state():
    p = nn.PReLU(3)
    p.weight.data[:] = [0.1, 0.2, 0.3]
    q = nn.from_config(p.get_config())
    q.load_state_dict(p.state_dict())
    x = np.random.default_rng(0).standard_normal((1, 2, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(q(x).data, p(x).data)
    assert p.num_parameters() == 3 and nn.InstanceNorm(5).num_parameters() == 10
    assert nn.InstanceNorm(5, affine=False).num_parameters() == 0


def test_output_shapes_match_the_forward_pass():
    x = np.zeros((2, 5, 6, 4))
    layers = [nn.PReLU(4), nn.Clip(0, 1), nn.InstanceNorm(4), nn.Reshape((-1,)), nn.Reshape((6, -1)),
              nn.Transpose((2, 1, 0)), nn.Pad(((1, 2), (3, 0)), mode="reflect"), nn.Pad(2), nn.Identity(),
              nn.Upsample(scale_factor=(1.5, 0.5), mode="bilinear"), nn.Upsample(size=(3, 9))]
    for layer in layers:
        assert layer(x).shape[1:] == layer.compute_output_shape(x.shape[1:]), repr(layer)


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda: nn.PReLU(0), r"PReLU: num_parameters must be a positive int; received 0"),
    (lambda: nn.PReLU(3).compute_output_shape((2, 2, 4)), r"PReLU: got input shape \(2, 2, 4\); needs 3 channels"),
    (lambda: nn.Clip(2, 1), r"Clip: lo must be ≤ hi; received lo=2, hi=1"),
    (lambda: nn.Clip("0"), r"Clip: lo must be a number; received '0'"),
    (lambda: nn.InstanceNorm(3).compute_output_shape((2, 2, 4)), r"InstanceNorm: got input shape \(2, 2, 4\); "
                                                                  r"needs 3 channels"),
    (lambda: nn.InstanceNorm(3, eps=0), r"InstanceNorm: eps must be > 0; received 0"),
    (lambda: nn.Reshape((-1, -1)), r"Reshape: target_shape must be positive sizes with at most one -1"),
    (lambda: nn.Reshape((7,)).compute_output_shape((2, 3)), r"Reshape: got input shape \(2, 3\); needs 6 values to "
                                                             r"fill target_shape \(7,\)"),
    (lambda: nn.Reshape("ab"), r"Reshape: target_shape must be a tuple of ints; received 'ab'"),
    (lambda: nn.Transpose((0, 0, 1)), r"Transpose: perm must be a permutation of 0..2 \(no batch axis\); received "
                                      r"\(0, 0, 1\)"),
    (lambda: nn.Transpose((1, 0)).compute_output_shape((2, 2, 2)), r"Transpose: got input shape \(2, 2, 2\); needs "
                                                                   r"2 axes for perm \(1, 0\)"),
    (lambda: nn.Pad(1, mode="wrap"), r"Pad: mode must be one of constant, reflect, edge; received 'wrap'"),
    (lambda: nn.Pad(1, mode="edge", value=3), r"Pad: value is used only with mode 'constant'"),
    (lambda: nn.Pad(3, mode="reflect").compute_output_shape((3, 5, 1)), r"Pad: got input shape \(3, 5, 1\); needs "
                                                                        r"more rows than"),
    (lambda: nn.Upsample(size=2, scale_factor=2), r"Upsample: give size or scale_factor, not both"),
    (lambda: nn.Upsample(mode="bicubic"), r"Upsample: mode must be one of nearest, bilinear; received 'bicubic'"),
    (lambda: nn.Upsample(align_corners=True), r"Upsample: align_corners must be True or False with mode 'bilinear'"),
    (lambda: nn.Upsample(scale_factor=-1), r"Upsample: scale_factor must be a positive number or a pair of them; "
                                           r"received -1"),
    (lambda: nn.Upsample(size=(2, 0)), r"Upsample: size must be a positive int or a pair of them; received \(2, 0\)"),
    (lambda: nn.Concatenate(axis=0), r"Concatenate: axis must be a non-zero int \(axis 0 is the batch\); received 0"),
    (lambda: nn.Add()(np.ones((1, 2))), r"Add: needs at least 2 inputs \(a merge layer\); received 1"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
