"""The HTML report on a colour model (issue 13): the 3-channel input is one RGB picture (its channels
R, G, B), the kernels of the conv that reads it are drawn as RGB tiles beside their three channel
slices, and the decomposition of a unit on a colour edge labels its three terms R, G, B, whose partial
sums add up with the bias to the engine's value.

The browser tests are in `test_report_colour_browser.py`.
"""
from __future__ import annotations

import base64
import json
import os
import re

import numpy as np
import pytest

from featuremaps import models, nn
from featuremaps.data.sample import load_sample_arrays
from featuremaps.data.synthetic import colour_conjunctions
from featuremaps.report import report_data, report_html

CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI") == "true"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
KH = KW = 5
BIAS0 = 0.05


def _colour_model() -> nn.Sequential:
    """Conv2D(3→16, 5×5) → ReLU → global max → Dense(16→3); filter 0 is hand-set: a red/green edge
    detector whose middle column is zero (w_R > 0 and w_G < 0 in the left columns)."""
    model = nn.Sequential([nn.Conv2D(3, 16, 5, rng=np.random.default_rng(0)), nn.ReLU(), nn.GlobalMaxPool2D(),
                           nn.Dense(16, 3, rng=np.random.default_rng(1))], input_shape=(32, 32, 3))
    conv = dict(model.named_children())["0"]
    w, b = conv.weight.data, conv.bias.data
    w[:, :, :, 0] = 0.0
    w[:, :2, 0, 0], w[:, 3:, 0, 0] = 0.2, -0.2   # R: left minus right
    w[:, :2, 1, 0], w[:, 3:, 1, 0] = -0.1, 0.1   # G: right minus left
    w[:, :2, 2, 0] = 0.03                        # B: a little, so that all three terms show
    b[0] = BIAS0
    return model


def _colour_image() -> np.ndarray:
    images, _ = colour_conjunctions(1, 0)
    return images[0].astype(np.float32) / 255.0  # (32, 32, 3) in [0, 1], as the report takes it


def _payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="fm-data">(.*?)</script>', html, re.S)
    assert m, "the page has no embedded data block"
    return json.loads(m.group(1))


def _layer(data: dict, name: str) -> dict:
    return next(e for e in data["layers"] if e["name"] == name)


@pytest.fixture(scope="module")
def colour():
    return _colour_model(), _colour_image()


# --- the data the page gets -----------------------------------------------------------------------

def test_colour_input_is_flagged_rgb_and_its_conv_embeds_3_channel_kernels(colour):
    model, x = colour
    data = _payload(report_html(model, x))
    inp = _layer(data, "input")
    assert inp["rgb"] is True and inp["channels"] == ["R", "G", "B"] and inp["shape"] == [32, 32, 3]
    assert all(e["rgb"] is False for e in data["layers"][1:])  # only the image is a colour picture
    op = _layer(data, "0")["op"]
    assert op["type"] == "conv" and op["in_maps"] == 3 and op["kernel"] == [KH, KW]
    k = np.frombuffer(base64.b64decode(op["kernels"]), dtype="<f4").reshape(KH, KW, 3, 16)
    np.testing.assert_array_equal(k, dict(model.named_children())["0"].weight.data)
    assert k[0, 0, 0, 0] > 0 > k[0, 0, 1, 0] and not k[:, 2, :, 0].any()


def test_zero_padding_of_a_colour_input_stays_rgb():
    model = nn.Sequential([nn.ZeroPad2D(2), nn.Conv2D(3, 4, 5, rng=np.random.default_rng(2))], input_shape=(12, 12, 3))
    data = report_data(model, _colour_image()[:12, :12])
    assert [e["rgb"] for e in data["layers"]] == [True, True, False]


def test_grey_model_gets_no_rgb_flag():
    images, _ = load_sample_arrays("val")
    model = models.get("lenet", rng=np.random.default_rng(4))
    data = report_data(model, images[0].astype(np.float32) / 255.0, references=False)
    assert all(e["rgb"] is False and "channels" not in e for e in data["layers"])


def test_a_4_channel_input_is_not_rgb():
    model = nn.Sequential([nn.Conv2D(4, 2, 3, rng=np.random.default_rng(3))], input_shape=(8, 8, 4))
    data = report_data(model, np.random.default_rng(0).random((8, 8, 4), dtype=np.float32), references=False)
    assert [e["rgb"] for e in data["layers"]] == [False, False]


# --- in a real browser --------------------------------------------------------------------------------
