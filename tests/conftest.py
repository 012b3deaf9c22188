"""Fixtures shared by several test modules, the hypothesis profiles, and the guard for ../shared/data.

Hypothesis profiles (HYPOTHESIS_PROFILE=name selects one; else `ci` when CI=true, else `default`):
- `default`: random examples, a new draw each run (local runs keep exploring);
- `ci`: derandomized (each test's examples follow from its own source, so every CI run tests the
  same cases and a failure reproduces), no database, the failing example's blob printed;
- `thorough`: random, and every test runs 10× its own `max_examples` (for occasional local runs).
"""
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # the Keras oracle runs on torch (its numpy backend needs jax)
os.environ.setdefault("FEATUREMAPS_AUTOTUNE", "0")  # conv algorithms by rule: no test depends on timing

import pytest
from hypothesis import settings

from featuremaps.data import datasets as ds_mod

IN_CI = os.environ.get("CI", "").lower() == "true"
THOROUGH_FACTOR = 10
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"  # ../shared/data/mnist

settings.register_profile("default", deadline=None, print_blob=True)
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "default")
settings.load_profile(PROFILE)


# Modules whose subject is behaviour (the CLI, files and their safety, messages, pictures, the browser),
# not float arithmetic: their float checks are either exact by construction or repeat what the op and
# model tests check. CI's second run (the other BLAS kernel, NumPy path: `.ci/run` passes
# `-m "not one_run"`) leaves them out to stay within its time budget; the first run runs everything.
ONE_RUN_MODULES = frozenset({
    "test_cli", "test_cli_options", "test_cli_messages", "test_cli_structure", "test_cli_formats",
    "test_pictures", "test_pictures_layout", "test_examples", "test_repr", "test_report_browser",
    "test_report_graph_browser", "test_data_download", "test_json", "test_atomic", "test_progress",
    "test_tables", "test_onnx_safety", "test_checkpoint_recovery", "test_kill", "test_report_colour_browser",
    "test_pictures_rgb",
})


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_mnist: needs the official MNIST files in ../shared/data/mnist "
                                       "(skipped where absent, a failure in CI)")
    config.addinivalue_line("markers", "one_run: run by CI's first run only (see ONE_RUN_MODULES)")


def pytest_report_header(config):
    return f"hypothesis profile: {PROFILE}"


def pytest_collection_modifyitems(config, items):
    """Marks the ONE_RUN_MODULES tests `one_run`. The `thorough` profile multiplies each test's own
    max_examples (an explicit @settings count would otherwise win over the profile's)."""
    for item in items:
        if item.path.stem in ONE_RUN_MODULES:
            item.add_marker(pytest.mark.one_run)
    if PROFILE != "thorough":
        return
    done = set()  # the parametrized items of one test share its function: multiply it once
    for item in items:
        fn = getattr(item, "obj", None)
        if not getattr(fn, "_hypothesis_internal_settings_applied", False) or id(fn) in done:
            continue  # no @settings of its own, or already multiplied
        done.add(id(fn))
        own = fn._hypothesis_internal_use_settings  # where @settings keeps them (read when the test runs)
        fn._hypothesis_internal_use_settings = settings(own, max_examples=own.max_examples * THOROUGH_FACTOR)


@pytest.fixture(scope="session", autouse=True)
def _private_data_cache(tmp_path_factory):
    """Every test (and every process a test starts) uses a fresh cache root instead of
    ~/.cache/featuremaps, so no test depends on what this machine downloaded before."""
    cache = tmp_path_factory.mktemp("featuremaps-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEATUREMAPS_DATA", str(cache))
        mp.setenv("FEATUREMAPS_CACHE", str(cache))  # the conv autotuner's cache too
        yield cache


def require_shared_mnist() -> Path:
    """../shared/data/mnist relative to the repo root, or skip with the reason; in CI (CI=true),
    which always provides it, a missing folder is a failure instead."""
    if SHARED_MNIST.is_dir():
        return SHARED_MNIST
    if IN_CI:
        pytest.fail(f"{SHARED_MNIST} is missing, but CI must provide ../shared/data/mnist (the official MNIST files)")
    pytest.skip(f"needs the official MNIST files in ../shared/data/mnist; {SHARED_MNIST} is not on this machine")


@pytest.fixture
def shared_mnist() -> Path:
    """The ../shared/data/mnist folder (see `require_shared_mnist`)."""
    return require_shared_mnist()


@pytest.fixture(autouse=True)
def _shared_mnist_marker(request):
    if request.node.get_closest_marker("shared_mnist") is not None:
        require_shared_mnist()


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    """An empty cache root and no repository fallback, so lookups see only what a test writes."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEATUREMAPS_DATA", str(cache))
    monkeypatch.setattr(ds_mod, "SHARED_MNIST_DIR", None)
    return cache
