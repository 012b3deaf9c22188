"""featuremaps.keras.load against Keras 3 itself (torch backend): models built and saved in Keras, as a
`.keras` file and a legacy `.h5` file, loaded without Keras, and `predict` compared at rtol 1e-4 (float32).
Then the refusals: code in the config, unmapped layer kinds, npz stores, broken files, budgets."""
from __future__ import annotations

import io
import json
import zipfile

import keras
import numpy as np
import pytest
from keras import layers

import featuremaps as fm
from featuremaps import nn
from featuremaps.keras import load
from featuremaps.keras._read import KerasFileError

RNG = np.random.default_rng(0)


def _randomize(km, seed=1):
    """Random weights everywhere (variances positive), so that no variable can be mixed up unnoticed."""
    rng = np.random.default_rng(seed)
    ws = []
    for w in km.get_weights():
        ws.append((rng.uniform(0.5, 1.5, w.shape) if w.ndim == 1 and np.all(w == 1)
                   else rng.standard_normal(w.shape) * 0.5).astype(np.float32))
    km.set_weights(ws)


def _close(got, ref):
    got = np.asarray(getattr(got, "data", got))
    ref = np.asarray(ref)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(ref).max())))
    return float(np.abs(got - ref).max())


def _both(km, tmp_path, x, stem="m"):
    """Save in both formats, load each, compare with Keras's predict; returns the two models."""
    ref = np.asarray(km.predict(x, verbose=0))
    out = []
    for ext in ("keras", "h5"):
        p = tmp_path / f"{stem}.{ext}"
        km.save(p)
        m = load(p)
        _close(m(x), ref)
        assert m.import_log and m.import_log[0].startswith(f"read {p.name}")
        out.append(m)
    return out


def test_functional_residual_separable_trained(tmp_path):
    inp = keras.Input((12, 12, 3), name="image")
    a = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    b = layers.SeparableConv2D(8, 3, padding="same", name="sep")(a)
    b = layers.BatchNormalization(name="bn")(b)
    c = layers.ReLU(name="relu")(layers.Add(name="res")([a, b]))
    c = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw")(c)
    c = layers.Conv2D(4, 3, dilation_rate=2, groups=2, use_bias=False, name="grouped")(c)
    c = layers.BatchNormalization(momentum=0.9, epsilon=1e-2, name="bn2")(c)
    y = layers.Dense(3, activation="softmax", name="head")(layers.GlobalAveragePooling2D(name="gap")(c))
    km = keras.Model(inp, y)
    km.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    xs = RNG.standard_normal((32, 12, 12, 3)).astype(np.float32)
    km.fit(xs, RNG.integers(0, 3, 32), epochs=2, batch_size=8, verbose=0)
    moving_var = km.get_layer("bn").moving_variance.numpy()
    assert not np.allclose(moving_var, 1.0)  # the statistics moved
    for m in _both(km, tmp_path, xs[:4]):
        assert isinstance(m, nn.Graph)
        names = m.names()
        assert {"sep_depthwise", "sep_pointwise", "stem", "stem_relu", "head_softmax"} <= set(names)
        assert m["sep_depthwise"].groups == 8 and m["dw"].groups == 8 and m["dw"].out_channels == 16
        assert m["bn"].momentum == pytest.approx(0.01) and m["bn2"].eps == pytest.approx(1e-2)
        np.testing.assert_array_equal(m["bn"].running_var, moving_var)
        text = str(fm.summary(m))
        assert "sep_depthwise" in text and "sep_pointwise" in text and "momentum 0.99" in text
        assert any("SeparableConv2D): two nodes" in line for line in m.import_log)


def test_sequential_lenet(tmp_path):
    km = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(6, 5, activation="tanh", padding="same"),
                           layers.AveragePooling2D(2), layers.Conv2D(16, 5, activation="tanh"), layers.MaxPooling2D(2),
                           layers.Flatten(), layers.Dense(120, activation="relu"), layers.Dropout(0.5),
                           layers.Dense(10, activation="softmax")])
    _randomize(km)
    x = RNG.random((3, 28, 28, 1), dtype=np.float32)
    for m in _both(km, tmp_path, x):
        assert isinstance(m, nn.Sequential) and m.input_shape == (28, 28, 1)
        assert any("(h, w, c) order" in line for line in m.import_log)


def test_nested_models_are_flattened(tmp_path):
    inner = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3, name="ic"), layers.ReLU(name="r")],
                             name="inner")
    i2 = keras.Input((6, 6, 2))
    fin = keras.Model(i2, layers.Conv2D(3, 1, name="fc")(i2), name="finner")
    inp = keras.Input((6, 6, 2))
    cat = layers.Concatenate()([layers.Cropping2D(1)(fin(inp)), inner(inp)])
    km = keras.Model(inp, layers.GlobalMaxPooling2D()(cat), name="outer")
    _randomize(km)
    x = RNG.standard_normal((2, 6, 6, 2)).astype(np.float32)
    for m in _both(km, tmp_path, x):
        assert {"inner_ic", "inner_r", "finner_fc"} <= set(m.names())
        assert not any(isinstance(n.layer, (nn.Graph, nn.Sequential)) for n in m.nodes())


def test_tf_same_padding_odd_sizes_and_strides(tmp_path):
    km = keras.Sequential([keras.Input((7, 9, 2)), layers.Conv2D(3, 3, strides=2, padding="same"),
                           layers.ZeroPadding2D(((1, 0), (2, 1))), layers.MaxPooling2D(3, strides=2, padding="same"),
                           layers.AveragePooling2D(2, padding="same"), layers.Conv2D(2, 2, strides=(2, 1),
                                                                                     padding="same")])
    _randomize(km)
    x = RNG.standard_normal((2, 7, 9, 2)).astype(np.float32)
    for m in _both(km, tmp_path, x):
        assert any("pads ((0, 1), (0, 1))" in line or "pads ((1, 1), (0, 1))" in line for line in m.import_log)
        assert any("TensorFlow's rule" in line for line in m.import_log)


def test_every_other_layer_kind(tmp_path):
    inp = keras.Input((6, 6, 4), name="x")
    h = layers.Rescaling(0.5, offset=-0.25)(inp)
    t = layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="elu")(h)  # 12 × 12
    t = layers.Cropping2D(((2, 4), (3, 3)))(t)  # 6 × 6
    acts = [layers.Activation(a)(h) for a in ("relu", "sigmoid", "tanh", "elu", "selu", "hard_sigmoid", "relu6",
                                              "softmax", "linear", "leaky_relu", "hard_swish")]
    r = [layers.ReLU(max_value=6.0)(h), layers.ReLU(negative_slope=0.1, max_value=0.5)(h),
         layers.ReLU(max_value=2.0)(h), layers.LeakyReLU(negative_slope=0.2)(h), layers.ELU(alpha=0.7)(h),
         layers.PReLU(shared_axes=[1, 2])(h), layers.Softmax()(h)]
    mul = layers.Multiply()([acts[0], acts[1], t])
    avg = layers.Average()(acts[2:6] + r[:2])
    mx = layers.Maximum()(acts[6:] + r[2:])
    c = layers.Concatenate(axis=-1)([mul, avg, mx])
    c = layers.Dense(5)(c)  # a Dense on maps: every position
    c = layers.Reshape((3, 12, 5))(c)
    y = layers.Flatten()(c)
    km = keras.Model(inp, y)
    _randomize(km)
    x = RNG.standard_normal((2, 6, 6, 4)).astype(np.float32)
    kinds = {"Rescaling", "Conv2DTranspose", "Cropping2D", "PReLU", "LeakyReLU", "ReLU6", "Clip", "Softmax", "ELU",
             "Multiply", "Average", "Maximum", "Affine", "HardSigmoid", "HardSwish", "Reshape", "Identity"}
    for m in _both(km, tmp_path, x):
        assert kinds <= {type(n.layer).__name__ for n in m.nodes()}


def test_hard_tanh_and_log_sigmoid_by_composition(tmp_path):
    """Two Keras activation names with no featuremaps layer of their own, written exactly with others:
    hard_tanh as Clip(−1, 1), log_sigmoid as −softplus(−x) (large |x| included)."""
    inp = keras.Input((4, 4, 3))
    h = layers.Conv2D(6, 3, padding="same")(inp)
    acts = [layers.Activation("hard_tanh")(h), layers.Activation("log_sigmoid")(h)]
    km = keras.Model(inp, layers.Concatenate()(acts))
    _randomize(km)
    x = (RNG.standard_normal((2, 4, 4, 3)) * 30).astype(np.float32)  # |pre-activations| up to ~100
    for m in _both(km, tmp_path, x):
        kinds = [type(n.layer).__name__ for n in m.nodes()]
        assert "Clip" in kinds and kinds.count("Rescaling") == 2 and "Softplus" in kinds
        assert any("log σ(x) = −softplus(−x)" in line for line in m.import_log)


def test_permute_and_identity(tmp_path):
    """Keras's Permute (1-based `dims`) becomes a Transpose, and Identity an Identity; both are what
    featuremaps.keras.export writes for a Transpose and an Identity."""
    inp = keras.Input((4, 6, 3))
    h = layers.Conv2D(5, 3, padding="same")(inp)
    h = layers.Permute((2, 1, 3))(h)  # (6, 4, 5): rows and columns swapped
    h = layers.Identity()(h)
    km = keras.Model(inp, layers.Flatten()(layers.Permute((3, 1, 2))(h)))  # (5, 6, 4): channels first
    _randomize(km)
    for m in _both(km, tmp_path, RNG.standard_normal((2, 4, 6, 3)).astype(np.float32)):
        perms = [n.layer.perm for n in m.nodes() if type(n.layer).__name__ == "Transpose"]
        assert perms == [(1, 0, 2), (2, 0, 1)]


def test_shared_layer_becomes_one_node_per_call(tmp_path):
    inp = keras.Input((5, 5, 2))
    conv = layers.Conv2D(2, 3, padding="same", name="shared")
    km = keras.Model(inp, layers.Add()([conv(inp), conv(conv(inp))]))
    _randomize(km)
    m, _ = _both(km, tmp_path, RNG.standard_normal((2, 5, 5, 2)).astype(np.float32))
    assert {"shared", "shared_call1", "shared_call2"} <= set(m.names())


# --- refusals -------------------------------------------------------------------------------------------------
def _rewrite(src, dst, *, config=None, drop=(), extra=None):
    """A copy of the .keras zip `src` with another config, members dropped or added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if info.filename == "config.json" and config is not None:
                data = json.dumps(config).encode()
            zout.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dst


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    inp = keras.Input((4, 4, 1), name="x")
    km = keras.Model(inp, layers.Dense(2, name="d")(layers.Flatten(name="f")(layers.Conv2D(2, 3, name="c")(inp))))
    km.save(d / "m.keras")
    km.save(d / "m.h5")
    return d


def test_lambda_and_custom_objects_are_refused_naming_every_layer(small, tmp_path):
    cfg = json.loads(zipfile.ZipFile(small / "m.keras").read("config.json"))
    cfg["config"]["layers"][1]["class_name"] = "Lambda"
    cfg["config"]["layers"][2]["module"] = "evil_package.layers"
    cfg["config"]["layers"][3]["config"]["kernel_initializer"] = {"module": None, "class_name": "MyInit",
                                                                  "config": {}, "registered_name": "my>MyInit"}
    with pytest.raises(KerasFileError) as e:
        load(_rewrite(small / "m.keras", tmp_path / "bad.keras", config=cfg))
    msg = str(e.value)
    assert "'c' (Lambda" in msg and "'f' (Flatten: module 'evil_package.layers'" in msg and "'d' (Dense" in msg
    assert "3 layer(s)" in msg and "never runs code" in msg


def test_real_lambda_layer_refused(tmp_path):
    inp = keras.Input((3,))
    km = keras.Model(inp, layers.Lambda(lambda v: v * 2, name="double")(inp))
    km.save(tmp_path / "lam.keras")
    with pytest.raises(KerasFileError, match=r"'double' \(Lambda"):
        load(tmp_path / "lam.keras")


def test_unmapped_kinds_listed_in_one_error(tmp_path):
    inp = keras.Input((4, 4, 2))
    a = layers.UpSampling2D(name="up")(inp)
    km = keras.Model(inp, layers.Subtract(name="sub")([layers.MaxPooling2D(name="p")(a), inp]))
    km.save(tmp_path / "u.keras")
    with pytest.raises(KerasFileError) as e:
        load(tmp_path / "u.keras")
    assert "2 layer(s) of a kind with no featuremaps mapping: 'up' (UpSampling2D), 'sub' (Subtract)" in str(e.value)


def test_npz_store_keras_and_plain_loaded(small, tmp_path):
    from keras.src.saving import saving_lib
    km = keras.models.load_model(small / "m.keras")
    saving_lib.save_model(km, tmp_path / "n.keras", weights_format="npz")
    x0 = RNG.standard_normal((2, 4, 4, 1)).astype(np.float32)
    _close(load(tmp_path / "n.keras")(x0), km.predict(x0, verbose=0))  # Keras's pickled store, read as data
    buf = io.BytesIO()  # the same store with plain arrays: <layer path>/vars/<i>
    np.savez(buf, **{"layers/conv2d/vars/0": km.get_layer("c").kernel.numpy(),
                     "layers/conv2d/vars/1": km.get_layer("c").bias.numpy(),
                     "layers/dense/vars/0": km.get_layer("d").kernel.numpy(),
                     "layers/dense/vars/1": km.get_layer("d").bias.numpy()})
    plain = _rewrite(small / "m.keras", tmp_path / "p.keras", drop=("model.weights.h5",),
                     extra={"model.weights.npz": buf.getvalue()})
    x = RNG.standard_normal((2, 4, 4, 1)).astype(np.float32)
    _close(load(plain)(x), km.predict(x, verbose=0))


def test_broken_files_named(small, tmp_path):
    txt = tmp_path / "notes.keras"
    txt.write_text("not a model")
    with pytest.raises(KerasFileError, match=f"{txt}: not a Keras file"):
        load(txt)
    weights = zipfile.ZipFile(small / "m.keras").read("model.weights.h5")
    cut = _rewrite(small / "m.keras", tmp_path / "cut.keras", drop=("model.weights.h5",),
                   extra={"model.weights.h5": weights[: len(weights) // 2]})
    with pytest.raises(KerasFileError, match=f"{cut}: .*(corrupt or truncated)"):
        load(cut)
    junk = _rewrite(small / "m.keras", tmp_path / "junk.keras", drop=("model.weights.h5",),
                    extra={"model.weights.h5": b"\x89HDF\r\n\x1a\n" + bytes(200)})
    with pytest.raises(KerasFileError, match=f"{junk}: model.weights.h5 is not a readable HDF5"):
        load(junk)
    legacy = (small / "m.h5").read_bytes()
    short = tmp_path / "short.h5"
    short.write_bytes(legacy[: len(legacy) // 3])
    with pytest.raises(KerasFileError, match=f"{short}: .*corrupt or truncated"):
        load(short)
    nozip = tmp_path / "z.keras"
    with zipfile.ZipFile(nozip, "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(KerasFileError, match="without config.json"):
        load(nozip)


def test_budget_checked_before_reading(small):
    with pytest.raises(KerasFileError, match="max_bytes"):
        load(small / "m.keras", max_bytes=2000)
    size = (small / "m.h5").stat().st_size
    with pytest.raises(KerasFileError, match="over the budget"):
        load(small / "m.h5", max_bytes=size - 1)


def test_zip_members_never_extracted(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = _rewrite(small / "m.keras", tmp_path / "evil.keras", extra={"../escaped.txt": b"x", "/abs.txt": b"y"})
    m = load(evil)
    assert isinstance(m, nn.Graph)
    assert not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()


def test_keras2_style_legacy_config(small, tmp_path):
    """tf.keras / Keras 2 files: inbound_nodes as [[name, node, tensor, kwargs]], batch_input_shape, 'Model',
    and ':0' suffixed weight names."""
    import h5py
    src, dst = small / "m.h5", tmp_path / "k2.h5"
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["class_name"] = "Model"
        for entry in cfg["config"]["layers"]:
            refs = [n["args"][0]["config"]["keras_history"] for n in entry["inbound_nodes"]]
            entry["inbound_nodes"] = [[[*r, {}] for r in refs]] if refs else []
            if entry["class_name"] == "InputLayer":
                entry["config"]["batch_input_shape"] = entry["config"].pop("batch_shape")
        cfg["config"]["input_layers"] = [cfg["config"]["input_layers"]]
        f.attrs["model_config"] = json.dumps(cfg)
        for lname in ("c", "d"):
            g = f["model_weights"][lname]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
            for n in names:
                g.move(n, n + ":0")
            g.attrs["weight_names"] = [(n + ":0").encode() for n in names]
    km = keras.models.load_model(src)
    x = RNG.standard_normal((2, 4, 4, 1)).astype(np.float32)
    _close(load(dst)(x), km.predict(x, verbose=0))
