"""`featuremaps._json.jsonable`, the one conversion to JSON types that configs, explanations, the
report and the CLI's `--json` output share."""
import json
import math

import numpy as np
import pytest

from featuremaps import nn
from featuremaps._json import jsonable
from featuremaps.commands._common import print_json


def test_nested_numpy_values_become_plain_json_types():
    value = {"a": (1, np.int64(2), [np.float32(0.5)]), 3: np.array([[1, 2]], np.int16), "b": np.bool_(True),
             "s": "text", "n": None}
    out = jsonable(value)
    assert out == {"a": [1, 2, [0.5]], "3": [[1, 2]], "b": True, "s": "text", "n": None}
    assert type(out["a"][1]) is int and type(out["a"][2][0]) is float and type(out["b"]) is bool
    assert json.loads(json.dumps(out, allow_nan=False)) == out


@pytest.mark.parametrize("nonfinite, expected", [("name", ["NaN", "Infinity", "-Infinity", 1.5]),
                                                 ("null", [None, None, None, 1.5])])
def test_nonfinite_floats_by_name_or_as_null(nonfinite, expected):
    values = [math.nan, np.float32(np.inf), np.array([-np.inf]), np.float64(1.5)]
    out = jsonable(values, nonfinite=nonfinite)
    assert out[:2] + out[2] + out[3:] == expected
    json.dumps(out, allow_nan=False)


def test_a_bad_mode_is_named():
    with pytest.raises(ValueError, match="nonfinite must be 'name' or 'null'; received 'drop'"):
        jsonable(1.0, nonfinite="drop")


def test_the_cli_prints_nonfinite_numpy_floats_as_null(capsys):
    print_json({"loss": np.float32("nan"), "acc": np.float32(0.25), "curve": np.array([1.0, np.inf])})
    assert json.loads(capsys.readouterr().out) == {"loss": None, "acc": 0.25, "curve": [1.0, None]}


def test_layer_configs_round_trip_through_json():
    model = nn.Sequential([("c", nn.Conv2D(1, 2, (3, 2), stride=np.int64(2), padding=((1, 0), (0, 1)))),
                           ("p", nn.MaxPool2D(2))], input_shape=(8, 8, 1))
    cfg = model.get_config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert nn.from_config(json.dumps(cfg)).get_config() == cfg
