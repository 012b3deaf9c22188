"""featuremaps.theano.lenet_from_params against a NumPy forward pass written from the Theano tutorial's
equations (LeNetConvPoolLayer: true convolution by scipy.signal.convolve2d, 2×2 max-pool, + b, tanh;
HiddenLayer: tanh(x·W + b); LogisticRegression: softmax(x·W + b)), float64, random parameters."""
import numpy as np
import pytest
import scipy.signal

from featuremaps import layouts
from featuremaps.theano import lenet_from_params


def tutorial_params(rng, n_classes=10, dtype=np.float64):
    """Random parameters with the tutorial's shapes (biases and the logistic W non-zero, unlike its init)."""
    def uniform(shape, fan_in, fan_out):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, shape).astype(dtype)
    return {"layer0": (uniform((20, 1, 5, 5), 25, 20 * 25 / 4), rng.uniform(-0.5, 0.5, 20).astype(dtype)),
            "layer1": (uniform((50, 20, 5, 5), 500, 50 * 25 / 4), rng.uniform(-0.5, 0.5, 50).astype(dtype)),
            "layer2": (uniform((800, 500), 800, 500), rng.uniform(-0.5, 0.5, 500).astype(dtype)),
            "layer3": (uniform((500, n_classes), 500, n_classes), rng.uniform(-0.5, 0.5, n_classes).astype(dtype))}


def conv_pool_layer(x, w, b, conv=scipy.signal.convolve2d):
    """LeNetConvPoolLayer on (n, c_in, h, w): tanh(max_pool_2x2(conv2d(x, W)) + b), Theano's conv2d
    being a true 'valid' convolution summed over the input maps."""
    n, cin = x.shape[:2]
    out = np.stack([np.stack([sum(conv(x[k, i], w[o, i], mode="valid") for i in range(cin))
                              for o in range(w.shape[0])]) for k in range(n)])  # (n, c_out, oh, ow)
    oh, ow = out.shape[2] // 2, out.shape[3] // 2  # ignore_border=True
    pooled = out[:, :, :2 * oh, :2 * ow].reshape(n, w.shape[0], oh, 2, ow, 2).max(axis=(3, 5))
    return np.tanh(pooled + b[None, :, None, None])


def tutorial_forward(params, images, conv=scipy.signal.convolve2d, flatten_hwc=False):
    """The tutorial's network on (n, 28, 28) images: every layer's output, NCHW as Theano has them."""
    x = images.reshape(images.shape[0], 1, 28, 28)  # layer0_input = x.reshape((batch_size, 1, 28, 28))
    l0 = conv_pool_layer(x, *params["layer0"], conv=conv)  # (n, 20, 12, 12)
    l1 = conv_pool_layer(l0, *params["layer1"], conv=conv)  # (n, 50, 4, 4)
    flat = (l1.transpose(0, 2, 3, 1) if flatten_hwc else l1).reshape(len(l1), -1)  # layer1.output.flatten(2)
    l2 = np.tanh(flat @ params["layer2"][0] + params["layer2"][1])
    logits = l2 @ params["layer3"][0] + params["layer3"][1]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {"layer0": l0, "layer1": l1, "layer2": l2, "logits": logits, "p_y_given_x": e / e.sum(axis=1, keepdims=True)}


def _close(actual, expected, rtol=1e-5):
    """rtol 1e-5 (float64), relative to the largest reference value for entries near zero."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(getattr(actual, "data", actual)), expected, rtol=rtol,
                               atol=rtol * float(np.max(np.abs(expected))))


def _run(model, images):
    return np.asarray(model(images[..., None]).data)  # (n, 28, 28) -> (n, 28, 28, 1) NHWC


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


RNG = np.random.default_rng(11)
PARAMS = tutorial_params(RNG)
IMAGES = RNG.uniform(0, 1, (3, 28, 28))
WANT = tutorial_forward(PARAMS, IMAGES)


def test_lenet_from_params_equals_the_tutorial_forward_pass():
    model = lenet_from_params(PARAMS)
    assert model.conv1.weight.data.dtype == np.float64 and not model.training
    logits = _run(model, IMAGES)
    _close(logits, WANT["logits"])
    _close(_softmax(logits), WANT["p_y_given_x"])
    assert len(model.import_log) == 5 and "flipped" in model.import_log[1] and "(c, h, w)" in model.import_log[3]


def test_the_oracle_tells_the_flip_and_the_flatten_order_apart():
    logits = _run(lenet_from_params(PARAMS), IMAGES)
    no_flip = tutorial_forward(PARAMS, IMAGES, conv=scipy.signal.correlate2d)["logits"]  # a torch-style conv
    hwc = tutorial_forward(PARAMS, IMAGES, flatten_hwc=True)["logits"]
    for wrong in (no_flip, hwc):
        assert np.max(np.abs(logits - wrong)) > 1e-2 * np.max(np.abs(WANT["logits"]))


def test_every_layer_matches_through_verify_conversion():
    model = lenet_from_params(PARAMS)

    def reference(x):  # x: (1, 28, 28, 1) NHWC
        got = tutorial_forward(PARAMS, x[..., 0])
        return {"pool1_act": got["layer0"][0].transpose(1, 2, 0), "pool2_act": got["layer1"][0].transpose(1, 2, 0),
                "fc1_act": got["layer2"], "fc2": got["logits"]}  # (c, h, w) -> (h, w, c)
    res = layouts.verify_conversion(reference, model, IMAGES[0][..., None])
    assert res.ok and res.output.name == "fc2" and res.max_diff < 1e-10
    state = model.state_dict()
    state["fc1.weight"] = PARAMS["layer2"][0]  # the flatten permutation left out: fc1 is where it breaks
    model.load_state_dict(state)
    bad = layouts.verify_conversion(reference, model, IMAGES[0][..., None])
    assert not bad.ok and bad.first_divergent == "fc1_act"


def test_param_forms_and_dtypes():
    order = [a for name in ("layer3", "layer2", "layer1", "layer0") for a in PARAMS[name]]  # the tutorial's `params`
    layer_order = [a for name in ("layer0", "layer1", "layer2", "layer3") for a in PARAMS[name]]
    flat = {f"{name}.{w}": a for name, pair in PARAMS.items() for w, a in zip("Wb", pair)}
    nested = {name: {"W": w, "b": b} for name, (w, b) in PARAMS.items()}
    ref = lenet_from_params(PARAMS).state_dict()
    for form, how in ((order, "tutorial's params order"), (layer_order, "layer order"), (flat, "by layer name"),
                      (nested, "by layer name")):
        model = lenet_from_params(form)
        assert how in model.import_log[0]
        assert all(np.array_equal(v, ref[k]) for k, v in model.state_dict().items())  # the same path: exact
    p32 = tutorial_params(np.random.default_rng(2), n_classes=3, dtype=np.float32)
    m32 = lenet_from_params(p32)
    assert m32.fc2.weight.data.shape == (500, 3) and m32.conv1.weight.data.dtype == np.float32
    _close(_run(m32, IMAGES.astype(np.float32)), tutorial_forward(p32, IMAGES.astype(np.float32))["logits"], rtol=1e-4)
    assert lenet_from_params(p32, dtype=np.float64).conv1.weight.data.dtype == np.float64


def test_bad_params_are_listed_and_nothing_loads():
    bad = dict(PARAMS, layer0=(np.zeros((20, 3, 5, 5)), np.zeros(20)), layer2=(np.zeros((500, 800)), np.zeros(500)))
    with pytest.raises(ValueError, match=r"layer0.W: expected shape \(20, 1, 5, 5\), received \(20, 3, 5, 5\); "
                                         r"layer2.W: expected shape \(800, 500\), received \(500, 800\)\. Nothing"):
        lenet_from_params(bad)
    with pytest.raises(ValueError, match=r"layer3.b: expected shape \(10,\) to match layer3.W"):
        lenet_from_params(dict(PARAMS, layer3=(PARAMS["layer3"][0], np.zeros(3))))
    with pytest.raises(ValueError, match=r"must hold 8 arrays .*received 7"):
        lenet_from_params([np.zeros(1)] * 7)
    with pytest.raises(ValueError, match=r"params has no 'layer1'"):
        lenet_from_params({k: v for k, v in PARAMS.items() if k != "layer1"})
    with pytest.raises(TypeError, match=r"params must be a list of 8 arrays or a mapping by layer name; received int"):
        lenet_from_params(3)
    with pytest.raises(TypeError, match=r"dtype must be a floating dtype; received int32"):
        lenet_from_params(PARAMS, dtype=np.int32)
