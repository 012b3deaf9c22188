"""Reading a Keras file's two parts, the model config (JSON) and the weights, with zipfile and h5py only.

Two containers:

- a Keras 3 `.keras` file: a zip holding `config.json`, `metadata.json` and the weights, either
  `model.weights.h5` (HDF5: each layer's variables under `layers/<snake_case class>[_k]/vars/<i>`,
  `k` counting repeats of a class in the model's layer list, nested models under their own `layers`
  group; Keras 3.x records the layer's name in the `vars` group's `name` attribute) or
  `model.weights.npz` (Keras writes one member per layer path, `<path>.npy`, holding a pickled dict
  `{"0": variable, ...}`; plain arrays named `<path>/vars/<i>` are read too);
- a legacy `.h5`/`.hdf5` file (tf.keras, Keras 2, and Keras 3 saving to `.h5`): the config in the
  root attribute `model_config`, the weights in group `model_weights/<layer name>`, listed in order
  by its `weight_names` attribute (`<layer>/<variable>`, with a `:0` suffix in TensorFlow files; a
  nested model's group lists the weights of all of its layers).

Nothing is extracted to disk (zip members are read into memory by their exact name), nothing is
unpickled (Keras's own npz store pickles a dict of variables per layer: `_npz` parses those streams as
data, accepting only the few numpy/torch/Keras records Keras writes, and runs nothing), and sizes are
checked against a byte budget before anything is read.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["KerasFileError", "DEFAULT_MAX_BYTES", "read", "snake_case"]

DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB, as the ONNX reader
_CONFIG_MAX = 64 << 20  # a model config is JSON text; 64 MiB is far beyond any real one
_HDF5 = b"\x89HDF\r\n\x1a\n"


class KerasFileError(ValueError):
    """A Keras file that cannot be read: the message names the file and what is wrong with it."""


def snake_case(name: str) -> str:
    """Keras's object-path name of a class: 'Conv2D' → 'conv2d', 'ReLU' → 're_lu',
    'BatchNormalization' → 'batch_normalization'."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _h5py(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(f"{path}: reading Keras weights needs h5py (pip install 'featuremaps[keras]')") from None
    return h5py


def _json(text: bytes, what: str, path) -> dict:
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KerasFileError(f"{path}: {what} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or "class_name" not in doc:
        raise KerasFileError(f"{path}: {what} is not a Keras model config (expected a JSON object with "
                             f"'class_name'); received {type(doc).__name__}")
    return doc


def _member(zf: zipfile.ZipFile, name: str, limit: int, path) -> bytes:
    """The bytes of zip member `name`, refused when its declared or actual size passes `limit`."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise KerasFileError(f"{path}: zip member {name!r} declares {info.file_size:,} bytes, over the budget of "
                             f"{limit:,} (max_bytes)")
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise KerasFileError(f"{path}: zip member {name!r} is corrupt or truncated ({e})") from None
    if len(data) > limit:
        raise KerasFileError(f"{path}: zip member {name!r} holds more than {limit:,} bytes (max_bytes)")
    return data


class Weights:
    """The variables of each layer, by the layer's path of names (outer model first, the model itself
    excluded): `get(("block", "conv"), class_path)` → list of (variable name or index, array)."""

    closer = None

    def get(self, names: tuple, keys: tuple) -> list:
        raise NotImplementedError

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


class _StoreWeights(Weights):
    """A Keras 3 store: `read_vars(group_path)` gives one layer's arrays in order. `keys` is the layer's
    object path (snake-case class names with repeat counters); the `name` attribute is checked when present."""

    def __init__(self, path, read_vars, name_of):
        self.path, self.read_vars, self.name_of = path, read_vars, name_of

    def get(self, names: tuple, keys: tuple) -> list:
        inner = "/".join(f"layers/{k}" for k in keys)
        recorded = self.name_of(inner)
        if recorded is not None and recorded != names[-1]:
            raise KerasFileError(f"{self.path}: the weights at {inner!r} belong to layer {recorded!r}, not to "
                                 f"{names[-1]!r}: the config and the weights file do not match")
        return list(enumerate(self.read_vars(inner)))


def _h5_dataset(ds, path, where: str) -> np.ndarray:
    if ds.dtype.kind not in "fiub":
        raise KerasFileError(f"{path}: weight {where!r} has dtype {ds.dtype}; expected numbers")
    try:
        return np.asarray(ds[()])
    except (OSError, ValueError, RuntimeError) as e:
        raise KerasFileError(f"{path}: weight {where!r} cannot be read: the weights file is corrupt or "
                             f"truncated ({e})") from None


def _h5_budget(f, limit: int, path, what: str) -> None:
    total = [0]

    def add(_name, obj):
        if hasattr(obj, "dtype") and hasattr(obj, "shape"):
            total[0] += int(np.prod(obj.shape, dtype=np.int64)) * obj.dtype.itemsize

    f.visititems(add)
    if total[0] > limit:
        raise KerasFileError(f"{path}: {what} declares {total[0]:,} bytes of weights, over the budget of {limit:,} "
                             "(max_bytes)")


def _open_h5(h5py, source, path, what: str):
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as e:
        raise KerasFileError(f"{path}: {what} is not a readable HDF5 file: corrupt or truncated ({e})") from None


def _v3_h5(data: bytes, limit: int, path) -> Weights:
    h5py = _h5py(path)
    f = _open_h5(h5py, io.BytesIO(data), path, "model.weights.h5")
    _h5_budget(f, limit, path, "model.weights.h5")

    def read_vars(inner):
        group = f.get(f"{inner}/vars") if inner else f.get("vars")
        if group is None:
            raise KerasFileError(f"{path}: model.weights.h5 has no group {inner + '/vars'!r}: the config and the "
                                 "weights file do not match, or the weights file is truncated")
        keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
        return [_h5_dataset(group[k], path, f"{inner}/vars/{k}") for k in keys]

    def name_of(inner):
        group = f.get(f"{inner}/vars")
        name = None if group is None else group.attrs.get("name")
        return name.decode() if isinstance(name, bytes) else name

    store = _StoreWeights(path, read_vars, name_of)
    store.closer = f.close
    return store


def _v3_npz(data: bytes, path, limit: int = DEFAULT_MAX_BYTES) -> Weights:
    """Keras's own store (one pickled dict of variables per layer path, read as data by `_npz`, never
    unpickled), or plain arrays named `<layer path>/vars/<i>`."""
    from ._npz import read_npz  # here, not at the top: _npz imports KerasFileError from this module
    members = read_npz(data, path, limit)
    stores = {k: v for k, v in members.items() if isinstance(v, dict)}

    def read_vars(inner):
        if (inner or "__root__") in stores:
            found = stores[inner or "__root__"]
            return [found[k].array for k in sorted(found, key=lambda k: int(k) if str(k).isdigit() else -1)]
        prefix = f"{inner}/vars/" if inner else "vars/"
        found = sorted((int(k[len(prefix):]), k) for k in members
                       if k.startswith(prefix) and k[len(prefix):].isdigit() and not isinstance(members[k], dict))
        return [members[k] for _, k in found]

    def name_of(inner):
        """The layer name in the variables' recorded paths (`<layer>/<variable>`), when they all agree."""
        paths = [v.path.split("/") for v in stores.get(inner or "__root__", {}).values() if v.path]
        names = {p[-2] for p in paths if len(p) >= 2}
        return names.pop() if len(names) == 1 else None

    return _StoreWeights(path, read_vars, name_of)


class _LegacyWeights(Weights):
    """`model_weights/<top layer>` with its `weight_names`; a nested model's layers are told apart by
    the layer name before the variable name."""

    def __init__(self, f, path):
        self.group, self.path, self.closer = f["model_weights"], path, f.close

    def get(self, names: tuple, keys: tuple) -> list:
        top = self.group.get(names[0])
        if top is None:
            raise KerasFileError(f"{self.path}: model_weights has no group for layer {names[0]!r}")
        listed = [n.decode() if isinstance(n, bytes) else str(n) for n in top.attrs.get("weight_names", [])]
        out = []
        for wname in listed:
            parts = wname.split("/")
            if len(names) > 1 and (len(parts) < 2 or parts[-2] != names[-1]):
                continue
            if wname not in top:
                raise KerasFileError(f"{self.path}: weight {names[0]}/{wname} is listed but missing: the file is "
                                     "corrupt or truncated")
            out.append((parts[-1].split(":")[0], _h5_dataset(top[wname], self.path, f"{names[0]}/{wname}")))
        return out


def _read_zip(p: Path, limit: int):
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise KerasFileError(f"{p}: not a Keras file: neither a .keras zip archive nor a legacy HDF5 file "
                             f"({e})") from None
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise KerasFileError(f"{p}: a zip archive without config.json: not a Keras 3 .keras file")
        declared = sum(i.file_size for i in zf.infolist())
        if declared > limit:
            raise KerasFileError(f"{p}: the archive declares {declared:,} bytes, over the budget of {limit:,} "
                                 "(max_bytes)")
        config = _json(_member(zf, "config.json", min(limit, _CONFIG_MAX), p), "config.json", p)
        if "model.weights.h5" in names:
            return config, _v3_h5(_member(zf, "model.weights.h5", limit, p), limit, p), "keras-h5"
        if "model.weights.npz" in names:
            return config, _v3_npz(_member(zf, "model.weights.npz", limit, p), p, limit), "keras-npz"
        raise KerasFileError(f"{p}: the archive has no model.weights.h5 or model.weights.npz: no weights to load")


def _read_legacy(p: Path, limit: int):
    h5py = _h5py(p)
    f = _open_h5(h5py, p, p, "the file")
    if "model_config" not in f.attrs:
        raise KerasFileError(f"{p}: an HDF5 file without a 'model_config' attribute: not a Keras model file "
                             "(a weights-only .h5 file needs the model's config)")
    if "model_weights" not in f:
        raise KerasFileError(f"{p}: an HDF5 Keras file without a 'model_weights' group: no weights to load")
    _h5_budget(f, limit, p, "the file")
    text = f.attrs["model_config"]
    text = text.encode() if isinstance(text, str) else bytes(text)
    if len(text) > _CONFIG_MAX:
        raise KerasFileError(f"{p}: model_config holds {len(text):,} bytes, over {_CONFIG_MAX:,}")
    return _json(text, "the model_config attribute", p), _LegacyWeights(f, p), "h5"


def read(path, max_bytes: int = DEFAULT_MAX_BYTES):
    """(config dict, Weights, format) of the Keras file at `path`; format is 'keras-h5', 'keras-npz' or 'h5'."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"featuremaps.keras.load: {p} is not a file")
    if not isinstance(max_bytes, (int, np.integer)) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ValueError(f"featuremaps.keras.load: max_bytes must be a positive int; received {max_bytes!r}")
    size = p.stat().st_size
    if size > max_bytes:
        raise KerasFileError(f"{p}: {size:,} bytes, over the budget of {max_bytes:,} (max_bytes)")
    with open(p, "rb") as f:
        head = f.read(8)
    if head == _HDF5:
        return _read_legacy(p, int(max_bytes))
    return _read_zip(p, int(max_bytes))
