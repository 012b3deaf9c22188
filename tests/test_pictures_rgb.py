"""Issue 13, pictures: a first layer's colour tiles are 0.5 + w / (2·max|w|) (0 = mid-grey, read back
from the PNG's pixels); `channels=True` / `show kernels --channels` draws the R, G, B slices as a
grid with R/G/B rows; `connectivity_diagram(weights=...)` draws line widths ∝ |weight|, coloured by
sign, and rejects bad weights naming the argument."""
import numpy as np
import pytest
from PIL import Image

from featuremaps import models, nn
from featuremaps.checkpoint import save_checkpoint
from featuremaps.pictures import connectivity_diagram, kernel_grid
from tests.clirun import one_error, run_cli

PLUS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # +1 top centre, -1 bottom centre


def rgb_layer(*filters):
    """A Conv2D(3, len(filters), 3) whose filter n is `filters[n]`, a (3, 3, 3) array (kh, kw, RGB)."""
    layer = nn.Conv2D(3, len(filters), 3, rng=np.random.default_rng(0))
    layer.weight.data[...] = np.stack(filters, axis=-1).astype(layer.weight.data.dtype)
    return layer


def opponent(scale=1.0):
    """R = +k, G = -k, B = 0: red where k > 0, green where k < 0, mid-grey where k = 0."""
    return np.stack([scale * PLUS, -scale * PLUS, np.zeros((3, 3))], axis=-1)


def png_tile_pixel(fig, path, n_cols, tile, r, c, kh=3, kw=3, gap=1):
    """The RGB value in the saved PNG at the centre of kernel pixel (r, c) of colour tile `tile`."""
    fig.canvas.draw()
    ax = fig.axes[0]
    h_img, w_img = ax.images[0].get_array().shape[:2]
    box = ax.get_window_extent()
    row, col = divmod(tile, n_cols)
    y, x = row * (kh + gap) + r + 0.5, col * (kw + gap) + c + 0.5  # image coordinates
    px = box.x0 + x * box.width / w_img
    py = box.y1 - y * box.height / h_img  # display y grows upwards
    png = np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)
    return png[int(png.shape[0] - py), int(px)]


# --- colour tiles around mid-grey ----------------------------------------------------------------------

def test_colour_tiles_are_half_plus_w_over_twice_max(tmp_path):
    luminance = np.stack([np.maximum(PLUS, 0) * 0.5] * 3, axis=-1)  # light grey on mid-grey (min-max: on black)
    layer = rgb_layer(opponent(2.0), np.zeros((3, 3, 3)), luminance)
    fig = kernel_grid(layer)
    img = np.asarray(fig.axes[0].images[0].get_array())
    w = layer.weight.data.astype(np.float64)
    np.testing.assert_allclose(img[:3, :3], 0.5 + w[..., 0] / (2 * 2.0), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(img[:3, 4:7], np.full((3, 3, 3), 0.5))  # a zero kernel: mid-grey
    np.testing.assert_allclose(img[:3, 8:11], 0.5 + w[..., 2] / (2 * 0.5), atol=1e-12)  # own max |w|
    assert img[1, 9].tolist() == [0.5, 0.5, 0.5] and img[0, 9].tolist() == [1.0, 1.0, 1.0]
    text = fig._suptitle.get_text()
    assert "normalize='per_filter'" in text and "0.5 + w / (2·max|w[:, :, :, n]|)" in text and "mid-grey" in text
    assert "min–max" not in text


def test_global_uses_one_max_for_the_layer():
    luminance = np.stack([PLUS * 0.5] * 3, axis=-1)
    bright = np.zeros((3, 3, 3))
    bright[1, 1] = 4.0
    layer = rgb_layer(opponent(2.0), luminance, bright)
    fig = kernel_grid(layer, normalize="global")
    img = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_allclose(img[:3, 4:7], 0.5 + luminance / 8.0, atol=1e-12)  # max|w| = 4 over the layer
    np.testing.assert_allclose(img[0, 5], [0.5625] * 3)  # light grey, not white: the layer's scale
    np.testing.assert_allclose(img[1, 1], [0.5] * 3)  # w = 0 is mid-grey in every filter
    assert "one scale for the layer" in fig._suptitle.get_text() and "max|w| = 4" in fig._suptitle.get_text()


def test_png_pixels_are_red_green_and_mid_grey(tmp_path):
    positive = np.zeros((3, 3, 3))
    positive[0, 0, 0] = 3.0  # a red-only kernel: its zeros are mid-grey too, not black
    layer = rgb_layer(opponent(), np.zeros((3, 3, 3)), positive)
    path = kernel_grid(layer, tmp_path / "k.png")
    fig = kernel_grid(layer)
    n_cols = int(np.ceil(np.sqrt(3 * 1.5)))
    red = png_tile_pixel(fig, path, n_cols, 0, 0, 1)  # w_R = +1, w_G = -1: (1, 0, 0.5)
    green = png_tile_pixel(fig, path, n_cols, 0, 2, 1)  # w_R = -1, w_G = +1: (0, 1, 0.5)
    grey = png_tile_pixel(fig, path, n_cols, 0, 1, 1)  # w = 0
    assert red[0] > 240 and red[1] < 15 and abs(red[2] - 128) <= 2, red
    assert green[1] > 240 and green[0] < 15 and abs(green[2] - 128) <= 2, green
    assert np.all(np.abs(grey - 127.5) <= 1), grey
    for r in range(3):
        for c in range(3):  # the zero kernel: mid-grey everywhere
            assert np.all(np.abs(png_tile_pixel(fig, path, n_cols, 1, r, c) - 127.5) <= 1)
    corner = png_tile_pixel(fig, path, n_cols, 2, 0, 0)  # (1, 0.5, 0.5): light red
    assert corner[0] > 240 and np.all(np.abs(corner[1:] - 127.5) <= 1), corner
    assert np.all(np.abs(png_tile_pixel(fig, path, n_cols, 2, 2, 2) - 127.5) <= 1)


# --- channels=True: the R, G, B slices as a grid ---------------------------------------------------------

def test_channels_draws_the_grid_with_rgb_rows():
    layer = rgb_layer(opponent(), np.zeros((3, 3, 3)), opponent(0.5))
    fig = kernel_grid(layer, channels=True, name="conv1")
    ax = fig.axes[0]
    img = np.asarray(ax.images[0].get_array(), dtype=np.float64)
    assert img.ndim == 2 and img.shape == (3 * 4 - 1, 3 * 4 - 1)  # in × out grid of 2-D tiles, no RGB image
    w = layer.weight.data.astype(np.float64)
    np.testing.assert_array_equal(img[0:3, 0:3], w[:, :, 0, 0])  # row R, column 0
    np.testing.assert_array_equal(img[4:7, 8:11], w[:, :, 1, 2])  # row G, column 2
    assert [t.get_text() for t in ax.get_yticklabels()] == ["R", "G", "B"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert ax.images[0].get_clim() == (-1.0, 1.0)  # diverging, global by default
    text = fig._suptitle.get_text()
    assert "conv1" in text and "summed" in text and "R, G, B" in text and "three 2-D slices" in text
    plain = kernel_grid(layer, rgb=False)  # rgb=False alone keeps the numbered rows and no note
    assert [t.get_text() for t in plain.axes[0].get_yticklabels()] == ["0", "1", "2"]
    assert "summed" not in plain._suptitle.get_text()
    np.testing.assert_array_equal(np.asarray(plain.axes[0].images[0].get_array()), img)


def test_channels_errors():
    layer = rgb_layer(opponent())
    with pytest.raises(ValueError, match=r"rgb=True and channels=True exclude each other"):
        kernel_grid(layer, rgb=True, channels=True)
    with pytest.raises(ValueError, match=r"kernel_grid: channels=True needs 3 input channels; layer conv2 has 6"):
        kernel_grid(nn.Conv2D(6, 4, 3), channels=True, name="conv2")


# --- the CLI -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rgb")
    save_checkpoint(root / "vgg", models.get("vgg-small", rng=0), epoch=1, meta={"dataset": "sample"})
    save_checkpoint(root / "lenet", models.get("lenet5", rng=0), epoch=1,
                    meta={"dataset": "sample", "normalization": {"mean": [0.1307], "std": [0.3081]}})
    return root


def test_show_kernels_channels_writes_the_grid(runs, tmp_path, capsys):
    out = tmp_path / "k.png"
    code, stdout, err = run_cli(capsys, "show", "kernels", runs / "vgg", "--channels", "-o", out)
    assert code == 0, err
    assert stdout.strip() == str(out)
    model = models.get("vgg-small", rng=0)
    want = kernel_grid(model["conv1_1"], tmp_path / "want.png", channels=True, name="conv1_1")
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(want)))
    colour = kernel_grid(model["conv1_1"], tmp_path / "colour.png", name="conv1_1")
    assert Image.open(out).size != Image.open(colour).size or not np.array_equal(
        np.asarray(Image.open(out)), np.asarray(Image.open(colour)))
    code, out_help, _ = run_cli(capsys, "show", "kernels", "--help")
    assert code == 0 and "--channels" in out_help
    code, out_help, _ = run_cli(capsys, "show", "maps", "--help")
    assert code == 0 and "--channels" not in out_help


def test_show_channels_errors(runs, tmp_path, capsys):
    png = tmp_path / "x.png"
    line = one_error(*run_cli(capsys, "show", "maps", runs / "lenet", "--index", "0", "--channels", "-o", png)[::2])
    assert "show maps takes no --channels" in line
    line = one_error(*run_cli(capsys, "show", "connections", runs / "lenet", "--channels", "-o", png)[::2])
    assert "show connections takes no --channels" in line
    line = one_error(*run_cli(capsys, "show", "kernels", runs / "lenet", "--layer", "C3", "--channels",
                              "-o", png)[::2])
    assert "--channels needs a layer with 3 input channels; layer 'C3' has 6" in line
    line = one_error(*run_cli(capsys, "show", "kernels", runs / "vgg", "--layer", "conv1_2", "--channels",
                              "-o", png)[::2])
    assert "layer 'conv1_2' has 32" in line
    assert not png.exists()


# --- connectivity_diagram(weights=...) --------------------------------------------------------------------

def lines(fig, label):
    found = [c for ax in fig.axes for c in ax.collections if c.get_label() == label]
    return found[0] if found else None


def test_line_widths_are_proportional_to_abs_weights():
    layer = nn.Conv2D(3, 2, 3)
    weights = np.array([[0.5, -2.0], [1.0, 0.0], [-0.25, 4.0]])
    fig = connectivity_diagram(layer, weights=weights, name="L")
    weighted = lines(fig, "weighted lines")
    segs, widths = weighted.get_segments(), np.asarray(weighted.get_linewidths())
    assert len(segs) == 5 == len(widths)
    yi, yo = np.linspace(0, 1, 3), np.linspace(0, 1, 2)
    got = {}
    for seg, lw, rgba in zip(segs, widths, weighted.get_colors()):
        i, n = int(np.argmin(np.abs(yi - seg[0][1]))), int(np.argmin(np.abs(yo - seg[1][1])))
        got[i, n] = (lw, rgba)
    assert set(got) == {(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)}
    ratio = {k: got[k][0] / abs(weights[k]) for k in got}
    np.testing.assert_allclose(list(ratio.values()), ratio[2, 1], rtol=1e-12)  # width ∝ |w|
    for k, (_, rgba) in got.items():
        red = rgba[0] > rgba[2]
        assert red == (weights[k] > 0), (k, rgba)
    assert got[2, 1][1][3] > got[0, 0][1][3]  # a larger |w| is more opaque
    zero = lines(fig, "zero-weight lines")
    assert len(zero.get_segments()) == 1 and zero.get_alpha() < 0.5  # weight 0: faint
    assert "line width ∝ |contribution|" in fig._suptitle.get_text()


def test_one_output_map_with_out_map():
    layer = nn.Conv2D(4, 3, 3)
    fig = connectivity_diagram(layer, weights=[1.0, -3.0, 0.0, 2.0], out_map=1)
    weighted = lines(fig, "weighted lines")
    assert sorted(np.asarray(weighted.get_linewidths()) / max(weighted.get_linewidths())) == pytest.approx(
        [1 / 3, 2 / 3, 1.0])
    ends = {round(float(s[1][1]), 6) for s in weighted.get_segments()}
    assert ends == {0.5}  # every weighted line ends at output map 1 (of 0, 0.5, 1)
    assert len(lines(fig, "zero-weight lines").get_segments()) == 4 * 3 - 3
    assert "into output map 1" in fig._suptitle.get_text()


def test_without_weights_the_picture_is_unchanged():
    layer = nn.Conv2D(3, 4, 3, rng=np.random.default_rng(0))
    fig = connectivity_diagram(layer)
    assert lines(fig, "weighted lines") is None and lines(fig, "zero-weight lines") is None
    assert "contribution" not in fig._suptitle.get_text()


def test_weighted_lines_skip_unconnected_pairs():
    layer = nn.Conv2D(4, 4, 3, groups=2)
    w = np.ones((4, 4))
    with pytest.raises(ValueError, match=r"weights must be 0 where the layer connects no kernel; received 1 at "
                                         r"\(i, n\) = \(0, 2\)"):
        connectivity_diagram(layer, weights=w)
    conn = np.kron(np.eye(2), np.ones((2, 2))).astype(bool)
    fig = connectivity_diagram(layer, weights=np.where(conn, w, 0.0))
    assert len(lines(fig, "weighted lines").get_segments()) == 8 and lines(fig, "zero-weight lines") is None


@pytest.mark.parametrize("kwargs, message", [
    ({"weights": np.ones((2, 3))}, r"weights must have shape \(C_in, C_out\) = \(3, 2\), or \(3,\) with "
                                   r"out_map=n; received shape \(2, 3\)"),
    ({"weights": np.ones(3)}, r"out_map must be an output map in \[0, 1\]; received out_map=None"),
    ({"weights": np.ones(3), "out_map": 2}, r"received out_map=2"),
    ({"weights": np.ones((3, 2)), "out_map": 0}, r"out_map goes with \(C_in,\) = \(3,\) weights"),
    ({"out_map": 0}, r"out_map=0 needs weights"),
    ({"weights": [[1.0, np.nan], [0, 0], [0, 0]]}, r"weights must be finite; received nan at \(i, n\) = \(0, 1\)"),
    ({"weights": np.full((3, 2), np.inf)}, r"weights must be finite; received inf"),
])
def test_bad_weights_are_named(kwargs, message):
    with pytest.raises(ValueError, match="connectivity_diagram: .*" + message):
        connectivity_diagram(nn.Conv2D(3, 2, 3), **kwargs)


def test_non_numeric_weights_are_a_type_error():
    with pytest.raises(TypeError, match=r"connectivity_diagram: weights must be a numeric array of shape "
                                        r"\(C_in, C_out\) = \(3, 2\); received str"):
        connectivity_diagram(nn.Conv2D(3, 2, 3), weights="big")
