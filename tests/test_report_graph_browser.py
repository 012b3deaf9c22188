"""A graph model's report in a real headless browser (Debian's chromium driven by Playwright).

The DAG renders (one box per layer or folded block, merges with several incoming edges), clicking a
node shows its maps and its inputs by name, a merge shows the value of each input at the unit and
those equal the engine's, a folded block unfolds, a concatenation's map names its source map and a
click there selects it, a shuffle shows its permutation, and the page logs no error and requests nothing.

Skips only when /usr/bin/chromium is missing on a developer machine; with CI=true it must run.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from featuremaps.inspect import activations
from featuremaps.report import build_report
from tests.test_report_browser import CHROMIUM, Page, browser  # noqa: F401 - browser is a fixture
from tests.test_report_graph import small_graph

if os.environ.get("CI") != "true" and not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); CI installs it and runs this test",
                allow_module_level=True)


@pytest.fixture(scope="module")
def graph_page(tmp_path_factory):
    g = small_graph()
    x = np.random.default_rng(0).random((12, 12, 3), dtype=np.float32)
    path = build_report(g, x, tmp_path_factory.mktemp("graph") / "graph.html")
    return g, x, path


def test_dag_renders_and_a_click_shows_the_maps(browser, graph_page):
    g, x, path = graph_page
    pg = Page(browser, path)
    dag = pg.page.locator("#dag")
    assert dag.is_visible()
    boxes = {n.get_attribute("data-name"): n for n in dag.locator("g.node").all()}
    assert "image" in boxes and "b1_add" in boxes and "b2_cat" in boxes  # unfolded around the first selection
    assert boxes["b1_add"].get_attribute("class").split().count("merge") == 1
    assert int(boxes["b1_add"].get_attribute("data-inputs")) == 2
    assert dag.locator('path.edge[data-to="n7"]').count() == 2  # b1_add (entry 7) has two incoming edges
    folded = dag.locator("g.node.folded")
    assert folded.count() >= 1
    pg.page.locator('#dag g.node[data-name="b1_conv2"]').click()
    assert pg.page.locator("#panel-h").inner_text() .startswith("b1_conv2 · map ")
    assert pg.page.locator("#layer-b1_conv2 button.tile").count() == 6  # its maps, drawn
    assert pg.page.locator("#node-inputs").get_attribute("data-inputs") == "b1_relu1"
    assert "selected" in pg.page.locator('#dag g.node[data-name="b1_conv2"]').get_attribute("class")
    assert "feeds" in pg.page.locator('#dag g.node[data-name="b1_relu1"]').get_attribute("class")
    # grouped conv (groups=2): map 4 reads maps 3-5 of its input only, and the page highlights them
    pg.tile("b1_conv2", 4).click()
    fed = pg.page.locator("#layer-b1_relu1 button.tile.feeds")
    assert sorted(int(t.get_attribute("data-map")) for t in fed.all()) == [3, 4, 5]
    before = folded.count()
    folded.first.click()  # unfold a block: its layers appear as boxes
    assert pg.page.locator("#dag g.node.folded").count() == before - 1
    pg.close()


def test_a_merge_shows_its_inputs_with_the_engine_values(browser, graph_page):
    g, x, path = graph_page
    acts = {a.name: a.array for a in activations(g, x)}
    pg = Page(browser, path)
    pg.page.locator('#dag g.node[data-name="b1_add"]').click()
    pg.click_pixel("b1_add", 2, 5, 7, 12, 12)
    assert pg.page.locator("#panel-h").inner_text() == "b1_add · map 2"
    assert pg.page.locator("#node-inputs").get_attribute("data-inputs") == "b1_conv2,b1_proj"
    rows = pg.page.locator("#explain-table tr.merge-in")
    assert [rows.nth(j).get_attribute("data-input") for j in range(rows.count())] == ["b1_conv2", "b1_proj"]
    shown = [pg.value(f"#explain-table tr.merge-in >> nth={j} >> td.num") for j in range(2)]
    np.testing.assert_allclose(shown, [acts["b1_conv2"][5, 7, 2], acts["b1_proj"][5, 7, 2]], rtol=1e-6)
    engine = pg.value("#ex-engine")
    np.testing.assert_allclose(engine, acts["b1_add"][5, 7, 2], rtol=1e-6)
    assert abs(engine - sum(shown)) <= 1e-6 * max(1.0, abs(engine))  # Add: the engine's value is their sum
    for name in ("b1_conv2", "b1_proj"):  # both inputs light up: same map, same pixel
        assert pg.page.locator(f"#layer-{name} button.tile.feeds").get_attribute("data-map") == "2"
    pg.page.locator('#dag g.node[data-name="b2_cat"]').click()
    pg.tile("b2_cat", 4).click()  # maps 3..8 come from b2_right: map 4 is its map 1
    assert "is map 1 of input 2" in pg.page.locator("#merge-source").inner_text()
    assert pg.page.locator("#layer-b2_right button.tile.feeds").get_attribute("data-map") == "1"
    pg.close()


def test_a_preview_layer_says_what_is_missing(browser, tmp_path, monkeypatch):
    import featuremaps.report._values as values
    monkeypatch.setattr(values, "VALUE_BUDGET", 8_000)
    g = small_graph()
    path = build_report(g, np.random.default_rng(0).random((12, 12, 3), dtype=np.float32), tmp_path / "p.html",
                        select="b1_conv2")
    pg = Page(browser, path)
    assert pg.page.locator("#panel-h").inner_text().startswith("b1_conv2 · map ")
    pg.page.locator('#dag g.node.folded[data-block="stem"]').click()  # unfold the stem block
    pg.page.locator('#dag g.node[data-name="stem"]').click()
    assert "8-bit preview" in pg.page.locator("#preview-only").inner_text()
    assert pg.page.locator("#layer-stem .preview-note").is_visible()
    pg.close()


@pytest.fixture(scope="module")
def sources_page(tmp_path_factory):
    from tests.test_report_graph import dense_shuffle_graph
    g = dense_shuffle_graph()
    x = np.random.default_rng(0).random((6, 6, 3), dtype=np.float32)
    return g, build_report(g, x, tmp_path_factory.mktemp("sources") / "sources.html", select="cat2")


def test_a_concat_map_shows_its_source_and_clicking_it_goes_there(browser, sources_page):
    from featuremaps.inspect import map_sources

    g, path = sources_page
    pg = Page(browser, path)
    p = pg.page
    assert p.locator("#wiring-" + str(1 + g.names().index("cat2"))).inner_text() == \
        "wiring: concatenation: cat1 at 0–6, c2 at 7–8"
    pg.tile("cat2", 5).click()  # map 5 of cat2 is map 5 of cat1, which is map 1 of c1
    assert p.locator("#panel-h").inner_text() == "cat2 · map 5"
    assert p.locator("#map-sources").get_attribute("data-sources") == "c1[1]"
    assert {s.layer: s.maps for s in map_sources(g, "cat2", 5).sources} == {"c1": [1]}
    assert p.locator("#sources-equal").inner_text() == "Map 5 of cat2 = map 1 of c1 (Conv2D)."
    assert "cat1 (concatenation: c0 at 0–3, c1 at 4–6)" in p.locator("#sources-via").inner_text()
    p.locator("#sources-equal button.src-go").click()  # the source: selects c1's map 1
    assert p.locator("#panel-h").inner_text() == "c1 · map 1"
    assert "selected" in pg.tile("c1", 1).get_attribute("class")
    assert p.locator("#back").is_visible()
    pg.close()


def test_a_shuffle_shows_its_permutation_and_a_grouped_conv_its_sources(browser, sources_page):
    g, path = sources_page
    pg = Page(browser, path)
    p = pg.page
    p.locator('#dag g.node.folded').first.wait_for()
    p.evaluate("""() => document.querySelectorAll('details.block').forEach(d => { d.open = true; })""")
    pg.tile("shuffle", 1).click()  # 3 groups of 2 maps: map 1 ← map 2 of r1
    assert p.locator("#sources-step").inner_text() == "Channel shuffle of r1: map j ← map π(j); map 1 ← r1 map 2."
    assert p.locator("#sources-perm").inner_text() == "π = [0, 2, 4, 1, 3, 5]"
    assert p.locator("#sources-perm strong").inner_text() == "2"
    assert p.locator("#map-sources").get_attribute("data-sources") == "g1[2]"
    pg.tile("trans", 5).click()  # groups=3: its group's maps 6-8 of cat2, which are c1's map 2 and c2's maps 0-1
    assert p.locator("#map-sources").get_attribute("data-sources") == "c1[2] c2[0,1]"
    assert "groups=3" in p.locator("#sources-step").inner_text()
    fed = p.locator("#layer-t3 button.tile.feeds")  # the group's input maps stay highlighted
    assert sorted(int(t.get_attribute("data-map")) for t in fed.all()) == [6, 7, 8]
    p.locator('#sources-list li[data-layer="c2"] button.src-go[data-map="1"]').click()
    assert p.locator("#panel-h").inner_text() == "c2 · map 1"
    pg.close()
