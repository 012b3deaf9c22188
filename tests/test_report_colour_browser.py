"""The HTML report on a colour model in a browser (issue 13): the 3-channel input is one RGB picture
(its channels R, G, B), the kernels of the conv that reads it are RGB tiles beside their three channel
slices, and the decomposition of a unit on a colour edge labels its three terms R, G, B, whose partial
sums add up with the bias to the engine's value. Chromium is driven as in `test_report_browser.py`
(whose fixture and page helper this module reuses): it skips only when /usr/bin/chromium is missing on
a developer machine; with CI=true it must run.
"""
from __future__ import annotations


import numpy as np
import pytest

from featuremaps import models
from featuremaps.data.sample import load_sample_arrays
from featuremaps.inspect import explain
from featuremaps.report import build_report

from tests.test_report_browser import Page as _Page, _save, browser  # noqa: F401 - browser is a fixture
from tests.test_report_colour import BIAS0, KH, KW, _payload, colour  # noqa: F401 - colour is a fixture


@pytest.fixture(scope="module")
def colour_page(colour, tmp_path_factory):
    """The report, opened on filter 0 at its strongest pixel (so that explain() ran on that unit)."""
    model, x = colour
    path = build_report(model, x, tmp_path_factory.mktemp("colour") / "colour.html", select=("0", 0))
    return model, x, path




class Page(_Page):
    """test_report_browser's page, with a readback of one canvas pixel."""

    def pixel(self, selector: str, r: int, c: int) -> list[int]:
        """The RGBA of canvas pixel (r, c) (a canvas holds one pixel per cell), read from a copy (one
        readback per canvas, so that Chromium does not warn about repeated getImageData)."""
        return self.page.evaluate("""([sel, r, c]) => { const src = document.querySelector(sel);
            const cv = document.createElement("canvas"); cv.width = 1; cv.height = 1;
            const ctx = cv.getContext("2d"); ctx.drawImage(src, c, r, 1, 1, 0, 0, 1, 1);
            return Array.from(ctx.getImageData(0, 0, 1, 1).data); }""", [selector, r, c])


def test_input_is_one_rgb_picture_with_channels_r_g_b(browser, colour_page):
    _, x, path = colour_page
    pg = Page(browser, path)
    page = pg.page
    pic = "#layer-input canvas.rgb-input"
    assert page.locator(pic).count() == 1
    size = page.evaluate(f"[document.querySelector('{pic}').width, document.querySelector('{pic}').height]")
    assert size == [32, 32]
    for r, c in ((0, 0), (10, 20), (31, 5)):  # the picture is the image: channels 0, 1, 2 as R, G, B, 0…1
        rgba = pg.pixel(pic, r, c)
        np.testing.assert_allclose(rgba[:3], 255 * x[r, c], atol=1.01)
        assert rgba[3] == 255
    # the three channels are still maps of their own, labelled R, G, B, and clickable
    tiles = page.locator("#layer-input button.tile")
    assert tiles.count() == 3
    assert [tiles.nth(j).locator(".mi").inner_text() for j in range(3)] == ["R", "G", "B"]
    assert [tiles.nth(j).get_attribute("data-channel") for j in range(3)] == ["R", "G", "B"]
    pg.click_pixel("input", 1, 7, 9, 32, 32)
    assert page.locator("#panel-h").inner_text() == "input · map 1"
    assert "(G)" in pg.tile("input", 1).get_attribute("aria-label")
    for name, ch in zip("RGB", range(3)):
        np.testing.assert_allclose(pg.value(f'#rgb-pixel span[data-channel="{name}"]'), x[7, 9, ch], rtol=1e-6)
    # clicking the colour picture selects that pixel (in the channel shown)
    box = page.locator(pic).bounding_box()
    page.locator(pic).click(position={"x": 20.5 * box["width"] / 32, "y": 3.5 * box["height"] / 32})
    assert "input[3, 20, 1]" in page.locator("#pixel-status").inner_text()
    pg.close()


def test_rgb_kernel_tile_and_explain_on_a_colour_edge(browser, colour_page, tmp_path, capsys):
    model, x, path = colour_page
    data = _payload(path.read_text(encoding="utf-8"))
    ref = next(ref for ref in data["references"] if ref["layer"] == "0" and ref["out_map"] == 0)
    r, c = ref["position"]
    # the unit sits on a colour edge: across its window the red channel changes a lot
    win = x[r:r + KH, c:c + KW]
    assert win[:, :, 0].max() - win[:, :, 0].min() > 0.1
    pg = Page(browser, path)
    page = pg.page
    pg.click_pixel("0", 3, 0, 0, 28, 28)  # another map first, then the edge pixel of map 0
    pg.click_pixel("0", 0, r, c, 28, 28)
    assert page.locator("#panel-h").inner_text() == "0 · map 0"
    assert f"0[{r}, {c}, 0]" in page.locator("#pixel-status").inner_text()

    # the kernel w[:, :, :, 0] as one RGB tile: a tap with w_R > 0 > w_G is reddish, a zero tap mid-grey
    assert page.locator("#kernel-rgb").count() == 1
    assert page.evaluate("(e => [e.width, e.height])(document.getElementById('kernel-rgb'))") == [KW, KH]
    red = pg.pixel("#kernel-rgb", 0, 0)
    assert red[0] > 200 and red[1] < 80 and red[0] > red[2] + 60, red
    # 0.5 + w / (2·max|w|) per channel over the filter: (0.2, -0.1, 0.03) / 0.2 → (255, 64, 147)
    np.testing.assert_allclose(red[:3], [255, 63.75, 146.6], atol=1.01)
    for p in range(KH):
        assert pg.pixel("#kernel-rgb", p, 2)[:3] == [128, 128, 128]  # the zero column: mid-grey
    # beside it, its three slices R, G, B on the diverging scale (red positive, blue negative)
    slices = page.locator("#rgb-kernel canvas.kernel-slice")
    assert [slices.nth(j).get_attribute("data-channel") for j in range(3)] == ["R", "G", "B"]
    r_tap = pg.pixel('#rgb-kernel canvas[data-channel="R"]', 0, 0)
    g_tap = pg.pixel('#rgb-kernel canvas[data-channel="G"]', 0, 0)
    assert r_tap[0] > r_tap[2] and g_tap[2] > g_tap[0]
    assert page.locator("#window-rgb").count() == 1

    # the decomposition: three terms labelled R, G, B; bias + their partial sums = the engine's value
    rows = page.locator("#explain-table tr.term")
    assert rows.count() == 3
    assert [rows.nth(j).get_attribute("data-channel") for j in range(3)] == ["R", "G", "B"]
    assert [rows.nth(j).locator("th .chan").inner_text() for j in range(3)] == ["R", "G", "B"]
    partial = [pg.value(f"#explain-table tr.term >> nth={j} >> td.partial") for j in range(3)]
    bias, pre, engine = pg.value("#ex-bias"), pg.value("#ex-pre"), pg.value("#ex-engine")
    np.testing.assert_allclose(bias, BIAS0, rtol=1e-6)
    np.testing.assert_allclose(bias + sum(partial), engine, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pre, engine, rtol=1e-5, atol=1e-6)
    assert abs(partial[0]) > 0.05 and partial[0] * partial[1] > 0  # the edge: R and G (opposite weights) agree
    ex = explain(model, x, "0", 0, (r, c))
    np.testing.assert_allclose(partial, [t.partial_sum for t in ex.terms], rtol=1e-5, atol=1e-6)
    line = page.locator("#rgb-sum").inner_text()
    assert "three 2-D slices" in line and "(bias)" in line and all(f"({ch})" in line for ch in "RGB")
    check = page.locator("#ref-check")
    assert check.get_attribute("data-ok") == "true" and check.inner_text().startswith("✓"), check.inner_text()
    assert "partial sum" in check.inner_text() or "numbers compared" in check.inner_text()
    shot = _save(pg, tmp_path, "report-colour.png")
    # a phone-sized window: the colour parts cause no sideways scrolling
    page.set_viewport_size({"width": 420, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    with capsys.disabled():
        print(f"\nreport screenshot (colour model): {shot}")
    pg.close()


def test_grey_model_page_has_no_colour_parts(browser, tmp_path):
    images, _ = load_sample_arrays("val")
    model = models.get("lenet", rng=np.random.default_rng(8))
    path = build_report(model, images[6].astype(np.float32) / 255.0, tmp_path / "lenet.html")
    pg = Page(browser, path)
    page = pg.page
    assert page.locator("canvas.rgb-input").count() == 0
    pg.tile("conv1", 3).click()
    assert page.locator("#kernel-rgb").count() == 0 and page.locator("#rgb-kernel").count() == 0
    assert page.locator("#explain-table tr.term[data-channel]").count() == 0
    assert page.locator("#layer-input button.tile .mi").first.inner_text() == "0"
    pg.close()
