"""Initialisers: sample variance against each formula, per-weight fans, determinism, errors."""
import numpy as np
import pytest

from featuremaps import init

# name -> variance as a function of (fan_in, fan_out)
VARIANCE = {
    "lecun_uniform": lambda fi, fo: 1.0 / fi,
    "lecun_normal": lambda fi, fo: 1.0 / fi,
    "glorot_uniform": lambda fi, fo: 2.0 / (fi + fo),
    "glorot_normal": lambda fi, fo: 2.0 / (fi + fo),
    "he_uniform": lambda fi, fo: 2.0 / fi,
    "he_normal": lambda fi, fo: 2.0 / fi,
    "lecun1998_uniform": lambda fi, fo: (2.4 / fi) ** 2 / 3.0,
}


def test_names_cover_every_initialiser():
    assert set(init.names()) == set(VARIANCE) | {"zeros"}


@pytest.mark.parametrize("name", sorted(VARIANCE))
def test_sample_variance_matches_formula(name):
    n = 200_000
    fi, fo = 75, 150
    w = init.get(name)((n,), fi, fo, np.random.default_rng(1))
    assert w.dtype == np.float32 and w.shape == (n,)
    var = VARIANCE[name](fi, fo)
    # sample variance has relative std sqrt((kurtosis - 1) / n) ≤ sqrt(2/n) ≈ 0.0032; allow 5 sigma
    assert abs(w.astype(np.float64).var() / var - 1) < 0.016
    assert abs(w.mean()) < 5 * np.sqrt(var / n)
    if name.endswith("uniform"):
        limit = np.sqrt(3 * var)
        assert np.abs(w).max() <= limit * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * limit


def test_per_weight_fans_broadcast():
    # column n of a (in, out) weight has fan_in fan[n]: each column's variance follows its own fan
    fan = np.array([1.0, 4.0, 100.0])
    w = init.he_normal((100_000, 3), fan, None, np.random.default_rng(2), dtype=np.float64)
    assert w.dtype == np.float64
    np.testing.assert_allclose(w.var(axis=0), 2.0 / fan, rtol=0.03)


def test_deterministic_from_rng_and_rng_required():
    a = init.glorot_uniform((3, 3, 2, 4), 18, 36, np.random.default_rng(7))
    b = init.glorot_uniform((3, 3, 2, 4), 18, 36, np.random.default_rng(7))
    c = init.glorot_uniform((3, 3, 2, 4), 18, 36, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        init.lecun_uniform((3,), 3, 3, None)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        init.lecun_uniform((3,), 3, 3, 0)


def test_zeros_and_errors():
    z = init.zeros((2, 3))
    assert z.dtype == np.float32 and not z.any()
    with pytest.raises(ValueError, match="fan_in must be > 0"):
        init.he_uniform((2,), 0, 1, np.random.default_rng())
    with pytest.raises(ValueError, match="does not broadcast"):
        init.he_uniform((2, 3), np.ones(4), 1, np.random.default_rng())
    with pytest.raises(ValueError, match="expected one of"):
        init.get("xavier")


@pytest.mark.parametrize("shape,expected", [
    ((5, 5, 3, 8), (75, 200)), ((120, 84), (120, 84)), ((7,), (7, 7)),
])
def test_fans(shape, expected):
    assert init.fans(shape) == expected


def test_fans_rejects_other_ranks():
    with pytest.raises(ValueError, match="HWIO"):
        init.fans((2, 3, 4))
