"""Notebook displays: the short `repr()` and the `_repr_html_()` of models, `Summary` and `Explanation`.

Each HTML display is parsed with the standard library's `html.parser` into a small tree (every
element must close, in order), and its tables are compared with the objects' own data. Thumbnails
are decoded with Pillow, a PNG decoder independent of ours, and their colours compared with the
HTML report's colour scale, written here a second way (`np.interp` over the report's stops, which
are read from the report's script). A real browser (Debian's chromium) then renders all three and
checks the thumbnails against the report's own JavaScript colour function.
"""
from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from featuremaps import _html, models, nn
from featuremaps.data.sample import load_sample_arrays
from featuremaps.inspect import explain, summary
from featuremaps.report._js import JS

CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# --------------------------------------------------------------------------------------------------
# A strict little HTML tree
# --------------------------------------------------------------------------------------------------
class Node:
    def __init__(self, tag: str, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def all(self, tag: str, cls: str | None = None) -> list["Node"]:
        out = []
        for c in self.children:
            if isinstance(c, Node):
                if c.tag == tag and (cls is None or cls in c.classes()):
                    out.append(c)
                out += c.all(tag, cls)
        return out

    def one(self, tag: str, cls: str | None = None) -> "Node":
        found = self.all(tag, cls)
        assert len(found) == 1, f"expected one <{tag} class={cls}>, found {len(found)}"
        return found[0]

    def cells(self) -> list["Node"]:
        return [c for c in self.children if isinstance(c, Node) and c.tag in ("td", "th")]


class Tree(HTMLParser):
    """Builds `Node`s and records every nesting error instead of guessing as a browser would."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", [], None)
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        if tag not in VOID:
            self.errors.append(f"<{tag}/> is not a void element")
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        if tag in VOID or self.cur.tag != tag:
            self.errors.append(f"</{tag}> closes <{self.cur.tag}>")
        else:
            self.cur = self.cur.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(text: str) -> Node:
    """The display's tree; fails unless it is well formed and is one `<div class="fm-repr">`."""
    t = Tree()
    t.feed(text)
    t.close()
    assert not t.errors, t.errors
    assert t.cur is t.root, f"<{t.cur.tag}> is never closed"
    tops = [c for c in t.root.children if isinstance(c, Node)]
    assert len(tops) == 1 and tops[0].tag == "div" and "fm-repr" in tops[0].classes()
    assert not [c for c in t.root.children if isinstance(c, str) and c.strip()], "text outside the display"
    return tops[0]


def decode(img: Node) -> np.ndarray:
    """The thumbnail's pixels (h, w, 3) decoded by Pillow from its data: URI."""
    prefix = "data:image/png;base64,"
    src = img.attrs["src"]
    assert src.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(src[len(prefix):]))) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im).copy()


# --------------------------------------------------------------------------------------------------
# The report's colours, written a second way
# --------------------------------------------------------------------------------------------------
def report_stops() -> np.ndarray:
    """`STOPS` as the report's script defines it."""
    m = re.search(r"const STOPS = (\[\[.*?\]\]);", JS)
    assert m, "the report's script no longer defines STOPS"
    return np.array(json.loads(m.group(1)), dtype=np.float64)


def expected_diverging(values: np.ndarray, scale: float) -> np.ndarray:
    t = np.clip(values.astype(np.float64) / scale, -1, 1)
    stops = report_stops()
    xs = np.linspace(-1, 1, len(stops))
    rgb = np.stack([np.interp(t, xs, stops[:, ch]) for ch in range(3)], axis=-1)
    return np.rint(rgb)


def expected_grey(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    g = 255 * np.clip((values.astype(np.float64) - lo) / (hi - lo), 0, 1)
    return np.rint(np.repeat(g[..., None], 3, axis=-1))


# np.interp and the report's piecewise formula round differently in the last bit, which can move a
# channel that lands on .5 to the other integer: one unit of the 8-bit channel is the tolerance.
COLOUR_ATOL = 1


def test_python_stops_are_the_reports():
    np.testing.assert_array_equal(_html.STOPS, report_stops())


@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=40), st.floats(0.01, 5))
@settings(max_examples=60)
def test_diverging_matches_the_report_scale(vals, scale):
    v = np.array(vals)
    np.testing.assert_allclose(_html.diverging(v / scale).astype(float), expected_diverging(v, scale),
                               atol=COLOUR_ATOL, rtol=0)


def test_non_finite_values_are_magenta_as_in_the_report():
    out = _html.diverging(np.array([np.nan, np.inf, -np.inf, 0.0]))
    assert out[:3].tolist() == [[255, 0, 255]] * 3 and out[3].tolist() == [247, 247, 247]
    assert _html.grey(np.array([np.nan, 0.0, 2.0]), 0.0, 2.0).tolist() == [[255, 0, 255], [0, 0, 0], [255] * 3]


@given(st.integers(1, 23), st.integers(1, 23), st.integers(0, 2**32 - 1))
@settings(max_examples=30)
def test_png_decodes_to_the_same_pixels(h, w, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(_html.png(rgb))) as im:
        im.load()
        assert im.size == (w, h) and im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), rgb)


def test_png_refuses_a_shape_it_cannot_draw():
    with pytest.raises(ValueError, match=r"expected a non-empty \(height, width, 3\) image; received shape \(2, 2\)"):
        _html.png(np.zeros((2, 2), np.uint8))


# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------
def _dims(shape) -> str:
    return "×".join(str(int(s)) for s in shape)


def _field(rf) -> str:
    """`size/jump` of a receptive field, one number when square."""
    if rf in (None, "global"):
        return rf or "?"
    (sh, sw), (jh, jw) = rf["size"], rf["jump"]
    return (str(sh) if sh == sw else f"{sh}×{sw}") + "/" + (str(jh) if jh == jw else f"{jh}×{jw}")


@pytest.mark.parametrize("name", ["lenet5", "lenet", "vgg-small", "cnn"])
def test_summary_html_has_one_row_per_layer_with_its_shape_and_parameters(name):
    model = models.get(name, rng=0)
    s = summary(model)
    div = parse(s._repr_html_())
    table = div.one("table")
    trs = table.all("tr", "fm-layer")
    assert len(trs) == len(s.rows) == len(list(model.modules())) - 1  # every leaf layer, once
    for tr, row in zip(trs, s.rows):
        cells = [c.text() for c in tr.cells()]
        assert len(cells) == 8
        assert tr.attrs["data-name"] == row["name"] and cells[0] == f"{row['name']} ({row['type']})"
        assert cells[1] == _dims(row["output_shape"])
        assert cells[2] == ("" if row["kernel"] is None else str(list(row["kernel"])))
        assert cells[3] == (row["links"] or "") and cells[7] == _field(row["receptive_field"])
        assert int(tr.attrs["data-params"]) == row["params"]
        assert cells[4].endswith(f"{row['params']:,}") and cells[4] == (row["params_formula"] or cells[4])
        assert cells[5] == (f"{row['macs']:,}" if row["macs"] else "")
        assert cells[6] == (f"{row['connections']:,}" if row["connections"] else "")
    assert [c.text() for c in table.one("tr", "fm-input").cells()][:2] == ["input", _dims(model.input_shape)]
    total = [c.text() for c in table.one("tr", "fm-total").cells()]
    assert total[4] == f"{model.num_parameters():,}" == f"{sum(r['params'] for r in s.rows):,}"
    assert total[5] == f"{sum(r['macs'] for r in s.rows):,}"
    notes = table.all("tr", "fm-note")
    assert [n.text() for n in notes] == ["↳ " + r["note"] for r in s.rows if r["note"]]
    assert not div.all("p", "fm-bad")


def test_summary_html_stops_at_the_shape_mismatch():
    model = nn.Sequential([("a", nn.Conv2D(1, 2, 3)), ("b", nn.Dense(3, 4))], input_shape=(5, 5, 1))
    s = summary(model)
    div = parse(s._repr_html_())
    assert len(div.all("tr", "fm-layer")) == len(s.rows) == 1
    assert div.one("p", "fm-bad").text() == f"shape mismatch: {s.error}" and "'b'" in s.error


EVIL = '<img src=x onerror="alert(1)">&amp;<script>x</script>'


def _evil_model() -> nn.Sequential:
    """Two layers named with markup; the second cannot take the first's output."""
    return nn.Sequential([(EVIL, nn.Conv2D(1, 2, 3)), (EVIL + "2", nn.Dense(3, 4))], input_shape=(5, 5, 1))


@pytest.mark.parametrize("render,name_cell", [(lambda m: summary(m)._repr_html_(), 0), (lambda m: m._repr_html_(), 1)],
                         ids=["summary", "model"])
def test_layer_names_are_escaped(render, name_cell):
    div = parse(render(_evil_model()))
    assert not div.all("img") and not div.all("script"), "a layer name became markup"
    row = div.all("tr", "fm-layer")[0]
    assert row.attrs["data-name"] == EVIL and row.cells()[name_cell].text().startswith(EVIL)
    assert repr(EVIL + "2") in div.one("p", "fm-bad").text()  # the mismatch names the layer, escaped too


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------
def test_model_html_lists_the_layers_with_shapes_and_parameters():
    model = models.lenet5(rng=0)
    s = summary(model)
    div = parse(model._repr_html_())
    heads = [th.text() for th in div.one("thead").all("th")]
    assert heads == ["#", "layer", "module", "output", "parameters"]
    trs = div.all("tr", "fm-layer")
    assert [tr.attrs["data-name"] for tr in trs] == model.names() == [r["name"] for r in s.rows]
    for k, (tr, row, layer) in enumerate(zip(trs, s.rows, model)):
        cells = [c.text() for c in tr.cells()]
        assert cells == [str(k), row["name"], repr(layer), _dims(row["output_shape"]), f"{row['params']:,}"]
    intro = div.all("p")[0].text()
    assert f"{len(model)} layers" in intro and f"{model.num_parameters():,} parameters" in intro
    assert "input 28×28×1 → output 10" in intro


def test_model_html_of_a_nested_model_uses_dotted_names():
    inner = nn.Sequential([("conv", nn.Conv2D(3, 4, 3)), ("act", nn.ReLU())])
    model = nn.Sequential([("block", inner), ("pool", nn.GlobalAvgPool2D()), ("fc", nn.Dense(4, 2))],
                          input_shape=(8, 8, 3))
    trs = parse(model._repr_html_()).all("tr", "fm-layer")
    assert [(tr.attrs["data-name"], tr.cells()[3].text()) for tr in trs] == \
        [("block.conv", "6×6×4"), ("block.act", "6×6×4"), ("pool", "4"), ("fc", "2")]


def test_model_html_without_an_input_shape_says_how_to_get_shapes():
    model = nn.Sequential([nn.Conv2D(1, 2, 3), nn.ReLU()])
    div = parse(model._repr_html_())
    assert "output" not in [th.text() for th in div.one("thead").all("th")]
    assert [tr.cells()[3].text() for tr in div.all("tr", "fm-layer")] == ["20", "0"]
    assert "input_shape" in div.text()


def test_model_html_of_a_custom_container_and_of_one_layer():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2D(1, 2, 3), nn.Dense(2, 3)

    trs = parse(Block()._repr_html_()).all("tr", "fm-layer")
    assert [(tr.attrs["data-name"], int(tr.attrs["data-params"])) for tr in trs] == [("a", 20), ("b", 9)]
    one = parse(nn.Conv2D(1, 6, 5)._repr_html_())
    assert one.one("code").text() == "Conv2D(1, 6, kernel_size=5)" and "156 parameters" in one.text()


def test_model_repr_is_one_line_per_layer():
    model = models.lenet5(rng=0)
    lines = repr(model).splitlines()
    assert len(lines) == len(model) + 2 and lines[1] == "  (pad): ZeroPad2D(2)"


# --------------------------------------------------------------------------------------------------
# Explanation
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    images, _ = load_sample_arrays("val")
    return images[0].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def lenet5():
    return models.lenet5(rng=0)


def _terms_table(div: Node) -> Node:
    return div.one("table")


def _value(cell: Node) -> float:
    """A number cell's full value, checked against the 6 significant digits it shows."""
    exact = float(cell.attrs["data-value"])
    shown = float(cell.text().replace("−", "-"))
    np.testing.assert_allclose(shown, exact, rtol=5e-6, atol=0)  # `{:.6g}`: half a unit in the 6th digit
    return exact


def _check_foot(table: Node, e) -> None:
    # each cell carries one float through repr() and float(): the same value, so bit-identity is the point
    assert _value(table.one("tr", "fm-pre").cells()[-1]) == e.pre_activation
    assert _value(table.one("tr", "fm-engine").cells()[-1]) == e.engine_value
    assert float(table.one("tr", "fm-diff").cells()[-1].attrs["data-value"]) == e.difference
    if e.bias is not None:
        assert _value(table.one("tr", "fm-bias").cells()[-1]) == e.bias


def test_conv_explanation_html_has_one_row_per_term_with_window_and_kernel(lenet5, digit):
    e = explain(lenet5, digit, "C3", 7, (4, 5))
    div = parse(e._repr_html_())
    table = _terms_table(div)
    assert [th.text() for th in table.one("thead").all("th")] == \
        ["input map", "rows", "cols", "padded", "window x", "kernel w", "⟨window, kernel⟩"]
    trs = table.all("tr", "fm-term")
    assert len(trs) == len(e.terms) == 4
    windows = [t.window for t in e.terms]
    ws = max(float(np.abs(w).max()) for w in windows)
    ks = max(float(np.abs(t.kernel).max()) for t in e.terms)
    for tr, t in zip(trs, e.terms):
        cells = tr.cells()
        assert int(tr.attrs["data-input-map"]) == t.input_map and cells[0].text() == str(t.input_map)
        assert cells[1].text() == f"{t.rows[0]}..{t.rows[-1]}" and cells[3].text() == "0/25"
        assert _value(cells[-1]) == t.partial_sum
        win, ker = cells[4].one("img", "fm-window"), cells[5].one("img", "fm-kernel")
        for img in (win, ker):
            assert (int(img.attrs["width"]), int(img.attrs["height"])) == (45, 45)  # 9 CSS px a tap, as the report
        np.testing.assert_allclose(decode(win), expected_diverging(t.window, ws), atol=COLOUR_ATOL, rtol=0)
        np.testing.assert_allclose(decode(ker), expected_diverging(t.kernel, ks), atol=COLOUR_ATOL, rtol=0)
    _check_foot(table, e)
    assert div.one("p", "mono").text() == e.formula()
    assert div.one("p", "fm-ok").text() == e._check_line()
    assert [li.text() for li in div.all("li")] == e._after_lines() and len(e.after) == 3


def test_first_conv_draws_the_padded_image_in_grey(lenet5):
    x = np.random.default_rng(5).random((28, 28, 1), dtype=np.float32)  # a digit's corner would be all 0
    e = explain(lenet5, x, "C1", 3, (0, 0))  # the corner: taps on the border the `pad` layer adds
    div = parse(e._repr_html_())
    (tr,) = _terms_table(div).all("tr", "fm-term")
    t = e.terms[0]
    assert tr.cells()[3].text() == f"{int(t.padded.sum())}/25" and t.padded.sum() > 0
    lo, hi = float(t.window.min()), float(t.window.max())
    assert hi > lo
    np.testing.assert_allclose(decode(tr.one("img", "fm-window")), expected_grey(t.window, lo, hi),
                               atol=COLOUR_ATOL, rtol=0)
    assert "grey" in div.one("p", "fm-legend").text()


def test_dense_explanation_html_shows_the_largest_terms_and_the_rest(lenet5, digit):
    e = explain(lenet5, digit, "F6", 3)
    table = _terms_table(parse(e._repr_html_()))
    assert not table.all("img")
    trs = table.all("tr", "fm-term")
    top = sorted(e.terms, key=lambda t: -abs(t.partial_sum))[:10]
    assert len(trs) == 10 and [int(tr.attrs["data-input-map"]) for tr in trs] == [t.input_map for t in top]
    for tr, t in zip(trs, top):
        cells = tr.cells()
        assert cells[1].text() == t.label
        assert (_value(cells[2]), _value(cells[3]), _value(cells[4])) == (t.value, t.weight, t.partial_sum)
    rest = [t.partial_sum for t in e.terms if not any(t is k for k in top)]
    assert table.one("tr", "fm-rest").cells()[0].text() == f"… {len(rest)} more terms"
    # fsum is correctly rounded, so the order of the 110 terms cannot change it: equal, not close
    assert _value(table.one("tr", "fm-rest").cells()[-1]) == math.fsum(rest)
    _check_foot(table, e)


def test_max_pool_explanation_draws_the_window_and_names_the_winner(digit):
    model = models.lenet(rng=0)
    name = next(n for n, layer in zip(model.names(), model) if type(layer).__name__ == "MaxPool2D")
    e = explain(model, digit, name, 5, (3, 4))
    div = parse(e._repr_html_())
    (tr,) = _terms_table(div).all("tr", "fm-term")
    t = e.terms[0]
    assert tr.cells()[5].text() == "—" and not tr.all("img", "fm-kernel")
    ws = float(np.abs(t.window).max())
    np.testing.assert_allclose(decode(tr.one("img", "fm-window")), expected_diverging(t.window, ws),
                               atol=COLOUR_ATOL, rtol=0)
    assert _value(tr.cells()[-1]) == t.partial_sum == e.pre_activation
    w = e.winner
    assert f"winner: input ({w['position'][0]}, {w['position'][1]}) of map 5" in div.text()
    _check_foot(_terms_table(div), e)


def test_average_pool_explanation_draws_its_weights(lenet5, digit):
    e = explain(lenet5, digit, "S2", 1, (3, 3))
    (tr,) = _terms_table(parse(e._repr_html_())).all("tr", "fm-term")
    ker = decode(tr.one("img", "fm-kernel"))
    assert ker.shape == (2, 2, 3)
    k = e.terms[0].kernel
    np.testing.assert_allclose(ker, expected_diverging(k, float(np.abs(k).max())), atol=COLOUR_ATOL, rtol=0)


# --------------------------------------------------------------------------------------------------
# Short reprs
# --------------------------------------------------------------------------------------------------
MAX_REPR_LINES = 5


def test_explanation_repr_is_short_and_names_the_key_facts(lenet5, digit):
    e = explain(lenet5, digit, "C3", 7, (4, 5))
    text = repr(e)
    assert len(text.splitlines()) <= MAX_REPR_LINES and len(text) < 400
    for fact in ["y[C3, map 7, (4, 5)]", "Conv2D", "from S2_act (14, 14, 6)", "4 terms + bias",
                 f"= {e.pre_activation:.6g}", f"engine {e.engine_value:.6g}", "agrees", "float32",
                 "then C3_act (Tanh)"]:
        assert fact in text, (fact, text)
    assert "array(" not in text and "Term(" not in text
    assert str(e) == e.to_text() and len(str(e).splitlines()) > MAX_REPR_LINES  # the table is still str()


def test_summary_repr_is_short_and_str_is_still_the_table(lenet5):
    s = summary(lenet5)
    text = repr(s)
    assert len(text.splitlines()) <= MAX_REPR_LINES
    for fact in ["15 layers", "input 28×28×1 → 10", f"{lenet5.num_parameters():,} parameters",
                 f"{s.totals['macs']:,} mult-adds", f"{s.totals['connections']:,} connections"]:
        assert fact in text, (fact, text)
    notes = sum(1 for r in s.rows if r["note"])
    table = str(s).splitlines()  # head, rule, input, the rows and their notes, rule, total
    assert table[0].startswith("layer (type)") and len(table) == 2 + 1 + len(s.rows) + notes + 2
    bad = summary(_evil_model())
    assert len(repr(bad).splitlines()) == 2 and "shape mismatch" in repr(bad) and "1 layer:" in repr(bad)


# --------------------------------------------------------------------------------------------------
# In a real browser
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); CI installs it and runs this test")
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield b
        b.close()


def _report_diverging_js() -> str:
    """The report's own `STOPS` and `diverging` source."""
    m = re.search(r"const STOPS = .*?;\nfunction diverging\(t\) \{.*?\n\}\n", JS, re.S)
    assert m, "the report's script no longer defines STOPS and diverging(t)"
    return m.group(0)


def test_displays_render_in_chromium_as_the_report_colours_them(browser, lenet5, digit, tmp_path):
    e = explain(lenet5, digit, "C3", 7, (4, 5))
    page_html = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>displays</title></head>'
                 f'<body style="font-family: sans-serif">{lenet5._repr_html_()}{summary(lenet5)._repr_html_()}'
                 f"{e._repr_html_()}</body></html>")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, requests = [], []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("data:", "about:")) else None)
    page.route("**/*", lambda r: r.abort())
    page.set_content(page_html, wait_until="load")
    thumbs = page.evaluate("""() => Array.from(document.querySelectorAll('.fm-explanation img.fm-thumb')).map(img => {
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        const r = {width: img.clientWidth, height: img.clientHeight};  // inside the border
        return {cls: img.className, w: img.naturalWidth, h: img.naturalHeight, cssW: r.width, cssH: r.height,
                px: Array.from(ctx.getImageData(0, 0, c.width, c.height).data)};
    })""")
    assert len(thumbs) == 2 * len(e.terms)
    ws = max(float(np.abs(t.window).max()) for t in e.terms)
    ks = max(float(np.abs(t.kernel).max()) for t in e.terms)
    src = _report_diverging_js()
    for k, th in enumerate(thumbs):
        t = e.terms[k // 2]
        vals, scale = (t.window, ws) if "fm-window" in th["cls"] else (t.kernel, ks)
        assert (th["w"], th["h"], th["cssW"], th["cssH"]) == (5, 5, 45, 45)
        want = page.evaluate("([src, vals, s]) => { eval(src + '; window.__d = diverging;');"
                             " return vals.map(v => window.__d(v / s)); }",
                             [src, [float(v) for v in vals.ravel()], scale])
        got = np.array(th["px"], dtype=float).reshape(5, 5, 4)
        assert np.all(got[..., 3] == 255)
        np.testing.assert_allclose(got[..., :3], np.array(want).reshape(5, 5, 3), atol=COLOUR_ATOL, rtol=0)
    rows = page.locator(".fm-summary tr.fm-layer")
    assert rows.count() == len(lenet5) and page.locator(".fm-model tr.fm-layer").count() == len(lenet5)
    assert errors == [] and requests == []
    shot = tmp_path / "notebook-displays.png"
    page.screenshot(path=str(shot), full_page=True)
    out = Path(os.environ.get("FEATUREMAPS_SCREENSHOT_DIR", tempfile.gettempdir()))
    shutil.copy(shot, out / shot.name)
    print(f"screenshot: {out / shot.name}")
    page.close()


def test_a_non_finite_input_is_drawn_magenta_as_in_the_report():
    model = nn.Sequential([("p", nn.MaxPool2D(2))], input_shape=(4, 4, 1))
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4, 1)
    x[1, 1, 0] = np.nan
    e = explain(model, x, "p", 0, (0, 0))
    px = decode(parse(e._repr_html_()).one("img", "fm-window"))
    assert px[1, 1].tolist() == [255, 0, 255] and px[0, 0].tolist() != [255, 0, 255]
