"""The one input image that `explain`, `show` and `report` look at.

An image file is read by the same reader as `featuremaps predict` (PNG/JPEG via Pillow, or IDX) and
checked against the model's input shape (never resized); a dataset image is the N-th image of the
evaluation split. Both are normalised with the checkpoint's stored normalisation, exactly as in
training and `predict`.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._common import CLIError, check_input_shape, dark_on_light_note, load, model_input_shape, read_images

__all__ = ["Input", "image_file", "dataset_image"]

_DISPLAY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


class Input(NamedTuple):
    x: np.ndarray            # (H, W, C) in the model's dtype, normalised as in training
    image: np.ndarray        # (H, W, C) uint8, as read
    label: int | None
    source: dict             # JSON-able; "description" is a human-readable phrase
    classes: list | None


def _prepare(model, meta, image: np.ndarray) -> np.ndarray:
    from ..train import normalize_images
    ps = model.parameters()
    dtype = ps[0].dtype if ps else np.dtype(np.float32)
    return normalize_images(image[None], meta.get("normalization"), dtype)[0]  # (H, W, C)


def image_file(model, meta, path, *, invert: bool = False, index: int | None = None) -> Input:
    """One image of a PNG/JPEG/IDX file; `index` picks one from an IDX file holding several."""
    images, names = read_images(Path(path), model_input_shape(model))
    if index is None and len(images) > 1:
        raise CLIError(f"{path}: holds {len(images)} images; pick one with --index N")
    index = index or 0
    if not 0 <= index < len(images):
        raise CLIError(f"--index must be in [0, {len(images) - 1}] for {path}; received {index}")
    img = 255 - images[index] if invert else images[index]
    desc = names[index] if len(images) > 1 else f"image {path}"
    source = {"kind": "image", "path": str(path), "index": index, "description": desc}
    hint = dark_on_light_note(img[None], desc.removeprefix("image "), meta, bool(invert))
    if hint:
        source["note"] = hint  # explain and show print it, as predict does
    return Input(_prepare(model, meta, img), img, None, source, None)


def dataset_image(model, meta, index: int, *, data_dir=None, dataset: str | None = None,
                  split: str | None = None) -> Input:
    """Image `index` of a dataset split. With `dataset`/`split` given, exactly that split (downloaded
    if needed). Otherwise the official test set of the checkpoint's dataset when it can be found
    without downloading, else, for MNIST models, the embedded sample's validation split (the
    source's "note" says so)."""
    from .. import data
    note = None
    if dataset is not None or split is not None:
        name = dataset or meta.get("dataset") or "sample"
        split = split or "test"
        ds = load(name, split, data_dir)
        split_desc = f"{_DISPLAY.get(ds.name, ds.name)} {split} split"
    else:
        official = {"sample": "mnist"}.get(meta.get("dataset") or "sample", meta.get("dataset"))
        try:
            ds = data.load(official, "test", data_dir=data_dir, download=False, progress=False)
            split_desc = f"official {_DISPLAY.get(official, official)} test set"
        except (data.DataError, ValueError, OSError) as e:
            if official != "mnist":
                raise CLIError(f"--index needs the {official} test set, which was not found ({e}); "
                               "pass --data DIR or use --image") from None
            ds = data.load("sample", "val", progress=False)
            split_desc = "embedded sample's val split"
            note = "the official MNIST test set was not found, so --index reads the embedded sample's val split"
    if not 0 <= index < len(ds):
        raise CLIError(f"--index must be in [0, {len(ds) - 1}] for the {split_desc}; received {index}")
    check_input_shape(model, ds, meta.get("model_name", "model"))
    label = int(ds.labels[index])
    classes = list(getattr(ds, "classes", []) or [])
    label_name = classes[label] if label < len(classes) else str(label)
    source = {"kind": "dataset", "dataset": ds.name, "split": ds.split, "index": index, "label": label,
              "class": label_name, "description": f"{split_desc}, image {index} (label {label_name})"}
    if note:
        source["note"] = note
    return Input(_prepare(model, meta, ds.images[index]), ds.images[index], label, source, classes or None)
