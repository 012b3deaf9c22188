"""CIFAR-10, binary version only (the python version is pickled and is never read).

Each `*.bin` file is a sequence of 3,073-byte records: one label byte (0-9), then the 32x32 image as
1,024 red, 1,024 green and 1,024 blue bytes, each plane row-major (CHW). The training set is
`data_batch_1.bin` ... `data_batch_5.bin` (10,000 records each), the test set `test_batch.bin`.
The official archive `cifar-10-binary.tar.gz` holds them under `cifar-10-batches-bin/`.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import zlib
from pathlib import Path

import numpy as np

from .. import limits
from .._atomic import atomic_write
from .idx import DataError

__all__ = ["CIFAR10_CLASSES", "CIFAR10_FILES", "CIFAR10_ARCHIVE", "CIFAR10_DIR", "read_cifar_batch",
           "write_cifar_batch", "extract_cifar_archive"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_DIR = "cifar-10-batches-bin"  # the folder inside the archive
_SIDE, _CH = 32, 3
_RECORD = 1 + _CH * _SIDE * _SIDE  # 3073 bytes


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary CIFAR-10 batch -> (images uint8 (N, 32, 32, 3) NHWC, labels int64 (N,))."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"read_cifar_batch: no such file: {path}")
    limits.check("max_tensor_bytes", path.stat().st_size, f"read_cifar_batch: {path}", DataError)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"read_cifar_batch: cannot read {path} ({e})") from None
    if raw.size == 0 or raw.size % _RECORD:
        raise DataError(
            f"read_cifar_batch: {path}: size {raw.size} bytes is not a positive multiple of the "
            f"{_RECORD}-byte record (1 label byte + 3*32*32 image bytes); is this the binary version?"
        )
    rec = raw.reshape(-1, _RECORD)  # (n, 3073)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() >= len(CIFAR10_CLASSES):
        bad = int(np.argmax(labels >= len(CIFAR10_CLASSES)))
        raise DataError(f"read_cifar_batch: {path}: record {bad} has label {labels[bad]}, expected 0..9")
    chw = rec[:, 1:].reshape(-1, _CH, _SIDE, _SIDE)  # (n, 3, 32, 32)
    images = np.ascontiguousarray(chw.transpose(0, 2, 3, 1))  # (n, 32, 32, 3)
    return images, labels


def write_cifar_batch(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write NHWC uint8 images (N, 32, 32, 3) and labels as a binary CIFAR-10 batch (for tests/tools)."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.shape[1:] != (_SIDE, _SIDE, _CH):
        raise ValueError(f"write_cifar_batch: images must be uint8 (N, 32, 32, 3); got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"write_cifar_batch: labels must have shape ({images.shape[0]},); got {labels.shape}")
    rec = np.empty((images.shape[0], _RECORD), np.uint8)  # (n, 3073)
    rec[:, 0] = labels
    rec[:, 1:] = images.transpose(0, 3, 1, 2).reshape(images.shape[0], -1)  # (n, 3*32*32) CHW
    path = Path(path)
    rec.tofile(path)
    return path


def extract_cifar_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Extract the six batch files of `cifar-10-binary.tar.gz` into `dest_dir / cifar-10-batches-bin`.

    Safe by construction: only members whose name is exactly `cifar-10-batches-bin/<known file>` and
    that are regular files are read, and their bytes are written to paths this function builds itself,
    so a hostile archive cannot write anywhere else (no `..`, absolute paths, links or devices); a member
    larger than `featuremaps.limits` max_decompressed_bytes is refused before it is read. Each
    file is written atomically (`featuremaps._atomic.atomic_write`: a temporary name, renamed when
    complete). Returns the batches directory.
    """
    archive, out_dir = Path(archive), Path(dest_dir) / CIFAR10_DIR
    wanted = {f"{CIFAR10_DIR}/{f}": f for files in CIFAR10_FILES.values() for f in files}
    out_dir.mkdir(parents=True, exist_ok=True)
    found = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name not in wanted or not member.isreg():
                    continue
                limits.check("max_decompressed_bytes", member.size, f"extract_cifar_archive: {archive}: "
                             f"member {member.name!r}", DataError)
                src = tar.extractfile(member)
                with atomic_write(out_dir / wanted[name], suffix=".part") as tmp, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                found.add(wanted[name])
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"extract_cifar_archive: {archive} is not a readable .tar.gz ({e})") from None
    missing = sorted(set(wanted.values()) - found)
    if missing:
        raise DataError(f"extract_cifar_archive: {archive} lacks {CIFAR10_DIR}/ member(s): {', '.join(missing)}")
    return out_dir
