"""The Keras structural gaps closed in issue 11, each against real Keras (torch backend) or torch:

- `keras.load` of `data_format='channels_first'` models, converted at the edge to channels-last (the
  featuremaps model reads NHWC; Flatten orders, BatchNorm's axis 1 and PReLU's alpha rewritten), and a
  clear refusal naming the layer where no exact form exists;
- `keras.load` of Conv2DTranspose with `output_padding` (Keras's output-size rule, 'valid' and 'same');
- `keras.export` of a max pool padded otherwise than Keras's 'same' (ResNet's stem), written as a
  ZeroPadding2D before a 'valid' pool when its input is provably ≥ 0, and still refused otherwise;
  also through `featuremaps convert resnet50-like.onnx out.keras`, checked against onnxruntime.

Tolerances: float32 everywhere; each model's bound is `8 · eps32 · n` of its largest output, `n` the
number of terms summed along the longest chain of products (the sum lengths of its layers added up)."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from featuremaps import nn
from featuremaps.keras import KerasExportError, KerasFileError, export, load
from tests.clirun import run_cli
from tests.onnx_oracle import ort_run

torch = pytest.importorskip("torch")
from tests.torch_nets import build, export as torch_export  # noqa: E402 - needs torch

EPS32 = float(np.finfo(np.float32).eps)


def bound(ref, n_terms: int) -> float:
    """8 · eps32 · n_terms of the largest |ref|: the rounding of n_terms float32 products and sums, with
    room for the two libraries' different summation orders (BLAS blocking, im2col against direct)."""
    return 8 * EPS32 * n_terms * float(np.abs(ref).max())


def randomize(km, seed=1):
    """Random weights everywhere (variances in [0.5, 1.5]), so that no variable can be mixed up unnoticed."""
    rng = np.random.default_rng(seed)
    km.set_weights([(rng.uniform(0.5, 1.5, w.shape) if w.ndim == 1 and np.all(w == 1) else
                     rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in km.get_weights()])
    return km


def nchw_probe(shape, n=3, seed=2):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def assert_loads_equal(km, tmp_path, x_nchw, n_terms, *, maps_out=False):
    """Save `km` as .keras and .h5, load each, and compare with Keras's predict on the NCHW probe; the
    featuremaps model reads the same probe as NHWC (and gives maps as NHWC when `maps_out`)."""
    ref = np.asarray(km.predict(x_nchw, verbose=0))
    if maps_out:
        ref = ref.transpose(0, 2, 3, 1)  # Keras's NCHW maps → featuremaps's NHWC
    models = []
    for ext in ("keras", "h5"):
        path = tmp_path / f"m.{ext}"
        km.save(path)
        model = load(path)
        got = model(x_nchw.transpose(0, 2, 3, 1)).data  # (n, h, w, c)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= bound(ref, n_terms)
        models.append(model)
    return models


# --- channels_first load --------------------------------------------------------------------------------
CF = {"data_format": "channels_first"}


def test_channels_first_functional_conv_bn_pool_flatten_dense(tmp_path):
    """The common case: conv ('same', stride 2), BatchNorm(axis=1), pool, Flatten in (c, h, w) order, Dense."""
    inp = keras.Input((3, 12, 10), name="image")
    x = layers.Conv2D(4, 3, strides=2, padding="same", name="c1", **CF)(inp)
    x = layers.BatchNormalization(axis=1, name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.MaxPooling2D(2, padding="same", name="pool", **CF)(x)
    x = layers.Flatten(name="flat")(x)  # data_format channels_last: Keras flattens (c, h, w)
    x = layers.Dropout(0.3, name="drop")(x)
    y = layers.Dense(5, activation="softmax", name="fc")(x)
    km = randomize(keras.Model(inp, y))
    model, _ = assert_loads_equal(km, tmp_path, nchw_probe((3, 12, 10)), 27 + 36)
    assert model.input_shapes == {"image": (12, 10, 3)}
    log = "\n".join(model.import_log)
    assert "input is NHWC (12, 10, 3), Keras's is NCHW (3, 12, 10)" in log
    assert "bn (BatchNormalization): axis 1 (the channels of NCHW) → the last axis of NHWC" in log
    assert "flatten_permutation(3, 3, 4, source='CHW', target='HWC')" in log


def test_channels_first_sequential_every_spatial_kind(tmp_path):
    """Depthwise, separable and transposed convs, average pooling, padding, cropping, PReLU per channel,
    a global pool with keepdims and Flatten(data_format='channels_first'), which keeps (h, w, c) order."""
    km = keras.Sequential([
        keras.Input((4, 11, 9)),
        layers.ZeroPadding2D(((1, 0), (2, 1)), **CF),
        layers.DepthwiseConv2D(3, depth_multiplier=2, **CF),
        layers.PReLU(shared_axes=[2, 3]),
        layers.SeparableConv2D(6, 3, padding="same", activation="tanh", **CF),
        layers.Conv2DTranspose(5, 3, strides=2, output_padding=1, **CF),
        layers.Cropping2D(((1, 2), (0, 1)), **CF),
        layers.AveragePooling2D(3, strides=2, padding="same", **CF),
        layers.Conv2D(6, 1, **CF),
        layers.Flatten(**CF),
        layers.Dense(4),
    ])
    randomize(km)
    model, _ = assert_loads_equal(km, tmp_path, nchw_probe((4, 11, 9)), 9 + 6 * 9 + 5 * 9 + 9 + 6 + 6 * 8 * 8)
    assert isinstance(model, nn.Sequential) and model.input_shape == (11, 9, 4)
    assert any("Flatten): data_format 'channels_first' flattens in (h, w, c) order" in s for s in model.import_log)


def test_channels_first_residual_concat_global_pool_and_map_outputs(tmp_path):
    """Add and Concatenate(axis=1) of (C, H, W) maps, Softmax over channels; a maps output stays NHWC."""
    inp = keras.Input((3, 8, 8))
    a = layers.Conv2D(4, 3, padding="same", activation="relu", **CF)(inp)
    b = layers.Conv2D(4, 3, padding="same", **CF)(a)
    s = layers.Add()([a, b])
    cat = layers.Concatenate(axis=1)([s, a])
    maps = layers.Softmax(axis=1, name="maps")(layers.Conv2D(5, 1, **CF)(cat))
    km = randomize(keras.Model(inp, maps))
    model, _ = assert_loads_equal(km, tmp_path, nchw_probe((3, 8, 8)), 27 + 36 + 8, maps_out=True)
    assert any("output 'maps': (H, W, C) maps, channels-last" in s for s in model.import_log)

    pooled = layers.GlobalAveragePooling2D(keepdims=True, **CF)(cat)
    flat = layers.Flatten()(pooled)  # (8, 1, 1) flattened: the same order in both layouts
    km2 = randomize(keras.Model(inp, layers.Dense(3)(flat)), seed=3)
    assert_loads_equal(km2, tmp_path, nchw_probe((3, 8, 8)), 27 + 36 + 8)


def test_channels_first_flat_output_put_back_in_keras_order(tmp_path):
    """A Flatten of (C, H, W) maps as the model's output: featuremaps's (h, w, c) vector is reordered."""
    inp = keras.Input((2, 3, 4))
    y = layers.Flatten()(layers.Conv2D(3, 1, **CF)(inp))
    km = randomize(keras.Model(inp, y))
    model, _ = assert_loads_equal(km, tmp_path, nchw_probe((2, 3, 4)), 2)
    assert any("back in Keras's (c, h, w) order" in s for s in model.import_log)


@pytest.mark.parametrize("make, named, why", [
    (lambda x: layers.BatchNormalization(axis=-1, name="bn_w")(x), "bn_w", "axis -1 on (C, H, W) maps"),
    (lambda x: layers.Dense(3, name="dense_w")(x), "dense_w", "reads (C, H, W) maps by position"),
    (lambda x: layers.Activation("softmax", name="soft_w")(x), "soft_w", "reads the W axis whole"),
    (lambda x: layers.Reshape((4, 24), name="reshape")(x), "reshape", "reads (C, H, W) maps by position"),
    (lambda x: layers.Conv2D(2, 1, name="last")(x), "last", "data_format 'channels_last' in a channels_first"),
    (lambda x: layers.Reshape((2, 48), name="r")(layers.Flatten(name="f")(x)), "r",
     "reads the flattened vector by position"),
])
def test_channels_first_refusals_name_the_layer(make, named, why, tmp_path):
    inp = keras.Input((3, 4, 6))
    x = layers.Conv2D(4, 3, padding="same", **CF)(inp)
    km = keras.Model(inp, make(x))
    km.save(tmp_path / "bad.keras")
    with pytest.raises(KerasFileError) as e:
        load(tmp_path / "bad.keras")
    assert f"layer {named!r}" in str(e.value) and why in str(e.value)
    assert "exact" in str(e.value)


# --- Conv2DTranspose with output_padding -------------------------------------------------------------------
CASES = [(k, s, pad, op) for k in (1, 2, 3, 4, 5) for s in (1, 2, 3) for pad in ("valid", "same")
         for op in (None, 0, 1, 2) if op is None or op < s]


@pytest.mark.parametrize("k, s, pad, op", CASES, ids=[f"k{k}-s{s}-{p}-op{o}" for k, s, p, o in CASES])
def test_conv_transpose_output_padding_load(k, s, pad, op, tmp_path):
    """Every kernel/stride/padding/output_padding combination up to 5/3 (Keras requires output_padding <
    stride), and 'valid' with a stride above the kernel (Keras then pads to max(K, s) on its own)."""
    inp = keras.Input((5, 4, 3))
    km = randomize(keras.Model(inp, layers.Conv2DTranspose(2, k, strides=s, padding=pad, output_padding=op)(inp)))
    x = np.random.default_rng(k * 10 + s).standard_normal((2, 5, 4, 3)).astype(np.float32)
    ref = np.asarray(km.predict(x, verbose=0))
    km.save(tmp_path / "t.keras")
    got = load(tmp_path / "t.keras")(x).data
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= bound(ref, 3 * k * k)


@pytest.mark.parametrize("dilation, pad, op", [(2, "valid", None), (2, "same", None), (3, "valid", 0)])
def test_conv_transpose_dilated_load(dilation, pad, op, tmp_path):
    inp = keras.Input((6, 5, 2))
    km = randomize(keras.Model(inp, layers.Conv2DTranspose(3, 3, dilation_rate=dilation, padding=pad,
                                                           output_padding=op)(inp)))
    x = nchw_probe((6, 5, 2))
    ref = np.asarray(km.predict(x, verbose=0))
    km.save(tmp_path / "d.keras")
    got = load(tmp_path / "d.keras")(x).data
    assert got.shape == ref.shape and np.abs(got - ref).max() <= bound(ref, 18)


def test_conv_transpose_export_stride_above_kernel(tmp_path):
    """Keras's 'valid' with output_padding None pads to max(K, s): the export writes output_padding 0."""
    model = nn.Sequential([("up", nn.Conv2DTranspose(3, 2, 2, stride=3))], input_shape=(4, 5, 3)).eval()
    x = nchw_probe((4, 5, 3))
    km = keras.models.load_model(export(model, tmp_path / "up.keras"))
    ref, got = np.asarray(km.predict(x, verbose=0)), model(x).data
    assert got.shape == ref.shape == (3, 11, 14, 2)
    assert np.abs(got - ref).max() <= bound(ref, 12)


# --- max pool export when its input is ≥ 0 ------------------------------------------------------------
def stem(act):
    """ResNet's stem: conv 7×7 stride 2 pad 3, BatchNorm, `act`, max pool 3×3 stride 2 pad (1, 1). On 16×16
    the pool reads 8×8 maps, where Keras's 'same' would pad (0, 1): the pads need a ZeroPadding2D."""
    rng = np.random.default_rng(4)
    model = nn.Sequential([("conv", nn.Conv2D(3, 8, 7, stride=2, padding=3, bias=False, rng=rng)),
                           ("bn", nn.BatchNorm2D(8)), ("act", act), ("pool", nn.MaxPool2D(3, 2, padding=1)),
                           ("gap", nn.GlobalAvgPool2D())], input_shape=(16, 16, 3))
    model["bn"].running_mean[:] = rng.normal(size=8)
    model["bn"].bias.data[:] = rng.normal(size=8)  # some maps mostly ≤ 0: zeros in the padding matter
    return model.eval()


@pytest.mark.parametrize("act", [nn.ReLU(), nn.ReLU6(), nn.Clip(0.25, 2.0), nn.Sigmoid()],
                         ids=["relu", "relu6", "clip", "sigmoid"])
def test_max_pool_after_nonnegative_written_with_zero_padding(act, tmp_path):
    model = stem(act)
    x = nchw_probe((16, 16, 3))
    km = keras.models.load_model(export(model, tmp_path / "stem.keras"))
    assert [type(lay).__name__ for lay in km.layers][-3:] == ["ZeroPadding2D", "MaxPooling2D",
                                                               "GlobalAveragePooling2D"]
    ref = np.asarray(km.predict(x, verbose=0))
    assert np.abs(model(x).data - ref).max() <= bound(ref, 7 * 7 * 3)
    assert any("pool: pads ((top 1, bottom 1), (left 1, right 1)) written as a ZeroPadding2D" in s
               and "input is ≥ 0" in s for s in model.export_log)


@pytest.mark.parametrize("act", [nn.Tanh(), nn.LeakyReLU(0.1), nn.Identity()], ids=["tanh", "leaky", "identity"])
def test_max_pool_after_signed_values_still_refused(act, tmp_path):
    with pytest.raises(KerasExportError, match=r"'pool' \(MaxPool2D\): pads .* ignored \(-inf\)"):
        export(stem(act), tmp_path / "no.keras")


def test_convert_resnet_like_onnx_to_keras(tmp_path, capsys):
    """`featuremaps convert resnet50-like.onnx out.keras`: ResNet's stem (pool pad (1, 1) after a ReLU)
    and basic blocks; Keras's predict of the file equals onnxruntime's output."""
    net, shape = build("resnet_like")
    onnx_path = torch_export(net, tmp_path / "resnet50-like.onnx", torch.zeros(shape), dynamo=False)
    code, out, err = run_cli(capsys, "convert", onnx_path, tmp_path / "out.keras")
    assert code == 0, err
    assert "before a 'valid' MaxPooling2D: exact, since its input is ≥ 0" in out
    x = nchw_probe(shape[1:], n=2)
    ref = ort_run(onnx_path, {"x": x})[0]
    got = keras.models.load_model(tmp_path / "out.keras").predict(x.transpose(0, 2, 3, 1), verbose=0)
    assert np.abs(got - ref).max() <= bound(ref, 7 * 7 * 3 + 6 * 9 * 16 + 16)
