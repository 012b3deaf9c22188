"""inspect.summary: LeNet-5's Table I figures, receptive fields, mismatches, JSON, and no forward pass."""
import json

import numpy as np
import pytest

from featuremaps import models, nn, tables
from featuremaps.inspect import Summary, summary

# LeCun et al. 1998, section II.B: (trainable parameters, connections) per layer
PAPER = {"C1": (156, 122_304), "S2": (12, 5_880), "C3": (1_516, 151_600), "S4": (32, 2_000),
         "C5": (48_120, 48_120), "F6": (10_164, 10_164)}


def test_lenet5_reproduces_the_paper():
    s = summary(models.get("lenet5"))
    assert isinstance(s, Summary) and s.error is None
    for name, (params, connections) in PAPER.items():
        assert (s[name]["params"], s[name]["connections"]) == (params, connections), name
    assert s["C1"]["output_shape"] == [28, 28, 6] and s["S2"]["output_shape"] == [14, 14, 6]
    assert s["C3"]["output_shape"] == [10, 10, 16] and s["S4"]["output_shape"] == [5, 5, 16]
    assert s["C5"]["output_shape"] == [1, 1, 120] and s["F6"]["output_shape"] == [84]
    assert s["C3"]["kernel"] == [5, 5, 6, 16]
    assert s["C3"]["links"] == "6→16 maps, 60 of 96 links"
    assert s["C3"]["params_formula"] == "60·(5·5)+16 = 1,516"
    assert s["C1"]["params_formula"] == "6·(1·5·5)+6 = 156"
    assert s["F6"]["params_formula"] == "120·84+84 = 10,164"
    assert "sums over its 3–6 connected input maps" in s["C3"]["note"]
    assert "6·16 = 96 maps" in s["C3"]["note"]
    assert s.totals["params"] == 60_850 == models.get("lenet5").num_parameters()
    # the paper's 340,908 connections, with a dense OUTPUT (84·10 + 10) instead of the RBF layer (84·10)
    assert s.totals["connections"] == 340_908 + 10
    assert s.output_shape == [10]
    text = str(s)
    for token in ("C3 (Conv2D)", "122,304", "151,600", "1,516", "6→16 maps, 60 of 96 links", "60,850"):
        assert token in text


def test_receptive_fields_on_lenet():
    s = summary(models.get("lenet"))
    fields = [(r["name"], r["receptive_field"]) for r in s.rows]
    assert fields[:6] == [
        ("conv1", {"size": [5, 5], "jump": [1, 1]}), ("pool1", {"size": [6, 6], "jump": [2, 2]}),
        ("pool1_act", {"size": [6, 6], "jump": [2, 2]}), ("conv2", {"size": [14, 14], "jump": [2, 2]}),
        ("pool2", {"size": [16, 16], "jump": [4, 4]}), ("pool2_act", {"size": [16, 16], "jump": [4, 4]})]
    assert s["fc1"]["receptive_field"] == "global"
    assert "14/2" in str(s) and "16/4" in str(s)


def test_receptive_field_with_stride_dilation_and_rectangles():
    m = nn.Sequential([("a", nn.Conv2D(1, 2, 3, dilation=2)), ("b", nn.Conv2D(2, 2, (3, 1), stride=(2, 1))),
                       ("c", nn.MaxPool2D(2)), ("d", nn.AvgPool2D(3, stride=1))], input_shape=(40, 40, 1))
    s = summary(m)
    assert s["a"]["receptive_field"] == {"size": [5, 5], "jump": [1, 1]}
    assert s["b"]["receptive_field"] == {"size": [7, 5], "jump": [2, 1]}
    assert s["c"]["receptive_field"] == {"size": [9, 6], "jump": [4, 2]}
    assert s["d"]["receptive_field"] == {"size": [17, 10], "jump": [4, 2]}
    assert "17×10/4×2" in str(s)


def test_mismatch_rows_stop_and_error_names_layer():
    s = summary(models.get("lenet"), input_shape=(32, 32, 1))
    assert [r["name"] for r in s.rows][-1] == "flatten" and s.rows[-1]["output_shape"] == [1250]
    assert s.error == "layer 'fc1' (Dense): got input shape (1250,); needs 800 features (in_features); it has 1250"
    assert s.output_shape is None
    assert str(s).endswith("shape mismatch: " + s.error)
    m = nn.Sequential([("flat", nn.Flatten()), ("fc", nn.Dense(400, 10))])
    assert summary(m, (16, 16, 1)).error.startswith("layer 'fc' (Dense): got input shape (256,); needs 400")
    small = summary(models.get("lenet5"), input_shape=(8, 8, 1))  # padded 12×12, C1 → 8×8, S2 → 4×4: too small for C3
    assert [r["name"] for r in small.rows] == ["pad", "C1", "C1_act", "S2", "S2_act"]
    assert "layer 'C3' (Conv2D): got input shape (4, 4, 6); needs a padded input of at least 5×5" in small.error
    wrong_c = summary(models.get("lenet5"), input_shape=(28, 28, 3))
    assert wrong_c.rows[-1]["name"] == "pad" and "needs 1 input channels" in wrong_c.error


def test_nested_sequential_and_single_layer():
    inner = nn.Sequential([("conv", nn.Conv2D(2, 4, 3, groups=2)), ("act", nn.ReLU())])
    m = nn.Sequential([("block", inner), ("fc", nn.Dense(4, 2))], input_shape=(5, 5, 2))
    s = summary(m)
    assert [r["name"] for r in s.rows] == ["block.conv", "block.act"]
    assert s.error == "layer 'fc' (Dense): got input shape (3, 3, 4); needs a vector of 4 features " \
                      "(in_features); put a Flatten or a global pool before it"
    row = s["block.conv"]
    assert row["links"] == "groups=2" and row["params"] == 4 * 1 * 9 + 4
    assert row["params_formula"] == "4·(2/2·3·3)+4 = 40" and "over the 1 maps of its group" in row["note"]
    one = summary(nn.Conv2D(3, 8, 3, bias=False), input_shape=(6, 6, 3))
    assert one.rows[0]["name"] == "Conv2D" and one.rows[0]["params_formula"] == "8·(3·3·3) = 216"
    assert one.rows[0]["macs"] == 4 * 4 * 8 * 27 and one.rows[0]["connections"] == 4 * 4 * 216


def test_json_round_trip_and_totals():
    s = summary(models.get("cnn"))
    d = json.loads(json.dumps(s.to_dict()))
    assert d == s.to_dict() and json.loads(s.to_json()) == d
    assert d["totals"]["params"] == sum(r["params"] for r in d["rows"]) == models.get("cnn").num_parameters()
    assert d["input_shape"] == [28, 28, 1] and d["error"] is None
    assert s["bn1"]["buffers"] == 64 and s["bn1"]["params"] == 64


def test_runs_no_forward_pass_and_needs_a_shape():
    class Exploding(nn.Conv2D):
        def forward(self, x):
            raise AssertionError("summary must not run the model")
    m = nn.Sequential([("c", Exploding(1, 2, 3))])
    with pytest.raises(ValueError, match="input_shape not given"):
        summary(m)
    assert summary(m, (5, 5, 1))["c"]["output_shape"] == [3, 3, 2]
    with pytest.raises(TypeError, match="featuremaps.nn.Module"):
        summary("lenet5")


def test_table_counts_use_connected_kernels_only():
    t = tables.random(8, 4, 3, np.random.default_rng(0))
    s = summary(nn.Sequential([("c", nn.Conv2D(8, 4, 3, connections=t))]), (5, 5, 8))
    assert s["c"]["params"] == 12 * 9 + 4 and s["c"]["macs"] == 3 * 3 * 12 * 9
    assert "over its 3 connected input maps" in s["c"]["note"]
