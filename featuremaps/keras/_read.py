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
checked against a byte budget before anything is read. The budget is `max_bytes` when the caller passes
one, else the `featuremaps.limits` limit max_tensor_bytes; zip members are inflated by
`limits.read_member` (max_decompressed_bytes), configs parsed by `limits.loads_json` (max_nesting_depth),
and a config of more layers than max_graph_nodes is refused before any layer is built.
"""
from __future__ import annotations

import io
import mmap
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import limits

__all__ = ["KerasFileError", "DEFAULT_MAX_BYTES", "read", "snake_case"]

DEFAULT_MAX_BYTES = limits.DEFAULTS["max_tensor_bytes"]  # 4 GiB; left at this, the budget follows the limit
_CONFIG_BYTES_PER_LAYER = 1 << 14  # config text allowed per layer of max_graph_nodes (16 KiB; a Conv2D needs ~1 KiB)
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


def budget(max_bytes) -> int | None:
    """`max_bytes` as the caller chose it, or None when it is left at DEFAULT_MAX_BYTES (or None): then the
    budget is the limit max_tensor_bytes in force (`limits.override`, FEATUREMAPS_MAX_TENSOR_BYTES)."""
    if max_bytes is None:
        return None
    if not isinstance(max_bytes, (int, np.integer)) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ValueError(f"featuremaps.keras.load: max_bytes must be a positive int; received {max_bytes!r}")
    return None if max_bytes == DEFAULT_MAX_BYTES else int(max_bytes)


def check_budget(need: int, max_bytes: int | None, what: str) -> None:
    """Refuse `need` bytes over the budget (`max_bytes` from `budget`); the error says how to allow more."""
    bound = limits.get("max_tensor_bytes") if max_bytes is None else max_bytes
    if need > bound:
        hint = ("pass a larger max_bytes=..." if max_bytes is not None else
                f"that is the limit max_tensor_bytes: pass max_bytes=..., or {limits.how_to_raise('max_tensor_bytes')}")
        raise KerasFileError(f"{what} {need:,} bytes, over the budget of {bound:,} (max_bytes); {hint}")


def _count_layers(doc) -> int:
    """The layers of a config, nested models' included: the items of every "layers" list (no recursion)."""
    n, todo = 0, [doc]
    while todo:
        x = todo.pop()
        if isinstance(x, dict):
            if isinstance(x.get("layers"), list):
                n += len(x["layers"])
            todo.extend(x.values())
        elif isinstance(x, list):
            todo.extend(x)
    return n


def _config_cap() -> int:
    """The most config text read: _CONFIG_BYTES_PER_LAYER per layer that max_graph_nodes allows."""
    return limits.get("max_graph_nodes") * _CONFIG_BYTES_PER_LAYER


def _check_config_size(size: int, what: str, path) -> None:
    if size > _config_cap():
        raise KerasFileError(f"{path}: {what} holds {size:,} bytes of config text, more than the limit "
                             f"max_graph_nodes = {limits.get('max_graph_nodes'):,} layers allows "
                             f"({_CONFIG_BYTES_PER_LAYER:,} bytes each); {limits.how_to_raise('max_graph_nodes')}")


def _json(text: bytes, what: str, path) -> dict:
    """The model config in `text`: nesting checked (max_nesting_depth) before parsing, the layer count
    (max_graph_nodes) after."""
    doc = limits.loads_json(text, f"{path}: {what}", KerasFileError)
    if not isinstance(doc, dict) or "class_name" not in doc:
        raise KerasFileError(f"{path}: {what} is not a Keras model config (expected a JSON object with "
                             f"'class_name'); received {type(doc).__name__}")
    limits.check("max_graph_nodes", _count_layers(doc), f"{path}: {what}: the model's layers", KerasFileError)
    return doc


def _member(zf: zipfile.ZipFile, name: str, max_bytes: int | None, path) -> bytes:
    """The bytes of zip member `name`: its declared size checked against the budget, then inflated by
    `limits.read_member` (in chunks, refused past max_decompressed_bytes whatever the archive declares)."""
    info = zf.getinfo(name)
    check_budget(info.file_size, max_bytes, f"{path}: zip member {name!r} declares")
    data = limits.read_member(zf, info, str(path), KerasFileError)
    if len(data) != info.file_size:
        raise KerasFileError(f"{path}: zip member {name!r} holds {len(data):,} bytes, not the {info.file_size:,} "
                             "it declares: corrupt or truncated")
    return data


@contextmanager
def _h5_errors(path, what: str):
    """h5py's errors for a damaged file (OSError, RuntimeError, KeyError...) as one KerasFileError naming it."""
    try:
        yield
    except KerasFileError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        raise KerasFileError(f"{path}: {what} cannot be read: the weights file is corrupt or truncated "
                             f"({type(e).__name__}: {e})") from None


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
        with _h5_errors(self.path, f"the weights of layer {names[-1]!r}"):
            return self._get(names, keys)

    def _get(self, names: tuple, keys: tuple) -> list:
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


def _h5_budget(f, max_bytes: int | None, path, what: str) -> None:
    """Each dataset's declared shape against the tensor limits, and their sum against the budget (Python
    integers: absurd dims cannot overflow into a small total)."""
    total = [0]

    def add(name, obj):
        if hasattr(obj, "dtype") and hasattr(obj, "shape") and obj.shape is not None:
            total[0] += limits.check_shape(obj.shape, obj.dtype.itemsize, f"{path}: {what} dataset {name!r}",
                                           KerasFileError)

    try:
        f.visititems(add)
    except (OSError, RuntimeError, KeyError, TypeError) as e:
        if isinstance(e, KerasFileError):
            raise
        raise KerasFileError(f"{path}: {what} cannot be walked: corrupt or truncated ({type(e).__name__}: "
                             f"{e})") from None
    check_budget(total[0], max_bytes, f"{path}: {what} declares weights of")


def check_global_heaps(data, path, what: str) -> None:
    """Refuse an HDF5 file whose global heap would hang libhdf5. Variable-length strings (Keras's configs and
    weight names) live in global heap collections ("GCOL", version 1, then the collection's size; objects of
    a 16-byte header (index, refcount, reserved, size) and their data, padded to 8 bytes; index 0 is the free
    space, whose size counts its header). libhdf5 parses a collection by advancing by each object's size, so
    a free-space object of size 0 makes it loop forever. Every collection is walked here first, as libhdf5
    will walk it; the total work is bounded by the file's size. `data` is bytes or an mmap."""
    total, limit, i = 0, len(data) // 8 + 1, data.find(b"GCOL")
    while i >= 0:
        if data[i + 4:i + 8] == b"\x01\x00\x00\x00" and i + 16 <= len(data):
            end, p = min(i + int.from_bytes(data[i + 8:i + 16], "little"), len(data)), i + 16
            while p + 16 <= end:
                index, size = int.from_bytes(data[p:p + 2], "little"), int.from_bytes(data[p + 8:p + 16], "little")
                step = size if index == 0 else 16 + (size + 7) // 8 * 8
                total += 1
                if step == 0 or total > limit:
                    raise KerasFileError(f"{path}: {what} has a corrupt HDF5 global heap (at byte {i:,}: "
                                         f"{'an object of size 0' if step == 0 else 'collections that overlap'}"
                                         "), on which libhdf5 would loop forever; refused")
                p += step
        i = data.find(b"GCOL", i + 1)


def _open_h5(h5py, source, path, what: str):
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise KerasFileError(f"{path}: {what} is not a readable HDF5 file: corrupt or truncated ({e})") from None


def _v3_h5(data: bytes, max_bytes: int | None, path) -> Weights:
    h5py = _h5py(path)
    check_global_heaps(data, path, "model.weights.h5")
    f = _open_h5(h5py, io.BytesIO(data), path, "model.weights.h5")
    _h5_budget(f, max_bytes, path, "model.weights.h5")

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


def _v3_npz(data: bytes, path, max_bytes: int | None = None) -> Weights:
    """Keras's own store (one pickled dict of variables per layer path, read as data by `_npz`, never
    unpickled), or plain arrays named `<layer path>/vars/<i>`."""
    from ._npz import read_npz  # here, not at the top: _npz imports KerasFileError from this module
    members = read_npz(data, path, max_bytes)
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
        with _h5_errors(self.path, f"the weights of layer {names[-1]!r}"):
            return self._get(names, keys)

    def _get(self, names: tuple, keys: tuple) -> list:
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


def _read_zip(p: Path, max_bytes: int | None):
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise KerasFileError(f"{p}: not a Keras file: neither a .keras zip archive nor a legacy HDF5 file "
                             f"({e})") from None
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise KerasFileError(f"{p}: a zip archive without config.json: not a Keras 3 .keras file")
        check_budget(sum(i.file_size for i in zf.infolist()), max_bytes, f"{p}: the archive declares")
        _check_config_size(zf.getinfo("config.json").file_size, "config.json", p)
        config = _json(_member(zf, "config.json", max_bytes, p), "config.json", p)
        if "model.weights.h5" in names:
            return config, _v3_h5(_member(zf, "model.weights.h5", max_bytes, p), max_bytes, p), "keras-h5"
        if "model.weights.npz" in names:
            return config, _v3_npz(_member(zf, "model.weights.npz", max_bytes, p), p, max_bytes), "keras-npz"
        raise KerasFileError(f"{p}: the archive has no model.weights.h5 or model.weights.npz: no weights to load")


def _read_legacy(p: Path, max_bytes: int | None):
    h5py = _h5py(p)
    with open(p, "rb") as raw:
        try:
            with mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as data:
                check_global_heaps(data, p, "the file")
        except (OSError, ValueError) as e:  # mmap of a special file
            raise KerasFileError(f"{p}: cannot be read ({e})") from None
    f = _open_h5(h5py, p, p, "the file")
    try:
        try:
            has_config, has_weights = "model_config" in f.attrs, "model_weights" in f
            text = f.attrs["model_config"] if has_config else None
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as e:
            raise KerasFileError(f"{p}: the HDF5 file cannot be read: corrupt or truncated ({type(e).__name__}: "
                                 f"{e})") from None
        if not has_config:
            raise KerasFileError(f"{p}: an HDF5 file without a 'model_config' attribute: not a Keras model file "
                                 "(a weights-only .h5 file needs the model's config)")
        if not has_weights:
            raise KerasFileError(f"{p}: an HDF5 Keras file without a 'model_weights' group: no weights to load")
        _h5_budget(f, max_bytes, p, "the file")
        if isinstance(text, np.ndarray) and text.shape in ((), (1,)):
            text = text.reshape(()).item()
        if isinstance(text, str):
            text = text.encode("utf-8", "surrogateescape")
        if not isinstance(text, (bytes, np.bytes_)):
            raise KerasFileError(f"{p}: the model_config attribute is a {type(text).__name__}, not JSON text")
        _check_config_size(len(text), "the model_config attribute", p)
        config = _json(bytes(text), "the model_config attribute", p)
        if not isinstance(f.get("model_weights"), h5py.Group):
            raise KerasFileError(f"{p}: 'model_weights' is not an HDF5 group: no weights to load")
        return config, _LegacyWeights(f, p), "h5"
    except BaseException:
        f.close()
        raise


def read(path, max_bytes: int | None = DEFAULT_MAX_BYTES):
    """(config dict, Weights, format) of the Keras file at `path`; format is 'keras-h5', 'keras-npz' or 'h5'.
    `max_bytes` left at its default (or None) means the limit max_tensor_bytes in force (see `budget`)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"featuremaps.keras.load: {p} is not a file")
    max_bytes = budget(max_bytes)
    check_budget(p.stat().st_size, max_bytes, f"{p}: the file holds")
    with open(p, "rb") as f:
        head = f.read(8)
    if head == _HDF5:
        return _read_legacy(p, max_bytes)
    return _read_zip(p, max_bytes)
