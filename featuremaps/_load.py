"""`load_model(path)`: open any model file featuremaps reads, chosen by its content, not its name.

    model = featuremaps.load_model("runs/l5")            # a run directory (its checkpoint.npz)
    model = featuremaps.load_model("weights.bin")        # a checkpoint, whatever its name
    model = featuremaps.load_model("resnet18.onnx", input_shape=(224, 224, 3))

What a file is comes from its first bytes: a zip archive holding a `meta.npy` entry is a featuremaps
checkpoint (`featuremaps.checkpoint`); a protobuf message whose top-level fields are those of an
ONNX `ModelProto`, with a graph, is an ONNX model (`featuremaps.onnx.load`, which needs the `onnx`
extra). Keras files (HDF5 `.h5`, or a `.keras` zip holding `config.json`) are recognised and refused
with a message saying so (they come later). Anything else is refused with an error naming the path
and what its first bytes look like. Nothing in a file is executed or unpickled.

`sniff(path)` is the decision alone; `open_model(path)` also returns the description (meta) the
command line shows: a checkpoint's meta document, or for an ONNX file its path, import log and
`onnx_tensors`. A checkpoint written by `featuremaps convert` keeps those two in its meta, and the
model loaded from it gets them back as `model.import_log` and `model.onnx_tensors`.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

__all__ = ["load_model", "open_model", "sniff", "ModelFileError", "KINDS"]

KINDS = ("run", "checkpoint", "onnx")
_ZIP, _HDF5, _NPY = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n", b"\x93NUMPY"
_EMPTY_ZIP = b"PK\x05\x06"
_CHECKPOINT = "checkpoint.npz"
_HOW = "featuremaps opens checkpoints (.npz), run directories and ONNX files"


class ModelFileError(ValueError):
    """A path that holds no model featuremaps can open: the message names it and what was seen."""


# --- protobuf: is this an ONNX ModelProto? --------------------------------------------------------
# ModelProto's top-level fields (onnx.proto) and their wire types: 0 varint, 2 length-delimited.
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_GRAPH_FIELD = 7


def _varint(f) -> int | None:
    """One protobuf varint from the file object, or None at a clean or broken end."""
    value, shift = 0, 0
    while shift < 64:
        b = f.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
    return None


def _looks_like_onnx(path: Path, size: int) -> str | None:
    """"onnx" when the file's top-level protobuf fields are a ModelProto's with a graph; "onnx-truncated"
    when they are, starting with ir_version as every exporter writes, until a field runs past the end
    of the file; None otherwise. Reads only the field keys (lengths are skipped by seeking), so a large
    file costs a few reads."""
    seen: set = set()
    cut = "onnx-truncated"
    with open(path, "rb") as f:
        while f.tell() < size:
            key = _varint(f)
            if key is None:
                return cut if 1 in seen else None
            number, wire = key >> 3, key & 7
            if _MODEL_FIELDS.get(number) != wire:
                return None
            if wire == 0:
                if _varint(f) is None:
                    return cut if 1 in seen else None
            else:
                length = _varint(f)
                if length is None or f.tell() + length > size:
                    return cut if 1 in seen else None
                f.seek(length, os.SEEK_CUR)
            seen.add(number)
    return "onnx" if _GRAPH_FIELD in seen else None


# --- what a path holds -------------------------------------------------------------------------------
def _describe_bytes(head: bytes) -> str:
    """The first bytes of a file, in words: text as text, anything else as hex."""
    if not head:
        return "the file is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"it starts with the text {text[:40]!r}"
    return f"its first bytes are {head[:16].hex(' ')}"


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        return "checkpoint"  # a damaged zip: the checkpoint reader explains and names the .prev copy
    if "meta.npy" in names:
        return "checkpoint"
    if "config.json" in names and any(n.endswith(".h5") for n in names):
        return "keras"
    listed = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
    raise ModelFileError(f"{path}: a zip archive, but neither a featuremaps checkpoint (no 'meta.npy' entry) nor a "
                         f"model file of any other kind; its entries: {listed or 'none'}. {_HOW}")


def sniff(path: str | os.PathLike) -> str:
    """What `path` holds, by its content: "run" (a directory with checkpoint.npz), "checkpoint" or
    "onnx". Raises ModelFileError naming the path and what it saw for anything else (Keras files
    included: they are recognised and said to come later)."""
    p = Path(path)
    if p.is_dir():
        if (p / _CHECKPOINT).is_file():
            return "run"
        raise ModelFileError(f"{p} is a directory without a {_CHECKPOINT}, so not a run directory. {_HOW}")
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(64)
    if head.startswith(_ZIP):
        kind = _zip_kind(p)
    elif head.startswith(_HDF5):
        kind = "keras"
    elif head.startswith(_NPY):
        raise ModelFileError(f"{p}: a single NumPy array (.npy), not a model. {_HOW}")
    elif head.startswith(_EMPTY_ZIP):
        raise ModelFileError(f"{p}: an empty zip archive, not a model. {_HOW}")
    else:
        kind = _looks_like_onnx(p, size)
        if kind == "onnx-truncated":
            raise ModelFileError(f"{p}: starts like an ONNX model but is truncated (a field runs past the end of "
                                 f"its {size:,} bytes); copy or export the file again")
    if kind == "keras":
        what = "an HDF5 file (a Keras .h5 model?)" if head.startswith(_HDF5) else "a Keras .keras archive"
        raise ModelFileError(f"{p}: {what}; Keras files are not supported yet (they come in a later version). "
                             f"Export the model to ONNX (e.g. with tf2onnx) and open the .onnx file")
    if kind is None:
        raise ModelFileError(f"{p}: not a featuremaps checkpoint (a zip archive), a run directory, or an ONNX model "
                             f"(a protobuf ModelProto with a graph); {_describe_bytes(head)}")
    return kind


# --- opening -----------------------------------------------------------------------------------------
def _open_onnx(path: Path, input_shape, max_bytes) -> tuple:
    from . import onnx as fm_onnx
    kwargs = {} if max_bytes is None else {"max_bytes": max_bytes}
    try:
        model = fm_onnx.load(str(path), input_shape=input_shape, **kwargs)
    except ImportError as e:
        raise ModelFileError(f"{path} is an ONNX model, and reading it needs the onnx package: "
                             f"pip install 'featuremaps[onnx]' ({e})") from None
    log = [str(line) for line in getattr(model, "import_log", None) or []]
    meta = {"path": str(path), "source": "onnx", "model_name": path.stem, "import_log": log}
    tensors = getattr(model, "onnx_tensors", None)
    if isinstance(tensors, dict):
        meta["onnx_tensors"] = {str(k): str(v) for k, v in tensors.items()}
    return model, meta


def _restore_import(model, meta: dict) -> None:
    """A checkpoint `featuremaps convert` wrote keeps the import's log and tensor names in its meta:
    put them back on the model, as `featuremaps.onnx.load` left them."""
    if isinstance(meta.get("import_log"), list):
        model.import_log = [str(line) for line in meta["import_log"]]
    if isinstance(meta.get("onnx_tensors"), dict):
        model.onnx_tensors = dict(meta["onnx_tensors"])


def open_model(path: str | os.PathLike, *, input_shape=None, max_bytes: int | None = None) -> tuple:
    """`(model, meta, kind)` for any model file (see the module docstring), the model in eval mode.

    `meta` is the checkpoint's meta document (with "path"), or for an ONNX file
    `{"path", "source": "onnx", "model_name", "import_log"}`. `input_shape` (per-example H, W, C)
    and `max_bytes` go to `featuremaps.onnx.load`; a checkpoint knows its own input shape and
    ignores them."""
    p = Path(path)
    kind = sniff(p)
    if kind == "onnx":
        model, meta = _open_onnx(p, input_shape, max_bytes)
    else:
        from .checkpoint import load_checkpoint
        model, meta, _ = load_checkpoint(p)
        _restore_import(model, meta)
    return model.eval(), meta, kind


def load_model(path: str | os.PathLike, *, input_shape=None, max_bytes: int | None = None):
    """The model in a featuremaps checkpoint (.npz), a run directory or an ONNX file, in eval mode.

    The kind is read from the file's content, so a misnamed file still opens; an unknown file
    raises `ModelFileError` naming the path and what its first bytes are. `input_shape`
    (per-example `(H, W, C)`) and `max_bytes` pass through to `featuremaps.onnx.load` for an ONNX
    file whose input has free dimensions (a checkpoint knows its own shape and ignores them)."""
    return open_model(path, input_shape=input_shape, max_bytes=max_bytes)[0]
