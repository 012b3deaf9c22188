"""The `Dataset` record and a class-stratified validation split."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "split_validation"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels of one split of a dataset.

    images: (N, H, W, C) NHWC, uint8 (0..255) for everything `load` returns.
    labels: (N,) int64 class indices into `classes`.
    classes: the class names, `classes[k]` for label k.
    name, split: e.g. 'mnist', 'test'.
    """

    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    classes: list[str]
    name: str
    split: str

    def __post_init__(self):
        images, labels = np.asarray(self.images), np.asarray(self.labels)
        if images.ndim != 4:
            raise ValueError(f"Dataset: images must be NHWC (N, H, W, C); got shape {images.shape}")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"Dataset: labels must be a 1-D integer array; got {labels.dtype} {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(f"Dataset: {len(images)} images but {len(labels)} labels")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError(
                f"Dataset: labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes; "
                f"got range [{labels.min()}, {labels.max()}]"
            )
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        object.__setattr__(self, "classes", list(self.classes))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])

    def subset(self, index, split: str | None = None) -> "Dataset":
        """A new Dataset with `images[index]`, `labels[index]` (a copy), optionally renamed split."""
        index = np.asarray(index)
        return Dataset(self.images[index], self.labels[index], self.classes, self.name,
                       self.split if split is None else split)

    def class_counts(self) -> np.ndarray:
        """Images per class, (num_classes,) int64."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, split={self.split!r}, images={self.images.shape} "
                f"{self.images.dtype}, classes={self.num_classes})")


def split_indices(labels, fraction: float, rng: np.random.Generator, *, stratify: bool = True):
    """(train_index, val_index), each sorted; see `split_validation`."""
    labels = np.asarray(labels)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"split_validation: rng must be a numpy.random.Generator; got {type(rng).__name__}")
    if not (isinstance(fraction, (float, int)) and 0 < fraction < 1):
        raise ValueError(f"split_validation: fraction must be a number in (0, 1); got {fraction!r}")
    n = len(labels)
    perm = rng.permutation(n)
    if stratify:
        order = perm[np.argsort(labels[perm], kind="stable")]  # grouped by class, random within a class
        lab = labels[order]
        counts = np.bincount(lab)
        starts = np.cumsum(counts) - counts
        n_val = np.floor(fraction * counts + 0.5).astype(np.int64)  # per class, rounded half up
        rank = np.arange(n) - starts[lab]  # position of each item within its class
        is_val = rank < n_val[lab]
    else:
        order = perm
        is_val = np.arange(n) < int(np.floor(fraction * n + 0.5))
    val, train = np.sort(order[is_val]), np.sort(order[~is_val])
    if len(val) == 0 or len(train) == 0:
        raise ValueError(
            f"split_validation: fraction {fraction} of {n} items leaves {len(train)} for training and "
            f"{len(val)} for validation; both must be non-empty"
        )
    return train, val


def split_validation(dataset: Dataset, fraction: float, rng: np.random.Generator, *,
                     stratify: bool = True) -> tuple[Dataset, Dataset]:
    """Split `dataset` into (train, val) with about `fraction` of it in val.

    With `stratify=True` (default) each class contributes `floor(fraction * count + 0.5)` items to
    val, chosen at random by `rng`, so both parts keep the class balance. Both parts keep the items'
    original relative order (nothing assumes the input is shuffled; shuffle when batching). The split
    names become 'train' and 'val'.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"split_validation: dataset must be a Dataset; got {type(dataset).__name__}")
    train, val = split_indices(dataset.labels, fraction, rng, stratify=stratify)
    return dataset.subset(train, "train"), dataset.subset(val, "val")
