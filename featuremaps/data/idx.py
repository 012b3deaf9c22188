"""IDX files (the MNIST format): a reader that checks everything, and a writer.

Layout of an IDX file (all integers big-endian)::

    byte 0, 1   0x00 0x00
    byte 2      dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte 3      ndim (number of dimensions, >= 1)
    4 * ndim    the dimensions, each an unsigned 32-bit integer
    payload     prod(dims) items of the dtype, C order, nothing after it

Files may be gzip-compressed; the reader tells by the gzip magic bytes, not by the file name.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from .. import limits

__all__ = ["DataError", "read_idx", "write_idx", "IDX_DTYPES"]


class DataError(ValueError):
    """A data file or directory is missing, malformed, or inconsistent. The message names the file."""


# dtype code -> big-endian numpy dtype (the on-disk format)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """Whole file contents, decompressed when it is gzip; DataError for anything unreadable. The raw file
    is bounded by max_tensor_bytes (plus the largest header) and a gzip stream is inflated in chunks up to
    max_decompressed_bytes (`featuremaps.limits`), so neither a huge file nor a gzip bomb is read whole."""
    if not path.exists():
        raise DataError(f"read_idx: no such file: {path}")
    if path.is_dir():
        what = "an empty directory" if not any(path.iterdir()) else "a directory"
        raise DataError(f"read_idx: {path} is {what}, expected an IDX file")
    try:
        with open(path, "rb") as f:
            head, size = f.read(2), os.fstat(f.fileno()).st_size
            gz = head == _GZIP_MAGIC
            name, slack = ("max_decompressed_bytes", 0) if gz else ("max_tensor_bytes", 4 + 4 * 255)
            if size > limits.get(name) + slack:  # the largest header is 4 + 4 * 255 bytes
                limits.check(name, size - slack, f"read_idx: {path}: the file", DataError)
            raw = head + f.read()
    except OSError as e:
        raise DataError(f"read_idx: cannot read {path} ({e})") from None
    if not raw:
        raise DataError(f"read_idx: {path} is empty (0 bytes)")
    if raw[:2] != _GZIP_MAGIC:
        return raw
    return limits.gunzip(raw, f"read_idx: {path}", DataError)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a writable, native-endian ndarray of its shape.

    Raises DataError (a ValueError) naming the file for: a missing file, a directory, an empty file,
    a corrupted or truncated gzip stream, a wrong magic number, an unknown dtype code, a truncated
    header, and a payload whose length differs from what the header's dimensions require.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"read_idx: {path}: file too short for the 4-byte magic ({len(data)} bytes)")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"read_idx: {path}: wrong magic number 0x{data[:4].hex()} (an IDX file starts with 0x0000, "
            "then a dtype byte and the number of dimensions); is this really an IDX file?"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} {IDX_DTYPES[c].name}" for c in IDX_DTYPES)
        raise DataError(f"read_idx: {path}: unknown dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"read_idx: {path}: the header says 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"read_idx: {path}: truncated header: {ndim} dimensions need {header} bytes, file has {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    want = limits.check_shape(dims, dtype.itemsize, f"read_idx: {path}: the header's dimensions", DataError)
    got = len(data) - header
    if got != want:
        problem = "short payload" if got < want else "extra bytes after the payload"
        raise DataError(
            f"read_idx: {path}: {problem}: dimensions {tuple(dims)} of {dtype.name} need {want} bytes, "
            f"found {got} (truncated or corrupted file?)"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)  # native byte order, writable


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write `array` as an IDX file; gzip it when `compress` is True (default: when the name ends in .gz).

    Supported dtypes: uint8, int8, int16, int32, float32, float64. The gzip header carries no time
    stamp, so the same array always gives the same bytes.
    """
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=") if array.dtype.itemsize > 1 else array.dtype
    if native not in _CODE_OF:
        names = ", ".join(dt.name for dt in _CODE_OF)
        raise TypeError(f"write_idx: array dtype must be one of {names}; got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: array must have 1 to 255 dimensions; got shape {array.shape}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: every dimension must be < 2**32; got shape {array.shape}")
    code = _CODE_OF[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    blob = header + payload
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        blob = gzip.compress(blob, mtime=0)
    path.write_bytes(blob)
    return path
