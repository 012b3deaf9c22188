"""State dicts between torch and featuremaps: `load_state_dict` and `export_state_dict`.

torch keeps conv weights OIHW `(out, in/groups, kh, kw)` (a transposed conv `(in, out/groups, kh,
kw)`), Linear weights `(out, in)`, and flattens maps in (c, h, w) order; featuremaps keeps HWIO,
`(in, out)` and (h, w, c). Each tensor is converted by the kind of the featuremaps layer it goes
to (its `role`), and each conversion is one line of the log `load_state_dict` returns.

Reading never runs code: `.safetensors` is read by `safetensors.numpy` (no torch needed), `.pt` /
`.pth` by `torch.load(weights_only=True)` only. Tensors are matched to the model's weighted layers
by `mapping` (featuremaps parameter name → torch key), else by name (the torch module paths of a
`from_module` model, or torch prefixes equal to the layer names), else in order.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .. import limits
from ..nn.graph import model_nodes
from ._layout import dense_flatten_inputs, from_torch, to_torch

__all__ = ["load_state_dict", "export_state_dict", "read_tensors"]

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
_ORDER_KEY = "featuremaps_order"


# --- reading ------------------------------------------------------------------------------------
def read_tensors(source) -> tuple[dict, str]:
    """(torch key → ndarray in the file's order, how it was read) from a path or a dict."""
    if isinstance(source, dict):
        return {str(k): _as_array(v, k) for k, v in source.items()}, "a dict"
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"load_state_dict: source {str(path)!r} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path), f"{path.name} (safetensors)"
    if suffix in (".pt", ".pth", ".bin"):
        return _read_pt(path), f"{path.name} (torch.load, weights_only=True)"
    raise ValueError(f"load_state_dict: source must be a .safetensors, .pt or .pth file or a dict; received "
                     f"{str(path)!r}")


def _as_array(v, key) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    a = np.asarray(v)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"load_state_dict: {key!r} is not a numeric tensor (dtype {a.dtype})")
    return a


def _read_safetensors(path: Path) -> dict:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ImportError("load_state_dict: reading .safetensors needs the safetensors package "
                          "(pip install 'featuremaps[torch]')") from None
    where = f"load_state_dict: {str(path)!r}"
    try:
        with safe_open(str(path), framework="numpy") as f:
            keys, meta = list(f.keys()), f.metadata() or {}
            limits.check("max_graph_nodes", len(keys), f"{where}: its tensor count", ValueError)
            for k in keys:  # the header's shapes, checked before any tensor is built
                sl = f.get_slice(k)
                limits.check_shape(sl.get_shape(), _itemsize(sl.get_dtype()), f"{where}: tensor {k!r}", ValueError)
            tensors = {k: f.get_tensor(k) for k in keys}
    except ValueError as e:
        if str(e).startswith(where):
            raise
        raise ValueError(f"{where} is not a readable safetensors file: {e}") from None
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError (not a ValueError)
        raise ValueError(f"{where} is not a readable safetensors file: {type(e).__name__}: {e}") from None
    order = None
    try:  # optional metadata (export_state_dict writes it): JSON, never evaluated; unusable → natural order
        order = limits.loads_json(meta[_ORDER_KEY], f"{where}: its metadata {_ORDER_KEY!r}", ValueError)
    except (KeyError, ValueError):
        pass
    if not isinstance(order, list) or not all(isinstance(k, str) for k in order) or sorted(order) != sorted(keys):
        order = sorted(keys, key=_natural)
    return {k: tensors[k] for k in order}


def _itemsize(dtype: str) -> int:
    """Bytes per item of a safetensors dtype name ("F32", "BF16", "I64", "BOOL", "F8_E4M3", ...)."""
    digits = "".join(c for c in dtype.split("_")[0] if c.isdigit())
    return max(int(digits) // 8, 1) if digits else 1


def _natural(key: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


def _read_pt(path: Path) -> dict:
    try:
        import torch
    except ImportError:
        raise ImportError(f"load_state_dict: {path.name} is a torch file; reading it needs torch (it is read with "
                          f"torch.load(weights_only=True), never unpickled otherwise). Install torch, or save "
                          f"the weights as .safetensors") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"load_state_dict: torch.load(weights_only=True) refused {str(path)!r}: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"load_state_dict: {str(path)!r} must hold a state dict (names → tensors); received a "
                         f"{type(obj).__name__}")
    return {k: _as_array(v, k) for k, v in obj.items()}


# --- matching -----------------------------------------------------------------------------------
def weighted_layers(model) -> list[tuple[str, object, list[str]]]:
    """(node name, layer, its tensor names in torch order) for every layer with weights or statistics."""
    out = []
    for n in model_nodes(model):
        names = [k for k, p in n.layer._parameters.items() if p is not None]
        if n.layer.role == "norm" and "running_mean" in n.layer._buffers:
            names = [k for k in _BN_KEYS if k in names or k in n.layer._buffers]
        if names:
            out.append((n.name, n.layer, names))
    return out


def _groups(tensors: dict) -> dict:
    """torch module prefix → {suffix: key}, in order; num_batches_tracked left out."""
    groups = {}
    for k in tensors:
        prefix, _, suffix = k.rpartition(".")
        if suffix != "num_batches_tracked":
            groups.setdefault(prefix, {})[suffix] = k
    return groups


def _match(model, tensors: dict, mapping) -> tuple[dict, str, list]:
    """(featuremaps parameter name → torch key, how, problems)."""
    layers = weighted_layers(model)
    wanted = [f"{name}.{k}" for name, _, ks in layers for k in ks]
    if mapping is not None:
        problems = [f"{p!r} has no mapping" for p in wanted if p not in mapping]
        problems += [f"mapping names {p!r}, which is not a weight of the model" for p in mapping if p not in wanted]
        problems += [f"mapping sends {p!r} to {k!r}, which is not in the source" for p, k in mapping.items()
                     if k not in tensors]
        return ({p: mapping[p] for p in wanted if p in mapping and mapping[p] in tensors}, "by the given mapping",
                problems)
    groups = _groups(tensors)
    known = getattr(model, "torch_modules", {}) or {}
    by_name = {name: known.get(name, name) for name, _, _ in layers}
    if all(by_name[name] in groups for name, _, _ in layers) or all(
            any(p.replace(".", "_") == name for p in groups) for name, _, _ in layers):
        if not all(by_name[name] in groups for name, _, _ in layers):
            by_name = {name: next(p for p in groups if p.replace(".", "_") == name) for name, _, _ in layers}
        problems = [f"layer {name!r} has no {k!r} ({by_name[name]}.{k})" for name, _, ks in layers for k in ks
                    if k not in groups[by_name[name]]]
        return ({f"{name}.{k}": groups[by_name[name]][k] for name, _, ks in layers for k in ks
                 if k in groups[by_name[name]]}, "by name", problems)
    prefixes = list(groups)
    problems = []
    if len(prefixes) != len(layers):
        problems.append(f"the source has {len(prefixes)} modules with tensors ({', '.join(prefixes)}) but the "
                        f"model has {len(layers)} weighted layers ({', '.join(n for n, _, _ in layers)}); give "
                        f"mapping={{featuremaps name: torch key}}")
        return {}, "in order", problems
    found = {}
    for (name, _, ks), prefix in zip(layers, prefixes):
        have = groups[prefix]
        if sorted(have) != sorted(ks):
            problems.append(f"layer {name!r} needs {ks} but module {prefix!r} has {sorted(have)}")
            continue
        found.update({f"{name}.{k}": have[k] for k in ks})
    return found, "in order", problems


# --- load ---------------------------------------------------------------------------------------
def load_state_dict(model, source, mapping=None) -> list[str]:
    """Load torch weights from `source` (a .safetensors / .pt / .pth path, or a dict of tensors) into
    `model`, converting each layout; returns the log lines and appends them to `model.import_log`.

    Every problem (an unmatched key, a wrong shape) is listed in one ValueError and nothing is loaded."""
    if mapping is not None and not isinstance(mapping, dict):
        raise TypeError(f"load_state_dict: mapping must be a dict featuremaps name → torch key; received "
                        f"{type(mapping).__name__}")
    tensors, how_read = read_tensors(source)
    found, how, problems = _match(model, tensors, mapping)
    flat = dense_flatten_inputs(model)
    for name, why in flat.get("ambiguous", {}).items():
        warnings.warn(f"load_state_dict: Dense {name!r} reads {why}; whether torch flattened in (c, h, w) order "
                      f"cannot be told, so its rows were not permuted. Check with featuremaps.layouts."
                      f"verify_conversion(torch_module, model, probe) and see which layer diverges", stacklevel=2)
    layers = {name: layer for name, layer, _ in weighted_layers(model)}
    state, log = {}, [f"torch weights from {how_read}, matched {how}"]
    for param, key in found.items():
        name, _, kind = param.rpartition(".")
        layer = layers[name]
        target = layer._parameters.get(kind)
        target = target.data if target is not None else layer._buffers[kind]
        a, step = from_torch(layer, kind, tensors[key], flat.get("maps", {}).get(name))
        if a.shape != target.shape:
            problems.append(f"{key!r} → {param!r}: expected torch shape {to_torch(layer, kind, target, None)[0].shape}"
                            f", received {tensors[key].shape}")
            continue
        state[param] = a
        log.append(f"{key} → {param}" + (f": {step}" if step else ""))
    if problems:
        raise ValueError(f"load_state_dict: {len(problems)} problem(s) with the weights from {how_read}: "
                         + "; ".join(problems) + ". Nothing was loaded.")
    ignored = [k for k in tensors if k not in found.values()]
    if ignored:
        log.append(f"not loaded (no featuremaps tensor): {', '.join(ignored)}")
    _assign(layers, state)
    model.import_log = list(getattr(model, "import_log", None) or []) + log
    return log


def _assign(layers: dict, state: dict) -> None:
    """Each array, as a new writable copy in the target's dtype (a target may be a read-only view)."""
    for param, a in state.items():
        name, _, kind = param.rpartition(".")
        layer = layers[name]
        p = layer._parameters.get(kind)
        if p is not None:
            p.data = np.array(a, dtype=p.data.dtype)
            p.grad = None
        else:
            layer._buffers[kind] = np.array(a, dtype=layer._buffers[kind].dtype)


# --- export -------------------------------------------------------------------------------------
def export_state_dict(model, path) -> Path:
    """Write `model`'s weights as a torch state dict in `path` (a .safetensors file): OIHW convs,
    (out, in) Linear weights with (c, h, w) rows after a flatten, BatchNorm statistics plus
    `num_batches_tracked`. Keys are `<module>.<tensor>`: the torch module path of a `from_module`
    model, else the featuremaps layer name. Returns the path."""
    try:
        from safetensors.numpy import save_file
    except ImportError:
        raise ImportError("export_state_dict needs the safetensors package (pip install 'featuremaps[torch]')") \
            from None
    from .._atomic import atomic_write
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"export_state_dict: path must end in .safetensors; received {str(path)!r}")
    known = getattr(model, "torch_modules", {}) or {}
    flat = dense_flatten_inputs(model).get("maps", {})
    out = {}
    for name, layer, kinds in weighted_layers(model):
        prefix = known.get(name, name)
        for kind in kinds:
            p = layer._parameters.get(kind)
            out[f"{prefix}.{kind}"] = np.ascontiguousarray(to_torch(layer, kind, p.data if p is not None else
                                                                    layer._buffers[kind], flat.get(name))[0])
        if "running_mean" in kinds:
            out[f"{prefix}.num_batches_tracked"] = np.zeros((), np.int64)
    with atomic_write(path, suffix=".tmp.safetensors") as tmp:
        save_file(out, str(tmp), metadata={"format": "pt", _ORDER_KEY: json.dumps(list(out))})
    return path
