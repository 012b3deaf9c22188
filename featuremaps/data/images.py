"""Image files for a model: PNG/JPEG (via Pillow, the `plot` extra) or IDX, never resized.

    from featuremaps.data.images import read_images
    images, names = read_images("digit.png", (28, 28, 1))    # uint8 (N, H, W, C), one name each

`read_images` checks the file against the model's per-example `(H, W, C)` and raises `DataError`
naming the file, what the model expects and what the file holds. Colour images are converted to
the model's channels (grey for one channel, RGB for three); a size mismatch is an error, not a
silent resize. `bright_border` flags a dark-on-light drawing shown to a model trained on
light-on-dark digits (MNIST), the usual reason for a confident wrong answer.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import limits
from .idx import DataError, read_idx

__all__ = ["is_idx", "read_images", "bright_border", "DARK_BACKGROUND"]

# Datasets whose images are light strokes on a black background.
DARK_BACKGROUND = ("mnist", "sample", "fashion-mnist")

_IDX_DTYPE_CODES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)


def is_idx(path: str | os.PathLike) -> bool:
    """IDX by name (`*-ubyte`, `*.idx*`, optionally `.gz`) or by its first bytes (0x0000, dtype, ndim)."""
    path = Path(path)
    n = path.name.lower().removesuffix(".gz")
    if n.endswith("ubyte") or "idx" in n.rsplit(".", 1)[-1]:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] in _IDX_DTYPE_CODES and 1 <= head[3] <= 4


def _read_idx_images(path: Path) -> np.ndarray:
    arr = read_idx(path)
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: IDX images must be uint8 (0..255); this file holds {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise DataError(f"{path}: expected IDX images (N, H, W) or (N, H, W, C); the file has shape {arr.shape}")
    return arr


def _read_picture(path: Path, channels: int) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError("reading PNG/JPEG images needs Pillow: pip install 'featuremaps[plot]' "
                        "(or pass IDX files)") from None
    if channels not in (1, 3):
        raise DataError(f"the model expects {channels}-channel input; only IDX files can provide that")
    try:
        with Image.open(path) as im:
            w, h = im.size  # from the header: checked before the pixels are decoded
            limits.check_shape((h, w, channels), 1, f"{path}: the image", DataError)
            im.load()
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types on damaged files
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    return arr.reshape(1, arr.shape[0], arr.shape[1], -1)  # (H, W[, C]) -> (1, H, W, C)


def read_images(path: str | os.PathLike, expect: tuple) -> tuple[np.ndarray, list[str]]:
    """The images in `path` as uint8 `(N, H, W, C)`, checked against the model's `expect` = (H, W, C),
    and a name each (`path`, or `path[i]` for an IDX file of several images)."""
    path = Path(path)
    h, w, c = expect
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected an image file (PNG/JPEG or IDX)")
    if is_idx(path):
        arr = _read_idx_images(path)
        names = [f"{path}[{i}]" for i in range(len(arr))] if len(arr) > 1 else [str(path)]
    else:
        arr, names = _read_picture(path, c), [str(path)]
    if arr.shape[1:3] != (h, w):
        raise DataError(f"{path}: the image is {arr.shape[2]}×{arr.shape[1]} pixels (width×height) but the model "
                        f"expects {w}×{h}; resize it first (it is not resized silently)")
    if arr.shape[3] != c:
        raise DataError(f"{path}: the image has {arr.shape[3]} channels but the model expects {c}")
    return arr, names


def bright_border(images: np.ndarray) -> np.ndarray:
    """Per image of uint8 `(N, H, W, C)`: True when most pixels of its one-pixel border are bright
    (grey level ≥ 128), as in a dark drawing on white paper."""
    grey = images.mean(axis=-1)  # (N, H, W)
    ring = np.concatenate([grey[:, 0, :], grey[:, -1, :], grey[:, 1:-1, 0], grey[:, 1:-1, -1]], axis=1)  # (N, 2W+2H-4)
    return (ring >= 128).mean(axis=1) > 0.5
