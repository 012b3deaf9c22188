"""featuremaps.nn: layers against the functional ops and torch.nn, state, config, modes, shapes, errors."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import featuremaps.functional as F
from featuremaps import Tensor, init, nn, tables
from tests.oracles import assert_sum_close, gradcheck, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw

RNG = np.random.default_rng(0)


def x64(*shape):
    return RNG.standard_normal(shape)


def _data(out):
    return out.data if isinstance(out, Tensor) else out


# --- layers = their functional op --------------------------------------------------------------
def test_layers_forward_equal_functional_ops():
    x = x64(2, 9, 9, 4).astype(np.float32)
    conv = nn.Conv2D(4, 6, 3, stride=2, padding=1, dilation=1, rng=RNG)
    np.testing.assert_array_equal(_data(conv(x)), F.conv2d(x, conv.weight.data, conv.bias.data, stride=2, padding=1))
    table = tables.random(4, 6, 2, RNG)
    tconv = nn.Conv2D(4, 6, 3, connections=table, rng=RNG)
    np.testing.assert_array_equal(_data(tconv(x)), F.conv2d(x, tconv.weight.data, tconv.bias.data,
                                                            connections=table))
    v = x64(3, 4).astype(np.float32)
    dense = nn.Dense(4, 5, rng=RNG)
    np.testing.assert_array_equal(_data(dense(v)), F.linear(v, dense.weight.data, dense.bias.data))
    cases = [(nn.ReLU(), F.relu), (nn.Tanh(), F.tanh), (nn.Sigmoid(), F.sigmoid),
             (nn.LeakyReLU(0.2), lambda a: F.leaky_relu(a, 0.2)), (nn.ELU(0.5), lambda a: F.elu(a, 0.5)),
             (nn.Softmax(), F.softmax), (nn.Flatten(), F.flatten),
             (nn.LocalResponseNorm(3, alpha=0.1), lambda a: F.local_response_norm(a, 3, alpha=0.1)),
             (nn.GlobalAvgPool2D(), F.global_avg_pool2d), (nn.GlobalMaxPool2D(), F.global_max_pool2d),
             (nn.MaxPool2D(3, 2, 1), lambda a: F.max_pool2d(a, 3, 2, 1)),
             (nn.AvgPool2D(2, ceil_mode=True), lambda a: F.avg_pool2d(a, 2, ceil_mode=True))]
    for layer, fn in cases:
        np.testing.assert_array_equal(_data(layer(x)), fn(x), err_msg=repr(layer))
    drop = nn.Dropout(0.3, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(_data(drop(x)), F.dropout(x, 0.3, training=True, rng=np.random.default_rng(1)))
    bn = nn.BatchNorm2D(4, momentum=0.3)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    np.testing.assert_array_equal(_data(bn(x)), F.batch_norm(x, bn.weight.data, bn.bias.data, rm, rv, training=True,
                                                             momentum=0.3))
    np.testing.assert_array_equal(bn.running_mean, rm)
    np.testing.assert_array_equal(bn.running_var, rv)


def test_scaled_tanh_and_zero_pad():
    x = x64(2, 3, 4, 2)
    np.testing.assert_allclose(_data(nn.ScaledTanh()(x)), 1.7159 * np.tanh(2 * x / 3), rtol=1e-14)
    np.testing.assert_array_equal(_data(nn.ZeroPad2D(((1, 2), (0, 3)))(x)),
                                  np.pad(x, ((0, 0), (1, 2), (0, 3), (0, 0))))
    np.testing.assert_array_equal(_data(nn.ZeroPad2D(2)(x)), np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))))


def test_subsampling_is_scaled_mean_plus_bias_with_12_params():
    s2 = nn.Subsampling2D(6).astype(np.float64)
    assert s2.num_parameters() == 12 and [n for n, _ in s2.named_parameters()] == ["weight", "bias"]
    s2.weight.data[:] = RNG.standard_normal(6)
    s2.bias.data[:] = RNG.standard_normal(6)
    x = x64(2, 6, 4, 6)
    mean = x.reshape(2, 3, 2, 2, 2, 6).mean(axis=(2, 4))  # naive 2×2 window mean
    np.testing.assert_allclose(_data(s2(x)), mean * s2.weight.data + s2.bias.data, rtol=1e-13)
    w, b = s2.weight.data.copy(), s2.bias.data.copy()

    def fn(xt, wt, bt):
        s2.weight, s2.bias = wt, bt
        return s2(xt)
    gradcheck(fn, x[:, :4, :4], w, b)


# --- against torch.nn, float64 -----------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(kernel_size=3), dict(kernel_size=(3, 2), stride=2, padding=1), dict(kernel_size=3, dilation=2, padding=2),
    dict(kernel_size=3, groups=2, bias=False), dict(kernel_size=1, stride=(1, 2)),
])
def test_conv2d_matches_torch_conv2d(kw):
    conv = nn.Conv2D(4, 6, rng=np.random.default_rng(1), **kw).astype(np.float64)
    ref = torch.nn.Conv2d(4, 6, **kw).double()
    with torch.no_grad():
        ref.weight.copy_(hwio_to_oihw(conv.weight.data))
        if conv.bias is not None:
            conv.bias.data[:] = RNG.standard_normal(6)
            ref.bias.copy_(torch.tensor(conv.bias.data))
    x = x64(2, 8, 7, 4)
    xt = nhwc_to_nchw(x)
    out = conv(Tensor(x, requires_grad=True))
    expected = ref(xt)
    np.testing.assert_allclose(out.data, nchw_to_nhwc(expected), rtol=1e-10, atol=1e-12)
    g = RNG.standard_normal(out.shape)
    out.backward(g)
    expected.backward(nhwc_to_nchw(g))
    np.testing.assert_allclose(conv.weight.grad, ref.weight.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-12)
    if conv.bias is not None:
        np.testing.assert_allclose(conv.bias.grad, ref.bias.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_dense_and_batchnorm_match_torch():
    dense = nn.Dense(5, 3, rng=RNG).astype(np.float64)
    ref = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(dense.weight.data.T))
        ref.bias.copy_(torch.tensor(dense.bias.data))
    v = x64(4, 5)
    assert_sum_close(_data(dense(v)), ref(torch.tensor(v)).detach().numpy(),
                     abs(v) @ abs(dense.weight.data) + abs(dense.bias.data), np.float64, 5 + 1)

    bn = nn.BatchNorm2D(3, momentum=0.2).astype(np.float64)
    tbn = torch.nn.BatchNorm2d(3, momentum=0.2).double()
    x = x64(4, 5, 5, 3) * 2 + 1
    for _ in range(2):  # training: batch statistics, running statistics updated
        np.testing.assert_allclose(_data(bn(x)), nchw_to_nhwc(tbn(nhwc_to_nchw(x))), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-12)
    bn.eval(), tbn.eval()
    np.testing.assert_allclose(_data(bn(x)), nchw_to_nhwc(tbn(nhwc_to_nchw(x))), rtol=1e-10, atol=1e-12)
    # (N, C) input
    bn1 = nn.BatchNorm2D(3).astype(np.float64)
    tbn1 = torch.nn.BatchNorm1d(3).double()
    v = x64(6, 3)
    np.testing.assert_allclose(_data(bn1(v)), tbn1(torch.tensor(v)).detach().numpy(), rtol=1e-10, atol=1e-12)


# --- connection tables in Conv2D ---------------------------------------------------------------
def test_conv_with_table_init_fan_in_and_zero_unconnected():
    table = tables.lenet5_c3()
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    c3 = nn.Conv2D(6, 16, 5, connections=table, rng=rng_a)
    # each output map's filters drawn with its own fan-in 5·5·k, then masked
    expected = init.lecun_uniform((5, 5, 6, 16), 25 * table.sum(axis=0), None, rng_b) * table
    np.testing.assert_array_equal(c3.weight.data, expected)
    assert np.all(c3.weight.data[:, :, ~table] == 0)
    limits = np.sqrt(3 / (25 * table.sum(axis=0)))
    assert np.all(np.abs(c3.weight.data).max(axis=(0, 1, 2)) <= limits)
    assert c3.num_parameters() == 60 * 25 + 16 == 1516
    assert c3.connections.dtype == bool


def test_conv_with_table_matches_torch_masked_and_zero_grad():
    table = tables.random(4, 5, 2, np.random.default_rng(3))
    conv = nn.Conv2D(4, 5, 3, connections=table, rng=RNG).astype(np.float64)
    ref = torch.nn.Conv2d(4, 5, 3).double()
    with torch.no_grad():
        ref.weight.copy_(hwio_to_oihw(conv.weight.data))
        ref.bias.zero_()
    x = x64(2, 6, 6, 4)
    out = conv(x)
    np.testing.assert_allclose(out.data, nchw_to_nhwc(ref(nhwc_to_nchw(x))), rtol=1e-10, atol=1e-12)
    out.backward(np.ones_like(out.data))
    assert np.all(conv.weight.grad[:, :, ~table] == 0)
    assert np.all(conv.weight.grad[:, :, table] != 0)


def test_init_fan_in_with_groups():
    a = nn.Conv2D(8, 4, 3, groups=4, rng=np.random.default_rng(2))
    b = init.lecun_uniform((3, 3, 2, 4), 3 * 3 * 2, 3 * 3 * 1, np.random.default_rng(2))
    np.testing.assert_array_equal(a.weight.data, b)
    g = nn.Conv2D(8, 4, 3, groups=4, rng=np.random.default_rng(2), init="glorot_normal")
    np.testing.assert_array_equal(g.weight.data, init.glorot_normal((3, 3, 2, 4), 18, 9, np.random.default_rng(2)))


# --- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make,exc,match", [
    (lambda: nn.Conv2D(3, 64, 0), ValueError, r"Conv2D: kernel_size must be ≥ 1 .*; received 0$"),
    (lambda: nn.Conv2D(3, 64, 3, groups=2), ValueError,
     r"groups must divide in_channels \(3\) and out_channels \(64\)"),
    (lambda: nn.Conv2D(0, 4, 3), ValueError, "in_channels must be a positive int; received 0"),
    (lambda: nn.Conv2D(3, 4, 3, stride=(1, 0)), ValueError, "stride must be ≥ 1"),
    (lambda: nn.Conv2D(3, 4, 3, padding="half"), ValueError, "padding must be"),
    (lambda: nn.Conv2D(3, 4, 3, padding=-1), ValueError, "padding must be ≥ 0"),
    (lambda: nn.Conv2D(6, 16, 5, connections=np.ones((16, 6))), ValueError,
     r"connections: expected a table of shape \(in_channels, out_channels\) = \(6, 16\); received shape \(16, 6\)"),
    (lambda: nn.Conv2D(2, 2, 1, connections=[[1, 0], [1, 0]]), ValueError, r"output map\(s\) \[1\] have none"),
    (lambda: nn.Conv2D(4, 4, 1, groups=2, connections=np.ones((4, 4))), ValueError, "either groups or connections"),
    (lambda: nn.Conv2D(3, 4, 3, init="xavier"), ValueError, "init: expected one of"),
    (lambda: nn.Conv2D(3, 4, 3, bias=1), TypeError, "bias must be True or False"),
    (lambda: nn.Conv2D(3, 4, 3, rng="seed"), TypeError, "rng must be"),
    (lambda: nn.Dense(0, 3), ValueError, "in_features must be a positive int"),
    (lambda: nn.MaxPool2D(2, padding=2), ValueError, "padding must be at most half"),
    (lambda: nn.BatchNorm2D(4, momentum=2), ValueError, r"momentum must be in \[0, 1\]"),
    (lambda: nn.Dropout(1.0), ValueError, r"p must be in \[0, 1\)"),
    (lambda: nn.Subsampling2D(0), ValueError, "channels must be a positive int"),
    (lambda: nn.Sequential([("a", nn.ReLU()), ("a", nn.Tanh())]), ValueError, "'a' \\(repeated\\)"),
    (lambda: nn.Sequential([("a.b", nn.ReLU())]), ValueError, "contains '.'"),
    (lambda: nn.Sequential([nn.ReLU(), "tanh"]), TypeError, "list of modules"),
    (lambda: nn.Sequential([nn.ReLU()], input_shape=(1, 28, 28, 1)), ValueError, "without the batch dimension"),
])
def test_config_is_validated_eagerly(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# --- shapes ---------------------------------------------------------------------------------------
SHAPE_CASES = [
    (lambda: nn.Conv2D(3, 5, 3), (9, 8, 3)),
    (lambda: nn.Conv2D(3, 5, (3, 2), stride=(2, 3), padding=((1, 0), (2, 1)), dilation=(1, 2)), (9, 8, 3)),
    (lambda: nn.Conv2D(4, 4, 3, stride=2, padding="same", groups=2), (9, 8, 4)),
    (lambda: nn.Conv2D(3, 2, 2, padding="full"), (5, 4, 3)),
    (lambda: nn.MaxPool2D(3, 2, 1, ceil_mode=True), (9, 8, 3)),
    (lambda: nn.MaxPool2D(2, dilation=2), (9, 8, 3)),
    (lambda: nn.AvgPool2D((2, 3), stride=1), (9, 8, 3)),
    (lambda: nn.Subsampling2D(3), (9, 8, 3)),
    (lambda: nn.GlobalAvgPool2D(), (9, 8, 3)),
    (lambda: nn.Flatten(), (9, 8, 3)),
    (lambda: nn.ZeroPad2D((1, 2)), (9, 8, 3)),
    (lambda: nn.BatchNorm2D(3), (9, 8, 3)),
    (lambda: nn.Dense(7, 2), (7,)),
    (lambda: nn.LocalResponseNorm(3), (9, 8, 3)),
]


@pytest.mark.parametrize("make,shape", SHAPE_CASES)
def test_compute_output_shape_agrees_with_forward(make, shape):
    layer = make()
    out = layer(RNG.standard_normal((2,) + shape).astype(np.float32))
    assert (2,) + tuple(layer.compute_output_shape(shape)) == _data(out).shape


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), d=st.integers(1, 2))
def test_conv_output_shape_property(h, w, k, s, p, d):
    conv = nn.Conv2D(2, 3, k, stride=s, padding=p, dilation=d)
    x = np.zeros((1, h, w, 2), np.float32)
    if h + 2 * p < d * (k - 1) + 1 or w + 2 * p < d * (k - 1) + 1:
        with pytest.raises(nn.ShapeError, match="padded input of at least"):
            conv.compute_output_shape((h, w, 2))
        return
    assert (1,) + conv.compute_output_shape((h, w, 2)) == _data(conv(x)).shape


def test_shape_errors_name_layer_got_and_needs():
    with pytest.raises(nn.ShapeError, match=r"Dense: got input shape \(256,\); needs 400 features"):
        nn.Dense(400, 10).compute_output_shape((256,))
    with pytest.raises(nn.ShapeError,
                       match=r"Conv2D: got input shape \(4, 4, 1\); needs a padded input of at least 5×5"):
        nn.Conv2D(1, 6, 5).compute_output_shape((4, 4, 1))
    with pytest.raises(nn.ShapeError, match=r"needs 6 input channels \(in_channels\); it has 3"):
        nn.Conv2D(6, 16, 5).compute_output_shape((10, 10, 3))
    with pytest.raises(nn.ShapeError, match="put a Flatten"):
        nn.Dense(10, 2).compute_output_shape((2, 5, 1))
    inner = nn.Sequential([("fc", nn.Dense(5, 2))])
    model = nn.Sequential([("flat", nn.Flatten()), ("head", inner)])
    with pytest.raises(nn.ShapeError) as e:
        model.compute_output_shape((2, 2, 1))
    assert e.value.path == "head.fc" and e.value.got == (4,) and e.value.kind == "Dense"
    assert "layer 'head.fc' (Dense)" in str(e.value)
    assert isinstance(e.value, ValueError)


# --- module API: traversal, state, config ----------------------------------------------------------
def small_model(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential([
        ("C1", nn.Conv2D(1, 4, 3, rng=rng)), ("bn", nn.BatchNorm2D(4)), ("act", nn.ReLU()),
        ("S2", nn.Subsampling2D(4)),
        ("C3", nn.Conv2D(4, 3, 3, connections=tables.random(4, 3, 2, np.random.default_rng(9)), rng=rng)),
        ("flatten", nn.Flatten()), ("drop", nn.Dropout(0.3)), ("fc", nn.Dense(12, 5, rng=rng)),
    ], input_shape=(10, 10, 1))


def test_names_and_traversal():
    m = small_model()
    assert [n for n, _ in m.named_modules()] == ["", "C1", "bn", "act", "S2", "C3", "flatten", "drop", "fc"]
    assert [n for n, _ in m.named_parameters()] == ["C1.weight", "C1.bias", "bn.weight", "bn.bias", "S2.weight",
                                                  "S2.bias", "C3.weight", "C3.bias", "fc.weight", "fc.bias"]
    assert [n for n, _ in m.named_buffers()] == ["bn.running_mean", "bn.running_var"]
    assert all(p.requires_grad for p in m.parameters())
    assert m["C3"] is m[4] is m.C3 and m[-1] is m["fc"] and len(m) == 8
    assert list(m) == [c for c in m.children()]
    assert m.names()[:2] == ["C1", "bn"] and "fc" in m
    head = m[5:]
    assert isinstance(head, nn.Sequential) and head.names() == ["flatten", "drop", "fc"] and head["fc"] is m.fc
    unnamed = nn.Sequential([nn.ReLU(), nn.Tanh()])
    assert unnamed.names() == ["0", "1"]
    with pytest.raises(KeyError, match="no layer named 'C9'"):
        m["C9"]
    with pytest.raises(IndexError):
        m[8]


def test_state_dict_round_trip_copies():
    a, b = small_model(0), small_model(1)
    sd = a.state_dict()
    assert set(sd) == {n for n, _ in a.named_parameters()} | {"bn.running_mean", "bn.running_var"}
    sd["C1.weight"][...] = 7  # a copy: the model is untouched
    assert not np.any(a.C1.weight.data == 7)
    weight = b.C1.weight
    b.load_state_dict(a.state_dict())
    assert b.C1.weight is weight  # loaded in place
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)
    x = RNG.standard_normal((2, 10, 10, 1)).astype(np.float32)
    a.eval(), b.eval()
    np.testing.assert_array_equal(_data(a(x)), _data(b(x)))


def test_load_state_dict_errors_are_named_and_nothing_is_loaded():
    m = small_model(0)
    before = m.state_dict()
    sd = small_model(1).state_dict()
    del sd["C3.bias"]
    sd["extra.weight"] = np.zeros(3)
    sd["fc.weight"] = np.zeros((5, 12))
    with pytest.raises(ValueError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    for part in ("missing keys ['C3.bias']", "unexpected keys ['extra.weight']",
                 "fc.weight: expected shape (12, 5), received (5, 12)", "Nothing was loaded"):
        assert part in msg
    for k, v in m.state_dict().items():  # no partial load: C1.weight etc. are unchanged
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    # non-strict ignores missing/unexpected keys but still refuses wrong shapes
    with pytest.raises(ValueError, match="fc.weight: expected shape"):
        m.load_state_dict(sd, strict=False)
    sd["fc.weight"] = np.ones((12, 5))
    m.load_state_dict(sd, strict=False)
    assert np.all(m.fc.weight.data == 1)
    np.testing.assert_array_equal(m.C3.bias.data, before["C3.bias"])


ALL_LAYERS = [
    nn.Conv2D(3, 8, (3, 5), stride=2, padding="same", dilation=(1, 2), init="he_normal", bias=False),
    nn.Conv2D(6, 16, 5, connections=tables.lenet5_c3()), nn.Conv2D(4, 4, 3, groups=2, padding=((1, 0), (0, 1))),
    nn.MaxPool2D(3, 2, 1, ceil_mode=True, dilation=1), nn.AvgPool2D(2, count_include_pad=False),
    nn.GlobalAvgPool2D(), nn.GlobalMaxPool2D(), nn.Subsampling2D(6, kernel_size=3), nn.Dense(3, 4, bias=False),
    nn.Flatten(), nn.ReLU(), nn.LeakyReLU(0.2), nn.ELU(0.5), nn.Tanh(), nn.ScaledTanh(), nn.Sigmoid(),
    nn.Softmax(axis=1), nn.BatchNorm2D(4, momentum=0.05, eps=1e-3), nn.Dropout(0.25),
    nn.LocalResponseNorm(5, alpha=1e-3, beta=0.5, k=2.0), nn.ZeroPad2D((1, 2)),
    nn.Sequential([("a", nn.ReLU()), ("b", nn.Sequential([nn.Tanh()]))], input_shape=(4, 4, 2)),
]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda m: type(m).__name__)
def test_config_json_round_trip(layer):
    cfg = layer.get_config()
    text = json.dumps(cfg)
    again = nn.from_config(json.loads(text))
    assert type(again) is type(layer) and repr(again) == repr(layer)
    assert again.get_config() == cfg
    assert nn.from_config(text).get_config() == cfg


def test_config_round_trip_same_outputs_after_load():
    m = small_model(3)
    again = nn.from_config(json.loads(json.dumps(m.get_config())))
    assert repr(again) == repr(m) and again.input_shape == (10, 10, 1)
    np.testing.assert_array_equal(again.C3.connections, m.C3.connections)
    again.load_state_dict(m.state_dict())
    x = RNG.standard_normal((3, 10, 10, 1)).astype(np.float32)
    m.eval(), again.eval()
    np.testing.assert_array_equal(_data(again(x)), _data(m(x)))


def test_from_config_errors():
    with pytest.raises(ValueError, match="unknown class 'Conv3D'"):
        nn.from_config({"class": "Conv3D"})
    with pytest.raises(ValueError, match="'class' key"):
        nn.from_config({"in_channels": 3})


def test_repr_shows_only_non_defaults():
    assert repr(nn.Conv2D(1, 6, 5)) == "Conv2D(1, 6, kernel_size=5)"
    assert repr(nn.Conv2D(1, 6, (5, 3), stride=2, padding="same", bias=False)) == \
        "Conv2D(1, 6, kernel_size=(5, 3), stride=2, padding='same', bias=False)"
    assert repr(nn.Conv2D(6, 16, 5, connections=tables.lenet5_c3())) == \
        "Conv2D(6, 16, kernel_size=5, connections=<6→16 table, 60 links>)"
    assert repr(nn.MaxPool2D(2)) == "MaxPool2D(kernel_size=2)"
    assert repr(nn.MaxPool2D(3, stride=2)) == "MaxPool2D(kernel_size=3, stride=2)"
    assert repr(nn.Dropout()) == "Dropout()" and repr(nn.Dropout(0.1)) == "Dropout(p=0.1)"
    assert repr(nn.Dense(3, 4)) == "Dense(3, 4)"
    assert repr(nn.Sequential([("r", nn.ReLU())])) == "Sequential(\n  (r): ReLU()\n)"


# --- modes and randomness --------------------------------------------------------------------------
def test_train_eval_switches_dropout_and_batchnorm():
    m = small_model()
    assert m.training and m.drop.training
    m.eval()
    assert not any(mod.training for mod in m.modules())
    x = RNG.standard_normal((4, 12)).astype(np.float32)
    drop = m.drop
    np.testing.assert_array_equal(_data(drop(x)), x)
    m.train()
    assert all(mod.training for mod in m.modules())
    y = _data(drop(x))
    assert np.any(y == 0) and np.any(y != x)

    bn = nn.BatchNorm2D(2)
    z = (RNG.standard_normal((8, 3, 3, 2)) * 3 + 5).astype(np.float32)
    train_out = _data(bn(z))  # normalised with the batch statistics
    assert abs(train_out.mean()) < 1e-5
    assert np.any(bn.running_mean != 0)
    bn.eval()
    mean, var = bn.running_mean.copy(), bn.running_var.copy()
    eval_out = _data(bn(z))
    np.testing.assert_allclose(eval_out, (z - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(bn.running_mean, mean)  # eval does not update


def test_set_rng_gives_each_dropout_its_own_deterministic_stream():
    def model():
        return nn.Sequential([("d1", nn.Dropout(0.5)), ("d2", nn.Dropout(0.5))])
    x = np.ones((4, 50), np.float32)
    a, b = model(), model()
    a.set_rng(np.random.default_rng([7, 0]))
    b.set_rng(np.random.default_rng([7, 0]))
    a1, b1 = _data(a.d1(x)), _data(b.d1(x))
    np.testing.assert_array_equal(a1, b1)
    assert not np.array_equal(a1, _data(a.d2(x)))  # d1 and d2 draw different masks
    a.set_rng(np.random.default_rng([7, 0]))  # same seed again: the same masks again
    np.testing.assert_array_equal(_data(a.d1(x)), a1)
    b.set_rng(np.random.default_rng([7, 1]))  # next epoch: different masks
    assert not np.array_equal(_data(b.d1(x)), a1)
    with pytest.raises(TypeError, match="set_rng"):
        a.set_rng(7)


def test_set_rng_spawn_order():
    m = nn.Sequential([("d1", nn.Dropout(0.5)), ("r", nn.ReLU()), ("d2", nn.Dropout(0.5))])
    m.set_rng(np.random.default_rng(11))
    parent = np.random.default_rng(11)
    r1, r2 = parent.spawn(1)[0], parent.spawn(1)[0]
    assert m.d1.rng.random() == r1.random() and m.d2.rng.random() == r2.random()


# --- gradients and dtypes -----------------------------------------------------------------------------
def test_gradient_reaches_every_parameter():
    m = small_model()
    x = RNG.standard_normal((3, 10, 10, 1)).astype(np.float32)
    out = m(x)
    out.backward(RNG.standard_normal(out.shape).astype(np.float32))
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and np.any(p.grad != 0), name
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_astype_float64_keeps_tensors():
    m = small_model()
    w = m.C1.weight
    m.astype(np.float64)
    assert m.C1.weight is w and w.dtype == np.float64 and m.bn.running_var.dtype == np.float64
    m.eval()
    out = m(RNG.standard_normal((1, 10, 10, 1)))
    assert _data(out).dtype == np.float64
    with pytest.raises(TypeError, match="floating"):
        m.astype(np.int32)


def test_parameter_assignment_rules():
    conv = nn.Conv2D(1, 2, 3)
    conv.bias = None
    assert [n for n, _ in conv.named_parameters()] == ["weight"]
    with pytest.raises(TypeError, match="must be a Tensor or None"):
        conv.weight = np.zeros((3, 3, 1, 2))


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 10), w=st.integers(1, 10), k=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 1),
       ceil=st.booleans(), avg=st.booleans())
def test_pool_output_shape_property(h, w, k, s, p, ceil, avg):
    """compute_output_shape and the forward against torch's pooling shapes; the padding torch
    refuses (more than half the window) and inputs smaller than the window raise our own errors."""
    make = nn.AvgPool2D if avg else nn.MaxPool2D
    if p > k // 2:
        with pytest.raises(ValueError, match=r"must be at most half the window \(kernel_size // 2 = 0\)"):
            make(k, s, p, ceil_mode=ceil)
        return
    layer = make(k, s, p, ceil_mode=ceil)
    x = np.zeros((1, h, w, 2), np.float32)
    if h + 2 * p < k or w + 2 * p < k:
        with pytest.raises(nn.ShapeError, match="padded input of at least"):
            layer.compute_output_shape((h, w, 2))
        return
    pool = torch.nn.functional.avg_pool2d if avg else torch.nn.functional.max_pool2d
    expected = tuple(pool(torch.zeros(1, 2, h, w), k, s, p, ceil_mode=ceil).shape[2:]) + (2,)  # NCHW -> (h, w, c)
    assert layer.compute_output_shape((h, w, 2)) == expected
    assert _data(layer(x)).shape == (1,) + expected


def test_deepcopy_gives_independent_parameters():
    import copy
    m = small_model()
    c = copy.deepcopy(m)
    assert c.C1.weight is not m.C1.weight and repr(c) == repr(m)
    c.C1.weight.data[...] = 0
    assert np.any(m.C1.weight.data != 0)
