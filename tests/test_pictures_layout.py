"""The pictures stay readable at any map count, measured, not looked at.

Each figure is drawn with Agg and every text it draws is measured with the renderer (matplotlib's own
text extents, in the PNG's pixels): no two labels overlap, no label leaves the figure or covers the
picture it labels, every kernel tile / feature-map tile / matrix cell is at least a given number of
pixels, and the empty margins around the content are a bounded fraction of the figure. Counts of
1, 6, 16 and 120 maps cover LeNet-5's C1, C3 and C5 and the edge cases on both sides of them. The
feature-map picture uses the report's diverging zero-centred scale with a colour bar per row, map
indices and the class names on the output strip; the receptive-field picture works without an image.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from featuremaps import cli, models, nn, tables
from featuremaps.checkpoint import save_checkpoint
from featuremaps.inspect import activations, connections, receptive_field
from featuremaps.pictures import connectivity_diagram, feature_maps, kernel_grid, receptive_field_overlay

COUNTS = (1, 6, 16, 120)
EPS = 0.5  # pixels: boxes that merely touch (anti-aliasing, rounding) do not count as overlapping


# --- measuring a figure ----------------------------------------------------------------------------

def _renderer(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _tick_texts(ax, axis):
    """The tick labels `axis` draws: ticks inside the view, label on, text not empty."""
    locs = axis.get_majorticklocs()
    lo, hi = sorted(axis.get_view_interval())
    for loc, tick in zip(locs, axis.get_major_ticks(len(locs))):
        if lo - 1e-9 <= loc <= hi + 1e-9:
            for label in (tick.label1, tick.label2):
                if label.get_visible() and label.get_text().strip():
                    yield label


def drawn_texts(fig) -> list:
    """(text, box in pixels) for every non-empty text the figure draws."""
    r = _renderer(fig)
    texts = list(fig.texts) + ([fig._suptitle] if fig._suptitle is not None else [])
    for ax in fig.axes:
        texts += list(ax.texts) + [ax.title]
        if ax.axison:
            for axis in (ax.xaxis, ax.yaxis):
                texts += [axis.label] + list(_tick_texts(ax, axis))
    unique = list({id(t): t for t in texts}.values())  # the suptitle may be in fig.texts too
    return [(t.get_text(), t.get_window_extent(r)) for t in unique
            if t.get_visible() and t.get_text().strip()]


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 - EPS and b.x0 < a.x1 - EPS and a.y0 < b.y1 - EPS and b.y0 < a.y1 - EPS


def assert_readable(fig) -> list:
    """No two drawn texts overlap, each lies inside the figure, none covers an image. Returns the texts."""
    texts = drawn_texts(fig)
    assert texts, "the figure draws no text at all"
    w, h = fig.bbox.width, fig.bbox.height
    for text, box in texts:
        assert box.x0 >= -EPS and box.y0 >= -EPS and box.x1 <= w + EPS and box.y1 <= h + EPS, \
            f"{text!r} leaves the {w:.0f}×{h:.0f} figure: {box}"
    for (ta, a), (tb, b) in itertools.combinations(texts, 2):
        assert not _overlap(a, b), f"labels overlap: {ta!r} {a} and {tb!r} {b}"
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        for im in ax.images:
            area = im.get_window_extent(r)
            for text, box in texts:
                assert not _overlap(area, box), f"{text!r} covers the picture at {area}"
    return texts


def margins(fig) -> tuple[float, float, float, float]:
    """Empty pixels (left, right, bottom, top) between the figure's edges and everything it draws."""
    r = _renderer(fig)
    boxes = [box for _, box in drawn_texts(fig)]
    boxes += [im.get_window_extent(r) for ax in fig.axes for im in ax.images]
    boxes += [ax.get_window_extent(r) for ax in fig.axes]  # each panel, drawn or not (a graph has no axis)
    x0, y0 = min(b.x0 for b in boxes), min(b.y0 for b in boxes)
    x1, y1 = max(b.x1 for b in boxes), max(b.y1 for b in boxes)
    return x0, fig.bbox.width - x1, y0, fig.bbox.height - y1


def assert_tight(fig, fraction: float = 0.05, floor_px: float = 12.0) -> None:
    """Each empty margin is at most `fraction` of the figure's size on that axis (or `floor_px`)."""
    left, right, bottom, top = margins(fig)
    w, h = fig.bbox.width, fig.bbox.height
    for name, gap, size in (("left", left, w), ("right", right, w), ("bottom", bottom, h), ("top", top, h)):
        assert gap <= max(fraction * size, floor_px), f"{name} margin {gap:.0f} px of {size:.0f}"


def image_px_per_cell(ax) -> tuple[float, float]:
    """Screen pixels per image pixel (x, y) of the axes' first image."""
    r = ax.figure.canvas.get_renderer()
    box = ax.images[0].get_window_extent(r)
    rows, cols = ax.images[0].get_array().shape[:2]
    return box.width / cols, box.height / rows


def assert_png_is_the_figure(fig, path) -> None:
    """The PNG has the figure's pixel size, so the measurements above are the PNG's."""
    size = Image.open(path).size
    assert abs(size[0] - fig.bbox.width) <= 1 and abs(size[1] - fig.bbox.height) <= 1, (size, fig.bbox)


def conv(c_in: int, c_out: int, k: int = 5, **kw):
    return nn.Conv2D(c_in, c_out, k, rng=np.random.default_rng(c_in * 1000 + c_out), **kw)


def test_the_checks_catch_overlaps_stray_labels_and_margins():
    """The measuring helpers themselves: each fails on the defect it is there to catch."""
    from featuremaps.pictures import _mpl

    fig = _mpl.figure(4.0, 3.0)
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    ax.imshow(np.zeros((4, 4)))
    ax.set_yticks(np.arange(4) * 1e-3 + 1.5, ["0", "1", "2", "3"])  # four labels on one spot
    with pytest.raises(AssertionError, match="labels overlap"):
        assert_readable(fig)
    ax.set_yticks([])
    fig.text(0.99, 0.5, "off the edge")
    with pytest.raises(AssertionError, match="leaves the"):
        assert_readable(fig)
    fig = _mpl.figure(8.0, 6.0)
    fig.add_axes((0.4, 0.4, 0.2, 0.2)).imshow(np.zeros((4, 4)))  # a small picture in a big figure
    with pytest.raises(AssertionError, match="margin"):
        assert_tight(fig)


# --- kernel_grid -----------------------------------------------------------------------------------

@pytest.mark.parametrize("c_in,c_out", list(itertools.product(COUNTS, COUNTS)))
def test_kernel_grid_is_readable_at_any_map_count(c_in, c_out):
    fig = kernel_grid(conv(c_in, c_out), name="L")
    texts = assert_readable(fig)
    assert_tight(fig)
    ax = fig.axes[0]
    px, py = image_px_per_cell(ax)
    assert px == pytest.approx(py, abs=0.05)  # square kernel pixels
    assert 5 * px >= 20 - EPS, f"a 5×5 tile is {5 * px:.1f} px"  # MIN_TILE_PX
    assert 5 * px <= 48 + EPS  # MAX_TILE_PX: a one-tile layer is not blown up either
    # thinned, not dropped: labels from 0 in even steps, the last within one step of the last column
    # (64 columns at most are drawn)
    for labels, n in ((ax.get_xticklabels(), min(c_out, 64)), (ax.get_yticklabels(), min(c_in, 64))):
        idx = [int(t.get_text()) for t in labels]
        step = idx[1] - idx[0] if len(idx) > 1 else 1
        assert idx == list(range(0, n, step)) and idx[-1] >= n - step
    assert any("kernels w[:, :, i, n]" in t for t, _ in texts)


def test_kernel_grid_of_lenet5_labels_every_map():
    net = models.get("lenet5", rng=np.random.default_rng(0))
    for name, n_in, n_out in (("C1", 1, 6), ("C3", 6, 16)):
        ax = kernel_grid(net[name], name=name).axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(n) for n in range(n_out)]
        assert [t.get_text() for t in ax.get_yticklabels()] == [str(i) for i in range(n_in)]
    fig = kernel_grid(net["C5"], name="C5")  # 16 × 120, the first 64 columns shown
    assert_readable(fig)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [str(i) for i in range(16)]


def test_kernel_grid_tiles_fill_the_figure(tmp_path):
    """The old layout drew C1's six tiles 0.3 in wide inside a 5.6 in figure: now the grid and its
    colour bar span the figure but for the labels."""
    fig = kernel_grid(conv(1, 6))
    assert_png_is_the_figure(fig, kernel_grid(conv(1, 6), tmp_path / "c1.png"))
    r = _renderer(fig)
    grid, bar = fig.axes[0].images[0].get_window_extent(r), fig.axes[1].get_window_extent(r)
    assert (bar.x1 - grid.x0) >= 0.6 * fig.bbox.width
    assert grid.width / 6 >= 40  # a 5×5 tile ≥ 40 px when there are only six


@pytest.mark.parametrize("c_out", COUNTS)
def test_kernel_grid_rgb_is_readable(c_out):
    fig = kernel_grid(conv(3, c_out))
    assert_readable(fig)
    assert_tight(fig)
    px, _ = image_px_per_cell(fig.axes[0])
    assert 5 * px >= 20 - EPS


# --- connectivity_diagram --------------------------------------------------------------------------

@pytest.mark.parametrize("c_in,c_out", list(itertools.product(COUNTS, COUNTS)))
def test_connectivity_is_readable_at_any_map_count(c_in, c_out):
    layer = conv(c_in, c_out, 3)
    fig = connectivity_diagram(layer, name="L")
    assert_readable(fig)
    assert_tight(fig)
    px, py = image_px_per_cell(fig.axes[0])
    assert min(px, py) >= 4 - 0.05, (px, py)  # MIN_CELL_PX
    assert np.array_equal(np.asarray(fig.axes[0].images[0].get_array()) < 1, connections(layer))


def test_connectivity_of_lenet5_c5_labels_all_16_inputs(tmp_path):
    """The reported case: C5's 16 y-tick labels overlapped in a 16 × 120 matrix drawn with square
    cells. Rows now keep room for a label each; the 120 columns are labelled every few maps."""
    c5 = models.get("lenet5", rng=np.random.default_rng(0))["C5"]
    fig = connectivity_diagram(c5, name="C5")
    assert_readable(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(i) for i in range(16)]
    cols = [int(t.get_text()) for t in ax.get_xticklabels()]
    assert cols[0] == 0 and cols[-1] >= 110 and len(cols) >= 12
    assert_png_is_the_figure(fig, connectivity_diagram(c5, tmp_path / "c5.png", name="C5"))


def test_connectivity_size_depends_on_the_counts_only():
    sizes = {tuple(connectivity_diagram(conv(6, 16, 3, **kw), name=name).bbox.size)
             for kw, name in (({}, "a"), ({"groups": 2}, "a much longer layer name than usual"),
                              ({"connections": tables.lenet5_c3()}, "C3"))}
    assert len(sizes) == 1, sizes


def test_connectivity_long_name_shrinks_the_title_not_the_figure():
    fig = connectivity_diagram(conv(6, 16, 3), name="a layer name " * 12)
    assert_readable(fig)


# --- feature_maps ----------------------------------------------------------------------------------

def maps_model(c: int):
    rng = np.random.default_rng(c)
    return nn.Sequential([("conv", nn.Conv2D(1, c, 3, rng=rng)), ("act", nn.ReLU()), ("pool", nn.MaxPool2D(2)),
                          ("flat", nn.Flatten()), ("fc", nn.Dense(c * 25, 3, rng=rng))], input_shape=(12, 12, 1))


def picture_axes(fig) -> list:
    """The axes that draw a row's values (one per line of tiles), in row order; not the colour bars."""
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "colour bar"]


@pytest.mark.parametrize("c", COUNTS)
def test_feature_maps_are_readable_at_any_map_count(c, tmp_path):
    model = maps_model(c)
    x = np.random.default_rng(1).random((12, 12, 1)).astype(np.float32)
    fig = feature_maps(model, x, max_maps=c, classes=["cat", "dog", "a rather long class name"])
    texts = assert_readable(fig)
    assert_tight(fig)
    acts = activations(model, x)
    bars = [ax for ax in fig.axes if ax.get_label() == "colour bar"]
    assert len(bars) == len(acts)  # one colour bar per row
    tiles = picture_axes(fig)
    r = _renderer(fig)
    for ax in tiles:
        if ax.images[0].get_array().shape[0] > 1:  # a line of map tiles, each as tall as the line
            px, py = image_px_per_cell(ax)
            assert px == pytest.approx(py, abs=0.05)
            assert ax.images[0].get_window_extent(r).height >= 24 - EPS  # MIN_TILE_PX
    # every map carries its index: the conv row's lines (the first half of the 10-pixel-tall ones,
    # the ReLU's being the second) label each of their tiles, 0..c-1 in all
    lines = [ax for ax in tiles if ax.images[0].get_array().shape[0] == 10]
    conv_lines = lines[:len(lines) // 2]
    labels = [int(t.get_text()) for ax in conv_lines for t in ax.get_xticklabels()]
    assert labels == list(range(c))
    # the output strip: the class names, the largest logit in bold
    out = tiles[-1]
    names = [t.get_text() for t in out.get_xticklabels()]
    assert names == ["cat", "dog", "a rather long class name"]
    best = int(np.argmax(acts[-1].array))
    assert [t.get_fontweight() for t in out.get_xticklabels()][best] == "bold"
    assert_png_is_the_figure(fig, feature_maps(model, x, tmp_path / "m.png", max_maps=c,
                                               classes=["cat", "dog", "a rather long class name"]))
    assert any("argmax: " in t for t, _ in texts)


def test_feature_maps_use_the_reports_zero_centred_scale():
    """Diverging RdBu_r (the report's blue–white–red) with limits ±max|value| of each layer, so that
    white is exactly zero; the input in grey from its minimum to its maximum. Each row has a colour
    bar with that scale."""
    model = maps_model(6)
    x = np.random.default_rng(2).random((12, 12, 1)).astype(np.float32)
    fig = feature_maps(model, x)
    acts = activations(model, x)
    bars = [ax for ax in fig.axes if ax.get_label() == "colour bar"]
    images = [ax.images[0] for ax in picture_axes(fig)]
    assert len(images) == len(acts)  # six maps of 10×10 and 5×5 fit on one line each
    for im, act in zip(images, acts):
        a = np.asarray(act.array, dtype=np.float64)
        if act.name == "input":
            assert im.get_cmap().name.startswith("gray")
            assert im.get_clim() == (a.min(), a.max())
        else:
            assert im.get_cmap().name.startswith("RdBu_r")
            limit = np.abs(a).max()
            assert im.get_clim() == (-limit, limit)
    for bar, act in zip(bars, acts):
        labels = [t.get_text() for t in bar.get_yticklabels()]
        if act.name != "input":
            limit = np.abs(act.array).max()
            assert labels[0] == f"{-limit:.2g}" and labels[-1] == f"{limit:.2g}" and "0" in labels


def test_feature_maps_of_a_colour_input():
    """An RGB input row is drawn in colour, without a colour bar (it has no single scale)."""
    rng = np.random.default_rng(4)
    model = nn.Sequential([("conv", nn.Conv2D(3, 6, 3, rng=rng)), ("flat", nn.Flatten()),
                           ("fc", nn.Dense(6 * 36, 4, rng=rng))], input_shape=(8, 8, 3))
    x = rng.random((8, 8, 3)).astype(np.float32)
    fig = feature_maps(model, x)
    assert_readable(fig)
    assert_tight(fig)
    bars = [ax for ax in fig.axes if ax.get_label() == "colour bar"]
    assert len(bars) == 3 - 1 + 1  # conv, flat, fc; not the input
    rgb = picture_axes(fig)[0].images[0].get_array()
    x64 = x.astype(np.float64)  # the picture scales in float64, as here
    np.testing.assert_allclose(rgb, (x64 - x64.min()) / (x64.max() - x64.min()), rtol=1e-12)


def test_feature_maps_of_lenet5_label_the_output_with_classes():
    net = models.get("lenet5", rng=np.random.default_rng(0))
    x = np.random.default_rng(3).random((28, 28, 1)).astype(np.float32)
    fig = feature_maps(net, x)  # default: the class indices
    assert_readable(fig)
    out = picture_axes(fig)[-1]
    assert [t.get_text() for t in out.get_xticklabels()] == [str(k) for k in range(10)]
    # C5's 1×1×120 output is one compact strip, as flatten is drawn
    c5 = next(t for t in fig.texts if t.get_text().startswith("C5  "))
    assert "120 values" in c5.get_text()
    with pytest.raises(ValueError, match="classes must name each of the 10 outputs of the last layer; "
                                         "received 3 names"):
        feature_maps(net, x, classes=["a", "b", "c"])


# --- receptive_field_overlay without an image ---------------------------------------------------------

def test_receptive_overlay_on_a_blank_canvas(tmp_path):
    rng = np.random.default_rng(0)
    model = nn.Sequential([("c1", nn.Conv2D(1, 2, 3, dilation=2, rng=rng)),
                           ("c2", nn.Conv2D(2, 2, 3, stride=2, dilation=3, rng=rng))], input_shape=(24, 24, 1))
    fig = receptive_field_overlay(model, None, "c2", (2, 3))
    over = fig.axes[0].images[0].get_array()
    mask, _ = receptive_field(model, "c2", (2, 3))
    assert over.shape == (24, 24, 3)
    np.testing.assert_array_equal(over[mask], np.broadcast_to([1.0, 0.15, 0.1], (int(mask.sum()), 3)))
    np.testing.assert_array_equal(over[~mask], 1.0)  # the rest of the canvas is white
    assert "blank canvas" in fig.axes[0].get_title() and "holes" in fig._suptitle.get_text()
    assert_readable(fig)
    assert_png_is_the_figure(fig, receptive_field_overlay(model, None, "c2", (2, 3), tmp_path / "rf.png"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("layout") / "run"
    save_checkpoint(d, models.get("lenet5", rng=0), epoch=1,
                    meta={"dataset": "sample", "classes": [f"d{k}" for k in range(10)],
                          "normalization": {"mean": [0.1307], "std": [0.3081]}})
    return d


def test_show_receptive_without_an_input_draws_a_blank_canvas(run_dir, tmp_path, capsys):
    out = tmp_path / "rf.png"
    assert cli.main(["show", "receptive", str(run_dir), "--layer", "C3", "--at", "4,5", "-o", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert stdout.strip() == str(out) and "input:" not in err
    px = np.asarray(Image.open(out).convert("RGB"), dtype=np.int64)
    ref = tmp_path / "ref.png"
    receptive_field_overlay(models.get("lenet5", rng=0), None, "C3", (4, 5), ref)
    np.testing.assert_array_equal(px, np.asarray(Image.open(ref).convert("RGB"), dtype=np.int64))
    assert cli.main(["show", "receptive", str(run_dir), "--invert", "-o", str(out)]) == 2
    assert "--invert applies to --image only" in capsys.readouterr().err


def test_show_maps_names_the_classes_from_the_checkpoint(run_dir, tmp_path, capsys, monkeypatch):
    import featuremaps.pictures as pictures

    real, seen = pictures.feature_maps, {}

    def spy(model, x, path, **kwargs):  # draws the same figure in memory too, to look at its labels
        seen["fig"] = real(model, x, None, **kwargs)
        return real(model, x, path, **kwargs)
    monkeypatch.setattr(pictures, "feature_maps", spy)
    out = tmp_path / "maps.png"
    assert cli.main(["show", "maps", str(run_dir), "--index", "0", "-o", str(out)]) == 0, capsys.readouterr().err
    strip = picture_axes(seen["fig"])[-1]
    assert [t.get_text() for t in strip.get_xticklabels()] == [f"d{k}" for k in range(10)]
    assert_png_is_the_figure(seen["fig"], out)
