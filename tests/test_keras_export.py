"""`featuremaps.keras.export`: files that Keras 3 itself loads (`keras.models.load_model`, torch backend)
and whose `predict` equals the featuremaps forward pass; the log; the one error for layers without a
Keras form; the file rules (atomic, no silent overwrite)."""
import json
import zipfile

import h5py
import keras
import numpy as np
import pytest

import featuremaps as fm
import featuremaps.keras
from featuremaps import nn, tables
from featuremaps.keras import export
from featuremaps.keras._archive import functional_order
from featuremaps.keras._export import KerasExportError

RTOL = 1e-4  # float32, featuremaps' NumPy kernels against Keras's torch ones


def randomize(model, seed=0):
    """Every parameter and BatchNorm statistic drawn at random (so a weight in the wrong place shows),
    connection-table zeros kept."""
    rng = np.random.default_rng(seed)
    for _, mod in model.named_modules():
        for pname, p in mod._parameters.items():
            if p is not None:
                p.data = (rng.standard_normal(p.data.shape) * 0.5).astype(p.data.dtype)
        if getattr(mod, "connections", None) is not None:
            mod.weight.data = mod.weight.data * mod.connections[None, None]
        if isinstance(mod, nn.BatchNorm2D):
            mod.running_mean[:] = rng.normal(size=mod.num_features)
            mod.running_var[:] = rng.uniform(0.5, 2.0, size=mod.num_features)
    return model.eval()


def outputs_of(model, x):
    y = model(x)
    ys = y if isinstance(y, tuple) else (y,)
    return [np.asarray(getattr(v, "data", v)) for v in ys]


def assert_keras_equal(model, path, x):
    """Keras's predict of the file at `path` equals `model`'s forward pass, output by output."""
    km = keras.models.load_model(path)
    feed = [x[n] for n in model.input_names] if isinstance(x, dict) else x
    ky = km.predict(feed, verbose=0)
    ky = ky if isinstance(ky, (list, tuple)) else [ky]
    ours = outputs_of(model, x)
    assert len(ky) == len(ours)
    for k_out, f_out in zip(ky, ours):
        assert k_out.shape == f_out.shape
        # rtol 1e-4 of each output's scale (a plain rtol fails on values that cancel to ~0)
        np.testing.assert_allclose(k_out, f_out, rtol=RTOL, atol=RTOL * float(np.abs(f_out).max()))
    return km


def probe(shape, n=3, seed=1):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


@pytest.mark.parametrize("name", fm.models.names())
def test_zoo_model_loads_in_keras_and_predicts_equal(name, tmp_path):
    model = randomize(fm.models.get(name, rng=0))
    path = export(model, tmp_path / f"{name}.keras")
    km = assert_keras_equal(model, path, probe(model.input_shape))
    assert type(km).__name__ == "Sequential"


def test_lenet5_log_names_every_rewrite(tmp_path):
    model = randomize(fm.models.get("lenet5", rng=0))
    export(model, tmp_path / "l5.keras")
    log = "\n".join(model.export_log)
    assert "C3: connection table written as a full Keras Conv2D, 36 of 96 kernels zero" in log
    assert "S2: Subsampling2D (no Keras layer) written as AveragePooling2D" in log
    with zipfile.ZipFile(tmp_path / "l5.keras") as zf:
        assert set(zf.namelist()) == {"metadata.json", "config.json", "model.weights.h5"}
        meta = json.loads(zf.read("metadata.json"))
    assert meta["featuremaps_export_log"] == model.export_log
    km = keras.models.load_model(tmp_path / "l5.keras")
    kernel = keras.ops.convert_to_numpy(km.get_layer("C3").kernel)  # (5, 5, 6, 16), Keras's own indexing
    np.testing.assert_array_equal(kernel[:, :, :, 7], model.C3.weight.data[:, :, :, 7])  # filters of map 7
    assert (kernel[:, :, ~tables.lenet5_c3()[:, 7], 7] == 0).all()


def test_batchnorm_momentum_and_epsilon_conventions(tmp_path):
    model = randomize(nn.Sequential([("bn", nn.BatchNorm2D(4, momentum=0.2, eps=1e-2))], input_shape=(3, 3, 4)))
    path = export(model, tmp_path / "bn.keras")
    km = assert_keras_equal(model, path, probe((3, 3, 4)))
    bn = km.get_layer("bn")
    assert bn.momentum == pytest.approx(0.8) and bn.epsilon == pytest.approx(1e-2)
    assert any("momentum 0.2" in line and "Keras momentum 0.8" in line for line in model.export_log)
    # training one step in Keras moves the moving mean as featuremaps' momentum 0.2 does
    x = probe((3, 3, 4), n=8, seed=5)
    expected = 0.8 * model.bn.running_mean + 0.2 * x.mean(axis=(0, 1, 2))
    bn(keras.ops.convert_to_tensor(x), training=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), expected, rtol=1e-5, atol=1e-6)


def residual_graph():
    return nn.Graph(inputs={"image": (8, 8, 3)},
                    nodes=[("stem", nn.Conv2D(3, 4, 3, padding="same"), "image"),
                           ("bn", nn.BatchNorm2D(4), "stem"), ("relu", nn.ReLU(), "bn"),
                           ("conv_a", nn.Conv2D(4, 4, 3, padding=1), "relu"),
                           ("conv_b", nn.Conv2D(4, 4, 1), "conv_a"),
                           ("add", nn.Add(), ["relu", "conv_b"]),
                           ("pool", nn.MaxPool2D(2), "add"), ("flat", nn.Flatten(), "pool"),
                           ("fc", nn.Dense(64, 5), "flat")],
                    outputs="fc")


def branches_graph():
    """Two outputs, a concat of branches of different depths, every merge kind, a nested Sequential."""
    inner = nn.Sequential([("c", nn.Conv2D(4, 4, 3, padding="same")), ("t", nn.Tanh())])
    return nn.Graph(inputs={"x": (6, 6, 2)},
                    nodes=[("c0", nn.Conv2D(2, 4, 1), "x"),
                           ("deep1", nn.Conv2D(4, 4, 3, padding="same"), "c0"),
                           ("deep2", nn.Conv2D(4, 4, 3, padding="same"), "deep1"),
                           ("shallow", nn.Conv2D(4, 4, 3, padding="same"), "c0"),
                           ("block", inner, "shallow"),
                           ("cat", nn.Concatenate(), ["deep2", "block", "c0"]),
                           ("mul", nn.Multiply(), ["deep2", "shallow"]),
                           ("avg", nn.Average(), ["mul", "c0", "block"]),
                           ("max", nn.Maximum(), ["avg", "deep1"]),
                           ("gap", nn.GlobalAvgPool2D(), "cat"), ("head", nn.Dense(12, 3), "gap"),
                           ("soft", nn.Softmax(), "head")],
                    outputs=["soft", "max"])


def test_residual_graph(tmp_path):
    model = randomize(residual_graph())
    path = export(model, tmp_path / "res.keras")
    km = assert_keras_equal(model, path, probe((8, 8, 3)))
    assert type(km).__name__ == "Functional"
    assert type(km.get_layer("image")).__name__ == "InputLayer" and len(km.inputs) == 1


def test_two_outputs_concat_nested_and_every_merge(tmp_path):
    model = randomize(branches_graph(), seed=3)
    path = export(model, tmp_path / "br.keras")
    km = assert_keras_equal(model, path, probe((6, 6, 2)))
    assert len(km.outputs) == 2  # in the graph's order: assert_keras_equal compared them pairwise
    assert km.get_layer("block_c") is not None  # nested containers flattened, "block.c" named "block_c"
    assert "block.c: Keras layer name 'block_c' (Keras names cannot hold '.')" in model.export_log


def test_functional_layer_order_matches_keras(tmp_path):
    """The weights file addresses layers by their position in Keras's `model.layers`; the order
    computed here is the one Keras builds (same-shaped convs would otherwise swap silently)."""
    model = randomize(branches_graph(), seed=4)
    path = export(model, tmp_path / "br.keras")
    km = keras.models.load_model(path)
    from featuremaps.keras._export import build
    config, _, _ = build(model)
    ours = [entry["name"] for entry in json.loads(config)["config"]["layers"]]
    assert ours == [layer.name for layer in km.layers]
    # the case where Keras's order differs from featuremaps' (deep1 runs before shallow in the graph)
    assert model.names().index("deep1") < model.names().index("shallow") and ours.index("shallow") < ours.index("deep1")
    convs = [n for n in ours if n.startswith(("c0", "deep", "shallow", "block_c"))]
    with h5py.File(zipfile.ZipFile(path).open("model.weights.h5")) as h5:  # layers/conv2d, conv2d_1, ...
        names = [h5[f"layers/conv2d{'_' + str(i) if i else ''}/vars"].attrs["name"] for i in range(len(convs))]
    assert names == convs


def test_two_inputs(tmp_path):
    model = randomize(nn.Graph(inputs={"a": (4, 4, 2), "b": (4, 4, 2)},
                               nodes=[("ca", nn.Conv2D(2, 3, 3), "a"), ("cb", nn.Conv2D(2, 3, 3), "b"),
                                      ("sum", nn.Add(), ["ca", "cb"])], outputs="sum"))
    path = export(model, tmp_path / "two.keras")
    assert_keras_equal(model, path, {"a": probe((4, 4, 2), seed=1), "b": probe((4, 4, 2), seed=2)})


def layer_zoo():
    """A chain through most layer kinds, with the paddings that need rewriting."""
    return nn.Sequential([
        ("asym", nn.Conv2D(3, 4, 3, padding=((0, 1), (2, 1)))),  # → ZeroPadding2D + valid
        ("prelu", nn.PReLU(4)),
        ("s2", nn.Conv2D(4, 4, 3, stride=2, padding="same")),    # TF's asymmetric 'same'
        ("grp", nn.Conv2D(4, 6, 3, padding=1, groups=2, bias=False)),
        ("lrelu", nn.LeakyReLU(0.2)),
        ("dil", nn.Conv2D(6, 6, 3, padding=2, dilation=2)),
        ("elu", nn.ELU(0.7)),
        ("pool_same", nn.MaxPool2D(3, stride=2, padding=1)),     # 'same' at 6×6 → 3×3
        ("clip", nn.Clip(-0.5, 0.8)),
        ("zp", nn.ZeroPad2D(((1, 0), (0, 1)))),
        ("avg_pad", nn.AvgPool2D(2, stride=1, padding=1)),       # counted pads → ZeroPadding2D
        ("relu6", nn.ReLU6()),
        ("ceil", nn.MaxPool2D(2, ceil_mode=True)),
        ("hswish", nn.HardSwish()),
        ("affine", nn.Affine(6)),
        ("hsig", nn.HardSigmoid(1 / 6, 0.5)),
        ("drop", nn.Dropout(0.3)),
        ("sub", nn.Subsampling2D(6)),
        ("stanh", nn.ScaledTanh()),
        ("perm", nn.Transpose((1, 0, 2))),
        ("ident", nn.Identity()),
        ("clip_hi", nn.Clip(None, 0.5)),
        ("clip_lo", nn.Clip(-0.3, None)),
        ("flat", nn.Flatten()),
        ("fc", nn.Dense(6, 8)), ("bn", nn.BatchNorm2D(8)), ("sig", nn.Sigmoid()),
        ("prelu1", nn.PReLU(1)), ("aff_vec", nn.Affine(8)),
        ("reshape", nn.Reshape((2, 2, 2))), ("gmax", nn.GlobalMaxPool2D()),
        ("out", nn.Dense(2, 3)), ("soft", nn.Softmax()),
    ], input_shape=(11, 9, 3))


def test_layer_zoo(tmp_path):
    model = randomize(layer_zoo(), seed=2)
    path = export(model, tmp_path / "zoo.keras")
    assert_keras_equal(model, path, probe((11, 9, 3), n=4))
    log = "\n".join(model.export_log)
    assert "asym: padding ((top 0, bottom 1), (left 2, right 1)) written as a ZeroPadding2D" in log
    assert "pool_same: pads ((top 1, bottom 1), (left 1, right 1)) written as Keras padding='same'" in log
    assert "ceil: pads ((top 0, bottom 1), (left 0, right 1)) (ceil mode included) written as Keras padding='same'" \
        in log
    assert "avg_pad: pads" in log and "ScaledTanh" in log


def test_new_layers(tmp_path):
    model = randomize(nn.Sequential([("scale", nn.Rescaling(1 / 255, -0.5)), ("crop", nn.Cropping2D(((1, 0), (2, 1)))),
                                     ("per_ch", nn.Rescaling([1.0, 2.0], [0.0, 0.1])),
                                     ("c", nn.Conv2D(2, 2, 3))], input_shape=(7, 8, 2)))
    path = export(model, tmp_path / "new.keras")
    assert_keras_equal(model, path, probe((7, 8, 2)) * 255)


def test_float64_model(tmp_path):
    model = randomize(fm.models.get("cnn", rng=0)).astype(np.float64)
    path = export(model, tmp_path / "c64.keras")
    km = keras.models.load_model(path)
    x = probe((28, 28, 1)).astype(np.float64)
    ky = km.predict(x, verbose=0)
    assert ky.dtype == np.float64
    np.testing.assert_allclose(ky, outputs_of(model, x)[0], rtol=1e-5, atol=1e-5 * float(np.abs(ky).max()))


# --- refusals ---------------------------------------------------------------------------------------
def test_one_error_lists_every_layer_without_a_keras_form(tmp_path):
    model = nn.Sequential([("lrn", nn.LocalResponseNorm(3)), ("ok", nn.ReLU()),
                           ("inorm", nn.InstanceNorm(2)), ("mp", nn.MaxPool2D(2, padding=1)),
                           ("reflect", nn.Pad(1, mode="reflect"))], input_shape=(5, 5, 2))
    with pytest.raises(KerasExportError) as err:
        export(model, tmp_path / "bad.keras")
    msg = str(err.value)
    assert msg.startswith("export: 4 layer(s) have no Keras form")
    for part in ("'lrn' (LocalResponseNorm)", "'inorm' (InstanceNorm)", "'mp' (MaxPool2D): pads",
                 "'reflect' (Pad)"):
        assert part in msg
    assert "'ok'" not in msg and "featuremaps.onnx.export" in msg
    assert not (tmp_path / "bad.keras").exists()


def test_conv_with_stride_and_dilation_is_refused(tmp_path):
    model = nn.Sequential([("c", nn.Conv2D(1, 1, 3, stride=2, dilation=2))], input_shape=(9, 9, 1))
    with pytest.raises(KerasExportError, match=r"'c' \(Conv2D\): stride \(2, 2\) with dilation"):
        export(model, tmp_path / "c.keras")


def test_file_rules(tmp_path):
    model = fm.models.get("lenet", rng=0)
    path = tmp_path / "m.keras"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export(model, path)
    assert path.read_bytes() == b"old"
    assert export(model, path, overwrite=True) == path
    assert zipfile.is_zipfile(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary file left
    with pytest.raises(FileNotFoundError, match="directory"):
        export(model, tmp_path / "missing" / "m.keras")
    with pytest.raises(TypeError, match="Sequential or Graph"):
        export(nn.ReLU(), tmp_path / "r.keras")
    with pytest.raises(KerasExportError, match="no per-example shape"):
        export(nn.Sequential([("r", nn.ReLU())]), tmp_path / "r.keras")


def test_order_rule_on_a_diamond():
    from featuremaps.keras._write import KLayer

    def kl(name, *ins):
        return KLayer(name, "InputLayer" if not ins else "Conv2D", {}, [], list(ins), [])
    layers = [kl("x"), kl("a", "x"), kl("b", "a"), kl("c", "x"), kl("d", "b", "c")]
    # depth: d 0, b 1, c 1, a 2, x 3 (longest path to the output); ties by first visit from the output
    assert [k.name for k in functional_order(layers, ["d"])] == ["x", "a", "b", "c", "d"]


@pytest.mark.parametrize("args", [dict(stride=2), dict(stride=2, padding=1, output_padding=1),
                                  dict(stride=2, padding="same"), dict(stride=3, padding=((1, 0), (2, 1))),
                                  dict(stride=1, padding=1, dilation=2)])
def test_conv_transpose(args, tmp_path):
    model = randomize(nn.Sequential([("up", nn.Conv2DTranspose(3, 2, 3, **args))], input_shape=(4, 5, 3)))
    path = export(model, tmp_path / "up.keras")
    assert_keras_equal(model, path, probe((4, 5, 3)))


@pytest.mark.parametrize("make", [lambda: fm.models.get("cnn", rng=0), lambda: fm.models.get("vgg-small", rng=0),
                                  residual_graph, branches_graph], ids=["cnn", "vgg-small", "residual", "branches"])
def test_round_trip_through_featuremaps_keras_load(make, tmp_path):
    model = randomize(make(), seed=6)
    back = fm.keras.load(export(model, tmp_path / "rt.keras"))
    ours, theirs = model.state_dict(), back.state_dict()
    renamed = {k.replace("block.c.", "block_c."): v for k, v in ours.items()}  # nested layers were flattened
    assert sorted(renamed) == sorted(theirs)
    for key, value in renamed.items():
        np.testing.assert_array_equal(theirs[key], value, err_msg=key)  # stored and read back, not recomputed
    x = probe(model.input_shape if isinstance(model, nn.Sequential) else next(iter(model.input_shapes.values())))
    for a, b in zip(outputs_of(model, x), outputs_of(back, x)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * float(np.abs(a).max()))
