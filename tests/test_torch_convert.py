"""featuremaps.torch: from_module (torch.fx), load_state_dict, export_state_dict, against torch itself."""
from __future__ import annotations

import operator
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import featuremaps as fm
from featuremaps import nn as fnn
from featuremaps.torch import export_state_dict, from_module, load_state_dict

from . import torch_nets

tnn = torch.nn


def _run(model, x_nchw: np.ndarray) -> np.ndarray:
    y = model(x_nchw.transpose(0, 2, 3, 1) if x_nchw.ndim == 4 else x_nchw)
    y = np.asarray(getattr(y, "data", y))
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y  # (n, h, w, c) -> (n, c, h, w)


def _torch(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _close(got, want, rtol):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


def _convert(module, nchw):
    return from_module(module, (nchw[2], nchw[3], nchw[1]) if len(nchw) == 4 else nchw[1:])


# --- from_module --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(torch_nets.TORCH_NETS))
def test_from_module_torch_nets_float64(name):
    module, shape = torch_nets.build(name, dtype=torch.float64)
    model = _convert(module, shape)
    x = np.random.default_rng(1).standard_normal(shape)
    _close(_run(model, x), _torch(module, x), 1e-5)
    assert model.import_log and all(isinstance(s, str) for s in model.import_log)


def test_from_module_float32_and_chain_is_sequential():
    module, shape = torch_nets.build("vgg_like")
    model = _convert(module, shape)
    assert isinstance(model, fnn.Sequential)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    _close(_run(model, x), _torch(module, x), 1e-4)
    log = "\n".join(model.import_log)
    assert "rows were permuted" in log and "Dropout" in log and "OIHW (8, 3, 3, 3) → HWIO (3, 3, 3, 8)" in log
    assert isinstance(_convert(*torch_nets.build("resnet_like")), fnn.Graph)


class Forms(tnn.Module):
    """Every add/mul form, in-place activations, permute, cat, pools with ceil_mode, adaptive pools."""

    def __init__(self):
        super().__init__()
        self.c = tnn.Conv2d(3, 4, 3, padding=1)
        self.bn = tnn.BatchNorm2d(4, eps=1e-3, momentum=0.3)
        self.act = tnn.ReLU(inplace=True)
        self.pool = tnn.MaxPool2d(3, 2, ceil_mode=True)
        self.avg = tnn.AvgPool2d(2, 2, ceil_mode=True)
        self.ad = tnn.AdaptiveAvgPool2d((2, 3))
        self.drop = tnn.Dropout(0.3)
        self.acts = tnn.ModuleList([tnn.LeakyReLU(0.2), tnn.ELU(0.5), tnn.Hardsigmoid(), tnn.Sigmoid(),
                                    tnn.PReLU(4), tnn.ReLU6(), tnn.Hardtanh(-0.5, 0.7)])
        self.fc = tnn.Linear(4 * 2 * 3 * 2, 5)

    def forward(self, x):
        y = self.act(self.bn(self.c(x)))
        y = torch.add(y, self.c(x)) + y
        y = y.add(operator.mul(y, 0.5)).relu_()
        y = torch.mul(y, y.mul(2.0))
        for a in self.acts:
            y = a(y)
        y = tnn.functional.relu(self.pool(y) * 1.5 - 0.2)
        z = torch.cat([y, y.permute(0, 1, 3, 2).permute(0, 1, 3, 2)], dim=1)
        z = self.ad(self.avg(tnn.functional.avg_pool2d(z, 1)))
        return torch.softmax(self.fc(self.drop(torch.flatten(z, 1))), dim=1)


def test_from_module_every_form():
    torch.manual_seed(0)
    module = Forms().double().eval()
    with torch.no_grad():
        module.bn.running_mean.uniform_(-1, 1)
        module.bn.running_var.uniform_(0.5, 2)
    x = np.random.default_rng(3).standard_normal((2, 3, 15, 23))
    model = _convert(module, x.shape)
    _close(_run(model, x), _torch(module, x), 1e-5)
    log = "\n".join(model.import_log)
    assert "eps 0.001; momentum 0.3" in log and "Keras's momentum would be 0.7" in log
    assert model["bn"].momentum == pytest.approx(0.3) and model["bn"].eps == pytest.approx(1e-3)
    assert "as a 2×2 pool" in log or "as a" in log


@settings(max_examples=12)
@given(k=st.integers(1, 4), stride=st.integers(1, 3), dil=st.integers(1, 2), groups=st.sampled_from([1, 2]),
       pad=st.sampled_from([0, 1, 2, "same", "valid"]), bias=st.booleans(),
       mode=st.sampled_from(["zeros", "reflect", "replicate"]), seed=st.integers(0, 2 ** 16))
def test_conv2d_options_hypothesis(k, stride, dil, groups, pad, bias, mode, seed):
    if pad == "same":
        stride = 1
    torch.manual_seed(seed)
    module = tnn.Sequential(tnn.Conv2d(4, 6, k, stride, pad, dil, groups, bias, padding_mode=mode)).double()
    x = np.random.default_rng(seed).standard_normal((2, 4, 9, 10))
    model = _convert(module, x.shape)
    _close(_run(model, x), _torch(module, x), 1e-5)
    if mode != "zeros" and (pad not in (0, "valid", "same") or (pad == "same" and k > 1)):
        assert any("padding_mode" in s for s in model.import_log)


def test_unmapped_nodes_listed_in_one_error():
    module = tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.RReLU(), tnn.Upsample(scale_factor=2), tnn.ReLU())
    with pytest.raises(ValueError) as e:
        from_module(module, (8, 8, 1))
    msg = str(e.value)
    assert "'1'" in msg and "RReLU" in msg and "'2'" in msg and "Upsample" in msg
    assert "torch.onnx.export" in msg and "featuremaps.onnx.load" in msg


class Branchy(tnn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_untraceable_module_points_to_onnx():
    with pytest.raises(ValueError, match=r"cannot trace Branchy.*torch\.onnx\.export"):
        from_module(Branchy(), (4, 4, 1))
    with pytest.raises(ValueError, match="input_shape must be the per-example shape"):
        from_module(tnn.ReLU(), (1, 4, 4, 1))


# --- state dicts --------------------------------------------------------------------------------
class TheanoLeNet(tnn.Module):
    """The zoo's `lenet` in torch, with names unlike featuremaps's (so matching goes by order)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = tnn.Conv2d(1, 20, 5), tnn.Conv2d(20, 50, 5)
        self.c, self.d = tnn.Linear(800, 500), tnn.Linear(500, 10)

    def forward(self, x):
        x = torch.tanh(tnn.functional.max_pool2d(self.a(x), 2))
        x = torch.tanh(tnn.functional.max_pool2d(self.b(x), 2))
        return self.d(torch.tanh(self.c(torch.flatten(x, 1))))


def _digits(n=3):
    return np.random.default_rng(4).random((n, 1, 28, 28), dtype=np.float32)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_load_state_dict_in_order_into_zoo_lenet(tmp_path, suffix):
    torch.manual_seed(1)
    net = TheanoLeNet().eval()
    path = tmp_path / f"w{suffix}"
    (save_file if suffix == ".safetensors" else torch.save)(net.state_dict(), str(path))
    model = fm.models.get("lenet", rng=np.random.default_rng(0)).eval()
    log = load_state_dict(model, path)
    x = _digits()
    _close(_run(model, x), _torch(net, x), 1e-4)
    assert "matched in order" in log[0] and model.import_log[-len(log):] == log
    assert any("a.weight → conv1.weight: OIHW (20, 1, 5, 5) → HWIO (5, 5, 1, 20)" in s for s in log)
    assert any("c.weight → fc1.weight" in s and "(c, h, w)" in s and "(4, 4, 50)" in s for s in log)


def test_load_state_dict_by_mapping_and_problems_listed(tmp_path):
    torch.manual_seed(2)
    net = TheanoLeNet().eval()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    model = fm.models.get("lenet", rng=np.random.default_rng(0)).eval()
    mapping = {f"{fmn}.{t}": f"{tn}.{t}" for fmn, tn in zip(["conv1", "conv2", "fc1", "fc2"], "abcd")
               for t in ("weight", "bias")}
    load_state_dict(model, sd, mapping=mapping)
    _close(_run(model, _digits()), _torch(net, _digits()), 1e-4)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    bad = dict(sd, **{"b.weight": np.zeros((50, 20, 3, 3), np.float32), "d.bias": np.zeros(7, np.float32)})
    with pytest.raises(ValueError) as e:
        load_state_dict(model, bad)
    msg = str(e.value)
    assert "'b.weight'" in msg and "'d.bias'" in msg and "(50, 20, 5, 5)" in msg and "Nothing was loaded" in msg
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=r"'fc2.bias' has no mapping.*'zz.weight'"):
        load_state_dict(model, sd, mapping={**{k: v for k, v in mapping.items() if k != "fc2.bias"},
                                            "conv1.weight": "zz.weight"})
    with pytest.raises(ValueError, match="4 modules with tensors.*7 weighted layers"):
        load_state_dict(fm.models.get("lenet5", rng=np.random.default_rng(0)), sd)


def test_pt_with_code_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "obj": torch_nets.LeNet}, str(path))
    model = fm.models.get("lenet", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"weights_only=True\) refused"):
        load_state_dict(model, path)
    with pytest.raises(ValueError, match="must be a .safetensors, .pt or .pth"):
        load_state_dict(model, tmp_path.joinpath("w.npz").__fspath__() if (tmp_path / "w.npz").touch() is None
                        else None)


def test_export_state_dict_loads_into_torch_and_runs_equal(tmp_path):
    model = fm.models.get("lenet", rng=np.random.default_rng(5)).eval()
    fnn_fc2 = model["fc2"]
    fnn_fc2.weight.data = np.random.default_rng(6).standard_normal(fnn_fc2.weight.data.shape).astype(np.float32)

    class Named(TheanoLeNet):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.fc1, self.fc2 = self.a, self.b, self.c, self.d
            del self.a, self.b, self.c, self.d

        def forward(self, x):
            x = torch.tanh(tnn.functional.max_pool2d(self.conv1(x), 2))
            x = torch.tanh(tnn.functional.max_pool2d(self.conv2(x), 2))
            return self.fc2(torch.tanh(self.fc1(torch.flatten(x, 1))))

    path = export_state_dict(model, tmp_path / "lenet.safetensors")
    net = Named().eval()
    net.load_state_dict(load_file(str(path)))  # strict: every key matches
    x = _digits()
    _close(_torch(net, x), _run(model, x), 1e-4)


def test_export_round_trip_of_a_converted_graph(tmp_path):
    module, shape = torch_nets.build("resnet_like", dtype=torch.float64)
    model = _convert(module, shape)
    other, _ = torch_nets.build("resnet_like", seed=7, dtype=torch.float64)
    load_state_dict(model, other.state_dict())
    x = np.random.default_rng(8).standard_normal(shape)
    _close(_run(model, x), _torch(other, x), 1e-5)
    path = export_state_dict(model, tmp_path / "r.safetensors")
    fresh, _ = torch_nets.build("resnet_like", seed=9, dtype=torch.float64)
    fresh.load_state_dict(load_file(str(path)))
    _close(_torch(fresh, x), _torch(other, x), 1e-12)


def test_reshape_before_dense_warns():
    model = fnn.Sequential([("conv", fnn.Conv2D(1, 2, 3)), ("t", fnn.Transpose((1, 0, 2))), ("flat", fnn.Flatten()),
                            ("fc", fnn.Dense(18, 3))], input_shape=(5, 5, 1))
    torch.manual_seed(3)
    sd = {"conv.weight": torch.randn(2, 1, 3, 3), "conv.bias": torch.randn(2), "fc.weight": torch.randn(3, 18),
          "fc.bias": torch.randn(3)}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        log = load_state_dict(model, sd)
    assert any("fc.weight → fc.weight" in s and "permuted" not in s for s in log)
    assert any("'fc'" in str(m.message) and "verify_conversion" in str(m.message) for m in w)


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1), dict(groups=2, dilation=2),
                                dict(stride=3, bias=False)])
def test_conv_transpose2d(kw, tmp_path):
    torch.manual_seed(0)
    module = tnn.Sequential(tnn.ConvTranspose2d(4, 6, 3, **kw)).double()
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 6))
    model = _convert(module, x.shape)
    _close(_run(model, x), _torch(module, x), 1e-5)
    assert any("(in, out/groups, kh, kw)" in s for s in model.import_log)
    fresh = tnn.Sequential(tnn.ConvTranspose2d(4, 6, 3, **kw)).double()
    fresh.load_state_dict(load_file(str(export_state_dict(model, tmp_path / "t.safetensors"))))
    _close(_torch(fresh, x), _torch(module, x), 1e-12)
