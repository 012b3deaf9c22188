"""The model zoo: builders, shapes against a real forward pass, gradients, parameter counts, config."""
import json

import numpy as np
import pytest

from featuremaps import Tensor, functional as F, models, nn, tables
from tests.test_tables import PAPER_TABLE_I

RNG = np.random.default_rng(0)


def test_names_and_descriptions():
    assert models.names() == ["lenet5", "lenet", "cnn", "vgg-small"]
    for name in models.names():
        d = models.describe(name)
        assert isinstance(d, str) and d and "\n" not in d
    with pytest.raises(ValueError,
                       match=r"unknown model 'resnet'; expected one of \['lenet5', 'lenet', 'cnn', 'vgg-small'\]"):
        models.get("resnet")
    with pytest.raises(ValueError, match="unknown model"):
        models.describe("resnet")
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['depth'\]; this model takes"):
        models.get("lenet5", depth=3)


@pytest.mark.parametrize("name", ["lenet5", "lenet", "cnn", "vgg-small"])
def test_forward_gives_logits_and_shapes_agree(name):
    model = models.get(name, rng=np.random.default_rng(1))
    assert isinstance(model, nn.Sequential) and model.input_shape is not None
    x = RNG.standard_normal((3,) + model.input_shape).astype(np.float32)
    # every layer's compute_output_shape agrees with the real forward pass
    h, shape = x, model.input_shape
    for name_, layer in model.named_children():
        h = layer(h)
        shape = layer.compute_output_shape(shape)
        assert (3,) + tuple(shape) == np.shape(h.data if isinstance(h, Tensor) else h), name_
    assert model.compute_output_shape() == (10,)
    out = model(x)
    assert out.shape == (3, 10) and out.dtype == np.float32
    assert not isinstance(model[-1], (nn.Softmax, nn.Tanh))  # logits: no squashing at the end


@pytest.mark.parametrize("name", ["lenet5", "lenet", "cnn", "vgg-small"])
def test_gradient_reaches_every_parameter(name):
    model = models.get(name)
    if name == "lenet":  # its output layer starts at zero (as in the tutorial), which blocks the first backward
        model["fc2"].weight.data[...] = RNG.standard_normal(model["fc2"].weight.shape)
    x = RNG.standard_normal((4,) + model.input_shape).astype(np.float32)
    loss = F.cross_entropy(model(x), np.array([0, 1, 2, 3]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, pname
        assert np.all(np.isfinite(p.grad)) and np.any(p.grad != 0), pname


def test_lenet5_structure_and_parameter_count():
    m = models.get("lenet5")
    assert m.names() == ["pad", "C1", "C1_act", "S2", "S2_act", "C3", "C3_act", "S4", "S4_act", "C5", "C5_act",
                         "flatten", "F6", "F6_act", "OUTPUT"]
    assert m.input_shape == (28, 28, 1)
    paper = np.array([[mark == "X" for mark in row] for row in PAPER_TABLE_I])  # LeCun et al. 1998, Table I
    np.testing.assert_array_equal(m["C3"].connections, paper)
    np.testing.assert_array_equal(m["C3"].connections, tables.lenet5_c3())
    assert m["C3"].kernel_size == (5, 5) and m["C5"].out_channels == 120
    # the paper's trainable parameters: 156 + 12 + 1,516 + 32 + 48,120 + 10,164, plus 84·10 + 10 here
    assert m.num_parameters() == 156 + 12 + 1516 + 32 + 48120 + 10164 + 850 == 60850
    assert m.compute_output_shape((28, 28, 1)) == (10,)
    assert m["C5"].compute_output_shape(m[:9].compute_output_shape((28, 28, 1))) == (1, 1, 120)
    scaled = models.get("lenet5", scaled_tanh=True)
    assert isinstance(scaled["C1_act"], nn.ScaledTanh)


def test_lenet_theano_tutorial_structure():
    m = models.get("lenet")
    assert m.names() == ["conv1", "pool1", "pool1_act", "conv2", "pool2", "pool2_act", "flatten", "fc1", "fc1_act",
                         "fc2"]
    assert m.num_parameters() == 20 * 25 + 20 + 50 * 20 * 25 + 50 + 800 * 500 + 500 + 500 * 10 + 10
    assert not np.any(m["fc2"].weight.data)  # the tutorial's logistic layer starts at zero


def test_models_deterministic_from_rng_and_default():
    a, b = models.get("cnn", rng=np.random.default_rng(4)), models.get("cnn", rng=np.random.default_rng(4))
    c = models.get("cnn", rng=np.random.default_rng(5))
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)
    assert not np.array_equal(a["conv1"].weight.data, c["conv1"].weight.data)
    np.testing.assert_array_equal(models.get("lenet5")["C1"].weight.data,
                                  models.get("lenet5", rng=np.random.default_rng(0))["C1"].weight.data)
    # dropout streams follow the rng too
    x = np.ones((2, 128), np.float32)
    np.testing.assert_array_equal(a["dropout"](x), b["dropout"](x))
    assert not np.array_equal(a["dropout"](x), c["dropout"](x))


@pytest.mark.parametrize("name", ["lenet5", "cnn"])
def test_config_round_trip_same_outputs(name):
    m = models.get(name, rng=np.random.default_rng(2))
    again = nn.from_config(json.loads(json.dumps(m.get_config())))
    assert repr(again) == repr(m)
    again.load_state_dict(m.state_dict())
    m.eval(), again.eval()
    x = RNG.standard_normal((2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(again(x).data, m(x).data)


def test_num_classes_and_input_shape_kwargs():
    assert models.get("lenet", num_classes=3).compute_output_shape() == (3,)
    v = models.get("vgg-small", input_shape=(16, 16, 1))
    assert v.input_shape == (16, 16, 1) and v(np.zeros((1, 16, 16, 1), np.float32)).shape == (1, 10)


def test_cnn_width():
    m = models.get("cnn", width=16)
    assert m["conv4"].out_channels == 32 and m["fc1"].in_features == 512
    assert m(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
