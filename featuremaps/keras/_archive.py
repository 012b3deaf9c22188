"""The bytes of a Keras 3 `.keras` file, from a list of `KLayer`s (see `featuremaps.keras._write`).

A `.keras` file is a zip of three members:

- `metadata.json`: the Keras version the format follows and the save date (featuremaps adds its
  own version and the export log);
- `config.json`: the model as Keras's `serialize_keras_object` writes it: a `Sequential` (a chain,
  an `InputLayer` first) or a `Functional` model (each layer with its `inbound_nodes`, the Keras
  tensors it is called on, named by `keras_history` [layer, 0, 0]; `input_layers`, `output_layers`);
- `model.weights.h5`: one HDF5 group per layer holding its variables as datasets "0", "1", … in
  the layer's own order (Conv2D: kernel, bias; BatchNormalization: gamma, beta, moving mean, moving
  variance). The groups are not named after the layers: Keras addresses a layer of a model by its
  position, `layers/<snake_case class name>` with `_1`, `_2`, … for the second and later layers of
  one class, in the order of `model.layers`. For a Sequential model that is the chain (without the
  InputLayer); for a Functional model it is the order Keras's `map_graph` gives (layers sorted by
  decreasing depth, the longest path to an output; ties in depth-first order from the outputs),
  input layers included, which `functional_order` computes here.
"""
from __future__ import annotations

import io
import json
import re
import time
import zipfile

import numpy as np

from ._write import KLayer

__all__ = ["KERAS_FORMAT_VERSION", "functional_order", "h5_paths", "config_json", "weights_h5", "archive_bytes"]

#: The Keras version whose `.keras` format these files follow (and were checked against in the tests).
KERAS_FORMAT_VERSION = "3.15.1"


def _snake_case(name: str) -> str:
    """Keras's `naming.to_snake_case` of a class name: "BatchNormalization" → "batch_normalization"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def functional_order(layers: list[KLayer], outputs: list[str]) -> list[KLayer]:
    """`layers` in the order of a Keras Functional model's `model.layers` (see the module docstring)."""
    by_name = {kl.name: kl for kl in layers}
    first_seen: dict[str, int] = {}
    finished: list[str] = []  # post-order: each layer after the layers it reads
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        first_seen.setdefault(name, len(first_seen))
        for i in by_name[name].inputs:
            visit(i)
        done.add(name)
        finished.append(name)

    for o in outputs:
        visit(o)
    depth: dict[str, int] = {}
    for name in reversed(finished):
        d = depth.setdefault(name, 0)
        for i in by_name[name].inputs:
            depth[i] = max(depth.get(i, 0), d + 1)
    for kl in layers:  # inputs that no output reads: depth 0, first
        if kl.class_name == "InputLayer" and kl.name not in depth:
            depth[kl.name], first_seen[kl.name] = 0, -1
    return [by_name[n] for n in sorted(depth, key=lambda n: (-depth[n], first_seen[n]))]


def h5_paths(ordered: list[KLayer]) -> list[str]:
    """The weights-file group of each layer of `ordered` (a model's `model.layers`), as Keras names them."""
    used: dict[str, int] = {}
    paths = []
    for kl in ordered:
        base = _snake_case(kl.class_name)
        used[base] = used.get(base, -1) + 1
        paths.append(f"layers/{base}" + (f"_{used[base]}" if used[base] else ""))
    return paths


def _dtype_policy(dtype: np.dtype) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": str(dtype)}, "registered_name": None}


def _batch(shape) -> list:
    return [None, *[int(s) for s in shape]]


def _input_layer(kl: KLayer, dtype) -> dict:
    cfg = {"batch_shape": _batch(kl.config["shape"]), "dtype": str(dtype), "sparse": False, "ragged": False,
           "name": kl.name, "optional": False}
    return {"module": "keras.layers", "class_name": "InputLayer", "config": cfg, "registered_name": None}


def _layer_entry(kl: KLayer, dtype) -> dict:
    cfg = {"name": kl.name, "trainable": True, "dtype": _dtype_policy(dtype), **kl.config}
    shapes = [_batch(s) for s in kl.in_shapes]
    return {"module": "keras.layers", "class_name": kl.class_name, "config": cfg, "registered_name": None,
            "build_config": {"input_shape": shapes[0] if len(shapes) == 1 else shapes}}


def _keras_tensor(src: str, shape, dtype) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": _batch(shape), "dtype": str(dtype), "keras_history": [src, 0, 0]}}


def _functional_entry(kl: KLayer, dtype) -> dict:
    if kl.class_name == "InputLayer":
        return {**_input_layer(kl, dtype), "name": kl.name, "inbound_nodes": []}
    tensors = [_keras_tensor(src, s, dtype) for src, s in zip(kl.inputs, kl.in_shapes)]
    args = [tensors] if len(tensors) > 1 else tensors  # a merge layer is called on one list of tensors
    return {**_layer_entry(kl, dtype), "name": kl.name, "inbound_nodes": [{"args": args, "kwargs": {}}]}


def _triples(names: list[str]):
    triples = [[n, 0, 0] for n in names]
    return triples[0] if len(triples) == 1 else triples


def config_json(layers: list[KLayer], inputs: list[str], outputs: list[str], *, sequential: bool, dtype,
                name: str = "featuremaps") -> tuple[str, list[KLayer]]:
    """The `config.json` text and the layers in `model.layers` order (for `weights_h5`)."""
    by_name = {kl.name: kl for kl in layers}
    if sequential:
        chain = [kl for kl in layers if kl.class_name != "InputLayer"]
        build = {"input_shape": _batch(by_name[inputs[0]].config["shape"])}
        cfg = {"name": name, "trainable": True, "dtype": _dtype_policy(dtype),
               "layers": [_input_layer(by_name[inputs[0]], dtype)] + [_layer_entry(kl, dtype) for kl in chain],
               "build_input_shape": build["input_shape"]}
        doc = {"module": "keras", "class_name": "Sequential", "config": cfg, "registered_name": None,
               "build_config": build, "compile_config": None}
        return json.dumps(doc), chain
    ordered = functional_order(layers, outputs)
    cfg = {"name": name, "trainable": True, "layers": [_functional_entry(kl, dtype) for kl in ordered],
           "input_layers": _triples(inputs), "output_layers": _triples(outputs)}
    doc = {"module": "keras.src.models.functional", "class_name": "Functional", "config": cfg,
           "registered_name": "Functional", "build_config": {"input_shape": None}, "compile_config": None}
    return json.dumps(doc), ordered


def weights_h5(ordered: list[KLayer], model_name: str = "featuremaps") -> bytes:
    """The `model.weights.h5` bytes: each layer's variables under its Keras path (see `h5_paths`)."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        for kl, path in zip(ordered, h5_paths(ordered)):
            group = h5.create_group(f"{path}/vars")
            group.attrs["name"] = kl.name
            for i, w in enumerate(kl.weights):
                group.create_dataset(str(i), data=w)
        h5.create_group("vars").attrs["name"] = model_name
    return buf.getvalue()


def archive_bytes(config: str, weights: bytes, log: list[str], version: str) -> bytes:
    """The zip of metadata.json, config.json and model.weights.h5."""
    metadata = {"keras_version": KERAS_FORMAT_VERSION, "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S"),
                "featuremaps_version": version, "featuremaps_export_log": list(log)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps(metadata))
        zf.writestr("config.json", config)
        zf.writestr("model.weights.h5", weights)
    return buf.getvalue()
