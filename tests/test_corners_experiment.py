"""examples/corners_experiment.py: its measurements are what their docstrings define."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).parents[1] / "examples" / "corners_experiment.py"


@pytest.fixture(scope="module")
def ce():
    spec = importlib.util.spec_from_file_location("corners_experiment", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bar_kernel(horizontal: bool) -> np.ndarray:
    """A 5 × 5 bright-bar detector: +1 on the middle row (or column), −0.5 on the rows beside it."""
    k = np.zeros((5, 5))
    k[2], k[1], k[3] = 1.0, -0.5, -0.5
    return k if horizontal else k.T


@pytest.fixture(scope="module")
def edge_model(ce):
    """`build`, then conv1 map 0 a horizontal and map 1 a vertical bar detector, the other maps off."""
    model = ce.build(np.random.default_rng(0))
    conv1 = model[0]
    w = np.zeros(conv1.weight.data.shape, dtype=conv1.weight.data.dtype)  # (5, 5, 1, 8)
    w[:, :, 0, 0], w[:, :, 0, 1] = bar_kernel(True), bar_kernel(False)
    conv1.weight.data[...] = w
    conv1.bias.data[...] = 0.0
    return model


def test_tuning_curves_find_the_known_orientations(ce, edge_model):
    t = ce.tuning_curves(edge_model)
    assert t["curves"].shape == (ce.MAPS1, 12)
    assert t["preferred"][0] == 0.0 and t["preferred"][1] == 90.0  # 0° = horizontal bar (corner_probe)
    assert t["osi"][0] >= ce.OSI_THRESHOLD and t["osi"][1] >= ce.OSI_THRESHOLD
    assert np.all(t["osi"][2:] == 0.0)  # zero kernels: flat (zero) curves
    assert list(t["selective"]) == [0, 1]


def test_orientation_selectivity_and_difference(ce):
    curves = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    assert np.allclose(ce.orientation_selectivity(curves), [0.75, 0.0, 0.0])
    assert ce.orientation_difference(10, 170) == 20 and ce.orientation_difference(0, 90) == 90


def test_corner_selectivity_follows_its_definition(ce):
    model = ce.build(np.random.default_rng(3))
    s = ce.corner_selectivity(model, centres=[(13.5, 13.5)])
    for k in ("corner", "cross", "bar"):
        assert s[k].shape == (ce.MAPS2, 4, 3)
    flat = s["corner"].reshape(ce.MAPS2, -1)  # (maps, 12)
    rows, pref = np.arange(ce.MAPS2), flat.argmax(axis=1)
    c = flat[rows, pref]
    other = np.maximum(s["cross"].reshape(ce.MAPS2, -1)[rows, pref], s["bar"].reshape(ce.MAPS2, -1)[rows, pref])
    expected = np.where(c + other > 0, (c - other) / np.where(c + other > 0, c + other, 1), 0)
    assert np.allclose(s["csi"], expected)
    assert s["best"] == int(np.argmax(s["csi"]))
    assert list(s["selective"]) == list(np.flatnonzero(s["csi"] > ce.CSI_THRESHOLD))
    assert tuple(s["preferred"][0]) in {(p, a) for p in (0, 90, 180, 270) for a in (60, 90, 120)}


def test_remix_partial_sums_add_up_to_the_engine_value(ce):
    model = ce.build(np.random.default_rng(4))
    r = ce.remix(model, map2=2)
    assert r["map2"] == 2 and r["contributions"].shape == (ce.MAPS1,)
    total = r["bias"] + r["contributions"].sum()
    assert total == pytest.approx(r["engine_value"], rel=1e-4, abs=1e-4)
    assert r["pre_activation"] == pytest.approx(total, rel=1e-9, abs=1e-9)
    mags = np.abs(r["contributions"][r["order"]])
    assert np.all(np.diff(mags) <= 0)
    assert r["top"] == list(np.argsort(-r["contributions"], kind="stable")[:2])
    assert r["differ"] == (r["difference"] >= ce.DIFFER_DEGREES)


def test_quick_run_prints_the_table_and_findings(ce, capsys):
    ce.main(["--quick"])
    out = capsys.readouterr().out
    assert "test acc %" in out and "corner %" in out and "bars %" in out
    assert "2-conv" in out and "±" in out
    assert "seed 0: (1)" in out and "(2)" in out and "(3) remix" in out
    assert "remix confirmed" in out and "of 1 seed(s)" in out


def test_segment_match(ce):
    assert ce.segment_match([0, 90], [0.9, 0.8], (90, 0))
    assert ce.segment_match([170, 80], [0.9, 0.8], (0, 90))  # within 22.5°, modulo 180°
    assert not ce.segment_match([0, 90], [0.9, 0.3], (0, 90))  # one input untuned
    assert not ce.segment_match([0, 10], [0.9, 0.9], (0, 90))  # both on the same segment
    assert not ce.segment_match([0, 90], [0.9, 0.9], (0, 60))  # 90° is 30° from 60°


def test_remix_strong_criterion_with_hand_set_kernels(ce, edge_model):
    """conv2 map 0 adds conv1 maps 0 (horizontal) and 1 (vertical) at its kernel's centre; on the
    0°/90° corner both are its top inputs, tuned, one per segment (strong criterion met); on the
    0°/60° corner the vertical map is 30° from either segment (weak criterion met, strong not)."""
    conv2 = edge_model[3]
    saved = conv2.weight.data.copy(), conv2.bias.data.copy()
    try:
        w = np.zeros_like(conv2.weight.data)  # (5, 5, 8, 16)
        w[2, 2, 0, 0], w[2, 2, 1, 0] = 1.0, 1.0
        conv2.weight.data[...], conv2.bias.data[...] = w, 0.0
        tuning = ce.tuning_curves(edge_model)
        for (phi, angle), expected in (((0.0, 90.0), True), ((0.0, 60.0), False)):
            sel = {"best": 0, "preferred": np.tile([phi, angle], (ce.MAPS2, 1))}
            r = ce.remix(edge_model, tuning=tuning, selectivity=sel)
            assert sorted(r["top"]) == [0, 1] and r["tuned"]
            assert r["matches_segments"] is expected and r["orientations_match"] is expected
            assert r["segments"] == (phi, (phi + angle) % 180)
            assert r["differ"]
    finally:
        conv2.weight.data[...], conv2.bias.data[...] = saved
