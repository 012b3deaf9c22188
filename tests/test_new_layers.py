"""The layers Keras and torch files need: `Conv2DTranspose` (against torch's ConvTranspose2d, every option,
float64 gradients; 'same' against Keras), `Cropping2D` and `Rescaling` (against NumPy slicing and
arithmetic), their config round trips, reprs, shape errors and use in Sequential and Graph models, and their
ONNX routes (export and load, against onnxruntime)."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from featuremaps import nn
from featuremaps.tensor import Tensor
from tests.oracles import assert_sum_close, sum_rtol

KEEP = dict(stride=1, padding=0, output_padding=0, dilation=1, groups=1)


def _torch_convt(layer: nn.Conv2DTranspose, padding) -> torch.nn.ConvTranspose2d:
    """torch's ConvTranspose2d with `layer`'s options and weights (in float64)."""
    m = torch.nn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                                 padding=padding, output_padding=layer.output_padding, groups=layer.groups,
                                 bias=layer.use_bias, dilation=layer.dilation).double()
    with torch.no_grad():
        w = torch.from_numpy(layer.weight.data.astype(np.float64))
        m.weight.copy_(w.permute(3, 2, 0, 1))  # (in, out/g, kh, kw)
        if layer.use_bias:
            m.bias.copy_(torch.from_numpy(layer.bias.data.astype(np.float64)))
    return m


def _randomize(layer, rng):
    layer.weight.data = rng.standard_normal(layer.weight.shape)
    if layer.bias is not None:
        layer.bias.data = rng.standard_normal(layer.bias.shape)
    return layer


def _abs_sum(layer, x) -> np.ndarray:
    """Σ|terms| of each output value: the layer run with |weight|, |bias| on |x| (our NHWC layout)."""
    twin = nn.from_config(layer.get_config()).astype(np.float64)
    twin.load_state_dict({k: np.abs(v) for k, v in layer.state_dict().items()})
    return twin(np.abs(x).astype(np.float64)).data


def _compare_with_torch(layer, x, torch_module, crop=((0, 0), (0, 0))):
    """Layer output and the gradients of x, weight and bias against torch (float64; torch's output
    cropped by `crop`), within the rounding of each sum."""
    (t, b), (l, r) = crop  # noqa: E741
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)  # (n, c, h, w)
    ref = torch_module(xt)
    ref = ref[:, :, t:ref.shape[2] - b, l:ref.shape[3] - r]
    ref_nhwc = ref.detach().numpy().transpose(0, 2, 3, 1)  # (n, oh, ow, c)
    assert layer.compute_output_shape(x.shape[1:]) == ref_nhwc.shape[1:]
    xs = Tensor(x, requires_grad=True)
    out = layer(xs)
    kh, kw = layer.kernel_size
    terms = kh * kw * layer.in_channels // layer.groups + 1
    assert_sum_close(out.data, ref_nhwc, _abs_sum(layer, x), np.float64, terms)
    g = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(g)
    ref.backward(torch.from_numpy(g.transpose(0, 3, 1, 2).copy()))
    gx = xt.grad.numpy().transpose(0, 2, 3, 1)  # (n, h, w, c)
    gw = torch_module.weight.grad.numpy().transpose(2, 3, 1, 0)  # (kh, kw, out/g, in)
    scale = float(np.abs(g).max() * max(np.abs(x).max(), np.abs(layer.weight.data).max()) * 10)
    n_terms = int(g.size)
    np.testing.assert_allclose(xs.grad, gx, rtol=0, atol=sum_rtol(np.float64, n_terms) * scale * n_terms)
    np.testing.assert_allclose(layer.weight.grad, gw, rtol=0, atol=sum_rtol(np.float64, n_terms) * scale * n_terms)
    if layer.use_bias:
        np.testing.assert_allclose(layer.bias.grad, torch_module.bias.grad.numpy(), rtol=0,
                                   atol=sum_rtol(np.float64, n_terms) * float(np.abs(g).sum()))


# ---------------------------------------------------------------------------------------------
# Conv2DTranspose against torch
# ---------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2),
       st.integers(0, 2), st.sampled_from([1, 2, 3]), st.booleans(), st.integers(0, 2 ** 16))
def test_conv2d_transpose_matches_torch_in_float64(k, s, d, cin_g, p, a, groups, bias, seed):
    """Every option at once: stride, padding, output_padding (< stride or dilation), dilation, groups, bias."""
    a = min(a, max(s, d) - 1)
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    full = [(n - 1) * s + d * (k - 1) + 1 for n in (h, w)]
    p = min(p, (min(full) + a - 1) // 2)
    cin, cout = cin_g * groups, int(rng.integers(1, 3)) * groups
    layer = _randomize(nn.Conv2DTranspose(cin, cout, k, stride=s, padding=p, output_padding=a, dilation=d,
                                          groups=groups, bias=bias), rng)
    x = rng.standard_normal((2, h, w, cin))
    _compare_with_torch(layer, x, _torch_convt(layer, p))


@pytest.mark.parametrize("opts", [dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0)),
                                  dict(kernel_size=3, stride=2, dilation=(1, 2), output_padding=(1, 1), groups=2),
                                  dict(kernel_size=4, stride=2, padding=1, bias=False)])
def test_conv2d_transpose_pair_options_match_torch(opts):
    rng = np.random.default_rng(3)
    layer = _randomize(nn.Conv2DTranspose(4, 6, **opts), rng)
    x = rng.standard_normal((2, 5, 4, 4))
    _compare_with_torch(layer, x, _torch_convt(layer, opts.get("padding", 0)))


def test_conv2d_transpose_asymmetric_padding_is_torch_cropped():
    """((top, bottom), (left, right)) removes rows/columns of torch's unpadded output."""
    rng = np.random.default_rng(4)
    pads = ((0, 2), (1, 0))
    layer = _randomize(nn.Conv2DTranspose(3, 2, 3, stride=2, padding=pads), rng)
    _compare_with_torch(layer, rng.standard_normal((1, 4, 3, 3)), _torch_convt(layer, 0), crop=pads)


@pytest.mark.parametrize("strides, k", [(2, 3), (2, 4), (3, 2), (1, 3)])
def test_conv2d_transpose_same_matches_keras(strides, k):
    """padding='same' is Keras's: output H·s, and the same values (float32, rtol from the sum)."""
    rng = np.random.default_rng(5)
    layer = _randomize(nn.Conv2DTranspose(3, 4, k, stride=strides, padding="same"), rng).astype(np.float32)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    kl = keras.layers.Conv2DTranspose(4, k, strides=strides, padding="same")
    kl.build((None, 5, 4, 3))
    kl.set_weights([layer.weight.data, layer.bias.data])  # Keras's kernel is (kh, kw, out, in) too
    want = kl(x).detach().cpu().numpy()  # the torch backend returns a torch tensor
    got = layer(x).data
    assert got.shape == want.shape == (2, 5 * strides, 4 * strides, 4)
    assert layer.compute_output_shape((5, 4, 3)) == want.shape[1:]
    assert_sum_close(got, want, _abs_sum(layer, x), np.float32, k * k * 3 + 1)


def test_conv2d_transpose_validation_errors_name_the_argument():
    with pytest.raises(ValueError, match="output_padding must be smaller than the stride or the dilation"):
        nn.Conv2DTranspose(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="groups must divide in_channels"):
        nn.Conv2DTranspose(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="output_padding must be 0 with padding='same'"):
        nn.Conv2DTranspose(2, 2, 3, stride=2, padding="same", output_padding=1)
    with pytest.raises(nn.ShapeError, match="3 input channels"):
        nn.Conv2DTranspose(3, 4, 3).compute_output_shape((4, 4, 2))
    with pytest.raises(nn.ShapeError, match="the output would be"):
        nn.Conv2DTranspose(1, 1, 1, padding=2).compute_output_shape((3, 3, 1))
    with pytest.raises(TypeError, match="bias must be True or False"):
        nn.Conv2DTranspose(1, 1, 1, bias=1)


def test_conv2d_transpose_init_config_repr_and_roles():
    a = nn.Conv2DTranspose(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, rng=np.random.default_rng(0))
    assert a.weight.shape == (3, 3, 3, 4) and a.weight.data.dtype == np.float32 and a.bias.shape == (6,)
    limit = np.sqrt(3.0 / (3 * 3 * 2))  # lecun_uniform, fan-in kh·kw·in/groups
    assert 0.5 * limit < np.abs(a.weight.data).max() <= limit
    assert a.num_parameters() == 3 * 3 * 3 * 4 + 6
    b = nn.from_config(a.get_config())
    assert b.get_config() == a.get_config() and repr(b) == repr(a)
    assert repr(a) == "Conv2DTranspose(4, 6, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2)"
    assert repr(nn.Conv2DTranspose(1, 2, (3, 1), bias=False)) == "Conv2DTranspose(1, 2, kernel_size=(3, 1), bias=False)"
    # not 'conv': its weight is (kh, kw, out/g, in) and an output value is no single window sum
    assert (a.role, a.spatial, a.elementwise, a.decomposition) == ("other", None, False, None)


# ---------------------------------------------------------------------------------------------
# Cropping2D and Rescaling against NumPy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cropping, expect", [(1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))),
                                              (((0, 2), (1, 3)), ((0, 2), (1, 3))),
                                              ([[1, 0], [0, 1]], ((1, 0), (0, 1)))])
def test_cropping2d_is_numpy_slicing_with_its_gradient(cropping, expect):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 8, 3))
    layer = nn.Cropping2D(cropping)
    assert layer.cropping == expect
    (t, b), (l, r) = expect  # noqa: E741
    xs = Tensor(x, requires_grad=True)
    out = layer(xs)
    np.testing.assert_array_equal(out.data, x[:, t:7 - b, l:8 - r, :])  # a copy: bit-identical
    assert layer.compute_output_shape((7, 8, 3)) == out.shape[1:]
    g = rng.standard_normal(out.shape)
    out.backward(g)
    want = np.zeros_like(x)
    want[:, t:7 - b, l:8 - r, :] = g
    np.testing.assert_array_equal(xs.grad, want)
    again = nn.from_config(layer.get_config())
    assert again.cropping == layer.cropping and repr(again) == repr(layer)


def test_cropping2d_errors_and_repr():
    with pytest.raises(ValueError, match="cropping must be a non-negative int"):
        nn.Cropping2D(-1)
    with pytest.raises(ValueError, match="cropping must be"):
        nn.Cropping2D((1, 2, 3))
    with pytest.raises(nn.ShapeError, match="more than 4 rows"):
        nn.Cropping2D(((2, 2), (0, 0))).compute_output_shape((4, 9, 1))
    with pytest.raises(ValueError, match="removes every row or column"):
        nn.Cropping2D(2)(np.zeros((1, 4, 4, 1)))
    assert [repr(nn.Cropping2D(c)) for c in (2, (1, 3), ((0, 1), (2, 2)))] == \
        ["Cropping2D(2)", "Cropping2D((1, 3))", "Cropping2D(((0, 1), (2, 2)))"]
    assert nn.Cropping2D.role == "shape" and nn.Cropping2D.spatial is None


@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (2.0, -1.0), ([0.5, 2.0, -1.0], [1.0, 0.0, 3.0])])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rescaling_is_x_times_scale_plus_offset(scale, offset, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 5, 3)).astype(dtype)
    layer = nn.Rescaling(scale, offset)
    xs = Tensor(x, requires_grad=True)
    out = layer(xs)
    want = x.astype(np.float64) * np.asarray(scale) + np.asarray(offset)
    assert out.data.dtype == dtype
    np.testing.assert_allclose(out.data, want, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(g)
    np.testing.assert_allclose(xs.grad, g * np.asarray(scale), rtol=4 * np.finfo(dtype).eps)
    assert layer.num_parameters() == 0 and layer.compute_output_shape((4, 5, 3)) == (4, 5, 3)
    again = nn.from_config(layer.get_config())
    assert (again.scale, again.offset) == (layer.scale, layer.offset) and repr(again) == repr(layer)


def test_rescaling_errors_repr_and_roles():
    with pytest.raises(ValueError, match="scale must be a finite number"):
        nn.Rescaling("big")
    with pytest.raises(ValueError, match="offset must be a finite number"):
        nn.Rescaling(1.0, np.inf)
    with pytest.raises(nn.ShapeError, match="3 channels"):
        nn.Rescaling([1, 2, 3]).compute_output_shape((4, 4, 2))
    with pytest.raises(ValueError, match="scale and offset must have one length"):
        nn.Rescaling([1, 2], [1, 2, 3])
    assert repr(nn.Rescaling(0.5)) == "Rescaling(0.5)"
    assert repr(nn.Rescaling(2, offset=-1)) == "Rescaling(2.0, offset=-1.0)"
    assert (nn.Rescaling.role, nn.Rescaling.spatial, nn.Rescaling.elementwise) == ("other", "same", True)


# ---------------------------------------------------------------------------------------------
# In models
# ---------------------------------------------------------------------------------------------
def _decoder():
    rng = np.random.default_rng(2)
    return nn.Sequential([nn.Rescaling(1 / 255, -0.5), nn.Conv2D(1, 4, 3, stride=2, rng=rng), nn.ReLU(),
                          nn.Conv2DTranspose(4, 2, 3, stride=2, output_padding=1, rng=rng), nn.Cropping2D((1, 0))])


def test_sequential_with_the_new_layers_matches_a_torch_forward():
    model = _decoder().astype(np.float64)
    x = np.random.default_rng(3).uniform(0, 255, (2, 9, 8, 1))
    out = model(x).data
    resc, conv, _, convt, _ = model.children()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()) / 255 - 0.5  # (n, c, h, w)
    w = torch.from_numpy(conv.weight.data).permute(3, 2, 0, 1)  # (out, in, kh, kw)
    y = torch.relu(torch.nn.functional.conv2d(xt, w, torch.from_numpy(conv.bias.data), stride=2))
    y = _torch_convt(convt, 0)(y)[:, :, 1:-1, :]
    want = y.detach().numpy().transpose(0, 2, 3, 1)  # (n, oh, ow, c)
    assert out.shape == want.shape == (2, 8, 8, 2) and model.compute_output_shape((9, 8, 1)) == (8, 8, 2)
    assert_sum_close(out, want, np.abs(x).max() * 4 * float(sum(np.abs(p.data).sum() for p in model.parameters())),
                     np.float64, 3 * 3 * 4 * 2)
    again = nn.from_config(model.get_config()).astype(np.float64)
    again.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(again(x).data, out)  # the same path twice: bit-identical


def test_graph_with_the_new_layers_runs_and_summarizes():
    from featuremaps import summary
    rng = np.random.default_rng(4)
    g = nn.Graph({"img": (8, 8, 2)}, [
        ("scale", nn.Rescaling([0.5, 2.0]), ["img"]),
        ("down", nn.Conv2D(2, 3, 3, stride=2, padding=1, rng=rng), ["scale"]),
        ("up", nn.Conv2DTranspose(3, 2, 2, stride=2, rng=rng), ["down"]),
        ("crop", nn.Cropping2D(1), ["up"]),
        ("crop_in", nn.Cropping2D(1), ["img"]),
        ("sum", nn.Add(), ["crop", "crop_in"])], ["sum"])
    x = rng.standard_normal((2, 8, 8, 2)).astype(np.float32)
    trace = {k: np.asarray(getattr(v, "data", v)) for k, v in g.trace(x).items()}
    want = trace["up"][:, 1:-1, 1:-1, :] + x[:, 1:-1, 1:-1, :]
    np.testing.assert_allclose(trace["sum"], want, rtol=1e-6, atol=1e-6)
    assert g.node_shapes()["sum"] == (6, 6, 2)
    s = summary(g)
    assert s["up"]["params"] == 2 * 2 * 2 * 3 + 2 and s["up"]["output_shape"] == [8, 8, 2]
    assert s["up"]["receptive_field"] is None  # not claimed: a transposed conv's field is not one window
    assert s["crop"]["output_shape"] == [6, 6, 2]


# ---------------------------------------------------------------------------------------------
# ONNX: torch's ConvTranspose2d and cropping slices load; the new layers export and load back
# ---------------------------------------------------------------------------------------------
class Decoder(torch.nn.Module):
    """An upsampling path as segmentation nets write it: ConvTranspose2d with every option, then a crop."""

    def __init__(self):
        super().__init__()
        self.down = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.up = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1)
        self.up2 = torch.nn.ConvTranspose2d(4, 2, (2, 3), stride=(2, 1), padding=(0, 1), dilation=(1, 2), bias=False)

    def forward(self, x):
        y = self.up(torch.relu(self.down(x)))
        return self.up2(y)[:, :, 1:-2, 2:]  # (n, 2, h', w'): a Slice of H and W


def _load_and_compare(path, x_nchw, feed="x"):
    from featuremaps.onnx import load
    from tests.onnx_oracle import ort_run
    model = load(path)
    ref = ort_run(path, {feed: x_nchw})[0]
    got = np.asarray(model(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))).data)  # fed NHWC
    want = ref.transpose(0, 2, 3, 1)  # (n, h, w, c)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    return model


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_onnx_load_reads_torch_conv_transpose_and_crop_slices(dynamo, tmp_path):
    from tests.torch_nets import export
    torch.manual_seed(0)
    net = Decoder().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 10)).astype(np.float32)
    path = export(net, tmp_path / "dec.onnx", x, dynamo=dynamo)
    model = _load_and_compare(path, x)
    kinds = [type(n.layer).__name__ for n in model.nodes()]
    assert kinds.count("Conv2DTranspose") == 2
    crops = [n.layer.cropping for n in model.nodes() if type(n.layer).__name__ == "Cropping2D"]  # one per Slice
    assert np.sum(crops, axis=0).tolist() == [[1, 2], [2, 0]]
    up = next(n.layer for n in model.nodes() if type(n.layer).__name__ == "Conv2DTranspose")
    assert (up.stride, up.padding, up.output_padding, up.groups) == ((2, 2), (1, 1), (1, 1), 2)
    np.testing.assert_array_equal(up.weight.data, net.up.weight.detach().numpy().transpose(2, 3, 1, 0))
    assert any("ConvTranspose weight (in, out/groups, kh, kw) (6, 2, 3, 3)" in line for line in model.import_log)
    with torch.no_grad():
        direct = net(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)  # torch itself, too
    np.testing.assert_allclose(np.asarray(model(x.transpose(0, 2, 3, 1)).data), direct, rtol=1e-4,
                               atol=1e-4 * float(np.abs(direct).max()))


@pytest.mark.parametrize("layer", [nn.Conv2DTranspose(3, 4, 3, stride=2, padding="same"),
                                   nn.Conv2DTranspose(3, 2, 2, stride=3, padding="same", groups=1),
                                   nn.Conv2DTranspose(3, 6, 3, stride=2, padding=((0, 2), (1, 0)), groups=3),
                                   nn.Cropping2D(((1, 0), (2, 1))), nn.Rescaling([0.5, 2.0, -1.0], 0.25)],
                         ids=["same", "same-short-kernel", "asymmetric-grouped", "crop", "rescale"])
def test_export_then_load_gives_the_layer_back(layer, tmp_path):
    from featuremaps.onnx import export
    rng = np.random.default_rng(6)
    for p in layer.parameters():
        p.data = rng.standard_normal(p.shape).astype(np.float32)
    model = nn.Sequential([("L", layer)], input_shape=(5, 6, 3))
    path = export(model, tmp_path / "m.onnx")
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    back = _load_and_compare(path, x, feed="input")
    np.testing.assert_allclose(np.asarray(back(x.transpose(0, 2, 3, 1)).data),
                               np.asarray(model(x.transpose(0, 2, 3, 1)).data), rtol=1e-5, atol=1e-5)
    if isinstance(layer, nn.Cropping2D):
        assert [type(n.layer) for n in back.nodes()] == [nn.Cropping2D] and back.nodes()[0].layer.cropping == \
            layer.cropping


def test_onnx_slice_that_is_not_a_crop_is_refused_with_its_name():
    from onnx import TensorProto, helper as oh, numpy_helper

    from featuremaps.onnx import ONNXError, load
    inits = [numpy_helper.from_array(np.asarray(v, np.int64), k)
             for k, v in {"s": [0], "e": [2], "a": [1]}.items()]  # channels 0..1: not a cropping
    g = oh.make_graph([oh.make_node("Slice", ["x", "s", "e", "a"], ["y"], name="pick")], "g",
                      [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                      [oh.make_empty_tensor_value_info("y")], inits)
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = min(m.ir_version, 10)
    with pytest.raises(ONNXError, match="only a Slice of H and W with step 1"):
        load(m)
