"""Fixtures shared by several test modules."""
import pytest

from featuremaps.data import datasets as ds_mod


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    """An empty cache root and no repository fallback, so lookups see only what a test writes."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEATUREMAPS_DATA", str(cache))
    monkeypatch.setattr(ds_mod, "SHARED_MNIST_DIR", None)
    return cache
