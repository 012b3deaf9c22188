"""docs/colour.md and docs/corners.md are generated from the experiments' cached trained weights: the
committed pages and figures must be what the builders produce now, the cache must hold the weights of
the current key (so CI never retrains), and the cache itself must refuse what it should."""
import sys

import numpy as np
import pytest

from featuremaps import nn
from tests.doc_pages import DOCS, build_page

sys.path.insert(0, str(DOCS))
import _cache  # noqa: E402 - docs/_cache.py

PAGES = {"colour": "build_colour.py", "corners": "build_corners.py"}


@pytest.fixture(scope="module", params=[p for p in PAGES if (DOCS / PAGES[p]).exists()])
def built(request, tmp_path_factory):
    name = request.param
    cached = sorted((DOCS / "cache").glob(f"{name}-*.npz"))
    mod, page, drawn = build_page(PAGES[name], tmp_path_factory.mktemp(name))
    return name, mod, page, drawn, cached


def test_committed_page_and_figures_are_up_to_date(built):
    name, mod, page, drawn, _ = built
    problems = mod.stale(page, drawn)
    assert not problems, "\n".join(problems) + f"\nrun `python docs/{PAGES[name]}` and commit the result"


def test_the_build_used_the_committed_cache_without_training(built):
    name, mod, page, drawn, cached = built
    after = sorted((DOCS / "cache").glob(f"{name}-*.npz"))
    assert len(cached) == 1 and after == cached, f"docs/cache has {cached} before and {after} after the build"


def test_the_page_states_measured_results(built):
    name, _, page, _, _ = built
    if name == "colour":
        assert "**The claim is confirmed.**" in page
        for needle in ["(a) 3-D kernels", "(b) separate 2-D", "0 vs 1 %", "red–green opponent", "= bias"]:
            assert needle in page, needle
    if name == "corners":
        for needle in ["2-conv", "orientation-selective", "corner-selective", "remix of conv2 map", "(engine "]:
            assert needle in page, needle
    assert page.count("](img/") == len(built[3]) and "{{" not in page


def _tiny(seed: int = 0):
    return nn.Sequential([nn.Conv2D(1, 2, 3, rng=np.random.default_rng(seed))], input_shape=(5, 5, 1))


def test_cache_trains_once_then_loads_the_same_weights(tmp_path):
    calls = []

    def train():
        calls.append(1)
        return {"m0": _tiny(1), "m1": _tiny(2)}

    first, fresh1 = _cache.cached_models("t", "k1", train, lambda i: _tiny(9), cache=tmp_path)
    again, fresh2 = _cache.cached_models("t", "k1", train, lambda i: _tiny(9), cache=tmp_path)
    assert (fresh1, fresh2, len(calls)) == (True, False, 1)
    for i in ("m0", "m1"):
        assert np.array_equal(first[i][0].weight.data, again[i][0].weight.data)
    _cache.cached_models("t", "k2", train, lambda i: _tiny(9), cache=tmp_path)  # a new key replaces the file
    assert [p.name for p in tmp_path.glob("t-*.npz")] == ["t-k2.npz"] and len(calls) == 2


def test_cache_refuses_weights_of_another_shape(tmp_path):
    _cache.cached_models("t", "k", lambda: {"m": _tiny()}, lambda i: _tiny(), cache=tmp_path)
    wider = lambda i: nn.Sequential([nn.Conv2D(1, 3, 3, rng=np.random.default_rng(0))], input_shape=(5, 5, 1))  # noqa: E731
    with pytest.raises(ValueError, match="Nothing was loaded"):
        _cache.cached_models("t", "k", lambda: {}, wider, cache=tmp_path)


def test_key_changes_with_settings_and_code(tmp_path, monkeypatch):
    a = _cache.key_of(["examples/colour_experiment.py"], {"seeds": [0, 1, 2]})
    assert a == _cache.key_of(["examples/colour_experiment.py"], {"seeds": [0, 1, 2]})
    assert a != _cache.key_of(["examples/colour_experiment.py"], {"seeds": [0, 1]})
    assert a != _cache.key_of(["examples/corners_experiment.py"], {"seeds": [0, 1, 2]})
    (tmp_path / "featuremaps" / "data").mkdir(parents=True)
    for rel in (*_cache.ALWAYS, "x.py"):
        (tmp_path / rel).write_bytes((_cache.ROOT / rel).read_bytes() if rel != "x.py" else b"1")
    monkeypatch.setattr(_cache, "ROOT", tmp_path)
    b = _cache.key_of(["x.py"], {})
    (tmp_path / "x.py").write_bytes(b"2")
    assert b != _cache.key_of(["x.py"], {})
