"""featuremaps.data.synthetic: matched per-channel edge statistics, determinism per seed, and `load`."""
import numpy as np
import pytest

from featuremaps import data
from featuremaps.data import synthetic as S

N = 1800  # 600 images per class


@pytest.fixture(scope="module")
def colour():
    return S.colour_conjunctions(N, 11)


def _per_image(images, channel) -> np.ndarray:
    return np.stack([S.edge_histogram(images[i:i + 1], channel) for i in range(len(images))])  # (n, 8 bins)


def _permutation_p(hists: np.ndarray, labels: np.ndarray, rounds: int = 199, seed: int = 0) -> float:
    """p-value of a between-class statistic of the per-image histograms against relabelled images.

    The statistic is Σ over bins and classes of n_k·(class mean − overall mean)² / the bin's variance:
    it sees a difference in the counts of a bin as well as in the histogram's shape. The edge pixels of
    one image are far from independent (one element gives dozens in one bin), so no chi-square
    distribution applies; exchanging whole images between classes does: under equal distributions
    every relabelling is as likely as the real one."""
    var = hists.var(0) + 1e-9  # (bins,)
    classes = np.unique(labels)

    def stat(lab):
        means = np.stack([hists[lab == k].mean(0) for k in classes])  # (classes, bins)
        n = np.array([(lab == k).sum() for k in classes])[:, None]
        return (n * (means - hists.mean(0)) ** 2 / var).sum()
    rng = np.random.default_rng(seed)
    real = stat(labels)
    beaten = sum(stat(rng.permutation(labels)) >= real for _ in range(rounds))
    return (1 + beaten) / (1 + rounds)


@pytest.mark.parametrize("channel", [0, 1])
def test_colour_edge_histograms_match_across_classes(colour, channel):
    """The per-class histograms by orientation and polarity (8 direction bins) are equal in
    distribution: a permutation test over images must not reject at alpha = 0.01."""
    x, y = colour
    hists = _per_image(x, channel)
    assert np.stack([hists[y == k].sum(0) for k in range(3)]).min() > 50  # every bin is populated
    assert _permutation_p(hists, y) > 0.01


def test_the_histogram_test_has_power(colour):
    """Negative control: the opponent signal R - G differs between class 0 (opponent) and 2 (luminance),
    and the same test rejects that at its smallest p-value."""
    x, y = colour
    opp = (x[..., :1].astype(np.int16) - x[..., 1:2] + 128).clip(0, 255)  # (n, h, w, 1)
    keep = y != 1
    assert _permutation_p(_per_image(opp[keep], 0), y[keep]) == 1 / 200


def test_colour_blue_is_flat_and_labels_balanced(colour):
    x, y = colour
    # the blue channel holds pixel noise only: a gradient above the threshold is a rare noise peak
    assert S.edge_histogram(x, 2).sum() < 1e-3 * S.edge_histogram(x, 0).sum()
    assert np.bincount(y).tolist() == [N // 3] * 3


@pytest.mark.parametrize("make", [S.colour_conjunctions, S.corners])
def test_deterministic_per_seed_and_seeds_differ(make):
    a, la = make(60, 3)
    b, lb = make(60, 3)
    c, _ = make(60, 4)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_corners_orientation_histograms_nearly_match():
    """The segments are the same in every class; only the junction pixels differ, so the total
    variation distance between class histograms stays small (bound stated: 0.05)."""
    x, y = S.corners(900, 5)
    h = np.stack([S.edge_histogram(x[y == k], 0) for k in range(3)]).astype(float)
    h /= h.sum(axis=1, keepdims=True)
    assert 0.5 * np.abs(h[:, None] - h[None]).sum(-1).max() < 0.05


@pytest.mark.parametrize("name,shape", [("colour-conjunctions", (32, 32, 3)), ("corners", (28, 28, 1))])
def test_load_registers_both(name, shape):
    tr, te = data.load(name, "train"), data.load(name, "test")
    assert tr.image_shape == shape and len(tr) == S.SIZES["train"] and len(te) == S.SIZES["test"]
    assert not np.array_equal(tr.images[:10], te.images[:10])
    assert not np.array_equal(tr.images[:10], data.load(name, "train", seed=1).images[:10])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n must be a positive int"):
        S.corners(0)
    with pytest.raises(TypeError, match="seed must be an int"):
        S.colour_conjunctions(3, "x")
    for bad, error in (("x", TypeError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match=f"load: seed must be a non-negative int; received {bad!r}"):
            data.load("corners", "train", seed=bad)
