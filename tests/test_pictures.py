"""featuremaps.pictures and `featuremaps show`: the drawn arrays are the layer's own numbers in the
documented layout (column n of the kernel grid is w[:, :, :, n]); LeNet-5's C3 diagram is Table I
of the paper; full/grouped/depthwise/tabled layers give different diagrams; a saved PNG is its
figure pixel for pixel; `show` draws exactly what the library draws for the documented defaults; a
missing matplotlib gives an install hint, never a traceback."""
import json
import sys

import numpy as np
import pytest
from PIL import Image

from featuremaps import cli, models, nn, train
from featuremaps.checkpoint import save_checkpoint
from featuremaps.inspect import activations, connections, receptive_field
from tests.test_tables import PAPER_TABLE_I
from featuremaps.pictures import (connectivity_diagram, curves, feature_maps, kernel_grid, load_metrics,
                                  receptive_field_overlay)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path, min_size=(200, 100), max_size=(3000, 3000)):
    """Check that `path` is a PNG of a plausible size with some contrast; return its RGB pixels."""
    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_SIGNATURE
    img = Image.open(path)
    img.load()
    w, h = img.size
    assert min_size[0] <= w <= max_size[0] and min_size[1] <= h <= max_size[1], img.size
    px = np.asarray(img.convert("RGB"), dtype=np.float64)
    assert px.var() > 0
    return px


def png_pixels(path):
    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_SIGNATURE
    return np.asarray(Image.open(path).convert("RGBA"))


def assert_png_is_figure(draw, tmp_path):
    """`draw(path)` writes a PNG and `draw(None)` returns the Figure: the file is that figure, pixel
    for pixel, at its size in inches times its dpi (so a blank, cropped or rescaled file fails)."""
    fig = draw(None)
    fig.canvas.draw()
    want = np.asarray(fig.canvas.buffer_rgba())
    w, h = fig.get_size_inches() * fig.dpi  # Agg truncates a fractional pixel
    got = png_pixels(draw(tmp_path / "drawn.png"))
    assert got.shape == want.shape and got.shape[2] == 4
    assert abs(got.shape[0] - h) < 1 and abs(got.shape[1] - w) < 1, (got.shape, h, w)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got.reshape(-1, 4), axis=0)) > 2  # not blank


def conv_layers():
    """The four ways a conv layer can connect 4 input maps to 8 output maps."""
    rng = np.random.default_rng(0)
    table = np.array([[1, 0, 0, 1, 1, 0, 1, 1],
                      [1, 1, 0, 0, 1, 1, 0, 1],
                      [0, 1, 1, 0, 0, 1, 1, 1],
                      [0, 0, 1, 1, 0, 0, 1, 1]], dtype=bool)
    return {
        "full": nn.Conv2D(4, 8, 3, rng=rng),
        "grouped": nn.Conv2D(4, 8, 3, groups=2, rng=rng),
        "depthwise": nn.Conv2D(4, 8, 3, groups=4, rng=rng),
        "tabled": nn.Conv2D(4, 8, 3, connections=table, rng=rng),
    }


def mosaic_tile(img, i, n, kh, kw, gap=1):
    return img[i * (kh + gap): i * (kh + gap) + kh, n * (kw + gap): n * (kw + gap) + kw]


# --- kernel_grid ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["full", "grouped", "depthwise", "tabled"])
def test_kernel_grid_layout_is_w_columns_and_unconnected_tiles_are_hatched(kind, tmp_path):
    layer = conv_layers()[kind]
    conn = connections(layer)
    fig = kernel_grid(layer, name=kind)
    ax = fig.axes[0]
    img = np.ma.filled(ax.images[0].get_array().astype(np.float64), np.nan)
    w = layer.weight.data
    in_per = w.shape[2]  # 4 for full and tabled weights, 4 / groups for grouped ones
    for n in range(8):
        for i in range(4):
            tile = mosaic_tile(img, i, n, 3, 3)
            if conn[i, n]:  # tile (i, n) is the kernel output map n applies to input map i
                np.testing.assert_array_equal(tile, w[:, :, i % in_per, n].astype(np.float64))
            else:
                assert np.isnan(tile).all()
    hatched = [c for c in ax.collections if c.get_hatch()]
    n_missing = int((~conn).sum())
    assert (len(hatched[0].get_paths()) if hatched else 0) == n_missing
    lo, hi = ax.images[0].get_clim()
    assert lo == -hi == -np.abs(w).max()  # diverging, centred on 0
    assert "normalize='global'" in fig._suptitle.get_text()
    assert_png_is_figure(lambda path: kernel_grid(layer, path, name=kind), tmp_path)


def test_kernel_grid_per_filter_scales_each_column(tmp_path):
    layer = conv_layers()["full"]
    fig = kernel_grid(layer, normalize="per_filter")
    img = np.ma.filled(fig.axes[0].images[0].get_array().astype(np.float64), np.nan)
    w = layer.weight.data.astype(np.float64)
    for n in range(8):
        column = np.stack([mosaic_tile(img, i, n, 3, 3) for i in range(4)], axis=-1)  # (3, 3, 4)
        np.testing.assert_allclose(column, w[:, :, :, n] / np.abs(w[:, :, :, n]).max(), rtol=1e-12)
    assert fig.axes[0].images[0].get_clim() == (-1.0, 1.0)
    assert "normalize='per_filter'" in fig._suptitle.get_text()


def test_kernel_grid_first_layer_on_rgb_is_in_colour(tmp_path):
    layer = nn.Conv2D(3, 12, 5, rng=np.random.default_rng(1))
    fig = kernel_grid(layer)
    img = fig.axes[0].images[0].get_array()
    tile = img[:5, :5]  # filter 0, scaled on its own around mid-grey: 0.5 + w / (2·max|w|)
    w0 = layer.weight.data[:, :, :, 0].astype(np.float64)
    np.testing.assert_allclose(tile, 0.5 + w0 / (2 * np.abs(w0).max()), rtol=1e-12)
    assert "RGB" in fig._suptitle.get_text() and "mid-grey" in fig._suptitle.get_text()
    px = read_png(kernel_grid(layer, tmp_path / "rgb.png"))
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    distinct = (np.abs(r - g) > 30) & (np.abs(g - b) > 30) & (np.abs(r - b) > 30)
    assert distinct.sum() > 50  # colour, not grey


def test_kernel_grid_truncates_and_says_so():
    fig = kernel_grid(nn.Conv2D(8, 20, 3), max_in=4, max_out=6)
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (4 * 4 - 1, 6 * 4 - 1)
    assert "first 4 of 8 inputs" in fig._suptitle.get_text() and "first 6 of 20 outputs" in fig._suptitle.get_text()


def test_kernel_grid_errors():
    with pytest.raises(ValueError, match="normalize must be one of"):
        kernel_grid(conv_layers()["full"], normalize="layer")
    with pytest.raises(TypeError, match="kernel_grid: layer must be a conv layer"):
        kernel_grid(nn.Dense(3, 4))
    with pytest.raises(ValueError, match="path must end in .png"):
        kernel_grid(conv_layers()["full"], "kernels.jpg")


# --- connectivity_diagram ------------------------------------------------------------------------------

def test_connectivity_diagrams_differ_for_each_kind(tmp_path):
    pixels = {}
    for kind, layer in conv_layers().items():
        fig = connectivity_diagram(layer, name="L")
        matrix = np.asarray(fig.axes[0].images[0].get_array())
        np.testing.assert_array_equal(matrix < 1, connections(layer))  # shaded cell = connected pair
        lines = fig.axes[1].collections[0]
        assert len(lines.get_segments()) == connections(layer).sum()  # one line per connection
        pixels[kind] = read_png(connectivity_diagram(layer, tmp_path / f"{kind}.png", name="L"))
    kinds = list(pixels)
    for a in range(len(kinds)):
        for b in range(a + 1, len(kinds)):
            pa, pb = pixels[kinds[a]], pixels[kinds[b]]
            assert pa.shape == pb.shape
            assert np.abs(pa - pb).sum(axis=2).astype(bool).mean() > 0.005, (kinds[a], kinds[b])


def test_connectivity_titles_name_the_pattern():
    words = {"full": "full", "grouped": "grouped (groups=2)", "depthwise": "depthwise (×2 per map)",
             "tabled": "connection table"}
    for kind, layer in conv_layers().items():
        title = connectivity_diagram(layer)._suptitle.get_text()
        assert words[kind] in title
        assert f"{connections(layer).sum()} of 32 input/output map pairs" in title


def test_connectivity_of_lenet5_c3_is_table_one(tmp_path):
    """The C3 diagram shows Table I of LeCun et al. (1998), as written out in test_tables.py."""
    paper = np.array([[mark == "X" for mark in row] for row in PAPER_TABLE_I])  # (6 S2 maps, 16 C3 maps)
    pairs = sorted(zip(*np.nonzero(paper)))  # (input map i, output map n)
    assert len(pairs) == 60
    fig = connectivity_diagram(models.get("lenet5")["C3"], name="C3")
    matrix, graph = fig.axes[:2]
    np.testing.assert_array_equal(np.asarray(matrix.images[0].get_array()) < 1, paper)  # shaded cells
    (marks,) = [c for c in matrix.collections if len(c.get_offsets())]  # the X marks, at (n, i)
    assert sorted((int(i), int(n)) for n, i in np.asarray(marks.get_offsets())) == pairs
    dots = {int(x): np.asarray(c.get_offsets())[:, 1] for c in graph.collections if len(c.get_offsets())
            for x in {float(v) for v in np.asarray(c.get_offsets())[:, 0]}}  # x = 0: input maps, 1: outputs
    assert len(dots[0]) == 6 and len(dots[1]) == 16
    (lines,) = [c for c in graph.collections if hasattr(c, "get_segments")]
    drawn = sorted((int(np.argmin(np.abs(dots[0] - a[1]))), int(np.argmin(np.abs(dots[1] - b[1]))))
                   for a, b in lines.get_segments())
    assert drawn == pairs  # one line per X, from input map i to output map n
    title = fig._suptitle.get_text()
    assert "C3: connection table — 60 of 96 input/output map pairs connected" in title
    assert "each output map reads 3–6 input maps" in title
    assert_png_is_figure(lambda path: connectivity_diagram(models.get("lenet5")["C3"], path, name="C3"), tmp_path)


# --- feature_maps --------------------------------------------------------------------------------------

def small_model():
    rng = np.random.default_rng(0)
    return nn.Sequential([("conv", nn.Conv2D(1, 20, 3, rng=rng)), ("act", nn.ReLU()), ("pool", nn.MaxPool2D(2)),
                          ("flat", nn.Flatten()), ("fc", nn.Dense(20 * 5 * 5, 3, rng=rng))], input_shape=(12, 12, 1))


def test_feature_maps_one_row_per_layer_with_labels(tmp_path):
    model = small_model()
    x = np.random.default_rng(1).random((12, 12, 1)).astype(np.float32)
    fig = feature_maps(model, x, max_maps=8)
    labels = [t.get_text() for t in fig.texts if t.get_gid() == "row-label"]
    acts = activations(model, x)
    assert len(labels) == len(acts) == 6
    for label, act in zip(labels, acts):
        assert label.startswith(f"{act.name}  ({act.kind})")
        assert f"\n{act.array.shape}  " in label
    assert "first 8 of 20 maps" in labels[1]
    # the conv row shows the first 8 maps side by side, exactly as the engine computed them
    row = np.ma.filled(fig.axes[1].images[0].get_array().astype(np.float64), np.nan)
    gap = 1
    assert row.shape == (10, 8 * (10 + gap) - gap)  # exactly max_maps tiles
    for c in range(8):
        np.testing.assert_array_equal(row[:, c * (10 + gap): c * (10 + gap) + 10], acts[1].array[:, :, c])
    assert_png_is_figure(lambda path: feature_maps(model, x, path), tmp_path)


def test_feature_maps_layer_filter():
    model = small_model()
    x = np.zeros((12, 12, 1), np.float32)
    fig = feature_maps(model, x, layers=["input", "pool"])
    assert [t.get_text().split()[0] for t in fig.texts if t.get_gid() == "row-label"] == ["input", "pool"]
    with pytest.raises(ValueError, match=r"unknown \['nope'\]"):
        feature_maps(model, x, layers=["nope"])


# --- receptive_field_overlay ---------------------------------------------------------------------------

def test_receptive_overlay_tints_exactly_the_field(tmp_path):
    rng = np.random.default_rng(0)
    model = nn.Sequential([("c1", nn.Conv2D(1, 2, 3, dilation=2, rng=rng)),
                           ("c2", nn.Conv2D(2, 2, 3, stride=2, dilation=3, rng=rng))], input_shape=(24, 24, 1))
    x = np.zeros((24, 24, 1), np.float32)  # flat grey, so the tint alone decides the colour
    fig = receptive_field_overlay(model, x, "c2", (2, 3))
    over = fig.axes[0].images[0].get_array()
    mask, _ = receptive_field(model, "c2", (2, 3))
    reddish = over[..., 0] - over[..., 1] > 0.1
    np.testing.assert_array_equal(reddish, mask)
    assert not mask.all() and "holes" in fig._suptitle.get_text()
    assert_png_is_figure(lambda path: receptive_field_overlay(model, x, "c2", (2, 3), path), tmp_path)


def test_receptive_overlay_rejects_wrong_inputs():
    model = small_model()
    with pytest.raises(ValueError, match="batch of one"):
        receptive_field_overlay(model, np.zeros((2, 12, 12, 1)), "conv", (0, 0))


# --- curves --------------------------------------------------------------------------------------------

HISTORY = [{"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_accuracy": 1 - 0.5 / e,
            "val_loss": 2.2 / e, "val_accuracy": None if e == 2 else 1 - 0.6 / e} for e in (1, 2, 3, 4)]


def test_curves_from_list_dict_file_and_run_dir(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"history": HISTORY, "final": HISTORY[-1]}))
    assert load_metrics(tmp_path) == HISTORY == load_metrics(tmp_path / "metrics.json")
    assert load_metrics({"loss": [1.0, 0.5], "acc": [0.2, 0.4]}) == [{"loss": 1.0, "acc": 0.2},
                                                                      {"loss": 0.5, "acc": 0.4}]
    fig = curves(HISTORY)
    loss_ax, acc_ax = fig.axes
    assert [ln.get_label() for ln in loss_ax.lines] == ["train_loss", "val_loss"]
    val = next(ln for ln in acc_ax.lines if ln.get_label() == "val_accuracy")
    np.testing.assert_allclose(val.get_ydata(), [40.0, 80.0, 85.0])  # percent; the None epoch is skipped
    np.testing.assert_array_equal(val.get_xdata(), [1, 3, 4])
    assert_png_is_figure(lambda path: curves(tmp_path, path), tmp_path)


def test_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        curves(tmp_path / "missing")
    with pytest.raises(ValueError, match="no loss or accuracy keys"):
        curves([{"epoch": 1, "lr": 0.1}])
    with pytest.raises(ValueError, match="list of per-epoch dicts"):
        curves(3)


# --- the optional extra --------------------------------------------------------------------------------

def hide_matplotlib(monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


@pytest.mark.parametrize("draw", [
    lambda: kernel_grid(conv_layers()["full"]),
    lambda: connectivity_diagram(conv_layers()["full"]),
    lambda: feature_maps(small_model(), np.zeros((12, 12, 1))),
    lambda: receptive_field_overlay(small_model(), np.zeros((12, 12, 1)), "conv", (0, 0)),
    lambda: curves(HISTORY),
])
def test_missing_matplotlib_says_how_to_install(draw, monkeypatch):
    hide_matplotlib(monkeypatch)
    with pytest.raises(ImportError, match=r"pip install 'featuremaps\[plot\]'"):
        draw()


# --- featuremaps show ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("show") / "run"
    save_checkpoint(d, models.get("lenet5", rng=0), epoch=1,
                    meta={"dataset": "sample", "normalization": {"mean": [0.1307], "std": [0.3081]}})
    (d / "metrics.json").write_text(json.dumps({"history": HISTORY}))
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(digit).save(d / "digit.png")
    return d


def show(capsys, *argv):
    code = cli.main(["show", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def lenet_input(run_dir):
    """digit.png as the model sees it: read, and normalised with the checkpoint's constants."""
    img = np.asarray(Image.open(run_dir / "digit.png"))[None, :, :, None]  # (1, 28, 28, 1) uint8
    return train.normalize_images(img, {"mean": [0.1307], "std": [0.3081]})[0]


# What each `show` command line must draw, as a call of the library (model, input, run dir, path).
SHOWN = {
    "kernels": (["kernels"], lambda m, x, run, p: kernel_grid(m["C1"], p, name="C1")),  # the first conv layer
    "kernels-C3": (["kernels", "--layer", "C3", "--normalize", "per_filter"],
                   lambda m, x, run, p: kernel_grid(m["C3"], p, normalize="per_filter", name="C3")),
    # the first conv layer that is not fully connected
    "connections": (["connections"], lambda m, x, run, p: connectivity_diagram("C3", p, name="C3", model=m)),
    "maps": (["maps", "--image", "{run}/digit.png"], lambda m, x, run, p: feature_maps(m, x, p)),
    # the last conv layer, at the centre of its 1×1 maps
    "receptive": (["receptive", "--image", "{run}/digit.png"],
                  lambda m, x, run, p: receptive_field_overlay(m, x, "C5", (0, 0), p)),
    "receptive-C3": (["receptive", "--image", "{run}/digit.png", "--layer", "C3"],  # the centre of 10×10 maps
                     lambda m, x, run, p: receptive_field_overlay(m, x, "C3", (5, 5), p)),
    "receptive-S4": (["receptive", "--image", "{run}/digit.png", "--layer", "S4", "--at", "1,2"],
                     lambda m, x, run, p: receptive_field_overlay(m, x, "S4", (1, 2), p)),
    "curves": (["curves"], lambda m, x, run, p: curves(run, p, title=f"training curves: {run}")),
}


@pytest.mark.parametrize("case", list(SHOWN))
def test_show_draws_what_the_library_draws(run_dir, tmp_path, capsys, case):
    """Each `show` picture is, pixel for pixel, the library's picture of the documented default layer,
    position and input (the library figures are checked against the numbers above)."""
    argv, draw = SHOWN[case]
    out = tmp_path / "out.png"
    argv = [a.format(run=run_dir) for a in argv]
    code, stdout, err = show(capsys, argv[0], run_dir, *argv[1:], "-o", out)
    assert code == 0, err
    assert stdout.strip() == str(out)
    model = models.get("lenet5", rng=0)
    want = png_pixels(draw(model, lenet_input(run_dir), run_dir, tmp_path / "ref.png"))
    np.testing.assert_array_equal(png_pixels(out), want)


def test_show_pictures_differ_from_each_other(run_dir, tmp_path, capsys):
    """The option values above reach the picture: no two of the command lines draw the same PNG."""
    drawn = {}
    for case, (argv, _) in SHOWN.items():
        out = tmp_path / f"{case}.png"
        argv = [a.format(run=run_dir) for a in argv]
        assert show(capsys, argv[0], run_dir, *argv[1:], "-o", out)[0] == 0
        drawn[case] = png_pixels(out)
    cases = list(drawn)
    for a in range(len(cases)):
        for b in range(a + 1, len(cases)):
            pa, pb = drawn[cases[a]], drawn[cases[b]]
            assert pa.shape != pb.shape or not np.array_equal(pa, pb), (cases[a], cases[b])


@pytest.mark.parametrize("argv, message", [
    (["kernels", "--layer", "S2"], "--layer must name a conv layer; 'S2' is a Subsampling2D (conv layers: C1, C3, C5)"),
    (["kernels", "--layer", "nope"], "no layer named 'nope'"),
    (["maps"], "needs an input: pass --image FILE or --index N"),
    (["kernels", "--index", "0"], "takes no --image/--index"),
    (["curves", "--layer", "C1"], "show curves takes no --layer"),
])
def test_show_errors_are_one_line(run_dir, tmp_path, capsys, argv, message):
    code, out, err = show(capsys, argv[0], run_dir, *argv[1:], "-o", tmp_path / "x.png")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("featuremaps: error: ") and message in err and "Traceback" not in err


def test_show_out_must_be_png(run_dir, tmp_path, capsys):
    code, _, err = show(capsys, "kernels", run_dir, "-o", tmp_path / "x.jpg")
    assert code == 2 and "-o must name a .png file" in err


def test_show_without_matplotlib_is_one_line(run_dir, tmp_path, capsys, monkeypatch):
    cli.build_parser()  # import the subcommand modules first
    hide_matplotlib(monkeypatch)
    code, _, err = show(capsys, "kernels", run_dir, "-o", tmp_path / "x.png")
    assert code == 2 and "pip install 'featuremaps[plot]'" in err and "Traceback" not in err
