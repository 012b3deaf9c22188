"""`load(name, split)`: find a dataset's files locally, else in the cache, else download them.

Where files are looked for, in this order (the first place that has all files of the split wins):

1. `data_dir` (the CLI's `--data DIR`), and its sub-folder `data_dir/<name>` if that exists.
   A `data_dir` that does not exist is an error; one that holds only some of a split's files is an
   error too (rather than silently mixing sources).
2. The cache `<cache root>/<name>`, where the cache root is `cache_dir` if given, else the
   environment variable `FEATUREMAPS_DATA`, else `~/.cache/featuremaps`.
3. For the official MNIST test set only ('mnist' and 'sample' split 'test'): the repository's
   `../shared/data/mnist` (next to a source checkout), when present.
4. If `download=True`: the missing files are fetched into the cache (see `download.py`: mirrors,
   md5 check, atomic rename). Otherwise, or if that fails, an error lists every place looked at.

MNIST-style file names: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`, each raw or `.gz` (also the `train-images.idx3-ubyte` spelling).
CIFAR-10: the binary batches (`data_batch_1.bin`..`data_batch_5.bin`, `test_batch.bin`), directly in
the folder or in its `cifar-10-batches-bin/`; or the archive `cifar-10-binary.tar.gz`, which is
extracted (safely) into the cache.
'sample' train/val come from the file embedded in the package (`sample.py`); nothing is looked up.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import download as _dl, synthetic
from .cifar import CIFAR10_ARCHIVE, CIFAR10_CLASSES, CIFAR10_DIR, CIFAR10_FILES, extract_cifar_archive, read_cifar_batch
from .dataset import Dataset
from .idx import DataError, read_idx
from .sample import load_sample_arrays

__all__ = ["DATASETS", "load", "default_cache_dir", "SHARED_MNIST_DIR"]

DIGITS = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
DATASETS = {  # name -> (splits, classes)
    "mnist": (("train", "test"), DIGITS),
    "fashion-mnist": (("train", "test"), FASHION_CLASSES),
    "cifar10": (("train", "test"), CIFAR10_CLASSES),
    "sample": (("train", "val", "test"), DIGITS),
    "colour-conjunctions": (("train", "test"), synthetic.COLOUR_CLASSES),
    "corners": (("train", "test"), synthetic.CORNER_CLASSES),
}
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
            "cifar_10": "cifar10", "colour_conjunctions": "colour-conjunctions", "color-conjunctions":
            "colour-conjunctions"}
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_REPO_ROOT = Path(__file__).resolve().parents[2]
# ../shared/data/mnist next to a source checkout (only when this file lives in one).
SHARED_MNIST_DIR: Path | None = (
    _REPO_ROOT.parent / "shared" / "data" / "mnist" if (_REPO_ROOT / "pyproject.toml").is_file() else None
)


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache root: `cache_dir`, else $FEATUREMAPS_DATA, else ~/.cache/featuremaps."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("FEATUREMAPS_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "featuremaps"


def _canonical_name(name) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if not isinstance(name, str) or key not in DATASETS:
        raise ValueError(f"load: unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


def _describe(d: Path, missing: list[str]) -> str:
    if not d.exists():
        return "does not exist"
    if d.is_dir() and not any(d.iterdir()):
        return "empty directory"
    return "missing " + ", ".join(missing)


def _data_dirs(data_dir, name: str) -> list[tuple[Path, str]]:
    if data_dir is None:
        return []
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise DataError(f"load: data_dir {d} {'is not a directory' if d.exists() else 'does not exist'}")
    out = [(d, "data_dir")]
    if (d / name).is_dir():
        out.append((d / name, "data_dir"))
    return out


# ---- MNIST-style (IDX) -----------------------------------------------------------------------------

def _find_idx(d: Path, stem: str) -> Path | None:
    for s in (stem, stem.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            p = d / (s + suffix)
            if p.is_file():
                return p
    return None


def _read_idx_pair(images_path: Path, labels_path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images of shape (N, H, W); got {images.dtype} {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{labels_path}: expected integer labels of shape (N,); got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"image and label counts disagree: {images_path} has {len(images)} images but "
            f"{labels_path} has {len(labels)} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{labels_path}: labels must lie in 0..{n_classes - 1}; found {labels.min()}..{labels.max()}")
    return images[..., None], labels.astype(np.int64)  # (n, h, w, 1), (n,)


def _load_idx(name: str, split: str, *, data_dir, cache_root: Path, download: bool, progress: bool,
              files_of: str, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """Find and read the IDX pair of `split` of dataset `files_of` ('mnist' or 'fashion-mnist')."""
    stems = _IDX_STEMS[split]
    cache = _dl.safe_join(cache_root, files_of, f"load({name!r}): the dataset name")  # confined to the cache
    places = _data_dirs(data_dir, files_of) + [(cache, "cache")]
    if shared and SHARED_MNIST_DIR is not None:
        places.append((SHARED_MNIST_DIR, "repository data"))
    looked = []
    for d, kind in places:
        found = [_find_idx(d, s) for s in stems]
        if all(found):
            return _read_idx_pair(found[0], found[1], len(DATASETS[name][1]))
        missing = [f"{s}[.gz]" for s, f in zip(stems, found) if f is None]
        if kind == "data_dir" and len(missing) < len(stems):
            raise DataError(f"load({name!r}, {split!r}): {d} has only some of the files: missing {', '.join(missing)}")
        looked.append(f"  {d} ({kind}): {_describe(d, missing)}")
    files = [f"{s}.gz" for s in stems]
    if download:
        paths = [_find_idx(cache, s) or _dl.fetch(f, cache, mirrors=_dl.MIRRORS[files_of],
                                                   md5=_dl.MD5[files_of].get(f), progress=progress, what=files_of)
                 for s, f in zip(stems, files)]
        return _read_idx_pair(paths[0], paths[1], len(DATASETS[name][1]))
    md5 = _dl.MD5[files_of]
    raise DataError(
        f"load({name!r}, {split!r}): cannot find {' and '.join(f'{s}[.gz]' for s in stems)}. Looked in:\n"
        + "\n".join(looked) + "\n"
        f"Downloading is off (download=False). Put the files ({', '.join(f'{f} md5 {md5.get(f)}' for f in files)}) "
        f"in a directory and pass --data DIR (data_dir=DIR), or allow downloading into {cache}."
    )


# ---- CIFAR-10 --------------------------------------------------------------------------------------

def _load_cifar(split: str, *, data_dir, cache_root: Path, download: bool, progress: bool):
    files = CIFAR10_FILES[split]
    cache = cache_root / "cifar10"
    looked, archives = [], []
    for base, kind in _data_dirs(data_dir, "cifar10") + [(cache, "cache")]:
        for d in (base, base / CIFAR10_DIR):
            present = [f for f in files if (d / f).is_file()]
            if len(present) == len(files):
                return _read_cifar(d, files)
            missing = [f for f in files if f not in present]
            if kind == "data_dir" and present:
                raise DataError(f"load('cifar10', {split!r}): {d} has only some of the files: "
                                f"missing {', '.join(missing)}")
            if d is base or d.exists():
                looked.append(f"  {d} ({kind}): {_describe(d, missing)}")
        if (base / CIFAR10_ARCHIVE).is_file():
            archives.append(base / CIFAR10_ARCHIVE)
    if not archives and download:
        archives.append(_dl.fetch(CIFAR10_ARCHIVE, cache, mirrors=_dl.MIRRORS["cifar10"],
                                  md5=_dl.MD5["cifar10"].get(CIFAR10_ARCHIVE), progress=progress, what="cifar10"))
    if archives:
        out = extract_cifar_archive(archives[0], cache)
        if archives[0].parent == cache:  # our own download: the extracted batches replace it
            archives[0].unlink(missing_ok=True)
        return _read_cifar(out, files)
    raise DataError(
        f"load('cifar10', {split!r}): cannot find {', '.join(files)} or {CIFAR10_ARCHIVE}. Looked in:\n"
        + "\n".join(looked) + "\n"
        f"Downloading is off (download=False). Put the binary batches or {CIFAR10_ARCHIVE} "
        f"(md5 {_dl.MD5['cifar10'].get(CIFAR10_ARCHIVE)}) in a directory and pass --data DIR (data_dir=DIR)."
    )


def _read_cifar(d: Path, files: list[str]):
    parts = [read_cifar_batch(d / f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---- the public entry point ------------------------------------------------------------------------

def load(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None, download: bool = True,
         progress: bool = True, cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Dataset:
    """Load one split of a dataset as a `Dataset` (uint8 NHWC images, int64 labels).

    name: 'mnist', 'fashion-mnist', 'cifar10', 'sample' (the embedded 5,000-image MNIST sample;
      splits 'train' (4,500) and 'val' (500) work offline; 'test' is the official MNIST test set), or
      the generated 'colour-conjunctions' and 'corners' (`featuremaps.data.synthetic`; nothing is read).
    split: 'train' or 'test' ('sample' also 'val').
    data_dir: a folder with the dataset's files, looked at first (the CLI's --data DIR).
    download: fetch missing files into the cache (needs internet; md5-checked).
    progress: show a progress bar on stderr while downloading (only on a terminal).
    cache_dir: the cache root (default $FEATUREMAPS_DATA or ~/.cache/featuremaps).
    seed: the generated datasets' seed (the same seed gives the same images; ignored by the others).
    The lookup order is described in this module's docstring.
    """
    key = _canonical_name(name)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"load: seed must be a non-negative int; received {seed!r}")
    if seed < 0:
        raise ValueError(f"load: seed must be a non-negative int; received {seed!r}")
    splits, classes = DATASETS[key]
    if split not in splits:
        raise ValueError(f"load: split of {key!r} must be one of {', '.join(map(repr, splits))}; got {split!r}")
    cache_root = default_cache_dir(cache_dir)
    if key in synthetic.GENERATED:
        images, labels, _ = synthetic.load_arrays(key, split, seed)
    elif key == "sample" and split in ("train", "val"):
        images, labels = load_sample_arrays(split)
    elif key == "cifar10":
        images, labels = _load_cifar(split, data_dir=data_dir, cache_root=cache_root, download=download,
                                     progress=progress)
    else:
        files_of = "fashion-mnist" if key == "fashion-mnist" else "mnist"
        images, labels = _load_idx(key, split, data_dir=data_dir, cache_root=cache_root, download=download,
                                   progress=progress, files_of=files_of, shared=files_of == "mnist" and split == "test")
    return Dataset(images, labels, classes, key, split)
