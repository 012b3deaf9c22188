"""The one input image that `explain`, `show` and `report` look at, and its preprocessing.

An image file is read by the same reader as `featuremaps predict` (PNG/JPEG via Pillow, or IDX) and
checked against the model's input shape: a wrong size is refused with both sizes named, never
resized (resizing changes every value `explain` shows). A dataset image is the N-th image of the
evaluation split. Both are normalised with the checkpoint's stored normalisation, exactly as in
training and `predict`, or with `--mean`/`--std` when given: pixels are scaled to [0, 1], then
`(x − mean) / std` per channel (`imagenet`: mean 0.485,0.456,0.406, std 0.229,0.224,0.225, the
preprocessing torchvision's ImageNet models expect). An ONNX or Keras model has no stored
normalisation, so without the flags its input is the pixels scaled to [0, 1].

A `.npy` file (recognised by its content) holds one array or a batch: `--layout` says its axes
(NHWC by default, a 3-D array HWC; NCHW and CHW for arrays saved from PyTorch). A uint8 array is
pixels and is normalised as above; a float array is taken as the model's input as it is.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._common import (CLIError, check_input_shape, dark_on_light_note, data_seed, load, model_input_shape, read_images,
                      shape_text)

__all__ = ["Input", "image_file", "dataset_image", "add_preprocess_args", "preprocessing", "numbers_or_preset",
           "LAYOUTS", "PRESETS"]

LAYOUTS = ("NHWC", "NCHW", "HWC", "CHW")
# Named --mean/--std presets, on [0, 1] pixels: torchvision's ImageNet constants.
PRESETS = {"imagenet": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
_NPY = b"\x93NUMPY"

_DISPLAY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


class Input(NamedTuple):
    x: np.ndarray            # (H, W, C) in the model's dtype, normalised as in training
    image: np.ndarray | None  # (H, W, C) uint8, as read; None for a float .npy array (the input as is)
    label: int | None
    source: dict             # JSON-able; "description" is a human-readable phrase
    classes: list | None


def _prepare(model, meta, image: np.ndarray) -> np.ndarray:
    from ..train import normalize_images
    return normalize_images(image[None], meta.get("normalization"), _dtype(model))[0]  # (H, W, C)


def image_file(model, meta, path, *, invert: bool = False, index: int | None = None,
               layout: str | None = None) -> Input:
    """One image of a PNG/JPEG/IDX file or a .npy array; `index` picks one from a file holding several."""
    expect = model_input_shape(model)
    if _is_npy(path):
        images, names = _read_array(Path(path), layout, expect)
    elif layout is not None:
        raise CLIError(f"--layout applies to .npy arrays; {path} is read as an image file (H×W×C), so drop --layout")
    else:
        images, names = read_images(Path(path), expect)
    if index is None and len(images) > 1:
        raise CLIError(f"{path}: holds {len(images)} images; pick one with --index N")
    index = index or 0
    if not 0 <= index < len(images):
        raise CLIError(f"--index must be in [0, {len(images) - 1}] for {path}; received {index}")
    desc = names[index] if len(images) > 1 else f"image {path}"
    source = {"kind": "image", "path": str(path), "index": index, "description": desc}
    if images.dtype != np.uint8:  # a prepared float array: the model's input as it is
        if invert or meta.get(_FLAGS):
            flag = "--invert" if invert else "--mean/--std"
            raise CLIError(f"{flag} applies to pixel images (uint8); {path} holds {images.dtype} values, which are "
                           f"taken as the model's input as they are; drop {flag} or save the pixels as uint8")
        return Input(images[index].astype(_dtype(model), copy=False), None, None, source, None)
    img = 255 - images[index] if invert else images[index]
    hint = dark_on_light_note(img[None], desc.removeprefix("image "), meta, bool(invert))
    if hint:
        source["note"] = hint  # explain and show print it, as predict does
    return Input(_prepare(model, meta, img), img, None, source, None)


def _is_npy(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(_NPY)) == _NPY
    except OSError:
        return False


def _read_array(path: Path, layout: str | None, expect: tuple) -> tuple[np.ndarray, list[str]]:
    """The .npy file's images as `(N, H, W, C)` (uint8 pixels or float input), checked against `expect`."""
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CLIError(f"{path}: not a readable .npy array ({e})") from None
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        raise CLIError(f"{path}: the array holds {a.dtype} values; expected uint8 pixels or float input values")
    layout = layout or ("HWC" if a.ndim == 3 else "NHWC")
    if a.ndim != len(layout):
        raise CLIError(f"{path}: --layout {layout} needs a {len(layout)}-D array; the file holds one of shape "
                       f"{tuple(a.shape)}")
    if "N" not in layout:
        a = a[None]  # (1, ...)
    if layout.endswith("CHW"):
        a = a.transpose(0, 2, 3, 1)  # (n, c, h, w) -> (n, h, w, c)
    if a.shape[1:] != tuple(expect):
        channels_last = not layout.endswith("CHW")
        other = a.transpose(0, 2, 3, 1) if channels_last else a.transpose(0, 3, 1, 2)  # the other axis order
        suggest = ("NCHW" if channels_last else "NHWC")[0 if "N" in layout else 1:]
        hint = (f"; its axes look like {suggest}: pass --layout {suggest}" if other.shape[1:] == tuple(expect)
                else "; it is not resized: save it at the model's size")
        raise CLIError(f"{path}: the array is {shape_text(a.shape[1:])} (H×W×C, read as {layout}) but the model "
                       f"expects {shape_text(expect)}{hint}")
    names = [f"{path}[{i}]" for i in range(len(a))] if len(a) > 1 else [str(path)]
    return np.ascontiguousarray(a), names


def _dtype(model) -> np.dtype:
    ps = model.parameters()
    return ps[0].dtype if ps else np.dtype(np.float32)


# --- --mean / --std -------------------------------------------------------------------------------
_FLAGS = "normalization_from_flags"


def numbers_or_preset(flag: str):
    """An argparse type: comma-separated finite numbers (> 0 for --std), or a preset name."""
    def parse(text: str):
        key = text.strip().lower()
        if key in PRESETS:
            return key
        try:
            vals = tuple(float(v) for v in text.replace(" ", "").split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected one number per input channel separated by commas (e.g. "
                                             f"0.5,0.5,0.5) or a preset ({', '.join(PRESETS)}); received "
                                             f"{text!r}") from None
        if not all(math.isfinite(v) for v in vals) or (flag == "--std" and any(v <= 0 for v in vals)):
            bound = "finite numbers > 0" if flag == "--std" else "finite numbers"
            raise argparse.ArgumentTypeError(f"expected {bound}; received {text!r}")
        return vals
    parse.__name__ = flag.lstrip("-")
    return parse


def add_preprocess_args(p, shown=lambda text: text) -> None:
    """`--mean`, `--std` and `--layout` (`shown` may hide a help text, as `show` does)."""
    p.add_argument("--mean", type=numbers_or_preset("--mean"), metavar="M,M,M|imagenet", default=None,
                   help=shown("per-channel mean subtracted from the pixels scaled to [0, 1], one number per input "
                              "channel, or 'imagenet' (0.485,0.456,0.406; also sets --std imagenet unless given). "
                              "Replaces a checkpoint's stored normalisation; default: the checkpoint's, or "
                              "for an ONNX model none (the pixels scaled to [0, 1])"))
    p.add_argument("--std", type=numbers_or_preset("--std"), metavar="S,S,S|imagenet", default=None,
                   help=shown("per-channel standard deviation the centred pixels are divided by, or 'imagenet' "
                              "(0.229,0.224,0.225; also sets --mean imagenet unless given); default 1"))
    p.add_argument("--layout", type=str.upper, choices=LAYOUTS, default=None,
                   help=shown("the axes of a .npy --image: NHWC (default; HWC for a 3-D array), NCHW or CHW "
                              "(PyTorch's order), or HWC. PNG/JPEG/IDX images need none"))


def _per_channel(flag: str, value, channels: int, shape: tuple, kind: str) -> list[float]:
    if isinstance(value, str):
        if channels != 3:
            raise CLIError(f"{flag} {value} is for RGB inputs, but the model's input is {shape_text(shape)} "
                           f"({channels} channel{'s' if channels != 1 else ''}); give {channels} number(s)")
        return list(PRESETS[value][kind])
    if len(value) != channels:
        raise CLIError(f"{flag} takes {channels} number{'s' if channels != 1 else ''}, one per input channel of the "
                       f"model (its input is {shape_text(shape)}), or a preset ({', '.join(PRESETS)}); received "
                       f"{len(value)}: {','.join(f'{v:g}' for v in value)}")
    return [float(v) for v in value]


def preprocessing(model, meta: dict, mean, std) -> dict:
    """`meta` with the normalisation --mean/--std ask for (unchanged when neither is given): a preset
    on one flag sets both; numbers on one flag leave the other at 0 (mean) or 1 (std)."""
    if mean is None and std is None:
        return meta
    shape = model_input_shape(model)
    c = shape[-1]
    mean = mean if mean is not None else (std if isinstance(std, str) else (0.0,) * c)
    std = std if std is not None else (mean if isinstance(mean, str) else (1.0,) * c)
    norm = {"mean": _per_channel("--mean", mean, c, shape, "mean"), "std": _per_channel("--std", std, c, shape, "std")}
    return dict(meta, normalization=norm, **{_FLAGS: True})


def dataset_image(model, meta, index: int, *, data_dir=None, dataset: str | None = None,
                  split: str | None = None) -> Input:
    """Image `index` of a dataset split. With `dataset`/`split` given, exactly that split (downloaded
    if needed). Otherwise the official test set of the checkpoint's dataset when it can be found
    without downloading, else, for MNIST models, the embedded sample's validation split (the
    source's "note" says so)."""
    from .. import data
    note = None
    if dataset is None and meta.get("source") in ("onnx", "keras"):
        what = {"onnx": "an ONNX model", "keras": "a Keras model"}[meta["source"]]
        raise CLIError(f"--index reads a dataset, but {what} does not say which one it was trained on; "
                       "pass --image FILE")
    if dataset is not None or split is not None:
        name = dataset or meta.get("dataset") or "sample"
        split = split or "test"
        ds = load(name, split, data_dir, seed=data_seed(meta, name))
        split_desc = f"{_DISPLAY.get(ds.name, ds.name)} {split} split"
    else:
        official = {"sample": "mnist"}.get(meta.get("dataset") or "sample", meta.get("dataset"))
        try:
            ds = data.load(official, "test", data_dir=data_dir, download=False, progress=False,
                           seed=data_seed(meta, official))
            split_desc = (f"generated {official} test set (seed {data_seed(meta, official)})"
                          if official in data.synthetic.GENERATED else
                          f"official {_DISPLAY.get(official, official)} test set")
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
