"""`export(model, path)`: a featuremaps `Sequential` or `Graph` as a Keras 3 `.keras` file.

Written with `zipfile` and `h5py` only (no Keras, no TensorFlow); `keras.models.load_model(path)`
reads it and its `predict` equals the featuremaps forward pass in eval mode. A `Sequential` becomes a
Keras `Sequential`, a `Graph` a Keras functional model with the same inputs and outputs (nested
containers are flattened, their layers named "block.conv"). Each featuremaps layer becomes the Keras
layer of the same name, or a few Keras layers of which the last has that name; how each is written
is in `featuremaps.keras._write`, the file format in `featuremaps.keras._archive`.

Every step that changes how something is stored (a connection table as zero kernels, a padding as a
ZeroPadding2D layer, BatchNorm's momentum, a composite for a layer Keras lacks) is a line of a log,
set on the model as `model.export_log` (a list of str) and stored in the file's `metadata.json`
under "featuremaps_export_log". A model with layers Keras cannot express raises one `KerasExportError`
that lists every such layer with the reason. The file is written atomically; an existing one is
replaced only with `overwrite=True`.
"""
from __future__ import annotations

from pathlib import Path


from .. import nn
from .._atomic import atomic_write
from ._archive import archive_bytes, config_json, weights_h5
from ._write import KerasBuilder, NoKerasForm, converter_for

__all__ = ["export", "build", "KerasExportError"]


class KerasExportError(ValueError):
    """A model (or a layer of it) that cannot be written as a Keras file; the message says which and why."""


def _input_shapes(model) -> dict:
    names = nn.graph.input_names(model)
    given = dict(model.input_shapes) if isinstance(model, nn.Graph) else {"input": model.input_shape}
    missing = [n for n in names if given.get(n) is None]
    if missing:
        raise KerasExportError(f"export: no per-example shape for input(s) {missing}; a Keras file fixes its input "
                               "shape, so build the model with one (Sequential(..., input_shape=(H, W, C)) or "
                               "Graph(inputs={name: (H, W, C)}, ...))")
    return {n: tuple(int(s) for s in given[n]) for n in names}


def _emit(k: KerasBuilder, model, env: dict, shapes_in: dict, prefix: str, bad: list) -> dict:
    """Convert `model`'s nodes reading `env` (featuremaps name → Keras name); returns every value's Keras
    name. Layers without a Keras form are appended to `bad` as (name, kind, reason)."""
    shapes = nn.graph.value_shapes(model, shapes_in)
    env = dict(env)
    for n in nn.graph.model_nodes(model):
        name = f"{prefix}{n.name}"
        ins = [env[i] for i in n.inputs]
        if nn.graph.is_container(n.layer):
            inner = nn.graph.input_names(n.layer)
            outs = n.layer.output_names if isinstance(n.layer, nn.Graph) else [n.layer.nodes()[-1].name]
            if len(outs) != 1:
                bad.append((name, type(n.layer).__name__, f"a nested graph with {len(outs)} outputs"))
                env[n.name] = ins[0]
                continue
            sub = _emit(k, n.layer, dict(zip(inner, ins)), {i: shapes[s] for i, s in zip(inner, n.inputs)},
                        name + ".", bad)
            env[n.name] = sub[outs[0]]
            continue
        convert = converter_for(n.layer)
        try:
            if convert is None:
                raise NoKerasForm("no Keras layer computes it")
            env[n.name] = convert(k, name, n.layer, ins, [shapes[i] for i in n.inputs], shapes[n.name])
        except NoKerasForm as why:
            bad.append((name, type(n.layer).__name__, str(why)))
            env[n.name] = f"<{name}: not written>"  # no Keras layer: nothing may be proved from its input
    return env


def build(model) -> tuple[str, bytes, list[str]]:
    """(config.json text, model.weights.h5 bytes, log) of `model`; see the module docstring."""
    if not isinstance(model, (nn.Sequential, nn.Graph)):
        raise TypeError(f"export: model must be a featuremaps.nn.Sequential or Graph; received {type(model).__name__}")
    inputs = _input_shapes(model)
    dtype = model.parameter_dtype("export")
    k = KerasBuilder(dtype)
    for name, shape in inputs.items():
        k.add(name, "InputLayer", {"shape": shape}, [], [])
    bad: list = []
    env = _emit(k, model, {n: n for n in inputs}, inputs, "", bad)
    if bad:
        listed = "; ".join(f"{name!r} ({kind}): {why}" for name, kind, why in bad)
        raise KerasExportError(f"export: {len(bad)} layer(s) have no Keras form: {listed}. Replace them, or export "
                               "to ONNX instead (featuremaps.onnx.export)")
    names = model.output_names if isinstance(model, nn.Graph) else [nn.graph.model_nodes(model)[-1].name]
    outputs = [env[o] for o in names]
    if len(set(outputs)) != len(outputs) or any(o in inputs for o in outputs):
        raise KerasExportError(f"export: outputs {names} are held by Keras layers {outputs}; a Keras "
                               "model needs one distinct, computed value per output")
    chain = all(kl.inputs == [prev.name] for prev, kl in zip(k.layers, k.layers[1:]))
    sequential = isinstance(model, nn.Sequential) and len(inputs) == 1 and chain
    config, ordered = config_json(k.layers, list(inputs), outputs, sequential=sequential, dtype=dtype)
    k.log.insert(0, f"model written as a Keras {'Sequential' if sequential else 'functional'} model of "
                    f"{len(ordered)} layers, dtype {dtype}; weights keep their layout (both channels-last)")
    return config, weights_h5(ordered), k.log


def _version() -> str:
    from .. import __version__
    return __version__


def export(model, path, *, overwrite: bool = False) -> Path:
    """Write `model` (a `Sequential` or `Graph` with input shapes) to the Keras 3 file `path`
    (conventionally `.keras`); returns the path.

    The model is written as it computes in eval mode (BatchNorm's running statistics; Dropout is a
    Keras Dropout, the identity at inference). The conversion log is set on `model.export_log` and
    stored in the file. Raises `KerasExportError` (a ValueError) listing every layer with no Keras
    form, and `FileExistsError` for an existing `path` unless `overwrite=True`.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"export: path {str(path)!r} is a directory; give a file name such as model.keras")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"export: the directory of path {str(path)!r} does not exist")
    if path.exists() and not overwrite:
        raise FileExistsError(f"export: {str(path)!r} exists; pass overwrite=True to replace it")
    config, weights, log = build(model)
    data = archive_bytes(config, weights, log, _version())
    with atomic_write(path, suffix=".keras.tmp") as tmp:
        tmp.write_bytes(data)
    object.__setattr__(model, "export_log", list(log))
    return path
