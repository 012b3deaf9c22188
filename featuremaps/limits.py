"""Resource limits for reading untrusted files, and the bounded readers that enforce them.

Every loader (IDX, CIFAR, images, checkpoints, ONNX, Keras, safetensors) checks what a file *declares*
against these limits before it allocates or decompresses anything:

=======================  ====================================  =========  =========================================
limit                    environment variable                  default    what it bounds
=======================  ====================================  =========  =========================================
max_tensor_bytes         FEATUREMAPS_MAX_TENSOR_BYTES          4 GiB      one array (product of its dims × item size)
max_tensor_elements      FEATUREMAPS_MAX_TENSOR_ELEMENTS       2**31      one array's element count
max_decompressed_bytes   FEATUREMAPS_MAX_DECOMPRESSED_BYTES    4 GiB      a gzip stream or a zip/tar member, inflated
max_graph_nodes          FEATUREMAPS_MAX_GRAPH_NODES           100,000    the nodes of an ONNX graph / Keras layers
max_nesting_depth        FEATUREMAPS_MAX_NESTING_DEPTH         64         JSON nesting (configs, meta), nested models
=======================  ====================================  =========  =========================================

Change them for a block of code (thread-local, restored on exit) or for the whole process::

    from featuremaps import limits
    with limits.override(max_tensor_bytes=16 << 30):
        model = featuremaps.load_model("big.onnx")
    # or: FEATUREMAPS_MAX_TENSOR_BYTES=17179869184 featuremaps summary big.onnx

An explicit `max_bytes=` argument of `featuremaps.onnx.run`/`load` or `featuremaps.keras.load` wins over
`max_tensor_bytes`. A limit that is hit raises the loader's own error (a ValueError subclass naming the file);
its message names the limit and both ways to raise it.

The readers here never trust a declared size: `gunzip` and `read_member` inflate in bounded chunks and stop
one byte past the limit (a decompression bomb is refused, not expanded); `npy_header` checks an `.npy`
member's shape and dtype against the limits, and `read_npy` also against the member's real size, before
the array exists, then copies it in bounded chunks; `loads_json` measures nesting before `json.loads`
could recurse.
"""
from __future__ import annotations

import json
import os
import re
import threading
import zipfile
import zlib
from contextlib import contextmanager
from typing import Iterator

import numpy as np

__all__ = ["LimitError", "DEFAULTS", "get", "current", "override", "check", "check_shape", "gunzip",
           "read_member", "npy_header", "read_npy", "loads_json", "json_depth", "how_to_raise"]

#: name → default value (see the module docstring)
DEFAULTS: dict[str, int] = {
    "max_tensor_bytes": 4 << 30,
    "max_tensor_elements": 1 << 31,
    "max_decompressed_bytes": 4 << 30,
    "max_graph_nodes": 100_000,
    "max_nesting_depth": 64,
}
_CHUNK = 1 << 20
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')  # a JSON string literal, escapes included
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)
_local = threading.local()


class LimitError(ValueError):
    """A file declares more than a resource limit allows (raised when a loader has no error class of its own)."""


def _env_name(name: str) -> str:
    return "FEATUREMAPS_" + name.upper()


def _positive_int(value, where: str) -> int:
    try:
        n = int(str(value).replace("_", "")) if isinstance(value, str) else value
    except ValueError:
        n = None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{where} must be a positive integer; received {value!r}")
    return int(n)


def get(name: str) -> int:
    """The limit in force: an `override` in this thread, else the environment variable, else the default."""
    if name not in DEFAULTS:
        raise ValueError(f"limits.get: unknown limit {name!r}; known: {', '.join(DEFAULTS)}")
    stack = getattr(_local, "stack", None)
    for layer in reversed(stack or ()):
        if name in layer:
            return layer[name]
    env = os.environ.get(_env_name(name))
    if env:
        return _positive_int(env, f"the environment variable {_env_name(name)}")
    return DEFAULTS[name]


def current() -> dict[str, int]:
    """Every limit's value in force now."""
    return {name: get(name) for name in DEFAULTS}


@contextmanager
def override(**values: int) -> Iterator[dict[str, int]]:
    """Set limits for the block (this thread only), e.g. `with override(max_tensor_bytes=8 << 30):`."""
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"limits.override: unknown limit(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    layer = {k: _positive_int(v, f"limits.override: {k}") for k, v in values.items()}
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(layer)
    try:
        yield current()
    finally:
        stack.pop()


def _size(n: int) -> str:
    """`n` for a message; a product of absurd dims (hundreds of digits, past a float) as a power of 2."""
    if n.bit_length() > 64:
        return f"more than 2**{n.bit_length() - 1}"
    return f"{n:,} ({n / 2**30:.3g} GiB)" if n >= 2**28 else f"{n:,}"


def how_to_raise(name: str) -> str:
    """The sentence every limit error ends with."""
    return (f"raise it with featuremaps.limits.override({name}=...) or the environment variable "
            f"{_env_name(name)}=...")


def check(name: str, need: int, what: str, error: type[Exception] = LimitError, limit: int | None = None) -> None:
    """Raise `error` when `need` passes the limit `name` (or the explicit `limit`, e.g. a `max_bytes=` argument).

    `what` says what needs it and should name the file."""
    bound = get(name) if limit is None else limit
    if need > bound:
        hint = how_to_raise(name) if limit is None else "pass a larger max_bytes=..."
        raise error(f"{what} needs {_size(need)}, over the limit {name} = {_size(bound)}; {hint}")


def check_shape(shape, itemsize: int, what: str, error: type[Exception] = LimitError) -> int:
    """Check an array's declared shape against max_tensor_elements and max_tensor_bytes; returns its bytes.
    Python integers, so a product of absurd dims cannot overflow. An empty shape counts its nonzero dims
    against max_tensor_elements: (0, 2**32, 2**32) holds nothing, but NumPy cannot even represent it."""
    n, nonzero = 1, 1
    for d in shape:
        d = int(d)
        if d < 0:
            raise error(f"{what}: negative dimension in the shape {tuple(int(x) for x in shape)}")
        n, nonzero = n * d, nonzero * max(d, 1)
    dims = tuple(int(x) for x in shape)
    check("max_tensor_elements", n, f"{what} (shape {dims})", error)
    check("max_tensor_elements", nonzero, f"{what} (shape {dims}: empty, but its nonzero dimensions)", error)
    check("max_tensor_bytes", n * int(itemsize), f"{what} (shape {dims})", error)
    return n * int(itemsize)


def gunzip(data: bytes, what: str, error: type[Exception] = LimitError) -> bytes:
    """Inflate a gzip stream (several members allowed, as `gzip.decompress`) in bounded chunks; at most
    max_decompressed_bytes come out. Raises `error` for a bomb, a truncated or a corrupted stream."""
    limit, out, total, rest = get("max_decompressed_bytes"), [], 0, data
    while rest:
        d, piece = zlib.decompressobj(wbits=31), rest  # wbits 31: a gzip header and trailer
        try:
            while not d.eof:
                chunk = d.decompress(piece, _CHUNK)
                piece = d.unconsumed_tail
                if not chunk and not piece:
                    break
                total += len(chunk)
                if total > limit:
                    check("max_decompressed_bytes", total, f"{what}: the gzip stream, decompressed (at least),", error)
                out.append(chunk)
        except zlib.error as e:
            raise error(f"{what} is a truncated or corrupted gzip file ({e})") from None
        if not d.eof:
            raise error(f"{what} is a truncated or corrupted gzip file (the stream ends before its end marker)")
        rest = d.unused_data.lstrip(b"\0")  # gzip.decompress also skips zero padding between members
    return b"".join(out)


def read_member(zf, info, what: str, error: type[Exception] = LimitError, limit: int | None = None) -> bytes:
    """The bytes of zip member `info` (a ZipInfo), read in chunks and refused past max_decompressed_bytes
    (or `limit`), whatever size the archive declares for it."""
    bound = get("max_decompressed_bytes") if limit is None else limit
    name = "max_decompressed_bytes" if limit is None else "max_bytes"
    where = f"{what}: zip member {info.filename!r}"
    if info.file_size > bound:
        check(name, info.file_size, f"{where} (declared size)", error, limit)
    out, total = [], 0
    try:
        with zf.open(info) as f:
            while chunk := f.read(_CHUNK):
                total += len(chunk)
                if total > bound:
                    check(name, total, f"{where} (inflated size)", error, limit)
                out.append(chunk)
    except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError, zlib.error, zipfile.BadZipFile) as e:
        if isinstance(e, error):
            raise
        raise error(f"{where} is corrupt or truncated ({type(e).__name__}: {e})") from None
    return b"".join(out)


def npy_header(fp, what: str, error: type[Exception] = LimitError) -> tuple[tuple, bool, np.dtype, int]:
    """Read an `.npy` header from `fp` -> (shape, fortran_order, dtype, nbytes) after checking it: version
    1-3, a plain numeric or bool dtype (no object arrays: nothing is ever unpickled) and the shape against
    the limits."""
    fmt = np.lib.format
    try:
        major, minor = fmt.read_magic(fp)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif (major, minor) in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {major}.{minor}")
    except (ValueError, TypeError, SyntaxError, EOFError, OSError, UnicodeDecodeError, MemoryError,
            RecursionError) as e:  # the header is a Python literal, parsed by ast.literal_eval
        raise error(f"{what}: not a readable .npy array header ({type(e).__name__}: {e})") from None
    if dtype.hasobject or dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise error(f"{what}: holds dtype {dtype}; only plain numeric arrays are read (an object array would "
                    "need unpickling, which featuremaps never does)")
    return shape, fortran, dtype, check_shape(shape, dtype.itemsize, what, error)


def read_npy(fp, size: int | None, what: str, error: type[Exception] = LimitError) -> np.ndarray:
    """The `.npy` array in the stream `fp` (a zip member, `size` bytes in all when known): its header is
    checked (`npy_header`, and that `size` holds exactly the bytes the shape needs) before the array is
    allocated, and the data is copied in bounded chunks. A short stream raises `error`."""
    shape, fortran, dtype, nbytes = npy_header(fp, what, error)
    if size is not None and size - fp.tell() != nbytes:
        raise error(f"{what}: its header says shape {shape} of {dtype} ({nbytes:,} bytes) but it holds "
                    f"{size - fp.tell():,} bytes of data (truncated or corrupt)")
    arr = np.empty(nbytes // dtype.itemsize, dtype)
    view, got = memoryview(arr.view(np.uint8)), 0  # (nbytes,) bytes of arr
    while got < nbytes:
        chunk = fp.read(min(_CHUNK, nbytes - got))
        if not chunk:
            raise error(f"{what}: the data ends after {got:,} of {nbytes:,} bytes (truncated)")
        view[got:got + len(chunk)] = chunk
        got += len(chunk)
    if fp.read(1):  # also makes a zip member check its CRC
        raise error(f"{what}: extra bytes after the array's {nbytes:,} bytes of data")
    return arr.reshape(shape, order="F" if fortran else "C")


def json_depth(text: str) -> int:
    """The deepest nesting of [ ] and { } in JSON text, brackets inside strings ignored (no recursion)."""
    code = np.frombuffer(_JSON_STRING.sub('""', text).encode("utf-8"), np.uint8)
    step = np.isin(code, _OPEN).astype(np.int64) - np.isin(code, _CLOSE)  # +1 opens, -1 closes, per byte
    return int(np.cumsum(step).max(initial=0))


def loads_json(data: bytes | str, what: str, error: type[Exception] = LimitError):
    """`json.loads` after checking the nesting depth against max_nesting_depth (deep nesting would make
    the decoder recurse until RecursionError). Invalid UTF-8 or JSON raises `error` naming `what`."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else str(data)
    except UnicodeDecodeError as e:
        raise error(f"{what} is not UTF-8 text ({e})") from None
    check("max_nesting_depth", json_depth(text), f"{what}: JSON nesting", error)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise error(f"{what} is not valid JSON ({e})") from None
