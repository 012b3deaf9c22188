"""Trained weights for the experiment pages (`build_colour.py`, `build_corners.py`), cached in docs/cache/.

Training the experiments' models takes a minute or two on 2 cores; rendering a page from trained
weights takes seconds. So each page keeps its models' weights in `docs/cache/<name>-<key>.npz`, where
`key` is a hash of the code that decides the weights (the experiment script, the data generator,
`featuremaps/train.py` and `featuremaps/optim.py`) and of the run's settings (seeds, sizes, epochs).
`cached_models` loads that file when it exists and otherwise trains, writes it (atomically, replacing
the page's older files) and returns the fresh models. So `--check` retrains only when the key changes.

The file is data: read with `allow_pickle=False`, every array checked against the model it is loaded
into (`load_state_dict`, strict), nothing else in it used.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

CACHE = Path(__file__).resolve().parent / "cache"
ROOT = Path(__file__).resolve().parents[1]
ALWAYS = ("featuremaps/train.py", "featuremaps/optim.py", "featuremaps/data/synthetic.py")


def key_of(files: list[str], settings: dict) -> str:
    """16 hex digits of the SHA-256 of `files` (paths relative to the repository, plus ALWAYS) and `settings`."""
    h = hashlib.sha256()
    for rel in sorted(set(files) | set(ALWAYS)):
        h.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes().replace(b"\r\n", b"\n") + b"\0")
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:16]


def cached_models(name: str, key: str, train: Callable[[], dict], make: Callable[[str], object],
                  cache: Path = CACHE) -> tuple[dict, bool]:
    """({model id: model}, trained now?). From `cache/<name>-<key>.npz` when present, each model made
    by `make(id)` and its state loaded strictly; else `train()` (→ {id: trained model}) and the file written."""
    path = cache / f"{name}-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        ids = sorted({k.split("/", 1)[0] for k in arrays})
        models = {}
        for i in ids:
            models[i] = make(i)
            models[i].load_state_dict({k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(i + "/")})
        return models, False
    models = train()
    arrays = {f"{i}/{k}": v for i, m in models.items() for k, v in m.state_dict().items()}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    for old in cache.glob(f"{name}-*.npz"):
        if old != path:
            old.unlink()
    return models, True
