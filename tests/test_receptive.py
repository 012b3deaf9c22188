"""receptive_field against brute force: change one input pixel at a time and see which units change.

Two brute-force oracles, both independent of the tracing code:
- NaN: put NaN in one pixel (all channels) of a batch of images, one pixel per image, and run the
  engine; a unit depends on the pixel iff it turns NaN (NaN propagates through conv, max/avg pooling,
  BatchNorm, tanh/ReLU, and padding is never NaN). Exact for any model, max pooling included.
- float64 perturbation: add 1 to one pixel and see whether the unit moves at all (models without max
  pooling or ReLU, where any dependence shows).
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from featuremaps import models, nn, tables
from featuremaps.inspect import receptive_field
from featuremaps.inspect.receptive import Geometry, ReceptiveField, window_geometry
from featuremaps.nn import ShapeError
from featuremaps.tensor import as_array, no_grad


def _forward_all(model, x):
    """Per-layer outputs of `model` on the batch `x` (eval, no tape), in layer order."""
    outs = []
    model.eval()
    with no_grad():
        h = x
        for layer in model:
            h = as_array(layer(h))
            outs.append(h)
    return outs


def _nan_dependence(model, upto: int, chunk: int = 128):
    """For each layer ≤ `upto`: bool (H·W, *unit shape of map 0) — does the unit turn NaN when pixel k is NaN?"""
    h, w, c = model.input_shape
    layers = list(model)[:upto + 1]
    sub = nn.Sequential([(str(i), m) for i, m in enumerate(layers)], input_shape=model.input_shape)
    rng = np.random.default_rng(0)
    base = rng.random((h, w, c)).astype(np.float32)
    result = None
    for lo in range(0, h * w, chunk):
        ks = np.arange(lo, min(lo + chunk, h * w))
        x = np.repeat(base[None], len(ks), axis=0)  # (b, h, w, c)
        x[np.arange(len(ks)), ks // w, ks % w, :] = np.nan
        outs = [np.isnan(o[..., 0]) if o.ndim == 4 else np.isnan(o[:, 0]) for o in _forward_all(sub, x)]
        result = outs if result is None else [np.concatenate([a, b]) for a, b in zip(result, outs)]
    return result


def _assert_field(model, name, pos, dep_of_layer):
    """Compare receptive_field with the brute-force dependence (H·W, ...) of that layer's unit."""
    h, w, _ = model.input_shape
    rf = receptive_field(model, name, pos)
    unit = dep_of_layer[:, pos[0], pos[1]] if pos is not None else dep_of_layer
    expected = unit.reshape(h, w)
    np.testing.assert_array_equal(rf.mask, expected, err_msg=f"{name} at {pos}")
    mask, (rs, cs) = rf  # unpacks like a pair
    if expected.any():
        rows, cols = np.flatnonzero(expected.any(1)), np.flatnonzero(expected.any(0))
        assert (rs.start, rs.stop, cs.start, cs.stop) == (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    return rf


def _positions(shape, rng, n=3):
    oh, ow = shape[:2]
    pos = {(0, 0), (oh - 1, ow - 1), (0, ow - 1), (oh - 1, 0)}
    pos |= {(int(rng.integers(oh)), int(rng.integers(ow))) for _ in range(n)}
    return sorted(pos)


def _zoo(name):
    if name == "vgg-small":  # same layers on a 16×16 input keeps the brute force cheap
        return models.get(name, rng=0, input_shape=(16, 16, 3))
    return models.get(name, rng=0)


@pytest.mark.parametrize("name", models.names())
def test_every_window_layer_of_the_zoo_matches_brute_force(name):
    model = _zoo(name)
    names = model.names()
    kinds = [type(m).__name__ for m in model]
    last = max(i for i, k in enumerate(kinds) if k in ("Conv2D", "MaxPool2D", "AvgPool2D", "Subsampling2D",
                                                       "ZeroPad2D"))
    dep = _nan_dependence(model, last + 1)
    rng = np.random.default_rng(1)
    checked = 0
    for i in range(last + 2):
        if dep[i].ndim != 3:
            continue
        for pos in _positions(dep[i].shape[1:], rng):
            _assert_field(model, names[i], pos, dep[i])
            checked += 1
    assert checked >= 12


def test_vector_layers_see_every_pixel():
    model = models.get("lenet", rng=0)
    for layer in ("flatten", "fc1", "fc1_act", "fc2"):
        rf = receptive_field(model, layer)
        assert rf.mask.all() and rf.slices == (slice(0, 28), slice(0, 28))
        assert not rf.clipped and not rf.holes
    rf = receptive_field(_zoo("vgg-small"), "gap")
    assert rf.mask.shape == (16, 16) and rf.mask.all()


def test_lenet5_padding_pushes_the_field_off_the_image_and_is_clipped():
    model = models.get("lenet5", rng=0)
    rf = receptive_field(model, "C1", (0, 0))  # ZeroPad2D(2) then a 5×5 kernel: rows -2..2 nominally
    assert rf.nominal == ((-2, 2), (-2, 2))
    assert rf.clipped
    assert rf.slices == (slice(0, 3), slice(0, 3)) and rf.mask.sum() == 9
    assert "clipped" in rf.to_text() and "-2..2" in rf.to_text()
    rf = receptive_field(model, "C3", (5, 5))  # interior: 5 + 2·(5 − 1) = 14 rows, all on the image
    assert not rf.clipped and rf.size == (14, 14)
    rf = receptive_field(model, "C5", (0, 0))  # LeNet-5's C5 sees the whole 32×32 padded field
    assert rf.nominal == ((-2, 29), (-2, 29)) and rf.mask.all()


def test_dilation_leaves_holes():
    model = nn.Sequential([("c", nn.Conv2D(1, 1, 3, dilation=2))], input_shape=(9, 9, 1))
    rf = receptive_field(model, "c", (1, 1))
    expected = np.zeros((9, 9), dtype=bool)
    expected[1:6:2, 1:6:2] = True
    np.testing.assert_array_equal(rf.mask, expected)
    assert rf.holes and rf.size == (5, 5)
    assert "holes" in rf.to_text()


def test_a_unit_that_sees_only_padding_has_an_empty_field():
    model = nn.Sequential([("pad", nn.ZeroPad2D(3)), ("c", nn.Conv2D(1, 1, 2))], input_shape=(4, 4, 1))
    rf = receptive_field(model, "c", (0, 0))
    assert not rf.mask.any() and rf.size == (0, 0)
    assert "no input pixel" in rf.to_text()


def test_result_is_a_pair_with_attributes():
    model = models.get("lenet", rng=0)
    rf = receptive_field(model, "pool1", (3, 4))
    assert isinstance(rf, ReceptiveField) and isinstance(rf, tuple) and len(rf) == 2
    mask, (rs, cs) = rf
    assert mask.dtype == bool and mask.shape == (28, 28)
    assert (rs, cs) == (slice(6, 12), slice(8, 14))  # 2×2 pool of 5×5 convs: 6×6 at stride 2
    assert rf.layer == "pool1" and rf.position == (3, 4)


# --- random stacks: the tracer against both brute-force oracles ---------------------------------------
@st.composite
def _stacks(draw):
    h = draw(st.integers(5, 13))
    w = draw(st.integers(5, 13))
    c = draw(st.integers(1, 2))
    layers = []
    cin = c
    for k in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "conv", "max", "avg", "pad", "sub"]))
        if kind == "conv":
            ks = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
            padding = draw(st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 2),
                                     st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                               st.tuples(st.integers(0, 3), st.integers(0, 3)))))
            cout = draw(st.integers(1, 3))
            layers.append(nn.Conv2D(cin, cout, ks, stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                                    padding=padding, dilation=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                                    rng=k))
            layers.append(nn.Tanh())
            cin = cout
        elif kind in ("max", "avg"):
            ks = draw(st.integers(1, 3))
            pad = draw(st.integers(0, ks // 2))
            stride = draw(st.integers(1, 3))
            ceil = draw(st.booleans())
            layers.append(nn.MaxPool2D(ks, stride, pad, ceil_mode=ceil) if kind == "max"
                          else nn.AvgPool2D(ks, stride, pad, ceil_mode=ceil, count_include_pad=draw(st.booleans())))
        elif kind == "pad":
            layers.append(nn.ZeroPad2D(((draw(st.integers(0, 2)), draw(st.integers(0, 2))),
                                        (draw(st.integers(0, 2)), draw(st.integers(0, 2))))))
        else:
            layers.append(nn.Subsampling2D(cin, draw(st.integers(1, 2))))
    model = nn.Sequential(layers, input_shape=(h, w, c))
    try:
        out = model.compute_output_shape()
    except (ShapeError, ValueError):
        assume(False)
    assume(out[0] >= 1 and out[1] >= 1)
    pos = (draw(st.integers(0, out[0] - 1)), draw(st.integers(0, out[1] - 1)))
    return model, pos


@settings(max_examples=60, deadline=None)
@given(_stacks())
def test_random_stacks_match_nan_brute_force(case):
    model, pos = case
    last = len(model) - 1
    dep = _nan_dependence(model, last)
    _assert_field(model, model.names()[-1], pos, dep[last])


@settings(max_examples=40, deadline=None)
@given(_stacks())
def test_random_stacks_match_float64_perturbation(case):
    model, pos = case
    assume(not any(isinstance(m, nn.MaxPool2D) for m in model))
    model.astype(np.float64)
    for m in model:  # nonzero biases/coefficients so nothing cancels by construction
        if isinstance(m, nn.Subsampling2D):
            m.weight.data = np.random.default_rng(3).uniform(0.5, 1.5, m.weight.shape)
    h, w, c = model.input_shape
    rng = np.random.default_rng(5)
    base = rng.uniform(-1, 1, (h, w, c))
    x = np.repeat(base[None], h * w + 1, axis=0)  # image 0 is the base; image 1 + k has pixel k moved
    k = np.arange(h * w)
    x[1 + k, k // w, k % w, :] += 1.0
    out = _forward_all(model, x)[-1][:, pos[0], pos[1], 0]  # (h·w + 1,)
    # BLAS may round the same image differently at another batch row, so compare with a tolerance far
    # below what a +1.0 perturbation moves (float64).
    moved = (np.abs(out[1:] - out[0]) > 1e-9 * (1 + np.abs(out[0]))).reshape(h, w)
    np.testing.assert_array_equal(receptive_field(model, model.names()[-1], pos).mask, moved)


# --- errors -----------------------------------------------------------------------------------------
def test_errors_name_the_problem():
    model = models.get("lenet5", rng=0)
    with pytest.raises(ValueError, match=r"no layer named 'C9'; valid names: pad, C1, C1_act, S2"):
        receptive_field(model, "C9", (0, 0))
    with pytest.raises(ValueError, match=r"row must be in \[0, 9\] and col in \[0, 9\]"):
        receptive_field(model, "C3", (10, 0))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        receptive_field(model, "C3", (0, -1))
    with pytest.raises(ValueError, match=r"position must be \(row, col\)"):
        receptive_field(model, "C3")
    with pytest.raises(ValueError, match="outputs a vector of 84 values, so position must be None"):
        receptive_field(model, "F6", (0, 0))
    with pytest.raises(TypeError, match=r"position must be a \(row, col\) pair of ints"):
        receptive_field(model, "C3", (1.0, 2))
    with pytest.raises(ValueError, match="no input_shape"):
        receptive_field(nn.Sequential([("c", nn.Conv2D(1, 1, 3))]), "c", (0, 0))
    with pytest.raises(ValueError, match="cannot trace"):
        receptive_field(nn.Sequential([("t", nn.Conv2D(1, 1, 3)), ("weird", _Odd())], input_shape=(5, 5, 1)),
                        "weird", (0, 0))


class _Odd(nn.Module):
    """A user layer the tracer does not know."""

    def forward(self, x):
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def test_tables_do_not_change_the_spatial_field():
    model = nn.Sequential([("c1", nn.Conv2D(1, 6, 3)), ("c3", nn.Conv2D(6, 16, 3, connections=tables.lenet5_c3()))],
                          input_shape=(8, 8, 1))
    rf = receptive_field(model, "c3", (2, 3))
    assert rf.slices == (slice(2, 7), slice(3, 8)) and rf.mask.sum() == 25


def test_window_geometry_keeps_the_public_fields_of_receptive_geometry():
    """`inspect.receptive.Geometry` / `window_geometry` (now window.Geometry): the same fields and
    methods as before, for code outside the package that read them. Expected values by hand: rows
    of output row 1 are 1·2 + p − 1, columns of output column 0 are q·2 − 1."""
    geo = window_geometry(nn.Conv2D(1, 1, (3, 5), stride=2, padding=1, dilation=(1, 2)), (9, 12))
    assert isinstance(geo, Geometry)
    assert (geo.kernel, geo.stride, geo.dilation, geo.pads) == ((3, 5), (2, 2), (1, 2), ((1, 1), (1, 1)))
    assert geo.out_hw == (5, 3)  # ⌊(9 + 2 − 3) / 2⌋ + 1 and ⌊(12 + 2 − 9) / 2⌋ + 1
    assert geo.rows(1).tolist() == [1, 2, 3] and geo.cols(0).tolist() == [-1, 1, 3, 5, 7]
    pool = window_geometry(nn.Subsampling2D(2, 2), (7, 6))  # no stride attribute: steps by its kernel
    assert (pool.kernel, pool.stride, pool.pads, pool.out_hw) == ((2, 2), (2, 2), ((0, 0), (0, 0)), (3, 3))
