"""explain / activations: the recomputed value equals the engine's own output (≤ 1e-5 in float32) on
every conv layer of every zoo model and on random conv layers; the terms equal a naive loop written
from the formula (with its own padding arithmetic); pooling winners, renderings and errors."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from featuremaps import models, nn, tables
from featuremaps.inspect import activations, explain, resolve_layer
from featuremaps.tensor import as_array, no_grad
from tests.oracles import sum_rtol

# How far the engine may be from explain's float64 recomputation. explain recomputes from the very
# float32 inputs and weights the engine used, exactly but for float64 rounding, so the gap is the
# engine's own rounding of its sum: tests/oracles.sum_rtol, n terms relative to Σ|terms|, whatever
# order this machine's BLAS kernel adds them in.
STEP_GAIN = 2.5  # the steepest layer explain follows: BatchNorm's |γ|/√(var + ε), at most 1.74 here (γ and
#                  the running variance in _trained_like's ranges), ScaledTanh 1.7159·2/3 ≈ 1.14, LeNet-5's
#                  subsampling coefficient/4 ≤ 0.4, the rest ≤ 1
STEP_ULPS = 16   # each evaluation of a followed layer rounds a few times (exp/tanh ≤ 4 ulp, BatchNorm's
#                  scale and shift, an average's division), and the two compared evaluations round apart


def _unit_roundoff(e) -> float:
    return float(np.finfo(e.dtype).eps) / 2


def _engine_tol(model, e) -> float:
    """The largest |recomputed − engine| rounding allows for explanation `e` (of layer `e.layer`)."""
    layer = model[e.layer]
    bias = abs(e.bias or 0.0)
    if e.kind in ("MaxPool2D", "GlobalMaxPool2D"):
        return 0.0  # a maximum is one of the inputs: no rounding at all
    if e.kind == "Dense":
        n = len(e.terms) + 1  # x·w plus the bias
        return sum_rtol(e.dtype, n) * (math.fsum(abs(t.value * t.weight) for t in e.terms) + bias)
    mags = math.fsum(float(np.sum(np.abs(t.window.astype(np.float64) * t.kernel))) for t in e.terms) + bias
    if e.kind == "Conv2D":
        kh, kw, c_in_per_group = layer.weight.shape[:3]  # the engine sums every tap of every map it
        n = kh * kw * c_in_per_group + 1                 # reads (a connection table's zeros included)
    else:  # average pooling: the window's sum, times 1/divisor (and a coefficient, plus a bias)
        n = e.terms[0].window.size + 3
    return sum_rtol(e.dtype, n) * mags


def _assert_engine_agrees(model, e, where: str = "") -> None:
    """The explained value and every value explain follows after it agree with the engine to the
    rounding above; after the explained layer, each followed layer scales the gap by at most
    STEP_GAIN and adds its own rounding (STEP_ULPS units of the largest value so far)."""
    tol = _engine_tol(model, e)
    assert e.difference <= tol, f"{where}{e.layer}: |recomputed − engine| {e.difference:.3g} > {tol:.3g}"
    u = _unit_roundoff(e)
    scale = max(1.0, abs(e.engine_value))
    tol += u * scale  # the recomputed value is rounded to the layer's dtype to go on
    for s in e.after:
        values = [s.engine_value] + [w["engine_value"] for w in s.windows]
        scale = max([scale] + [abs(v) for v in values if v is not None and math.isfinite(v)])
        tol = STEP_GAIN * tol + STEP_ULPS * u * scale
        if s.value is not None:
            assert s.difference <= tol, f"{where}{e.layer} → {s.layer}: {s.difference:.3g} > {tol:.3g}"
        for w in s.windows:
            gap = abs(w["value"] - w["engine_value"])
            assert gap <= tol, f"{where}{e.layer} → {s.layer} window {w['position']}: {gap:.3g} > {tol:.3g}"


def _trained_like(model, seed=0):
    """Move every parameter and BatchNorm statistic away from its initial value (nonzero biases,
    running stats that are not 0/1), as training would; unconnected table weights stay 0."""
    rng = np.random.default_rng(seed)
    sd = model.state_dict()
    for k, v in sd.items():
        if v.dtype.kind != "f":
            continue
        if k.endswith("running_var"):
            sd[k] = rng.uniform(0.5, 2.0, v.shape).astype(v.dtype)
        elif k.endswith("running_mean"):
            sd[k] = (0.3 * rng.standard_normal(v.shape)).astype(v.dtype)
        else:
            sd[k] = (v * rng.uniform(0.8, 1.2, v.shape) + 0.05 * rng.standard_normal(v.shape)).astype(v.dtype)
    for name, layer in model.named_modules():
        if getattr(layer, "connections", None) is not None:
            sd[f"{name}.weight"] = sd[f"{name}.weight"] * layer.connections[None, None]
    model.load_state_dict(sd)
    return model


def _input(model, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).uniform(-1, 1, model.input_shape).astype(dtype)


def _positions(shape, rng, n=2):
    oh, ow = shape[:2]
    pos = {(0, 0), (oh - 1, ow - 1), (0, ow - 1), (oh - 1, 0), (int(rng.integers(oh)), 0)}
    pos |= {(int(rng.integers(oh)), int(rng.integers(ow))) for _ in range(n)}
    return sorted(pos)


def _strided_model():
    """What the zoo lacks: stride 2, 'same' padding at odd sizes, dilation, groups, depthwise,
    overlapping and padded pooling, average pooling with ceil_mode."""
    rng = np.random.default_rng(3)
    layers = [("a", nn.Conv2D(3, 8, 3, stride=2, padding="same", rng=rng)), ("a_bn", nn.BatchNorm2D(8)),
              ("a_act", nn.ReLU()),
              ("b", nn.Conv2D(8, 8, 3, padding=((2, 0), (1, 2)), dilation=2, groups=4, rng=rng)),
              ("b_act", nn.Tanh()), ("pool", nn.MaxPool2D(3, stride=2, padding=1)),
              ("c", nn.Conv2D(8, 16, 2, groups=8, padding="full", rng=rng)), ("c_act", nn.ELU()),
              ("avg", nn.AvgPool2D(2, ceil_mode=True, count_include_pad=False)),
              ("flatten", nn.Flatten()), ("fc", nn.Dense(144, 5, rng=rng))]
    model = nn.Sequential(layers, input_shape=(17, 15, 3))
    assert model.compute_output_shape() == (5,)
    return model


def _zoo_and_more():
    return [(n, lambda n=n: models.get(n, rng=0)) for n in models.names()] + [("strided", _strided_model)]


# --- the bar: every conv layer of every model agrees with the engine ------------------------------------
@pytest.mark.parametrize("name,build", _zoo_and_more(), ids=[n for n, _ in _zoo_and_more()])
def test_every_layer_of_every_model_agrees_with_the_engine(name, build):
    model = _trained_like(build())
    x = _input(model)
    acts = activations(model, x)
    rng = np.random.default_rng(2)
    n_conv = 0
    for k, (lname, layer) in enumerate(zip(model.names(), model)):
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Dense", "MaxPool2D", "AvgPool2D", "Subsampling2D", "GlobalAvgPool2D",
                        "GlobalMaxPool2D"):
            continue
        y = acts[k + 1].array
        maps = sorted({0, y.shape[-1] - 1, int(rng.integers(y.shape[-1]))})
        spots = _positions(y.shape, rng) if y.ndim == 3 else [None]
        for o in maps:
            for pos in spots:
                e = explain(model, x, lname, o, pos)
                # and the activation / BatchNorm / pooling values that follow
                _assert_engine_agrees(model, e, f"{name}: map {o} at {pos}: ")
                # explain's forward and activations are one code path on one batch of one: bit for bit
                assert e.engine_value == float(y[pos + (o,)] if pos else y[o])
                assert e.agrees
        n_conv += kind == "Conv2D"
    assert n_conv == sum(type(m).__name__ == "Conv2D" for m in model) > 0


# --- an independent oracle: the formula as a naive loop, with its own padding arithmetic -----------------
def _pads_oracle(padding, size, k, s, d):
    """((top, bottom), (left, right)) from the rules in functional/conv.py, written again here."""
    if padding == "valid":
        return (0, 0), (0, 0)
    out = []
    for n, kk, ss, dd in zip(size, k, s, d):
        span = dd * (kk - 1) + 1
        if padding == "full":
            out.append((span - 1, span - 1))
        elif padding == "same":
            total = max((math.ceil(n / ss) - 1) * ss + span - n, 0)
            out.append((total // 2, total - total // 2))
    if out:
        return tuple(out)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if isinstance(padding[0], int):
        return (padding[0], padding[0]), (padding[1], padding[1])
    return tuple(tuple(p) for p in padding)


def _naive_terms(x, layer, o, r, c, pads):
    """{input map: Σ_p Σ_q w·x̃} for output (r, c, o), by loops straight from the formula (float64)."""
    h, w, c_in = x.shape
    kh, kw = layer.kernel_size
    (sh, sw), (dh, dw) = layer.stride, layer.dilation
    (t, _), (l, _) = pads
    wt = layer.weight.data.astype(np.float64)
    g = layer.groups
    per_in, per_out = c_in // g, layer.out_channels // g
    terms = {}
    for i in range(c_in):
        if layer.connections is not None:
            if not layer.connections[i, o]:
                continue
            local = i
        else:
            if i // per_in != o // per_out:
                continue
            local = i - (o // per_out) * per_in
        total = 0.0
        for p in range(kh):
            for q in range(kw):
                rr, cc = r * sh + p * dh - t, c * sw + q * dw - l
                if 0 <= rr < h and 0 <= cc < w:
                    total += wt[p, q, local, o] * float(x[rr, cc, i])
        terms[i] = total
    return terms


def _smallest_sizes(padding, k, s, d, need: int) -> tuple[int, int]:
    """Per axis, the smallest input size ≥ 3 whose conv output (by _pads_oracle) has ≥ `need` rows."""
    sizes = []
    for axis in (0, 1):
        n = 3
        while True:
            lo, hi = _pads_oracle(padding, (n, n), k, s, d)[axis]
            if (n + lo + hi - d[axis] * (k[axis] - 1) - 1) // s[axis] + 1 >= need:
                break
            n += 1
        sizes.append(n)
    return tuple(sizes)


@st.composite
def _conv_cases(draw):
    c_in = draw(st.integers(1, 4))
    wiring = draw(st.sampled_from(["full", "groups", "depthwise", "table"]))
    if wiring == "groups":
        g = draw(st.sampled_from([d for d in (1, 2, 3, 4) if c_in % d == 0]))
        c_out = g * draw(st.integers(1, 2))
    elif wiring == "depthwise":
        g, c_out = c_in, c_in * draw(st.integers(1, 2))
    else:
        g, c_out = 1, draw(st.integers(1, 4))
    table = None
    if wiring == "table":
        table = tables.random(c_in, c_out, draw(st.integers(1, c_in)), np.random.default_rng(draw(st.integers(0, 99))))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 3),
                             st.tuples(st.integers(0, 2), st.integers(0, 2)),
                             st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                       st.tuples(st.integers(0, 3), st.integers(0, 3)))))
    act = draw(st.sampled_from([nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ScaledTanh]))
    pool = draw(st.sampled_from(["max", "avg", "none"]))
    seed = draw(st.integers(0, 2 ** 16))
    conv = nn.Conv2D(c_in, c_out, k, stride=s, padding=padding, dilation=d, groups=g, connections=table, rng=seed)
    layers = [("conv", conv), ("act", act())]
    pool_pad = 0
    if pool == "max":
        layers.append(("pool", nn.MaxPool2D(2, stride=draw(st.integers(1, 2)))))
    elif pool == "avg":
        pool_pad = draw(st.integers(0, 1))
        layers.append(("pool", nn.AvgPool2D(2, padding=pool_pad)))
    need = 2 - pool_pad if pool != "none" else 1  # conv output rows and columns a 2×2 pooling window needs
    size = tuple(draw(st.integers(lo, lo + 8)) for lo in _smallest_sizes(padding, k, s, d, need))
    model = nn.Sequential(layers, input_shape=size + (c_in,))
    out = model[:1].compute_output_shape(model.input_shape)  # valid by construction: no draw is discarded
    model.compute_output_shape()
    conv.bias.data = np.random.default_rng(seed).standard_normal(c_out).astype(np.float32)
    pos = (draw(st.integers(0, out[0] - 1)), draw(st.integers(0, out[1] - 1)))
    o = draw(st.integers(0, c_out - 1))
    return model, pos, o, padding, seed


ACTIVATION_FORMULAS = {  # float64, written from their definitions
    nn.ReLU: lambda z: max(z, 0.0), nn.Tanh: math.tanh, nn.Sigmoid: lambda z: 1 / (1 + math.exp(-z)),
    nn.ScaledTanh: lambda z: 1.7159 * math.tanh(2 * z / 3),  # LeCun et al. 1998, appendix A
}


@settings(max_examples=60, deadline=None)
@given(_conv_cases())
def test_random_conv_layers_agree_with_engine_and_naive_loop(case):
    model, (r, c), o, padding, seed = case
    conv = model["conv"]
    x = np.random.default_rng(seed + 1).standard_normal(model.input_shape).astype(np.float32)
    e = explain(model, x, "conv", o, (r, c))
    _assert_engine_agrees(model, e)  # the conv value, the activation and the pooling after it
    assert e.agrees
    pads = _pads_oracle(padding, model.input_shape[:2], conv.kernel_size, conv.stride, conv.dilation)
    naive = _naive_terms(x, conv, o, r, c, pads)
    assert [t.input_map for t in e.terms] == sorted(naive)
    for t in e.terms:
        assert t.partial_sum == pytest.approx(naive[t.input_map], rel=1e-12, abs=1e-12)
        # the window shows padding as padding: the mask is exactly the taps off the image, with 0 there
        (top, _), (left, _) = pads
        rows = r * conv.stride[0] + np.arange(conv.kernel_size[0]) * conv.dilation[0] - top
        cols = c * conv.stride[1] + np.arange(conv.kernel_size[1]) * conv.dilation[1] - left
        np.testing.assert_array_equal(t.rows, rows)
        np.testing.assert_array_equal(t.cols, cols)
        off = ~(((rows >= 0) & (rows < x.shape[0]))[:, None] & ((cols >= 0) & (cols < x.shape[1]))[None, :])
        np.testing.assert_array_equal(t.padded, off)
        assert np.all(t.window[off] == 0)
        inside = np.ix_(np.flatnonzero(~off.all(1)), np.flatnonzero(~off.all(0)))
        np.testing.assert_array_equal(t.window[inside],
                                      x[np.ix_(rows[~off.all(1)], cols[~off.all(0)], [t.input_map])][..., 0])
    assert e.pre_activation == pytest.approx(conv.bias.data[o] + sum(naive.values()), abs=1e-9)
    # the activation that follows, and the pooling after it
    act = e.activation
    assert act is not None and act["layer"] == "act"
    y_act = activations(model, x)[2].array
    assert act["engine_value"] == y_act[r, c, o]  # explain's forward is activations': bit for bit
    # an independent oracle for the activation: its formula in float64 at the naive loop's sum z. Both
    # values are float32 evaluations (≤ 8 ulps) at a float32 input within z_err + u·|z| of z, moved by
    # at most the steepest slope, ScaledTanh's 1.7159·2/3 ≈ 1.15
    z = float(conv.bias.data[o]) + math.fsum(naive.values())
    f, u = ACTIVATION_FORMULAS[type(model["act"])](z), 2.0 ** -24
    for value, z_err in ((act["value"], abs(e.pre_activation - z)),
                         (act["engine_value"], abs(e.pre_activation - z) + e.difference)):
        assert abs(value - f) <= 1.15 * (z_err + u * abs(z)) + 8 * u * max(1.0, abs(f)), (value, f)
    if "pool" in model:
        pooled = e.pooled
        pool = model["pool"]
        pad = pool.padding if isinstance(pool.padding, int) else 0
        n_rows = sum(1 for i in range(y_act.shape[0]) if 0 <= r - (i * pool.stride[0] - pad) < 2
                     and i < activations(model, x)[3].array.shape[0])
        n_cols = sum(1 for j in range(y_act.shape[1]) if 0 <= c - (j * pool.stride[1] - pad) < 2
                     and j < activations(model, x)[3].array.shape[1])
        assert len(pooled["windows"]) == n_rows * n_cols


def test_trained_like_lenet5_partial_sums_equal_the_naive_loop():
    model = _trained_like(models.get("lenet5", rng=4), seed=9)
    x = _input(model, seed=3)
    acts = activations(model, x)
    for name in ("C1", "C3", "C5"):
        conv = model[name]
        x_in = acts[model.names().index(name)].array
        oh, ow, c_out = acts[model.names().index(name) + 1].array.shape
        for o, (r, c) in [(0, (0, 0)), (c_out - 1, (oh - 1, ow - 1)), (c_out // 2, (oh // 2, ow // 3))]:
            e = explain(model, x, name, o, (r, c))
            naive = _naive_terms(x_in, conv, o, r, c, ((0, 0), (0, 0)))
            assert {t.input_map: t.partial_sum for t in e.terms} == pytest.approx(naive, rel=1e-12, abs=1e-12)
            assert e.bias != 0
            _assert_engine_agrees(model, e)


def test_float64_model_agrees_to_1e10():
    model = _trained_like(models.get("lenet", rng=1)).astype(np.float64)
    x = _input(model, dtype=np.float64)
    e = explain(model, x, "conv2", 7, (3, 5))
    assert e.dtype == "float64" and 0 < e.tolerance < 1e-10
    _assert_engine_agrees(model, e)  # float64's rounding: about 1e-14 here


def test_tolerance_is_the_float_error_bound_of_the_engines_sum():
    """tolerance = 2·n·u·Σ|w·x| (+|b|): n products and the bias, u the dtype's unit roundoff; written
    out here from the layer's own weights and the input window, not from the explanation's terms."""
    model = nn.Sequential([("c", nn.Conv2D(3, 4, 3, padding=1, rng=0))], input_shape=(6, 7, 3))
    x = np.random.default_rng(5).standard_normal((6, 7, 3)).astype(np.float32)
    conv = model["c"]
    e = explain(model, x, "c", 2, (0, 3))
    xp = np.pad(x.astype(np.float64), ((1, 1), (1, 1), (0, 0)))
    products = np.abs(xp[0:3, 3:6, :] * conv.weight.data[:, :, :, 2].astype(np.float64))
    b = abs(float(conv.bias.data[2]))
    n, u = products.size + 1, 2.0 ** -24
    assert e.tolerance == pytest.approx(2 * n * u * (products.sum() + b), rel=1e-12)
    assert e.agrees and e.difference <= e.tolerance
    e.engine_value += 4 * e.tolerance  # a corrupted engine value is caught
    e.difference = abs(e.engine_value - e.pre_activation)
    assert not e.agrees


# --- conv details: padding, wiring, following layers ---------------------------------------------------
def test_padding_is_shown_as_padding():
    model = nn.Sequential([("c", nn.Conv2D(2, 3, 3, padding=1, rng=0))], input_shape=(4, 5, 2))
    x = np.arange(40, dtype=np.float32).reshape(4, 5, 2) + 1  # no zeros in the image itself
    e = explain(model, x, "c", 1, (0, 4))
    for t in e.terms:
        np.testing.assert_array_equal(t.rows, [-1, 0, 1])
        np.testing.assert_array_equal(t.cols, [3, 4, 5])
        expected = np.array([[1, 1, 1], [0, 0, 1], [0, 0, 1]], dtype=bool)
        np.testing.assert_array_equal(t.padded, expected)
        np.testing.assert_array_equal(t.window[expected], 0)
        np.testing.assert_array_equal(t.window[1:, :2], x[0:2, 3:5, t.input_map])
    assert "5/9" in e.to_text() and "-1..1" in e.to_text()


def test_zero_pad_layer_border_counts_as_padding():
    model = models.get("lenet5", rng=0)  # pad (ZeroPad2D(2)) → C1 5×5 valid
    x = _input(model) + 2.0  # no zeros in the image
    e = explain(model, x, "C1", 3, (0, 1))
    (t,) = e.terms
    expected = np.zeros((5, 5), dtype=bool)
    expected[:2, :] = True
    expected[:, :1] = True
    np.testing.assert_array_equal(t.padded, expected)
    np.testing.assert_array_equal(t.window[expected], 0)
    assert np.all(t.window[~expected] != 0)
    assert e.geometry["zero_pad"] == {"layer": "pad", "pads": [[2, 2], [2, 2]]}
    assert "border added by pad (ZeroPad2D: top 2 bottom 2 left 2 right 2)" in e.to_text()
    _assert_engine_agrees(model, e)
    # max pooling after a ZeroPad2D still compares the zeros, as the engine does
    pm = nn.Sequential([("z", nn.ZeroPad2D(1)), ("p", nn.MaxPool2D(2))], input_shape=(4, 4, 1))
    xn = -np.ones((4, 4, 1), np.float32)
    e = explain(pm, xn, "p", 0, (0, 0))
    assert e.pre_activation == 0 and e.engine_value == 0 and e.winner["position"] == (0, 0)


def test_zero_pad_layer_marks_every_border_side():
    """An asymmetric ZeroPad2D before a conv: at every position, exactly the taps on its border (top,
    bottom, left and right) are marked padded, the mask computed here from the pads alone."""
    (t, b), (l, r), (h, w) = (1, 2), (0, 3), (5, 4)  # noqa: E741
    model = nn.Sequential([("z", nn.ZeroPad2D(((t, b), (l, r)))), ("c", nn.Conv2D(1, 1, 3, rng=0))],
                          input_shape=(h, w, 1))
    x = _input(model) + 2.0  # no zeros in the image
    for i in range(h + t + b - 2):
        for j in range(w + l + r - 2):
            (term,) = explain(model, x, "c", 0, (i, j)).terms
            rows, cols = np.arange(i, i + 3), np.arange(j, j + 3)  # in the padded input
            off = ((rows < t) | (rows >= t + h))[:, None] | ((cols < l) | (cols >= l + w))[None, :]
            np.testing.assert_array_equal(term.padded, off, err_msg=f"position {(i, j)}")
            np.testing.assert_array_equal(term.window == 0, off)


def test_lenet5_c3_explanation_reads_the_table():
    model = models.get("lenet5", rng=0)
    x = _input(model)
    e = explain(model, x, "C3", 7, (4, 5))
    assert [t.input_map for t in e.terms] == [1, 2, 3, 4]
    assert "connection table: 4 of 6" in e.wiring
    for t in e.terms:
        np.testing.assert_array_equal(t.kernel, model["C3"].weight.data[:, :, t.input_map, 7])
    text = e.to_text()
    assert "y[C3, map 7, (4, 5)] = b + Σ_i ⟨window_i, K_i,7⟩ = " in text
    table_rows = [ln for ln in text.splitlines() if ln.strip().split("  ")[0].strip() in {"1", "2", "3", "4"}]
    assert len(table_rows) == 4
    # the chain: C3_act (tanh), then S4 (subsampling) into pooled unit (2, 2), then S4_act
    assert [s.layer for s in e.after] == ["C3_act", "S4", "S4_act"]
    assert e.activation["value"] == pytest.approx(math.tanh(e.pre_activation), abs=1e-6)
    assert e.pooled["windows"][0]["position"] == (2, 2) and e.pooled["windows"][0]["winner"] is None


def test_grouped_explanation_uses_the_groups_filters():
    model = nn.Sequential([("g", nn.Conv2D(6, 4, 2, groups=2, rng=0))], input_shape=(3, 3, 6))
    x = _input(model)
    e = explain(model, x, "g", 3, (1, 1))
    assert [t.input_map for t in e.terms] == [3, 4, 5]
    for t in e.terms:
        np.testing.assert_array_equal(t.kernel, model["g"].weight.data[:, :, t.input_map - 3, 3])
    assert "groups=2: group 1 of 2" in e.wiring


def test_max_pool_after_conv_reports_the_winner():
    model = models.get("lenet", rng=0)
    x = _input(model)
    y = activations(model, x)[1].array  # conv1 output (24, 24, 20)
    for r, c in [(0, 0), (5, 8), (23, 23)]:
        e = explain(model, x, "conv1", 4, (r, c))
        (w,) = e.pooled["windows"]
        assert w["position"] == (r // 2, c // 2)
        window = y[2 * (r // 2):2 * (r // 2) + 2, 2 * (c // 2):2 * (c // 2) + 2, 4]
        first = np.unravel_index(np.argmax(window), window.shape)  # first maximum, row-major
        assert w["winner"] == ((r % 2, c % 2) == first)
        # the winner is read from explain's forward pass, which is activations' code path on the same
        # batch of one: the same float32 numbers, so == holds on any machine
        assert w["winner_value"] == window.max() and w["winner_position"] == (2 * (r // 2) + first[0],
                                                                               2 * (c // 2) + first[1])
        # tanh comes after the pooling in this model: it applies to the pooled value
        assert e.activation["layer"] == "pool1_act" and e.activation["unit"] == (r // 2, c // 2, 4)


@pytest.mark.parametrize("nudge", [-0.05, 0.05])
def test_pool_winner_is_the_engines_whatever_the_recomputation(monkeypatch, nudge):
    """Which unit a max-pooling window passes on (and sends the gradient to) is the engine's choice.
    The float64 recomputation differs from the engine's float32 sum in its last bits, by an amount
    that depends on the machine's BLAS kernel; here it is made to differ by ±0.05, enough to reorder
    the window, and the winner, its position and its value must not move."""
    import importlib
    explain_mod = importlib.import_module("featuremaps.inspect.explain")
    model = models.get("lenet", rng=0)
    x = _input(model)
    window = activations(model, x)[1].array[0:2, 0:2, 4]  # conv1 → pool1's window (0, 0) of map 4
    spots = [(0, 0), (0, 1), (1, 0), (1, 1)]
    moved = [rc for rc in spots if np.argmax(np.where(np.arange(4).reshape(2, 2) == 2 * rc[0] + rc[1],
                                                      window + nudge, window)) != np.argmax(window)]
    assert moved  # had explain used its recomputed value, the winner would move for these units
    first = np.unravel_index(np.argmax(window), window.shape)
    real = explain_mod._explain_conv

    def nudged(*args):
        terms, bias, total, geometry, wiring = real(*args)
        return terms, bias, total + nudge, geometry, wiring

    monkeypatch.setattr(explain_mod, "_explain_conv", nudged)
    for rc in spots:
        (w,) = explain(model, x, "conv1", 4, rc).pooled["windows"]
        assert w["winner"] == (rc == first) and w["winner_position"] == first
        assert w["winner_value"] == window.max()


def test_overlapping_pool_lists_every_window_and_stops():
    model = nn.Sequential([("c", nn.Conv2D(1, 2, 2, rng=0)), ("p", nn.MaxPool2D(3, stride=2)), ("a", nn.ReLU())],
                          input_shape=(11, 11, 1))
    x = _input(model)
    e = explain(model, x, "c", 1, (4, 4))  # rows 4 is in windows starting at 2 and 4
    assert sorted(w["position"] for w in e.pooled["windows"]) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert e.activation is None  # several pooled units: the chain stops there
    assert sum(1 for ln in e.to_text().splitlines() if "p (MaxPool2D): window at" in ln) == 4
    e = explain(model, x, "c", 1, (9, 9))  # the 10×10 map's last row/col fall outside every 3×3/2 window
    assert e.pooled["windows"] == [] and "no pooling window" in e.to_text()


# --- pooling and dense layers --------------------------------------------------------------------------
def test_max_pool_winner_first_maximum_and_ties():
    model = nn.Sequential([("p", nn.MaxPool2D(2, padding=1))], input_shape=(4, 4, 1))
    x = np.array([[1, 5, 5, 0], [2, 3, 5, 1], [0, 0, 0, 0], [9, 9, 0, 1]], np.float32)[:, :, None]
    e = explain(model, x, "p", 0, (0, 1))  # window rows -1..0, cols 1..2: values 5, 5 (a tie)
    assert e.winner["position"] == (0, 1) and e.winner["value"] == 5  # the first maximum
    assert e.terms[0].padded[0].all() and not e.terms[0].padded[1].any()
    assert e.difference == 0
    e = explain(model, x, "p", 0, (2, 0))  # rows 3..4: 4 is padding; cols -1..0
    assert e.winner["position"] == (3, 0)
    x[1, 1, 0] = np.nan
    e = explain(model, x, "p", 0, (1, 1))
    assert math.isnan(e.pre_activation) and math.isnan(e.engine_value) and e.agrees
    assert e.winner["position"] == (1, 1)


def test_avg_pool_and_subsampling_terms():
    model = nn.Sequential([("a", nn.AvgPool2D(3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)),
                           ("s", nn.Subsampling2D(2, 2))], input_shape=(8, 7, 2))
    model["s"].weight.data = np.array([0.5, -2.0], np.float32)
    model["s"].bias.data = np.array([0.1, 0.3], np.float32)
    x = _input(model)
    out = activations(model, x)[1].array
    for o in range(2):
        for pos in _positions(out.shape, np.random.default_rng(o)):
            e = explain(model, x, "a", o, pos)
            _assert_engine_agrees(model, e)
            k = e.terms[0].kernel
            assert np.allclose(k[k > 0], k[k > 0][0])  # uniform weights 1/divisor
    e = explain(model, x, "s", 1, (1, 1))
    assert e.bias == pytest.approx(0.3) and e.terms[0].kernel == pytest.approx(np.full((2, 2), -0.5))
    _assert_engine_agrees(model, e)


def test_global_pools_and_dense():
    model = _trained_like(models.get("vgg-small", rng=0))
    x = _input(model)
    e = explain(model, x, "gap", 17)
    assert e.position is None and e.terms[0].window.shape == (4, 4)
    _assert_engine_agrees(model, e)
    e = explain(model, x, "fc", 3)
    fc = model["fc"]
    x_in = activations(model, x)[-2].array
    assert len(e.terms) == 128
    assert [t.partial_sum for t in e.terms] == pytest.approx((x_in.astype(np.float64) * fc.weight.data[:, 3]).tolist())
    assert e.bias == pytest.approx(float(fc.bias.data[3]))
    _assert_engine_agrees(model, e)
    gm = nn.Sequential([("g", nn.GlobalMaxPool2D())], input_shape=(3, 4, 2))
    xg = _input(gm)
    e = explain(gm, xg, "g", 1)
    assert e.winner["value"] == xg[:, :, 1].max() and e.difference == 0


def test_dense_after_flatten_labels_inputs_by_map_position():
    model = models.get("lenet", rng=0)
    x = _input(model)
    e = explain(model, x, "fc1", 10)
    assert len(e.terms) == 800 and e.terms[0].label == "(0, 0, 0)" and e.terms[799].label == "(3, 3, 49)"
    text = e.to_text()
    assert "… 790 more terms summing to" in text  # top 10 contributions, then the rest
    top = sorted(e.terms, key=lambda t: -abs(t.partial_sum))[0]
    assert f"{top.input_map}" in text.splitlines()[3]


# --- renderings ---------------------------------------------------------------------------------------
def test_renderings():
    model = _trained_like(models.get("lenet5", rng=0))
    x = _input(model)
    e = explain(model, x, "C3", 7, (4, 5))
    d = e.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["layer"] == "C3" and back["out_map"] == 7 and back["position"] == [4, 5]
    assert len(back["terms"]) == 4 and len(back["terms"][0]["window"]) == 5
    assert back["engine_value"] == e.engine_value and back["difference"] == e.difference  # JSON keeps floats exactly
    assert back["activation"]["layer"] == "C3_act" and back["pooled"]["layer"] == "S4"
    md = e.to_markdown()
    assert "| input map | rows | cols | padded | ⟨window, kernel⟩ |" in md
    assert md.count("\n| ") == 5 and "`y[C3, map 7, (4, 5)] = b + Σ_i ⟨window_i, K_i,7⟩" in md
    tex = e.to_latex()
    assert "\\begin{tabular}{rrrrr}" in tex and "\\sum_{i \\in C(7)}" in tex and "S2\\_act" in tex
    assert tex.count("\\\\\n") == 5
    assert str(e) == e.to_text()
    wins = e.to_text(windows=True)
    assert wins.count("window (· = padding) | kernel") == 4
    # non-finite values stay JSON-able
    xn = x.copy()
    xn[10, 10, 0] = np.nan
    dn = explain(model, xn, "C1", 0, (8, 8)).to_dict()
    json.dumps(dn, allow_nan=False)
    assert dn["engine_value"] == "NaN" and dn["agrees"] is True


# --- activations and resolve_layer ----------------------------------------------------------------------
def test_activations_runs_the_engine_in_eval_mode_and_restores_the_mode():
    model = _trained_like(models.get("cnn", rng=0))
    model.train()
    x = _input(model)
    acts = activations(model, x[None])
    assert model.training  # restored
    assert [a.name for a in acts] == ["input"] + model.names()
    assert acts[1].kind == "Conv2D" and acts[2].kind == "BatchNorm2D"
    assert acts[0].array.shape == (28, 28, 1) and acts[-1].array.shape == (10,)
    model.eval()
    with no_grad():  # layer by layer, as activations runs it (model(x) may take the fused plan, equal
        h = x[None]  # only to float rounding: tests/test_fused.py holds that)
        for layer in model:
            h = layer(h)
        ref = as_array(h)[0]
    np.testing.assert_array_equal(acts[-1].array, ref)
    again = activations(model, x)
    np.testing.assert_array_equal(again[-1].array, ref)  # Dropout off, BatchNorm running stats: deterministic


def test_resolve_layer():
    model = models.get("lenet5", rng=0)
    assert resolve_layer(model, "C3") is model["C3"]
    with pytest.raises(ValueError, match=r"no layer named 'c3'; valid names: pad, C1, C1_act, S2, S2_act, C3"):
        resolve_layer(model, "c3")


# --- errors -------------------------------------------------------------------------------------------
def test_errors():
    model = models.get("lenet5", rng=0)
    x = _input(model)
    with pytest.raises(ValueError, match="no layer named 'C7'; valid names: pad, C1, .*OUTPUT"):
        explain(model, x, "C7", 0, (0, 0))
    with pytest.raises(ValueError, match=r"cannot explain layer 'C1_act' of kind Tanh; explainable kinds: Conv2D, "
                                         r"Dense, MaxPool2D.*explain the layer before it \('C1'\)"):
        explain(model, x, "C1_act", 0, (0, 0))
    with pytest.raises(ValueError, match="cannot explain layer 'flatten' of kind Flatten; explainable kinds"):
        explain(model, x, "flatten", 0)
    with pytest.raises(ValueError, match="cannot explain layer 'pad' of kind ZeroPad2D"):
        explain(model, x, "pad", 0, (0, 0))
    with pytest.raises(ValueError,
                       match=r"out_map must be in \[0, 15\] \(layer 'C3' has 16 output maps\); received 16"):
        explain(model, x, "C3", 16, (0, 0))
    with pytest.raises(ValueError, match=r"out_map must be in \[0, 83\] \(layer 'F6' has 84 outputs\)"):
        explain(model, x, "F6", -1)
    with pytest.raises(TypeError, match="out_map must be an int"):
        explain(model, x, "C3", "7", (0, 0))
    with pytest.raises(ValueError, match=r"position \(10, 3\) is outside the 10×10 maps of layer 'C3': row must be in "
                                         r"\[0, 9\] and col in \[0, 9\]"):
        explain(model, x, "C3", 0, (10, 3))
    with pytest.raises(ValueError, match=r"position must be \(row, col\)"):
        explain(model, x, "C3", 0)
    with pytest.raises(ValueError, match="outputs a vector of 84 values, so position must be None"):
        explain(model, x, "F6", 0, (0, 0))
    with pytest.raises(ValueError, match=r"ONE input \(28, 28, 1\) or a batch of one.*batch of 2"):
        explain(model, np.stack([x, x]), "C3", 0, (0, 0))
    with pytest.raises(ValueError, match=r"must have shape \(28, 28, 1\).*received shape \(32, 32, 1\)"):
        explain(model, np.zeros((32, 32, 1), np.float32), "C3", 0, (0, 0))
    with pytest.raises(TypeError, match="x must be a numeric array"):
        explain(model, "digit.png", "C3", 0, (0, 0))


def test_accepts_uint8_and_2d_images():
    model = models.get("lenet", rng=0)
    img = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    e = explain(model, img, "conv1", 0, (3, 3))
    assert e.input_shape == (28, 28, 1)
    _assert_engine_agrees(model, e)


# --- the command line ---------------------------------------------------------------------------------
NORM = {"mean": [0.1307], "std": [0.3081]}


@pytest.fixture
def run_dir(tmp_path):
    from featuremaps.checkpoint import save_checkpoint
    model = _trained_like(models.get("lenet5", rng=0))
    save_checkpoint(tmp_path / "run", model, epoch=1,
                    meta={"dataset": "sample", "normalization": NORM, "classes": [str(i) for i in range(10)]})
    return tmp_path / "run", model


def _cli(argv, capsys):
    from featuremaps.cli import main
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_explain_conv_from_an_image_file(run_dir, tmp_path, capsys):
    from PIL import Image
    path, model = run_dir
    img = np.random.default_rng(4).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(img, mode="L").save(tmp_path / "digit.png")
    code, out, err = _cli(["explain", str(path), "--layer", "C3", "--map", "7", "--at", "4,5",
                           "--image", str(tmp_path / "digit.png")], capsys)
    assert code == 0, err
    # the checkpoint's normalisation (NORM), written out, with the library's float32 arithmetic: the very
    # input the CLI builds, so the engine value below is the CLI's to the last bit on any machine
    from featuremaps.data import normalize
    x = normalize(img[None, :, :, None], 0.1307, 0.3081)[0]  # (28, 28, 1)
    expected = explain(model, x, "C3", 7, (4, 5))
    assert f"input: image {tmp_path / 'digit.png'}" in out
    assert "y[C3, map 7, (4, 5)] = b + Σ_i ⟨window_i, K_i,7⟩" in out and "agrees" in out
    assert f"engine value {expected.engine_value:.6g}" in out


@pytest.mark.shared_mnist
def test_cli_explain_json_from_the_test_set(run_dir, capsys):
    from featuremaps import data
    path, model = run_dir
    code, out, err = _cli(["explain", str(path), "--layer", "C1", "--map", "0", "--at", "0,0", "--index", "3",
                           "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    test = data.load("mnist", "test", download=False, progress=False)  # the official t10k file
    assert doc["input"]["dataset"] == "mnist" and doc["input"]["split"] == "test" and doc["input"]["index"] == 3
    assert doc["input"]["label"] == int(test.labels[3])
    x = data.normalize(test.images[3:4], 0.1307, 0.3081)[0]  # NORM with the CLI's arithmetic: the same input
    e = explain(model, x, "C1", 0, (0, 0))
    assert doc["explanation"]["engine_value"] == e.engine_value  # one code path, one input: bit for bit
    assert doc["explanation"]["terms"][0]["padded"][0] == [True] * 5  # ZeroPad2D(2): the top rows are padding
    assert doc["explanation"]["layer"] == "C1" and doc["explanation"]["position"] == [0, 0]


def test_cli_explain_falls_back_to_the_sample_and_says_so(run_dir, tmp_path, capsys, monkeypatch):
    from featuremaps import data
    from featuremaps.data import datasets
    monkeypatch.setattr(datasets, "SHARED_MNIST_DIR", None)
    monkeypatch.setenv("FEATUREMAPS_DATA", str(tmp_path / "empty-cache"))
    path, model = run_dir
    code, out, err = _cli(["explain", str(path), "--layer", "F6", "--map", "2", "--index", "5"], capsys)
    assert code == 0, err
    val = data.load("sample", "val", progress=False)
    assert f"input: embedded sample's val split, image 5 (label {int(val.labels[5])})" in out
    assert "official MNIST test set was not found" in err
    assert "y[F6, 2] = b + Σ_i x_i · w_i,2" in out and "more terms summing to" in out


@pytest.mark.parametrize("argv,message", [
    (["--layer", "C9", "--map", "0", "--at", "0,0", "--index", "0"],
     "explain: no layer named 'C9'; valid names: pad, C1"),
    (["--layer", "C3", "--map", "0", "--index", "0"], r"needs a position: pass --at ROW,COL"),
    (["--layer", "C3", "--map", "16", "--at", "0,0", "--index", "0"], r"--map must be in \[0, 15\]"),
    (["--layer", "C3", "--map", "0", "--at", "10,0", "--index", "0"], r"row must be in \[0, 9\]"),
    (["--layer", "C3", "--map", "0", "--at", "4", "--index", "0"], "expected ROW,COL"),
    (["--layer", "C1_act", "--map", "0", "--at", "0,0", "--index", "0"], "cannot explain layer 'C1_act' of kind Tanh"),
    pytest.param(["--layer", "C3", "--map", "0", "--at", "0,0", "--index", "10000"], r"--index must be in \[0, 9999\]",
                 marks=pytest.mark.shared_mnist),  # the official test set's 10,000 images
    (["--layer", "C3", "--map", "0", "--at", "0,0"], "one of the arguments --image --index is required"),
    (["--layer", "C3", "--map", "0", "--at", "0,0", "--image", "/nonexistent.png"], "no such file"),
])
def test_cli_explain_errors_are_one_line(run_dir, capsys, argv, message):
    import re
    path, _ = run_dir
    code, out, err = _cli(["explain", str(path)] + argv, capsys)
    assert code == 2
    assert re.search(message, err), err
    assert err.startswith("featuremaps: error: ") and "Traceback" not in err
