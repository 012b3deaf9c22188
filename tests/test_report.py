"""The HTML report: self-contained, small, and every embedded number equals the engine's / explain()'s.

The page computes each decomposition from the embedded maps and kernels; these tests check that those
embedded numbers are exactly the ones `featuremaps.inspect.explain` uses (window, kernel, bias, engine
value) and that the sums they give match `explain()`'s partial sums. The browser test
(`test_report_browser.py`) checks what the page actually displays.
"""
from __future__ import annotations

import argparse
import base64
import json
import re

import numpy as np
import pytest

from featuremaps import models
from featuremaps.data.sample import load_sample_arrays
from featuremaps.inspect import explain
from featuremaps.inspect.connectivity import connections, filters_for_output
from featuremaps.report import WEIGHT_BUDGET, build_report, report_data, report_html
from tests.oracles import assert_sum_close, sum_rtol


def _digit(i: int = 0) -> tuple[np.ndarray, int]:
    images, labels = load_sample_arrays("val")
    return images[i].astype(np.float32) / 255.0, int(labels[i])  # (28, 28, 1)


@pytest.fixture(scope="module")
def lenet5():
    return models.get("lenet5", rng=np.random.default_rng(3))


@pytest.fixture(scope="module")
def lenet():
    return models.get("lenet", rng=np.random.default_rng(4))


def _payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="fm-data">(.*?)</script>', html, re.S)
    assert m, "the page has no embedded data block"
    assert "</" not in m.group(1) and "<!--" not in m.group(1)
    return json.loads(m.group(1))


def _decode(b64: str, dtype: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def _layer(data: dict, name: str) -> dict:
    return next(entry for entry in data["layers"] if entry["name"] == name)


# --- self-contained -------------------------------------------------------------------------------

def test_page_is_self_contained(lenet5, tmp_path):
    x, y = _digit()
    path = build_report(lenet5, x, tmp_path / "r.html", label=y)
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert not re.search(r"<link\b", html, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.I)
    assert not re.search(r"@import", html, re.I)
    assert "http://" not in html and "https://" not in html
    # a Content-Security-Policy that forbids every fetch, so a future edit cannot quietly add one
    assert "default-src 'none'" in html
    data = _payload(html)
    assert data["format"] == "featuremaps-report" and data["label"] == y


def test_lenet_report_size_and_content(lenet, tmp_path):
    x, y = _digit(1)
    path = build_report(lenet, x, tmp_path / "lenet.html", label=y, title="LeNet <test> & co")
    size = path.stat().st_size
    assert size < 5_000_000, f"report is {size / 1e6:.2f} MB"
    html = path.read_text(encoding="utf-8")
    assert "<title>LeNet &lt;test&gt; &amp; co</title>" in html
    data = _payload(html)
    names = [entry["name"] for entry in data["layers"]]
    assert names == ["input"] + [n for n, _ in lenet.named_children()]
    kinds = {entry["name"]: entry["op"] and entry["op"]["type"] for entry in data["layers"]}
    assert kinds["conv1"] == kinds["conv2"] == "conv"
    assert kinds["fc1"] == kinds["fc2"] == "dense"  # lenet's weights fit the budget whole
    assert kinds["pool1"] == "pool" and kinds["pool1_act"] == "elementwise" and kinds["flatten"] == "flatten"
    assert _layer(data, "conv1")["shape"] == [24, 24, 20] and _layer(data, "conv2")["shape"] == [8, 8, 50]
    # every layer's embedded output is the engine's own output, bit for bit
    from featuremaps.inspect.activations import activations
    for act, entry in zip(activations(lenet, x), data["layers"]):
        got = _decode(entry["values"], data["dtype"], entry["shape"])
        np.testing.assert_array_equal(got, act.array)
    assert data["prediction"]["class"] == int(np.argmax(activations(lenet, x)[-1].array))
    probs = data["prediction"]["probs"]  # float64: exp, the division by Σ exp, this sum: 3 roundings a class
    assert abs(sum(probs) - 1.0) <= sum_rtol(np.float64, 3 * len(probs))


# --- the embedded numbers are explain()'s ---------------------------------------------------------

def _conv_check(model, data, layer: str, out_map: int, position: tuple[int, int]):
    """Rebuild every term of `explain(model, x, layer, out_map, position)` from the embedded data."""
    entry = _layer(data, layer)
    k = entry["index"]
    prev = data["layers"][k - 1]
    x_in = _decode(prev["values"], data["dtype"], prev["shape"])
    op = entry["op"]
    kh, kw = op["kernel"]
    c_in, c_out = op["in_maps"], entry["shape"][2]
    kernels = _decode(op["kernels"], data["dtype"], (kh, kw, c_in, c_out))
    conn = np.array([ch == "1" for ch in op["connections"]]).reshape(c_in, c_out)
    lay = dict(model.named_children())[layer]
    np.testing.assert_array_equal(conn, connections(lay))
    ref_kernels, connected = filters_for_output(lay, out_map)
    np.testing.assert_array_equal(kernels[:, :, :, out_map], ref_kernels)
    return x_in, kernels, op, connected, entry


@pytest.mark.parametrize("layer,out_map,position", [("C1", 2, (0, 0)), ("C1", 5, (13, 27)),
                                                    ("C3", 7, (4, 6)), ("C3", 15, (9, 0)), ("C5", 100, (0, 0))])
def test_embedded_conv_data_equals_explain(lenet5, layer, out_map, position):
    x, _ = _digit(2)
    data = report_data(lenet5, x, references=False)
    x_in, kernels, op, connected, entry = _conv_check(lenet5, data, layer, out_map, position)
    ex = explain(lenet5, x, layer, out_map, position)
    assert [t.input_map for t in ex.terms] == connected
    (sh, sw), (dh, dw) = op["stride"], op["dilation"]
    top, left = op["pad"][0][0], op["pad"][1][0]
    kh, kw = op["kernel"]
    r, c = position
    rows = r * sh + np.arange(kh) * dh - top  # (kh,)
    cols = c * sw + np.arange(kw) * dw - left  # (kw,)
    inside = (rows[:, None] >= 0) & (rows[:, None] < x_in.shape[0]) & (cols >= 0) & (cols < x_in.shape[1])
    prev_op = data["layers"][entry["index"] - 1]["op"]
    (zt, zb), (zl, zr) = prev_op["pad"] if prev_op and prev_op["type"] == "zeropad" else ((0, 0), (0, 0))
    # explain() (and the page) also show the zeros a ZeroPad2D layer right before the conv added as padding
    real = (inside & (rows[:, None] >= zt) & (rows[:, None] < x_in.shape[0] - zb)
            & (cols >= zl) & (cols < x_in.shape[1] - zr))
    total, magnitude = 0.0, 0.0
    for term in ex.terms:
        i = term.input_map
        window = np.where(inside, x_in[np.clip(rows, 0, x_in.shape[0] - 1)[:, None],
                                       np.clip(cols, 0, x_in.shape[1] - 1)[None, :], i], 0)
        np.testing.assert_array_equal(window, term.window)  # the same input numbers...
        zero_pad_is_padding = bool((ex.geometry or {}).get("zero_pad"))
        np.testing.assert_array_equal(~(real if zero_pad_is_padding else inside), term.padded)
        np.testing.assert_array_equal(kernels[:, :, i, out_map], term.kernel)  # ...and the same weights
        products = window.astype(np.float64) * kernels[:, :, i, out_map]  # exact: float32 × float32 fits float64
        s = float(np.sum(products))  # what the page adds up (in float64, as the page's JavaScript does)
        # explain sums the same exact products in float64 in another order: only float64 rounding apart
        # (a float32 partial sum would be ~1e-8 off, 10⁶ times more)
        assert_sum_close(s, term.partial_sum, np.sum(np.abs(products)), np.float64, kh * kw, err_msg=f"map {i}")
        total += s
        magnitude += float(np.sum(np.abs(products)))
    bias = float(_decode(op["bias"], data["dtype"], (-1,))[out_map])  # float: bias + total stays float64
    assert bias == ex.bias  # the same float32 number, widened
    # the sum of the partial sums and the bias: every tap once more, then one addition per map and the bias
    assert_sum_close(bias + total, ex.pre_activation, magnitude + abs(bias), np.float64,
                     kh * kw + len(ex.terms) + 1)
    engine = _decode(entry["values"], data["dtype"], entry["shape"])[r, c, out_map]
    assert engine == ex.engine_value


def test_embedded_dense_data_equals_explain(lenet):
    x, _ = _digit(3)
    data = report_data(lenet, x, references=False)
    entry = _layer(data, "fc1")
    prev = data["layers"][entry["index"] - 1]
    v = _decode(prev["values"], data["dtype"], prev["shape"])
    w = _decode(entry["op"]["weight"], data["dtype"], (800, 500))
    b = _decode(entry["op"]["bias"], data["dtype"], (500,))
    for unit in (0, 123, 499):
        ex = explain(lenet, x, "fc1", unit)
        products = v.astype(np.float64) * w[:, unit]  # exact (float32 × float32), as explain's
        total = float(np.sum(products))
        # 800 exact products and the bias summed in float64, in two orders: float64 rounding apart
        bias = float(b[unit])  # a float: a NumPy float32 plus a float would round the sum to float32
        assert_sum_close(bias + total, ex.pre_activation, np.sum(np.abs(products)) + abs(bias), np.float64,
                         800 + 1, err_msg=f"fc1 unit {unit}")
        assert b[unit] == ex.bias
        assert _decode(entry["values"], data["dtype"], entry["shape"])[unit] == ex.engine_value


def test_references_are_explain_to_dict(lenet):
    x, _ = _digit(4)
    data = report_data(lenet, x)
    refs = {r["layer"]: r for r in data["references"]}
    assert set(refs) == {"conv1", "conv2", "fc1", "fc2"}
    for name in ("conv1", "conv2"):
        acts = _decode(_layer(data, name)["values"], data["dtype"], _layer(data, name)["shape"])
        m = int(np.argmax(acts.reshape(-1, acts.shape[2]).max(axis=0)))
        r, c = np.unravel_index(int(np.argmax(acts[:, :, m])), acts.shape[:2])
        ref = refs[name]
        assert ref["out_map"] == m and list(ref["position"]) == [r, c]
        expected = json.loads(json.dumps(explain(lenet, x, name, m, (int(r), int(c))).to_dict()))
        # report_data ran the same explain() on the same input: the same numbers, bit for bit
        assert ref["engine_value"] == expected["engine_value"]
        assert ref["pre_activation"] == expected["pre_activation"]
        assert ref["terms"] == [{"input_map": t["input_map"], "partial_sum": t["partial_sum"]}
                                for t in expected["terms"]]


def test_float64_model_embeds_float64(lenet5):
    m64 = models.get("lenet5", rng=np.random.default_rng(3))
    for p in m64.parameters():
        p.data = p.data.astype(np.float64)
    x, _ = _digit(0)
    data = report_data(m64, x.astype(np.float64), references=False)
    assert data["dtype"] == "float64"
    c1 = _layer(data, "C1")
    assert len(base64.b64decode(c1["values"])) == 8 * int(np.prod(c1["shape"]))


def test_weight_budget_omits_large_layers(lenet, monkeypatch):
    import featuremaps.report.build as build
    monkeypatch.setattr(build, "WEIGHT_BUDGET", 200_000)  # conv1+conv2 fit (0.1 MB); fc1 (1.6 MB) does not
    x, _ = _digit(0)
    data = build.report_data(lenet, x, references=False)
    assert _layer(data, "conv2")["op"]["type"] == "conv"
    fc1 = _layer(data, "fc1")["op"]
    assert fc1["type"] == "omitted" and "featuremaps explain" in fc1["reason"]
    assert WEIGHT_BUDGET == 3_000_000


def test_non_finite_values_do_not_break_the_page(lenet):
    x, _ = _digit(0)
    x = x.copy()
    x[3, 4, 0] = np.nan
    html = report_html(lenet, x)
    data = _payload(html)  # strict JSON: NaN only inside the base64 arrays
    assert np.isnan(_decode(data["layers"][0]["values"], data["dtype"], (28, 28, 1))[3, 4, 0])
    assert data["prediction"] is None or np.isfinite(data["prediction"]["probs"]).all()


# --- errors ---------------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors(lenet, tmp_path):
    x, _ = _digit(0)
    with pytest.raises(ValueError, match=r"shape"):
        build_report(lenet, np.zeros((32, 32, 3), np.float32), tmp_path / "a.html")
    with pytest.raises(ValueError, match=r"\.html"):
        build_report(lenet, x, tmp_path / "a.png")
    with pytest.raises(ValueError, match="folder"):
        build_report(lenet, x, tmp_path / "missing" / "a.html")


# --- CLI ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, lenet):
    from featuremaps.checkpoint import save_checkpoint
    d = tmp_path_factory.mktemp("run")
    save_checkpoint(d, lenet, epoch=1, meta={"dataset": "sample", "model_name": "lenet",
                                              "normalization": {"mean": [0.1307], "std": [0.3081]}})
    return d


def test_cli_writes_report(checkpoint, lenet, tmp_path, capsys):
    from featuremaps.cli import main
    out = tmp_path / "report.html"
    assert main(["report", str(checkpoint), "--split", "val", "--index", "3", "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    data = _payload(out.read_text(encoding="utf-8"))
    images, labels = load_sample_arrays("val")
    from featuremaps.data import normalize
    x = normalize(images[3:4], 0.1307, 0.3081)[0]  # the checkpoint's normalisation, written out
    got = _decode(data["layers"][0]["values"], data["dtype"], (28, 28, 1))
    np.testing.assert_array_equal(got, x)  # the same float32 arithmetic as predict's: the same numbers
    assert data["label"] == int(labels[3]) and data["classes"] == [str(d) for d in range(10)]
    assert "lenet" in data["title"] and "val split, image 3" in data["title"]


def test_cli_image_file_and_initial_unit(checkpoint, tmp_path):
    from featuremaps.cli import main
    from featuremaps.data import write_idx
    images, _ = load_sample_arrays("val")
    idx = write_idx(tmp_path / "two-images-idx3-ubyte", images[:2, :, :, 0])
    out = tmp_path / "r.html"
    assert main(["report", str(checkpoint), "--image", str(idx), "--index", "1", "--layer", "conv2",
                 "--map", "7", "--position", "2,3", "-o", str(out)]) == 0
    data = _payload(out.read_text(encoding="utf-8"))
    assert data["initial"] == {"layer": "conv2", "out_map": 7, "position": [2, 3]}
    first = data["references"][0]
    assert (first["layer"], first["out_map"], first["position"]) == ("conv2", 7, [2, 3])
    assert data["label"] is None


@pytest.mark.parametrize("argv,message", [
    (["--layer", "conv9"], "no layer named 'conv9'"),
    (["--layer", "conv2", "--map", "50"], "--map must be in [0, 49]"),
    (["--layer", "conv2", "--map", "1", "--position", "8,0"], "position"),
    (["--layer", "conv2", "--map", "1", "--position", "x"], "ROW,COL"),
    (["--map", "1"], "need --layer"),
    (["--index", "500"], "--index must be in [0, 499]"),
    (["-o", "report.png"], ".html"),
])
def test_cli_errors_are_one_line(checkpoint, tmp_path, capsys, argv, message):
    from featuremaps.cli import main
    argv = ["report", str(checkpoint), "--split", "val"] + argv
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "r.html")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("featuremaps: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_cli_missing_checkpoint(tmp_path, capsys):
    from featuremaps.cli import main
    assert main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")]) == 2
    assert "featuremaps: error:" in capsys.readouterr().err


def test_add_parser_registers_on_any_subparsers(checkpoint, tmp_path):
    from featuremaps.commands import report as cmd
    parser = argparse.ArgumentParser(prog="x")
    cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(checkpoint), "--split", "val", "-o", str(tmp_path / "r.html")])
    assert args.func(args) == 0 and (tmp_path / "r.html").exists()
