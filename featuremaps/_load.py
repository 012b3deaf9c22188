"""`load_model(path)`: open any model file featuremaps reads, chosen by its content, not its name.

    model = featuremaps.load_model("runs/l5")            # a run directory (its checkpoint.npz)
    model = featuremaps.load_model("weights.bin")        # a checkpoint, whatever its name
    model = featuremaps.load_model("resnet18.onnx", input_shape=(224, 224, 3))
    model = featuremaps.load_model("model.keras")         # Keras 3, or a legacy Keras .h5
    model = featuremaps.load_model("lenet.safetensors", arch="lenet")   # weights only: name the zoo model

What a file is comes from its first bytes:
- a zip archive holding a `meta.npy` entry is a featuremaps checkpoint (`featuremaps.checkpoint`);
- a zip archive holding `config.json` and a weights file (`model.weights.h5` or `.npz`) is a Keras 3
  `.keras` file, and an HDF5 file whose root has a `model_config` attribute is a legacy Keras `.h5`
  model (both through `featuremaps.keras.load`, extra `keras`: h5py, no Keras needed);
- an 8-byte little-endian length followed by a JSON header of that length is a safetensors file
  (`featuremaps.torch.load_state_dict`, extra `torch`): it holds weights only, so `arch=` names the
  zoo model (`featuremaps models`) they belong to;
- a protobuf message whose top-level fields are those of an ONNX `ModelProto`, with a graph, is an
  ONNX model (`featuremaps.onnx.load`, extra `onnx`).
Anything else is refused with an error naming the path and what its first bytes look like. Nothing
in a file is executed or unpickled.

`sniff(path)` is the decision alone; `open_model(path)` also returns the description (meta) the
command line shows: a checkpoint's meta document, or for an imported file its path, `source`
("onnx", "keras" or "safetensors"), import log and (ONNX) `onnx_tensors`. A checkpoint written by
`featuremaps convert` keeps the log and the tensor names in its meta, and the model loaded from it
gets them back as `model.import_log` and `model.onnx_tensors`.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

__all__ = ["load_model", "open_model", "sniff", "ModelFileError", "KINDS", "IMPORTED"]

KINDS = ("run", "checkpoint", "onnx", "keras", "safetensors")
IMPORTED = ("onnx", "keras", "safetensors")  # the kinds that are imported from another framework's file
_ZIP, _HDF5, _NPY = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n", b"\x93NUMPY"
_EMPTY_ZIP = b"PK\x05\x06"
_CHECKPOINT = "checkpoint.npz"
_HOW = ("featuremaps opens checkpoints (.npz), run directories, ONNX files, Keras files (.keras, .h5) and "
        "safetensors weights (with the zoo model they belong to)")
_SAFETENSORS_HEADER_MAX = 100_000_000  # safetensors' own limit on the JSON header
_NAMED = {".keras": "a Keras .keras file (a zip archive)", ".h5": "a Keras .h5 file (HDF5)",
          ".hdf5": "a Keras .h5 file (HDF5)", ".safetensors": "a safetensors file", ".onnx": "an ONNX model"}


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
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        if path.suffix.lower() == ".keras":
            raise ModelFileError(f"{path}: starts like a zip archive (a Keras .keras file) but is damaged or "
                                 f"truncated ({e}); save or copy the model again") from None
        return "checkpoint"  # a damaged zip: the checkpoint reader explains and names the .prev copy
    if "meta.npy" in names:
        return "checkpoint"
    if "config.json" in names and any(n.startswith("model.weights.") or n.endswith(".h5") for n in names):
        return "keras"
    if "config.json" in names:
        raise ModelFileError(f"{path}: a zip archive with a config.json but no weights file (model.weights.h5 or "
                             f"model.weights.npz), so not a whole Keras .keras file; save the model again")
    listed = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
    raise ModelFileError(f"{path}: a zip archive, but neither a featuremaps checkpoint (no 'meta.npy' entry) nor a "
                         f"model file of any other kind; its entries: {listed or 'none'}. {_HOW}")


def _hdf5_kind(path: Path) -> str:
    """"keras" for an HDF5 file with a root `model_config` attribute (a legacy Keras model); without
    h5py, "keras" too (the Keras reader then says which extra to install)."""
    try:
        import h5py
    except ImportError:
        return "keras"
    try:
        with h5py.File(path, "r") as f:
            attrs = set(f.attrs.keys())
            groups = set(f.keys())
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, ValueError, RuntimeError, KeyError... for damage
        raise ModelFileError(f"{path}: starts like an HDF5 file (a Keras .h5 model?) but h5py cannot read it "
                             f"({e}); it is damaged or truncated: save or copy it again") from None
    if "model_config" in attrs:
        return "keras"
    what = ("Keras weights alone (save_weights)" if {"layer_names", "layers"} & (attrs | groups)
            else "no Keras model")
    raise ModelFileError(f"{path}: an HDF5 file without a 'model_config' attribute, so {what}, not a model with "
                         f"its architecture; save the whole model (model.save('m.keras') or 'm.h5'). {_HOW}")


def _safetensors_kind(path: Path, head: bytes, size: int) -> str | None:
    """"safetensors" when the file starts with an 8-byte little-endian header length followed by a
    JSON object of that length; None when it does not look like one; an error when it is cut short."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    n = int.from_bytes(head[:8], "little")
    if n < 2 or n > _SAFETENSORS_HEADER_MAX:
        return None
    if 8 + n > size:
        raise ModelFileError(f"{path}: starts like a safetensors file but is truncated (its header needs {n:,} "
                             f"bytes after the first 8, the file has {size:,} in all); copy or save it again")
    with open(path, "rb") as f:
        f.seek(8)
        text = f.read(n)
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return "safetensors" if isinstance(header, dict) else None


def sniff(path: str | os.PathLike) -> str:
    """What `path` holds, by its content: "run" (a directory with checkpoint.npz), "checkpoint",
    "onnx", "keras" (a .keras zip or a legacy .h5 model) or "safetensors". Raises ModelFileError
    naming the path and what it saw for anything else."""
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
        kind = _hdf5_kind(p)
    elif (st := _safetensors_kind(p, head, size)) is not None:
        kind = st
    elif head.startswith(_NPY):
        raise ModelFileError(f"{p}: a single NumPy array (.npy), not a model. {_HOW}")
    elif head.startswith(_EMPTY_ZIP):
        raise ModelFileError(f"{p}: an empty zip archive, not a model. {_HOW}")
    else:
        kind = _looks_like_onnx(p, size)
        if kind == "onnx-truncated":
            raise ModelFileError(f"{p}: starts like an ONNX model but is truncated (a field runs past the end of "
                                 f"its {size:,} bytes); copy or export the file again")
    if kind is None:
        named = _NAMED.get(p.suffix.lower())
        said = f"its name says {named}, but " if named else ""
        raise ModelFileError(f"{p}: {said}not a featuremaps checkpoint (a zip archive), a run directory, a Keras "
                             f"file (.keras zip or .h5 HDF5), a safetensors file or an ONNX model (a protobuf "
                             f"ModelProto with a graph); {_describe_bytes(head)}")
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
    except fm_onnx.ONNXError as e:  # it names the node or tensor; say which file too
        raise ModelFileError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    log = [str(line) for line in getattr(model, "import_log", None) or []]
    meta = {"path": str(path), "source": "onnx", "model_name": path.stem, "import_log": log}
    tensors = getattr(model, "onnx_tensors", None)
    if isinstance(tensors, dict):
        meta["onnx_tensors"] = {str(k): str(v) for k, v in tensors.items()}
    return model, meta


def _log_of(model) -> list[str]:
    return [str(line) for line in getattr(model, "import_log", None) or []]


def _open_keras(path: Path, max_bytes) -> tuple:
    from . import keras as fm_keras
    from .keras._read import KerasFileError
    kwargs = {} if max_bytes is None else {"max_bytes": max_bytes}
    try:
        model = fm_keras.load(str(path), **kwargs)
    except ImportError as e:
        raise ModelFileError(f"{path} is a Keras model file, and reading it needs h5py: "
                             f"pip install 'featuremaps[keras]' ({e})") from None
    except KerasFileError as e:  # its message names the file and what is wrong with it
        raise ModelFileError(str(e)) from None
    return model, {"path": str(path), "source": "keras", "model_name": path.stem, "import_log": _log_of(model)}


def _open_safetensors(path: Path, arch) -> tuple:
    from . import models
    if arch is None:
        raise ModelFileError(f"{path}: a safetensors file holds weights only, not the layers they belong to; name "
                             f"the zoo model with arch= (one of {', '.join(models.names())})")
    name = str(arch).lower()
    if name not in models.names():
        raise ModelFileError(f"arch must name a zoo model ({', '.join(models.names())}); received {arch!r}")
    model = models.get(name)
    try:
        from .torch import load_state_dict
        log = load_state_dict(model, str(path))
    except ImportError as e:
        raise ModelFileError(f"{path} is a safetensors file, and reading it needs the safetensors package: "
                             f"pip install 'featuremaps[torch]' ({e})") from None
    lines = _log_of(model) or [str(line) for line in log or []]
    return model, {"path": str(path), "source": "safetensors", "model_name": name, "arch": name,
                   "import_log": lines}


def _restore_import(model, meta: dict) -> None:
    """A checkpoint `featuremaps convert` wrote keeps the import's log and tensor names in its meta:
    put them back on the model, as `featuremaps.onnx.load` left them."""
    if isinstance(meta.get("import_log"), list):
        model.import_log = [str(line) for line in meta["import_log"]]
    if isinstance(meta.get("onnx_tensors"), dict):
        model.onnx_tensors = dict(meta["onnx_tensors"])


def open_model(path: str | os.PathLike, *, input_shape=None, max_bytes: int | None = None, arch=None) -> tuple:
    """`(model, meta, kind)` for any model file (see the module docstring), the model in eval mode.

    `meta` is the checkpoint's meta document (with "path"), or for an imported file
    `{"path", "source", "model_name", "import_log"}` (and "onnx_tensors" for ONNX, "arch" for
    safetensors). `input_shape` (per-example H, W, C) goes to `featuremaps.onnx.load`, `max_bytes`
    to the ONNX and Keras readers; a checkpoint knows its own input shape and ignores them. `arch`
    (a zoo model name) is needed for a safetensors file and refused for any other kind."""
    p = Path(path)
    kind = sniff(p)
    if arch is not None and kind != "safetensors":
        raise ModelFileError(f"arch is for safetensors files (weights without their layers); {p} is a {kind} file "
                             f"that holds its own architecture, so drop arch (received {arch!r})")
    if kind == "onnx":
        model, meta = _open_onnx(p, input_shape, max_bytes)
    elif kind == "keras":
        model, meta = _open_keras(p, max_bytes)
    elif kind == "safetensors":
        model, meta = _open_safetensors(p, arch)
    else:
        from .checkpoint import load_checkpoint
        model, meta, _ = load_checkpoint(p)
        _restore_import(model, meta)
    return model.eval(), meta, kind


def load_model(path: str | os.PathLike, *, input_shape=None, max_bytes: int | None = None, arch=None):
    """The model in a featuremaps checkpoint (.npz), a run directory, an ONNX file, a Keras file
    (.keras or legacy .h5) or a safetensors file (with `arch`, the zoo model name), in eval mode.

    The kind is read from the file's content, so a misnamed file still opens; an unknown file
    raises `ModelFileError` naming the path and what its first bytes are. `input_shape`
    (per-example `(H, W, C)`) passes through to `featuremaps.onnx.load` for an ONNX file whose
    input has free dimensions (a checkpoint knows its own shape and ignores it); `max_bytes` caps
    what the ONNX and Keras readers accept."""
    return open_model(path, input_shape=input_shape, max_bytes=max_bytes, arch=arch)[0]
